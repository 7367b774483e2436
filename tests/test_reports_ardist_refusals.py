"""ARDist refuses what it cannot mean (issue #19): points outside the clean range a curve covers
(published fits included), robust above clean, fractions instead of percent, curve files out of
[0, 100]; on the command line each is one sentence and a non-zero exit, in the leaderboard a blank
cell with the reason."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from robustbench_lite.cli import main
from robustbench_lite.errors import BenchError
from robustbench_lite.reports.ardist import (ardist, ardist_or_reason, curve_from_csv, point_refusal,
                                             published_fit)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv, words", [
    (("--clean", "10", "--robust", "5", "--curve", "cifar100"), "not extrapolated"),
    (("--clean", "99", "--robust", "5", "--curve", "cifar100"), "not extrapolated"),
    (("--clean", "40", "--robust", "20", "--curve", "cifar10"), "not extrapolated"),
    (("--clean", "50", "--robust", "80"), "above clean"),
    (("--clean", "87.1", "--robust", "87.2"), "above clean"),
    (("--clean", "0.87", "--robust", "0.44"), "fractions"),
    (("--clean", "1", "--robust", "0.5", "--curve", "cifar100"), "fractions"),
])
def test_cli_refuses_points_it_cannot_place(capsys: pytest.CaptureFixture[str], argv: tuple[str, ...],
                                            words: str) -> None:
    code, out, err = run(capsys, "ardist", *argv)
    assert code != 0 and out == ""
    assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_still_answers_inside_the_range(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "ardist", "--clean", "87.14", "--robust", "44.04")
    assert code == 0 and "ARDist: -1.500" in out


@pytest.mark.parametrize("name, lo, hi", [("cifar10", 81.94, 95.37), ("cifar100", 56.49, 76.76)])
def test_published_fits_cover_the_published_points_only(name: str, lo: float, hi: float) -> None:
    curve = published_fit(name)
    assert curve.domain == (lo, hi)
    y = float(curve((lo + hi) / 2)) - 1.0
    assert ardist_or_reason((lo + hi) / 2, y, curve)[0] is not None
    for x in (lo - 0.01, hi + 0.01):
        value, why = ardist_or_reason(x, 1.0, curve)
        assert value is None and "not extrapolated" in why
        with pytest.raises(BenchError, match="not extrapolated"):
            ardist(x, 1.0, curve)


def test_point_refusal_cases() -> None:
    assert point_refusal(87.0, 44.0) == ""
    assert point_refusal(0.0, 0.0) == ""  # a model at 0% is a percentage, not a fraction
    assert "above clean" in point_refusal(50.0, 80.0)
    assert "fractions" in point_refusal(0.9, 0.5)
    assert "between 0 and 100" in point_refusal(150.0, 10.0)
    assert "between 0 and 100" in point_refusal(80.0, -1.0)
    assert "between 0 and 100" in point_refusal(float("nan"), 1.0)
    assert point_refusal(None, 4.0) != ""
    # the leaderboard's path: None and the reason, never a number
    assert ardist_or_reason(70.0, 80.0, published_fit("cifar100")) == (None, point_refusal(70.0, 80.0))


def _write(path: Path, rows: list[tuple[float, float]]) -> Path:
    path.write_text("clean,robust\n" + "".join(f"{c},{r}\n" for c, r in rows), encoding="utf-8")
    return path


GOOD = [(60.0, 50.0), (66.0, 48.0), (72.0, 44.0), (78.0, 40.0), (84.0, 33.0), (90.0, 25.0)]


@pytest.mark.parametrize("bad, words", [
    ((150.0, 20.0), "between 0 and 100"),
    ((80.0, -3.0), "between 0 and 100"),
    ((80.0, 101.0), "between 0 and 100"),
    ((70.0, 75.0), "above clean"),
])
def test_curve_files_with_impossible_points_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        bad: tuple[float, float], words: str) -> None:
    f = _write(tmp_path / "curve.csv", [*GOOD, bad])
    with pytest.raises(BenchError, match=words):
        curve_from_csv(f)
    code, out, err = run(capsys, "ardist", "--clean", "80", "--robust", "30", "--curve", str(f))
    assert code != 0 and words in err and len(err.strip().splitlines()) == 1


def test_curve_file_in_fractions_is_refused(tmp_path: Path) -> None:
    f = _write(tmp_path / "frac.csv", [(c / 100, r / 100) for c, r in GOOD])
    with pytest.raises(BenchError, match="fractions"):
        curve_from_csv(f)


def test_good_curve_file_is_fitted_and_bounded(tmp_path: Path) -> None:
    curve = curve_from_csv(_write(tmp_path / "ok.csv", GOOD))
    assert curve.domain == (60.0, 90.0)
    xs, ys = np.array([c for c, _ in GOOD]), np.array([r for _, r in GOOD])
    ref = np.polyfit(xs, ys, 3)  # an independent least-squares fit: same curve inside the range
    assert float(curve(75.0)) == pytest.approx(float(np.polyval(ref, 75.0)), rel=1e-6)
    assert ardist_or_reason(95.0, 10.0, curve)[0] is None
