"""Every robust accuracy is backed by an attack at its threat (issue #19, part A).

A robust accuracy exists only where at least one attack ran at exactly the threat's norm and radius
on every point it had to attack; otherwise the cell is blank (None) with its reason, never the clean
accuracy. These tests build per-example parts by hand (counted in each docstring), read them through
``results.robust_at`` / ``summary_rows`` / ``evaluate.build_record`` / the CLI's summary, and check
the rule against a brute-force reference over many random cases.
"""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from robustbench_lite import results
from robustbench_lite.cliargs import format_summary
from robustbench_lite.errors import BenchError
from robustbench_lite.evaluations.evaluate import build_record
from robustbench_lite.evaluations.parts import Part
from robustbench_lite.files import csv_text
from robustbench_lite.threat import ThreatModel

T, F = True, False


from eval_helpers import HandPart  # noqa: E402

P = HandPart


def part(label: str, norm: str, eps: float, robust: list[bool], attacked: list[bool], attack: str = "pgd") -> Part:
    return Part(f"{label}@{norm}:{eps:g}", attack, label, norm, eps, robust, attacked, None, 0.0, 0, 0)


CLEAN = [T, T, T, T, F]  # four clean-correct points of five: clean accuracy 80%


def record(parts: list[Part], threat: str) -> dict:
    return build_record(CLEAN, parts, ThreatModel.parse(threat))


# -- the reported cases: never the clean accuracy ---------------------------------------------------

def test_a_suite_whose_only_attack_is_l2_gives_no_linf_robust_accuracy() -> None:
    """L2 PGD breaks two of the four points; at the Linf threat no attack ran: blank, not 80%."""
    rec = record([part("pgd", "l2", 2.0, [F, F, T, T, F], [T, T, T, T, F])], "linf:0.3")
    assert rec["robust_accuracy"] is None and rec["clean_accuracy"] == 80.0
    assert "no attack ran at linf:0.3" in rec["robust_accuracy_note"] and "l2:2" in rec["robust_accuracy_note"]
    # at the L2 threat the same part is the evidence: 2 of 5 robust
    assert record([part("pgd", "l2", 2.0, [F, F, T, T, F], [T, T, T, T, F])], "l2:2")["robust_accuracy"] == 40.0


def test_a_linf_suite_gives_no_l2_robust_accuracy() -> None:
    rec = record([part("pgd", "linf", 0.3, [F, T, T, T, F], [T, T, T, T, F])], "l2:2.0")
    assert rec["robust_accuracy"] is None and "no attack ran at l2:2" in rec["robust_accuracy_note"]


def test_a_radius_0_attack_is_no_evidence_at_a_radius_above_0() -> None:
    """PGD at radius 0 attacks nothing (every clean point stays 'robust'): its row is the clean
    accuracy at radius 0, which is true; at the threat 0.3 there is no robust accuracy."""
    p0 = part("pgd", "linf", 0.0, [T, T, T, T, F], [F] * 5)
    rec = record([p0], "linf:0.3")
    assert rec["robust_accuracy"] is None
    assert rec["summary"][1]["worst_case"] == 80.0 and rec["summary"][1]["eps"] == 0.0  # robust at radius 0: clean


def test_no_attack_at_all_gives_no_robust_accuracy() -> None:
    rec = build_record(CLEAN, [], ThreatModel.parse("linf:0.3"))
    assert rec["robust_accuracy"] is None and "no radius" in rec["robust_accuracy_note"]


def test_a_smaller_radius_alone_is_no_evidence_at_the_threat() -> None:
    """PGD at 0.1 (50% robust) is an upper bound at 0.3, not a robust accuracy at 0.3: blank."""
    small = part("pgd", "linf", 0.1, [F, F, T, T, F], [T, T, T, T, F])
    assert record([small], "linf:0.3")["robust_accuracy"] is None
    big = part("pgd", "linf", 0.3, [F, T, F, T, F], [T, T, T, T, F])
    # with an attack at 0.3 too, the worst case counts the smaller ball as well: only #3 survives
    assert record([small, big], "linf:0.3")["robust_accuracy"] == 20.0


