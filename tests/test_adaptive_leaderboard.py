"""The leaderboard shows the adaptive verdict (the record's robust_accuracy) and marks entries whose
robust number the adaptive evaluation changed."""
from __future__ import annotations

import copy
import json
from pathlib import Path

from robustbench_lite.reports.leaderboard import leaderboard_entries

RECORDS = sorted((Path(__file__).resolve().parent / "fixtures" / "reports" / "records").glob("*.json"))


def test_adaptive_rows_are_marked() -> None:
    base = json.loads(RECORDS[0].read_text())
    changed = copy.deepcopy(base)
    changed["checkpoint"]["sha256"] = "f" * 64
    changed["checkpoint"]["path"] = "runs/x/masked/checkpoint.pt"
    changed["checkpoint"]["defense"] = "masked_defense"  # its own leaderboard entry (not a seed of base's)
    changed["robust_accuracy"] = 12.5
    changed["adaptive"] = {"remedies": [{"remedy": "bpda", "ran": True, "broken": 30},
                                        {"remedy": "steps", "ran": True, "broken": 0}],
                           "robust_accuracy_before": 80.0, "robust_accuracy_after": 12.5, "changed": True}
    same = copy.deepcopy(changed)
    same["checkpoint"]["sha256"], same["checkpoint"]["path"] = "e" * 64, "runs/x/honest/checkpoint.pt"
    same["checkpoint"]["defense"] = "honest_defense"
    same["adaptive"] = {**changed["adaptive"], "changed": False}
    entries = {e.model: e for e in leaderboard_entries([base, changed, same])}
    marked = [e for e in entries.values() if "adaptive[" in e.sanity]
    assert len(marked) == 1
    assert marked[0].sanity.endswith("; robust by adaptive[bpda]")
    assert marked[0].values["robust"][0] == 12.5
