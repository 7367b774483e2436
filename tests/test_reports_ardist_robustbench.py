"""ARDist against a cubic fitted on RobustBench's leaderboard (``bench leaderboard --ardist-fit robustbench``).

The hand computations use only numpy: ``np.polyfit`` of degree 3 on the same (clean, AutoAttack) points
in the raw clean accuracy, and the shortest distance to that cubic by dense sampling. Tolerances are far
above floating-point differences between BLAS builds (the fits agree to ~1e-9; sampling errs < 1e-5).
"""
from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from robustbench_lite import zoo
from robustbench_lite.cli import main
from robustbench_lite.errors import BenchError
from robustbench_lite.reports.ardist import ardist_or_reason, nearest_point
from robustbench_lite.reports.baselines import ardist_curve, curve_for_robustbench, robustbench_points
from robustbench_lite.reports.leaderboard import leaderboard, leaderboard_entries
from robustbench_lite.reports.store import add_record

RECORD = Path(__file__).resolve().parent / "fixtures" / "reports" / "records" / "arrest_phi45.json"  # linf:8/255
OURS = (85.52, 47.05)  # the record's clean and AutoAttack accuracy


def _z(name: str, clean: float | None, aa: float | None, threat: str = "linf:8/255",
       unreliable: bool = False) -> zoo.ZooEntry:
    return zoo.ZooEntry(dataset="cifar10", threat=threat, name=name, paper="P", venue="V", authors="A",
                        architecture="WRN", additional_data=None, number_forward_passes=1, eps=threat.split(":")[1],
                        clean_acc=clean, autoattack_acc=aa, external_acc=None, reported=None, unreliable=unreliable,
                        footnote="", link="")