def test_an_attack_that_skipped_points_it_had_to_attack_is_no_evidence() -> None:
    """PGD at the threat ran on #0 and #1 only (non-cascade, nothing broke #2 or #3 before): the
    robust accuracy and its row's accuracy are blank; the row says why."""
    p = part("pgd", "linf", 0.3, [F, T, T, T, F], [T, T, F, F, F])
    rec = record([p], "linf:0.3")
    assert rec["robust_accuracy"] is None and "skipped" in rec["robust_accuracy_note"]
    row = rec["summary"][1]
    assert row["worst_case"] is None and row["accuracy"] is None and row["exact"] is False
    assert "skipped" in row["blank_reason"]


def test_a_cascade_stage_needs_only_the_points_still_robust() -> None:
    """Cascade: PGD breaks #0 and #1; AutoAttack runs on #2 and #3 only and breaks #2: backed, 20%.
    A stage that ran on no point because every point was already broken is backed too (0%)."""
    pgd = part("pgd", "linf", 0.3, [F, F, T, T, F], [T, T, T, T, F])
    aa = part("aa", "linf", 0.3, [T, T, F, T, F], [F, F, T, T, F], attack="autoattack")
    rec = record([pgd, aa], "linf:0.3")
    assert rec["robust_accuracy"] == 20.0 and [r["worst_case"] for r in rec["summary"]] == [80.0, 40.0, 20.0]
    everything = part("pgd", "linf", 0.3, [F, F, F, F, F], [T, T, T, T, F])
    idle = part("aa", "linf", 0.3, [T, T, T, T, F], [F] * 5, attack="autoattack")
    rec = record([everything, idle], "linf:0.3")
    assert rec["robust_accuracy"] == 0.0 and rec["summary"][2]["worst_case"] == 0.0


def test_a_stage_after_a_non_covering_one_still_backs_the_threat() -> None:
    """A first attack at the threat skipped #3; a second one at the threat ran on all survivors."""
    a = part("a", "linf", 0.3, [F, T, T, T, F], [T, T, T, F, F])
    b = part("b", "linf", 0.3, [T, F, T, T, F], [F, T, T, T, F])
    rec = record([a, b], "linf:0.3")
    assert rec["summary"][1]["worst_case"] is None  # through a alone: no evidence
    assert rec["robust_accuracy"] == 40.0 and rec["summary"][2]["worst_case"] == 40.0


def test_a_minimum_norm_attack_counts_at_the_radii_of_its_grid_only() -> None:
    """DDN found norms 0.5, 1.5, 3 and none for #0-#3: robust at 2.0 are #2 and #3 (40%). At 1.0,
    not in its grid, it gives nothing (no interpolation)."""
    norms = [0.5, 1.5, 3.0, float("inf"), 0.0]
    at2 = Part("ddn@l2:2", "ddn", "ddn", "l2", 2.0, [F, F, T, T, F], [T, T, T, T, F], norms, 0.0, 0, 0)
    assert results.robust_at(CLEAN, [at2], "l2", 2.0) == (40.0, "")
    value, why = results.robust_at(CLEAN, [at2], "l2", 1.0)
    assert value is None and "no attack ran at l2:1" in why


def test_a_transfer_row_at_the_threat_backs_it_like_any_attack() -> None:
    """A transfer attack ran on every clean-correct point at the threat: its worst case is evidence
    (an upper bound, as every attack's)."""
    tr = part("transfer[s]", "linf", 0.3, [F, T, T, T, F], [T, T, T, T, F], attack="transfer")
    assert record([tr], "linf:0.3")["robust_accuracy"] == 60.0


def test_the_threat_radius_is_matched_up_to_float_rounding_only() -> None:
    """eps_scale = [1] on 8/255 gives round(8/255, 10): the same radius. 0.031 is another one."""
    p = part("pgd", "linf", round(8 / 255, 10), [F, T, T, T, F], [T, T, T, T, F])
    assert record([p], "linf:8/255")["robust_accuracy"] == 60.0
    q = part("pgd", "linf", 0.031, [F, T, T, T, F], [T, T, T, T, F])
    assert record([q], "linf:8/255")["robust_accuracy"] is None


