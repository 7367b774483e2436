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


def test_report_and_site_say_which_remedies_ran_and_what_each_changed(tmp_path: Path) -> None:
    from robustbench_lite.reports.report import build_report
    from robustbench_lite.reports.site import build_site

    rec = json.loads(RECORDS[0].read_text())
    rec["adaptive"] = {"remedies": [{"remedy": "bpda", "reasons": ["attacks_gradients_available"], "ran": True,
                                     "points": 40, "broken": 30, "seconds": 2.0, "note": "boundary 'net'"},
                                    {"remedy": "steps", "reasons": ["attacks_converged"], "ran": False,
                                     "note": "no white-box attack at the threat has a steps or restarts option"}],
                       "robust_accuracy_before": 80.0, "robust_accuracy_after": 12.5, "changed": True}
    plain = json.loads(RECORDS[0].read_text())
    files = build_report([rec], tmp_path / "r")
    md = files.markdown.read_text()
    assert "## Adaptive evaluation" in md
    assert "adaptive[bpda] (for attacks_gradients_available): broke 30 of the 40 points" in md
    assert "adaptive[steps] (for attacks_converged) did not run: no white-box attack" in md
    assert "robust accuracy 80.00% before the remedies, 12.50% after (changed by the escalation)" in md
    assert "Adaptive evaluation" not in build_report([plain], tmp_path / "p").markdown.read_text()
    site = build_site([rec], tmp_path / "s")
    page = site.pages[0].read_text()
    assert "<h2>Adaptive evaluation</h2>" in page and "broke 30 of the 40 points" in page