def _hand_ardist(x: np.ndarray, y: np.ndarray, x0: float, y0: float) -> float:
    """Signed shortest distance from (x0, y0) to np.polyfit's cubic, by sampling the curve every ~5e-5."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", np.exceptions.RankWarning if hasattr(np, "exceptions") else Warning)
        coef = np.polyfit(x, y, 3)
    xs = np.linspace(x.min(), x.max(), 1_000_001)
    d = float(np.min(np.hypot(xs - x0, np.polyval(coef, xs) - y0)))
    return d if y0 > np.polyval(coef, x0) else -d


def _cifar10_linf_points() -> tuple[np.ndarray, np.ndarray]:
    pts = [(e.clean_acc, e.autoattack_acc) for e in zoo.entries("cifar10", "linf:8/255")
           if e.clean_acc is not None and e.autoattack_acc is not None and not e.unreliable]
    return np.array([p[0] for p in pts]), np.array([p[1] for p in pts])


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    path = tmp_path / "lb.sqlite"
    add_record(path, json.loads(RECORD.read_text()))
    return path


def test_cifar10_linf_fit_is_accepted_and_ardist_equals_a_hand_computation() -> None:
    x, y = _cifar10_linf_points()
    assert len(x) >= 90  # 99 entries, 2 flagged unreliable
    curve, why = curve_for_robustbench("cifar10", "linf", 8 / 255)
    assert why == "" and curve is not None
    assert curve.domain == (x.min(), x.max())
    assert curve.name == f"RobustBench {zoo.source_commit()[:7]} cifar10 linf:8/255"
    assert {z.name for z in robustbench_points("cifar10", "linf", 8 / 255)} == \
        {e.name for e in zoo.entries("cifar10", "linf:8/255") if not e.unreliable}
    grid = np.linspace(x.min(), x.max(), 101)
    np.testing.assert_allclose(curve(grid), np.polyval(np.polyfit(x, y, 3), grid), rtol=0, atol=1e-6)
    for x0, y0 in (OURS, (60.0, 40.0), (92.0, 20.0)):
        got, reason = ardist_or_reason(x0, y0, curve)
        assert reason == "" and got is not None
        assert got == pytest.approx(_hand_ardist(x, y, x0, y0), abs=1e-4)
    assert curve_for_robustbench("CIFAR-10", "linf", 0.031)[0] == curve  # as the leaderboard selects threats


def test_outside_the_clean_span_is_blank_with_the_reason() -> None:
    curve, _ = curve_for_robustbench("cifar10", "linf", 8 / 255)
    assert curve is not None and curve.domain is not None
    value, why = ardist_or_reason(curve.domain[1] + 0.5, 10.0, curve)
    assert value is None and "not extrapolated" in why and f"{curve.domain[1]:g}" in why
    # inside the span, the nearest point is sought on the fitted arc only: (92, 20) is nearest to the
    # extended cubic at clean ~104, beyond every RobustBench entry
    x, y = _cifar10_linf_points()
    nx, ny = nearest_point(92.0, 20.0, curve)
    assert curve.domain[0] <= nx <= curve.domain[1] and ny == pytest.approx(float(curve(nx)))
    assert ardist_or_reason(92.0, 20.0, curve)[0] == pytest.approx(_hand_ardist(x, y, 92.0, 20.0), abs=1e-4)


def test_too_few_entries_refuse_with_the_reason() -> None:
    three = [_z("A", 80.0, 50.0), _z("B", 85.0, 45.0), _z("C", 90.0, 35.0), _z("Flagged", 70.0, 60.0, unreliable=True),
             _z("NoAA", 75.0, None), _z("L2", 88.0, 70.0, threat="l2:0.5")]
    curve, why = curve_for_robustbench("cifar10", "linf", 8 / 255, table=three)
    assert curve is None and "at least 4 distinct clean accuracies, got 3" in why and "cifar10 linf:8/255" in why
    narrow = [_z(f"N{i}", 85.0 + i, 50.0 - i) for i in range(4)]
    assert "span only 3.00 points" in curve_for_robustbench("cifar10", "linf", 8 / 255, table=narrow)[1]
    curve, why = curve_for_robustbench("cifar10", "linf", 16 / 255)  # the packaged table: no such leaderboard
    assert curve is None and "no reliable entry" in why and "linf:16/255" in why
    assert curve_for_robustbench("cifar10", None, None)[0] is None
    with pytest.raises(BenchError, match="unknown ARDist fit"):
        ardist_curve("mine", "cifar10", None, "linf", 8 / 255)


def test_leaderboard_uses_the_fit_and_says_which(db: Path) -> None:
    rec = json.loads(RECORD.read_text())
    x, y = _cifar10_linf_points()
    entries = leaderboard_entries([rec], dataset="cifar10", threat="linf:8/255", with_baselines=True,
                                  ardist_fit="robustbench")
    ours = next(e for e in entries if e.source == "this run")
    assert ours.get("ardist") == pytest.approx(_hand_ardist(x, y, *OURS), abs=1e-4)
    carmon = next(e for e in entries if e.model == "Carmon2019Unlabeled")
    assert carmon.get("ardist") == pytest.approx(_hand_ardist(x, y, 89.69, 59.53), abs=1e-4)
    default = leaderboard_entries([rec], dataset="cifar10", threat="linf:8/255", with_baselines=True)
    assert next(e for e in default if e.source == "this run").get("ardist") != pytest.approx(ours.get("ardist"))
    assert not any(e.ardist_fit for e in default)  # the default's tables are unchanged
    text = leaderboard(db, dataset="cifar10", threat="linf:8/255", ardist_fit="robustbench")
    notes = [ln for ln in text.splitlines() if ln.startswith("ARDist fit 'robustbench'")]
    assert len(notes) == 1 and zoo.source_commit() in notes[0] and "cifar10 linf:8/255" in notes[0]
    assert f"{x.min():.2f}-{x.max():.2f}%" in notes[0]
    assert "ARDist fit" not in leaderboard(db, dataset="cifar10", threat="linf:8/255")
    with pytest.raises(BenchError, match="unknown ARDist fit"):
        leaderboard(db, ardist_fit="papers")


def test_leaderboard_blank_when_refused_or_outside(db: Path) -> None:
    rec = json.loads(RECORD.read_text())
    three = [_z("A", 80.0, 50.0), _z("B", 85.0, 45.0), _z("C", 90.0, 35.0)]
    entries = leaderboard_entries([rec], threat="linf:8/255", zoo_table=three, ardist_fit="robustbench")
    assert entries[0].get("ardist") is None
    assert any("at least 4 distinct" in why for m, why in entries[0].notes if m == "ardist")
    low = [_z(f"L{i}", 60.0 + 4 * i, 50.0 - 2 * i ** 1.5) for i in range(5)]  # clean 60-76: ours (85.52) outside
    entries = leaderboard_entries([rec], threat="linf:8/255", zoo_table=low, ardist_fit="robustbench")
    assert entries[0].get("ardist") is None
    assert any("not extrapolated" in why for m, why in entries[0].notes if m == "ardist")
    assert "clean 60.00-76.00%" in entries[0].ardist_fit


def test_cli_option(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["leaderboard", "--db", str(db), "--dataset", "cifar10", "--threat", "linf:8/255", "--format", "csv"]
    assert main([*args, "--ardist-fit", "robustbench"]) == 0
    x, y = _cifar10_linf_points()
    row = next(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert float(row["ardist"]) == pytest.approx(_hand_ardist(x, y, *OURS), abs=1e-4)
    assert main(["leaderboard", "--db", str(db), "--ardist-fit", "robustbench"]) == 0
    assert f"at commit {zoo.source_commit()}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main([*args, "--ardist-fit", "mine"])
    assert exc.value.code == 2
