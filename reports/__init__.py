"""Reports: ARDist, published baselines, the results store, the leaderboard, figures and reports.

Reads result records (``result.json`` written by ``bench eval``) only; never imports torch or loads
a model. Public names load lazily (PEP 562), so ``bench --help``, which imports ``robustbench_lite.reports.cli``,
imports neither pandas nor matplotlib.

Example::

    >>> from robustbench_lite.reports import ardist, add_record, leaderboard
    >>> round(ardist(87.14, 44.04, "cifar10"), 3)
    -1.5
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Cubic": "ardist", "accuracy_sum": "ardist", "ardist": "ardist", "curve_from_csv": "ardist",
    "fit_cubic": "ardist", "published_fit": "ardist", "resolve_curve": "ardist",
    "load_baselines": "baselines", "tradeoff_points": "baselines", "curve_for_dataset": "baselines",
    "leaderboard": "leaderboard", "leaderboard_entries": "leaderboard", "leaderboard_rankings": "leaderboard",
    "Ranking": "leaderboard", "rankings": "leaderboard", "ranking_groups": "leaderboard", "ranking_entries": "leaderboard",
    "point_refusal": "ardist", "check_store": "store",
    "read_record": "records", "summarize": "records", "build_report": "report",
    "add_record": "store", "export_csv": "store", "load_records": "store", "to_dataframe": "store",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_LAZY)