# -- every output file and the CLI's summary ---------------------------------------------------------

def test_summary_csv_and_cli_leave_the_cell_blank_and_say_why() -> None:
    p = part("pgd", "l2", 2.0, [F, F, T, T, F], [T, T, T, T, F])
    rec = record([p], "linf:0.3")
    rec["threat"] = {"norm": "linf", "eps": 0.3}
    text = format_summary(rec)
    last = [line for line in text.splitlines() if line.startswith("robust accuracy")]
    assert last == [f"robust accuracy (worst case at linf:0.3): none, {rec['robust_accuracy_note']}"]
    assert "80.00%" not in last[0]
    skipped = record([part("pgd", "linf", 0.3, [F, T, T, T, F], [T, T, F, F, F])], "linf:0.3")
    skipped["threat"] = {"norm": "linf", "eps": 0.3}
    table = format_summary(skipped)
    assert "(- for pgd at linf:0.3: no attack at linf:0.3 ran on every point" in table
    row = [line for line in table.splitlines() if line.startswith("pgd ")][0]
    assert row.split()[4:6] == ["-", "-"]  # acc % and worst %: blank, never a number
    csv = csv_text(skipped["summary"], results.SUMMARY_COLUMNS).splitlines()
    header, pgd_row = csv[0].split(","), csv[2]
    assert "blank_reason" in header
    cells = dict(zip(header, pgd_row.split(",", len(header) - 1)))
    assert cells["worst_case"] == "" and cells["accuracy"] == ""


def test_sweep_auc_is_blank_where_a_radius_has_no_measurement() -> None:
    a = part("pgd", "linf", 0.1, [F, T, T, T, F], [T, T, T, T, F])
    b = part("pgd", "linf", 0.3, [F, F, T, T, F], [F, T, F, F, F])  # skipped #2 and #3 at 0.3
    rec = record([a, b], "linf:0.1")
    assert [s["accuracy"] for s in rec["sweeps"]] == [60.0, None] and {s["auc"] for s in rec["sweeps"]} == {None}
    ok = record([a, part("pgd", "linf", 0.3, [F, F, T, T, F], [F, T, T, T, F])], "linf:0.1")
    assert all(s["auc"] is not None for s in ok["sweeps"])


# -- the property: over random suites and threats -----------------------------------------------------

NORM_RADII = {"linf": (0.0, 0.1, 0.2, 0.3), "l2": (0.0, 0.5, 1.0, 2.0)}


def _random_parts(rng: random.Random, clean: list[bool]) -> list[P]:
    """A random run: attacks at random norms and radii (sweeps ascending), in cascade or not,
    sometimes skipping points they had to attack, each breaking random points it ran on."""
    parts: list[P] = []
    for a in range(rng.randint(0, 4)):
        norm = rng.choice(list(NORM_RADII))
        radii = sorted(rng.sample(NORM_RADII[norm], rng.randint(1, 3)))
        cascade, sloppy = rng.random() < 0.5, rng.random() < 0.25
        for eps in radii:
            todo = results.worst_case(clean, parts if cascade else [q for q in parts if q.label == f"a{a}"], norm, eps)
            if eps == 0:
                todo = [False] * len(clean)
            attacked = [t and not (sloppy and rng.random() < 0.3) for t in todo]
            broken = [att and rng.random() < 0.4 for att in attacked]
            own = results.worst_case(clean, [q for q in parts if q.label == f"a{a}"], norm, eps)
            robust = [c and o and not b for c, o, b in zip(clean, own, broken)]
            parts.append(P("pgd", f"a{a}", norm, eps, robust, attacked))
    return parts


