"""Aggregate a multi-seed run (``bench train ... --seeds 0 1 2`` writes ``OUT/seed<S>/``).

:func:`aggregate_seeds` reads each seed's final held-out metrics (the last row of its checkpoint
history: ``heldout_clean`` and ``heldout_pgd``, percent) and writes ``OUT/seeds.csv``: one row per
seed, then a ``mean`` and a ``std`` row (sample standard deviation, ddof = 1; 0 for one seed), the
"mean ± std over 3 seeds" the ACT paper reports. Example::

    aggregate_seeds("runs/act", [0, 1, 2])   # -> runs/act/seeds.csv
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

from robustbench_lite.checkpoint import read_checkpoint_dict
from robustbench_lite.errors import BenchError
from robustbench_lite.files import atomic_write_text, csv_text
from robustbench_lite.results import mean_std

METRICS = ("heldout_clean", "heldout_pgd")


def aggregate_seeds(out_dir: str | Path, seeds: Sequence[int]) -> Path:
    """Write ``out_dir/seeds.csv`` (columns: seed, epochs, heldout_clean, heldout_pgd) and return its path."""
    out = Path(out_dir)
    if not seeds:
        raise BenchError("aggregate_seeds needs at least one seed.")
    rows: list[dict[str, object]] = []
    for s in seeds:
        ckpt = out / f"seed{s}" / "checkpoint.pt"
        if not ckpt.exists():
            raise BenchError(f"seed {s} has no checkpoint at {ckpt}; train it first.")
        history = read_checkpoint_dict(ckpt).get("history") or []
        if not history:
            raise BenchError(f"{ckpt} holds no finished epoch.")
        last = history[-1]
        missing = [k for k in METRICS if k not in last]
        if missing:
            raise BenchError(f"{ckpt} has no {', '.join(missing)} in its last epoch.")
        rows.append({"seed": s, "epochs": int(last["epoch"]), **{k: float(last[k]) for k in METRICS}})
    stats = {k: mean_std([float(r[k]) for r in rows]) for k in METRICS}  # type: ignore[arg-type]
    rows.append({"seed": "mean", "epochs": "", **{k: stats[k][0] for k in METRICS}})
    rows.append({"seed": "std", "epochs": "", **{k: stats[k][1] or 0.0 for k in METRICS}})
    path = out / "seeds.csv"
    atomic_write_text(path, csv_text(rows, ["seed", "epochs", *METRICS]))
    return path


def format_seeds(path: str | Path) -> str:
    """One line per metric, ``name: mean ± std (n seeds)``, for the CLI to print."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    per = [r for r in rows if r["seed"] not in ("mean", "std")]
    mean = next(r for r in rows if r["seed"] == "mean")
    std = next(r for r in rows if r["seed"] == "std")
    return "\n".join(f"{k}: {float(mean[k]):.2f} ± {float(std[k]):.2f} ({len(per)} seeds)" for k in METRICS)
