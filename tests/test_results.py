"""The result schema and the worst-case rule (robustbench_lite.results), against hand computations.

The cases are small enough to count by hand; each docstring says what the hand count is.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from robustbench_lite import results
from robustbench_lite.results import CASCADE, EXACT, column_value, summary_rows, upgrade_record, worst_case

KINDS = {"pgd": results.WHITE_BOX, "autoattack": results.WHITE_BOX, "square": results.BLACK_BOX,
         "ddn": results.MINIMUM_NORM, "transfer": results.TRANSFER}


from eval_helpers import HandPart  # noqa: E402

P = HandPart


T, F = True, False


def cascade_run() -> tuple[list[bool], list[P]]:
    """Six points, five clean-correct (#5 is misclassified). PGD breaks #0-#2; AutoAttack, cascaded,
    runs on #3 and #4 and breaks #3; Square (no cascade) runs on all five and breaks #0 and #4."""
    clean = [T, T, T, T, T, F]
    pgd = P("pgd", "pgd20", "linf", 0.3, [F, F, F, T, T, F], [T, T, T, T, T, F])
    aa = P("autoattack", "autoattack", "linf", 0.3, [T, T, T, F, T, F], [F, F, F, T, T, F])
    sq = P("square", "square", "linf", 0.3, [F, T, T, T, F, F], [T, T, T, T, T, F])
    return clean, [pgd, aa, sq]


def test_worst_case_by_hand() -> None:
    clean, parts = cascade_run()
    # robust to all three: only points no attack broke and clean-correct: none of #0-#4 survives
    assert worst_case(clean, parts, "linf", 0.3) == [F, F, F, F, F, F]
    assert worst_case(clean, parts[:2], "linf", 0.3) == [F, F, F, F, T, F]
    # a part at a larger eps or another norm does not count at (linf, 0.1)
    big = P("pgd", "pgd_big", "linf", 0.5, [F] * 6, [T] * 6)
    l2 = P("pgd", "pgd_l2", "l2", 0.1, [F] * 6, [T] * 6)
    assert worst_case(clean, [big, l2], "linf", 0.3) == clean
    # ... but a part at a smaller eps does: a perturbation inside a smaller ball is inside the larger one
    small = P("pgd", "pgd_small", "linf", 0.1, [F, T, T, T, T, F], [T] * 6)
    assert worst_case(clean, [small], "linf", 0.3) == [F, T, T, T, T, F]


def test_rows_identity_exactness_and_worst_case() -> None:
    clean, parts = cascade_run()
    rows = summary_rows(clean, parts, kinds=KINDS, norm="linf", eps=0.3)
    assert [r["label"] for r in rows] == ["clean", "pgd20", "autoattack", "square"]
    assert [r["attack"] for r in rows] == ["clean", "pgd", "autoattack", "square"]
    assert [r["kind"] for r in rows[1:]] == [results.WHITE_BOX, results.WHITE_BOX, results.BLACK_BOX]
    assert [r["exact"] for r in rows] == [True, True, False, True]
    assert [r["attacked"] for r in rows] == [6, 5, 2, 5]
    # accuracies in % of all six points: clean 5/6, pgd 2/6, AA counts the 3 skipped as robust: 4/6
    assert [r["accuracy"] for r in rows] == [83.33, 33.33, 66.67, 50.0]
    assert [r["worst_case"] for r in rows] == [83.33, 33.33, 16.67, 0.0]


def test_autoattack_column_never_counts_skipped_points() -> None:
    """The trust issue's natural model: PGD broke every point, AutoAttack ran on none."""
    clean = [T, T, T, T]
    pgd = P("pgd", "pgd20", "linf", 0.3, [F] * 4, [T] * 4)
    aa = P("autoattack", "autoattack", "linf", 0.3, [T] * 4, [F] * 4)  # skipped: counted robust to it
    rows = summary_rows(clean, [pgd, aa], kinds=KINDS, norm="linf", eps=0.3)
    assert rows[2]["accuracy"] == 100.0 and not rows[2]["exact"]
    cell = column_value(rows, "autoattack", "linf", 0.3)
    assert cell.value == 0.0 and cell.scope == CASCADE
    assert column_value(rows, "pgd", "linf", 0.3) == results.Cell(0.0, EXACT)


def test_column_value_prefers_exact_rows_and_the_strongest() -> None:
    clean, parts = cascade_run()
    pgd100 = P("pgd", "pgd100", "linf", 0.3, [F, F, F, F, T, F], [T, T, T, T, T, F])
    rows = summary_rows(clean, [*parts, pgd100], kinds=KINDS, norm="linf", eps=0.3)
    assert column_value(rows, "pgd", "linf", 0.3) == results.Cell(16.67, EXACT)  # min of 33.33 and 16.67
    assert column_value(rows, "autoattack", "linf", 0.3).value == 16.67  # worst case through its stage
    assert column_value(rows, "autoattack", "l2", 0.5).value is None
    assert column_value(rows, "autoattack", "linf", 0.3 + 1e-9).value == 16.67  # eps read to rounding


def test_sweep_rows_are_exact_when_own_smaller_eps_broke_the_skipped_points() -> None:
    """A sweep does not re-attack points it broke at a smaller eps: its larger-eps row is still its own."""
    clean = [T, T, T]
    a = P("pgd", "sweep", "linf", 0.1, [F, T, T], [T, T, T])
    b = P("pgd", "sweep", "linf", 0.2, [F, F, T], [F, T, T])
    rows = summary_rows(clean, [a, b], kinds=KINDS, norm="linf", eps=0.2)
    assert [r["exact"] for r in rows[1:]] == [True, True]
    other = P("fgsm", "fgsm", "linf", 0.2, [F, F, T], [F, T, T])  # skipped #0 because *another* attack broke it
    assert not summary_rows(clean, [a, other], kinds=KINDS, norm="linf", eps=0.2)[2]["exact"]


def test_minimum_norm_rows_report_mean_and_median_over_clean_points() -> None:
    clean = [T, T, F]
    d = P("ddn", "ddn", "l2", 1.0, [F, T, F], [T, T, F], norms=[0.5, float("inf"), 0.0])
    row = summary_rows(clean, [d], kinds=KINDS, norm="l2", eps=1.0)[1]
    assert row["kind"] == results.MINIMUM_NORM and row["exact"]
    assert row["mean_min_norm"] == 0.5 and row["median_min_norm"] == 0.5  # inf (not found) left out


def test_empty_and_degenerate_inputs() -> None:
    assert results.pct([]) == 0.0
    rows = summary_rows([], [], kinds=KINDS, norm="linf", eps=0.3)
    assert rows[0]["accuracy"] == 0.0 and len(rows) == 1
    assert column_value([], "autoattack", "linf", 0.3).value is None


def test_upgrade_of_a_version_1_record() -> None:
    suite = 'cascade = true\n[[attacks]]\nname = "pgd"\nlabel = "pgd20"\n[[attacks]]\nname = "autoattack"\n' \
            '[[attacks]]\nname = "square"\ncascade = false\n'
    rec = {"format_version": 1, "n": 10, "clean_accuracy": 90.0, "suite": {"text": suite, "cascade": True},
           "attacks": [{"attack": "pgd20", "norm": "linf", "eps": 0.3, "accuracy": 0.0},
                       {"attack": "autoattack", "norm": "linf", "eps": 0.3, "accuracy": 90.0, "worst_case": 0.0},
                       {"attack": "square", "norm": "linf", "eps": 0.3, "accuracy": 40.0}]}
    up = upgrade_record(rec)
    assert up["format_version"] == results.RESULT_FORMAT_VERSION
    assert [(r["label"], r["attack"], r["exact"]) for r in up["attacks"]] == [
        ("pgd20", "pgd", True), ("autoattack", "autoattack", False), ("square", "square", True)]
    assert [r["kind"] for r in up["attacks"]] == [results.WHITE_BOX, results.WHITE_BOX, results.BLACK_BOX]
    assert column_value(up["attacks"], "autoattack", "linf", 0.3) == results.Cell(
        0.0, CASCADE, column_value(up["attacks"], "autoattack", "linf", 0.3).why)


def test_results_module_is_torch_free() -> None:
    """One torch-free module owns the schema: the standard library and the core's file helpers only."""
    tree = ast.parse(Path(results.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
    assert names <= {"__future__", "math", "sys", "dataclasses", "pathlib", "typing", "tomllib", "tomli"}, names
    local = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level > 0}
    assert local <= {"files", "threat"}, local
    # threat.py (threat formatting) is itself torch-free: the standard library and the core's errors
    from robustbench_lite import threat

    tree = ast.parse(Path(threat.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert names <= {"__future__", "math", "re", "dataclasses", "fractions", "typing", "errors"}, names


@pytest.mark.parametrize("shuffle", [False, True])
def test_worst_case_does_not_depend_on_part_order(shuffle: bool) -> None:
    clean, parts = cascade_run()
    order = parts[::-1] if shuffle else parts
    assert worst_case(clean, order, "linf", 0.3) == worst_case(clean, parts, "linf", 0.3)


def test_wilson_interval_matches_scipy() -> None:
    from scipy.stats import binomtest

    from robustbench_lite.results import wilson_interval
    for k, n in [(34, 40), (0, 10), (10, 10), (1, 3), (500, 1000)]:
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        lo, hi = wilson_interval(k, n)
        assert abs(lo - 100 * ci.low) < 1e-9 and abs(hi - 100 * ci.high) < 1e-9
    assert wilson_interval(0, 0) is None