def _reference(clean: list[bool], parts: list[P], norm: str, eps: float) -> float | None:
    """Brute force: some part at exactly (norm, eps) ran on every clean point that no earlier part
    broke at that norm within eps (radius 0: nothing to run on); then the per-example worst case."""
    backed = False
    for i, p in enumerate(parts):
        if p.norm != norm or abs(p.eps - eps) > 1e-9:
            continue
        needed = [c and all(q.robust[j] for q in parts[:i] if q.norm == norm and q.eps <= eps)
                  for j, c in enumerate(clean)]
        backed |= eps == 0 or all(p.attacked[j] for j, n in enumerate(needed) if n)
    if not backed:
        return None
    robust = [c and all(q.robust[j] for q in parts if q.norm == norm and q.eps <= eps) for j, c in enumerate(clean)]
    return round(100 * sum(robust) / len(robust), 2)


def test_property_random_runs_and_threats() -> None:
    """Over 2,000 random runs and threats: the robust accuracy is blank exactly where no attack at
    the threat backs it, never above the clean accuracy, and otherwise the per-example worst case;
    every summary row obeys the same rule at its own radius."""
    rng = random.Random(19)
    blank = backed = 0
    for _ in range(2000):
        n = rng.randint(1, 8)
        clean = [rng.random() < 0.8 for _ in range(n)]
        parts = _random_parts(rng, clean)
        norm = rng.choice(list(NORM_RADII))
        eps = rng.choice(NORM_RADII[norm][1:])
        value, why = results.robust_at(clean, parts, norm, eps)
        expected = _reference(clean, parts, norm, eps)
        assert value == expected, (clean, parts, norm, eps, why)
        assert (value is None) == bool(why)
        if value is not None:
            backed += 1
            assert value <= results.pct(clean)
            assert any(p.norm == norm and p.eps == eps for p in parts)  # produced by an attack at that threat
        else:
            blank += 1
        for i, row in enumerate(results.summary_rows(clean, parts, kinds={}, norm=norm, eps=eps)[1:]):
            ref = _reference(clean, parts[:i + 1], row["norm"], row["eps"])
            assert row["worst_case"] == ref and (ref is None) <= bool(row["blank_reason"])
            assert (row["accuracy"] is None) <= bool(row["blank_reason"])
            assert ref is None or ref <= results.pct(clean)
    assert blank > 200 and backed > 200  # both sides of the rule were exercised


# -- the property through the real runner: random small suites on a linear model -----------------------

RADII = {"linf": (0.002, 0.004, 0.006, 0.01), "l2": (0.05, 0.1, 0.15, 0.3)}
STANDARD = {"linf": 0.006, "l2": 0.1}
ENTRIES = {"linf": ('name = "pgd"\nsteps = 3', 'name = "fgsm"', 'name = "min_linf"\nsteps = 3\nsearch_steps = 3'),
           "l2": ('name = "pgd"\nsteps = 3', 'name = "ddn"\nsteps = 5')}


def _random_suite(rng: random.Random, threat: ThreatModel) -> tuple[str, bool]:
    """A random suite's text, and whether some entry attacks at exactly the threat (the test's own
    reading of the format: explicit radii, multiples of the threat's or the standard radius, or the
    threat's radius by default)."""
    lines, at_threat = [f"cascade = {str(rng.random() < 0.5).lower()}"], False
    for i in range(rng.randint(1, 3)):
        norm = rng.choice(list(RADII))
        base = threat.eps if norm == threat.norm else STANDARD[norm]
        lines += ["[[attacks]]", rng.choice(ENTRIES[norm]), f'label = "a{i}"', f'norm = "{norm}"']
        if rng.random() < 0.2:
            lines.append(f"cascade = {str(rng.random() < 0.5).lower()}")
        how = rng.random()
        if how < 0.5:
            radii = sorted(rng.sample(RADII[norm], rng.randint(1, 2)))
            lines.append("eps = [" + ", ".join(repr(e) for e in radii) + "]")
        elif how < 0.75:
            scales = sorted(rng.sample((0.5, 1.0, 2.0), rng.randint(1, 2)))
            lines.append("eps_scale = [" + ", ".join(repr(s) for s in scales) + "]")
            radii = [s * base for s in scales]
        else:
            radii = [base]
        at_threat |= norm == threat.norm and any(abs(e - threat.eps) <= 1e-9 for e in radii)
    return "\n".join(lines) + "\n", at_threat


