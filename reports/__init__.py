"""Reports: ARDist, published baselines, the results store, the leaderboard, figures and reports.

Reads result records (``result.json`` written by ``bench eval``) only; never imports torch or loads
a model. Imports of the heavier parts (pandas, matplotlib) happen in their own modules.

Example::

    >>> from reports import ardist, add_record, leaderboard
    >>> round(ardist(87.14, 44.04, "cifar10"), 3)
    -1.5
"""
from __future__ import annotations

from .ardist import Cubic, accuracy_sum, ardist, curve_from_csv, fit_cubic, published_fit, resolve_curve
from .baselines import load_baselines, tradeoff_points
from .leaderboard import leaderboard, leaderboard_entries
from .records import read_record, summarize
from .report import build_report
from .store import add_record, export_csv, load_records, to_dataframe

__all__ = [
    "Cubic", "accuracy_sum", "add_record", "ardist", "build_report", "curve_from_csv", "export_csv", "fit_cubic",
    "leaderboard", "leaderboard_entries", "load_baselines", "load_records", "published_fit", "read_record",
    "resolve_curve", "summarize", "to_dataframe", "tradeoff_points",
]