@pytest.mark.slow
def test_property_random_suites_through_the_runner(tmp_path) -> None:
    """Random small suites and threats on a linear model (closed-form minimum perturbations): a suite
    with no attack at the threat is refused before running; otherwise the robust accuracy is backed
    by a part at exactly the threat that ran on every point it had to, lies between the exact robust
    accuracy (no attack can break a point whose smallest adversarial is larger) and the clean
    accuracy; and read at a threat no attack ran at, the same parts give none."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from eval_helpers import linear_min_norms, linear_problem

    from robustbench_lite.evaluations.runner import RunContext, run_tasks
    from robustbench_lite.evaluations.suite import check_suite_threat, parse_suite

    model, x, y = linear_problem(12, seed=3)
    y = y.clone()
    y[:2] = (y[:2] + 1) % 10  # two misclassified points: clean accuracy 10/12
    l2, linf, _ = linear_min_norms(model, x, y)
    mins = {"linf": linf, "l2": l2}
    rng = random.Random(7)
    ran = refused = 0
    for case in range(24):
        norm = rng.choice(list(RADII))
        threat = ThreatModel(norm, rng.choice(RADII[norm]))
        text, at_threat = _random_suite(rng, threat)
        suite = parse_suite(text)
        if not at_threat:
            with pytest.raises(BenchError, match="no attack at the threat"):
                check_suite_threat(suite, threat, STANDARD, (1, 28, 28))
            refused += 1
            continue
        check_suite_threat(suite, threat, STANDARD, (1, 28, 28))
        ctx = RunContext(suite, threat, case, 8, tmp_path / f"r{case}", {"case": case}, standard_eps=STANDARD)
        clean, parts = run_tasks(model, x, y, ctx)
        rec = build_record(clean, parts, threat)
        ran += 1
        assert rec["robust_accuracy"] is not None, (text, threat, rec.get("robust_accuracy_note"))
        exact = results.pct([c and bool(m > threat.eps) for c, m in zip(clean, mins[norm].tolist())])
        assert exact <= rec["robust_accuracy"] <= rec["clean_accuracy"], (text, threat)
        backing = [i for i, p in enumerate(parts) if p.norm == norm and p.eps == threat.eps]
        assert any(results.part_covers(clean, parts[i], parts[:i]) for i in backing), text
        for row in rec["summary"][1:]:
            assert row["worst_case"] is not None and row["worst_case"] <= rec["clean_accuracy"]
        other = ThreatModel(norm, threat.eps * 1.37)  # a radius no entry attacks at
        assert build_record(clean, parts, other)["robust_accuracy"] is None
    assert ran >= 8 and refused >= 4, (ran, refused)


# -- what the leaderboard reads -------------------------------------------------------------------------

def test_the_leaderboard_reads_no_robust_accuracy_where_no_attack_at_the_threat_backs_it() -> None:
    """A new record carries None; a record written before the rule carried the clean accuracy as its
    robust accuracy (the reported case: an L2-only suite at the Linf threat ranked #1). Neither
    reaches the leaderboard as a number; a record with an attack row at its threat does."""
    import json
    from pathlib import Path as _P

    from robustbench_lite.reports.records import summarize

    base = json.loads((_P(__file__).parent / "fixtures" / "reports" / "records" / "madry_s0.json").read_text())
    assert summarize(base).robust == base["robust_accuracy"] and base["robust_accuracy"] is not None
    l2_rows = [{**r, "norm": "l2", "eps": 2.0} for r in base["attacks"]]
    old = {**base, "attacks": l2_rows, "robust_accuracy": base["clean_accuracy"]}
    assert summarize(old).robust is None
    assert results.recorded_robust(old)[1].startswith("no attack ran at the record's threat")
    new = {**base, "robust_accuracy": None, "robust_accuracy_note": "no attack ran at linf:0.3"}
    assert summarize(new).robust is None and results.recorded_robust(new) == (None, "no attack ran at linf:0.3")
    blank_rows = [{**r, "worst_case": None} for r in base["attacks"]]
    assert summarize({**base, "attacks": blank_rows}).robust is None
