"""ARDist against a brute-force numpy reference and against ARREST Table 1; the fitted cubic is
well conditioned, invariant to the order and offset of its points, and refused when the points
cannot determine it.

Tolerances. A fit is accepted only when the scaled Vandermonde matrix has a condition number
<= MAX_CONDITION = 1e3, so the least-squares solution computed by any correct LAPACK/BLAS differs from
the exact one by about cond * 2.2e-16 ~ 2e-13 relative; comparisons of two fits of the same points
(permuted, shifted, solved another way) use 1e-9 relative, a margin of 1e4 over that bound. No test
compares against a value printed by one machine's BLAS.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from robustbench_lite.reports.ardist import (MAX_CONDITION, MIN_CLEAN_RANGE, Cubic, accuracy_sum, ardist, ardist_or_reason,
                            curve_for_points, curve_from_csv, fit_cubic, fit_refusal, nearest_point, published_fit,
                            resolve_curve)
from robustbench_lite.errors import BenchError

BASELINES = Path(__file__).resolve().parents[1] / "reports" / "baselines"


def brute_force_distance(coeffs: tuple[float, ...] | Cubic, x0: float, y0: float) -> float:
    """Shortest distance by dense sampling. The nearest point lies within |x - x0| <= |y0 - c(x0)|
    (the vertical distance bounds it), so a grid there plus a finer grid around its best is exact
    to ~1e-9 relative."""
    c = coeffs if isinstance(coeffs, Cubic) else np.poly1d(coeffs)
    r = abs(y0 - c(x0))
    x = np.linspace(x0 - r, x0 + r, 200_001)
    d = np.hypot(x - x0, c(x) - y0)
    i = int(np.argmin(d))
    step = x[1] - x[0]
    fine = np.linspace(x[i] - 2 * step, x[i] + 2 * step, 20_001)
    return float(np.min(np.hypot(fine - x0, c(fine) - y0)))


def arrest_table1() -> list[dict[str, float | str]]:
    """(dataset, method, clean, AutoAttack, Sum, ARDist) from the baseline CSV, as transcribed from the paper."""
    rows: dict[tuple[str, str], dict[str, float | str]] = {}
    with (BASELINES / "arrest.csv").open(encoding="utf-8") as f:
        for r in csv.DictReader(f):
            if r["table"] == "1":
                rows.setdefault((r["dataset"], r["method"]), {"dataset": r["dataset"], "method": r["method"]})[
                    r["metric"]] = float(r["value"])
    return list(rows.values())


def test_point_on_the_curve_has_zero_ardist() -> None:
    for name, xs in (("cifar10", (82.0, 85.0, 90.24, 95.0)), ("cifar100", (56.5, 61.3, 73.05, 76.0))):
        curve = published_fit(name)
        for x in xs:
            assert ardist(x, float(curve(x)), curve) == pytest.approx(0.0, abs=1e-9)


def test_sign_follows_the_side_of_the_curve() -> None:
    curve = published_fit("cifar10")
    y = float(curve(87.0))
    assert ardist(87.0, y + 3.0, curve) > 0
    assert ardist(87.0, y - 3.0, curve) < 0
    # the distance is shorter than the vertical gap wherever the curve is sloped
    assert 0 < ardist(87.0, y + 3.0, curve) < 3.0


def test_matches_brute_force_on_random_points_and_curves() -> None:
    rng = np.random.default_rng(0)
    curves = [published_fit("cifar10").coeffs, published_fit("cifar100").coeffs]
    for _ in range(6):  # random cubics through random tradeoff-like points
        xs = np.sort(rng.uniform(40, 95, 6))
        ys = 100 - xs + rng.normal(0, 4, 6)
        curves.append(tuple(np.polyfit(xs, ys, 3)))
    for coeffs in curves:
        curve = Cubic(tuple(float(c) for c in coeffs))  # type: ignore[arg-type]
        for x0, y0 in zip(rng.uniform(40, 98, 12), rng.uniform(0, 70, 12)):
            ours = ardist(x0, y0, curve)
            ref = brute_force_distance(coeffs, x0, y0)
            assert abs(ours) == pytest.approx(ref, rel=1e-7, abs=1e-7)
            assert np.sign(ours) == np.sign(y0 - curve(x0))


def test_nearest_point_can_be_far_along_x() -> None:
    # y = x^3 - 3x: from (0, 2.5) the nearest points are not at x=0; a vertical distance would say 2.5
    curve = Cubic((1.0, 0.0, -3.0, 0.0))
    x, y = nearest_point(0.0, 2.5, curve)
    assert abs(x) > 0.5
    assert abs(ardist(0.0, 2.5, curve)) == pytest.approx(brute_force_distance(curve.coeffs, 0.0, 2.5), rel=1e-7)
    assert abs(ardist(0.0, 2.5, curve)) < 2.5


def test_published_fits_reproduce_arrest_table1() -> None:
    rows = arrest_table1()
    assert len(rows) == 12
    errors = []
    for r in rows:
        curve = published_fit(str(r["dataset"]))
        errors.append(abs(ardist(float(r["clean"]), float(r["autoattack"]), curve) - float(r["ardist"])))
        assert accuracy_sum(float(r["clean"]), float(r["autoattack"])) == pytest.approx(float(r["sum"]), abs=0.005)
    assert max(errors) <= 0.02, errors
    # all but one agree to 1e-3; AWP on CIFAR-100 prints 2.424 where the published fit gives 2.434
    assert sorted(errors)[-2] < 1e-3


# A well-spread synthetic tradeoff: 12 points over 30 points of clean accuracy, robust falling with clean.
SPREAD_X = np.array([62.0, 64.5, 66.1, 69.0, 71.3, 74.8, 77.2, 80.0, 83.6, 85.9, 88.4, 91.7])
SPREAD_Y = np.array([58.1, 55.0, 55.9, 51.2, 50.4, 47.7, 43.9, 42.6, 38.0, 35.1, 30.3, 22.4])
QUERIES = [(63.0, 50.0), (70.2, 56.3), (78.5, 44.0), (84.0, 30.1), (91.0, 25.0)]


def test_fit_cubic_recovers_a_known_cubic() -> None:
    true = (2e-4, -0.05, 3.0, 10.0)
    x = np.linspace(30, 95, 9)
    fitted = fit_cubic(x.tolist(), np.polyval(true, x).tolist())
    assert fitted.domain == (30.0, 95.0) and fitted.scaled
    grid = np.linspace(30, 95, 101)
    # exact data, cond <= 1e3: the fitted values equal the true ones to ~cond * eps * max|y| (~1e-11)
    assert np.allclose(fitted(grid), np.polyval(true, grid), rtol=0, atol=1e-9)
    # expanding into powers of x (for display) cancels digits: |a0| ~ 10 against terms ~ 1e2-1e3
    # near x = 95, so ~1e-12 of the largest term; 1e-7 relative leaves a wide margin
    assert np.allclose(fitted.power_coeffs, true, rtol=1e-7, atol=0)


def test_fit_on_scaled_x_matches_an_independent_qr_solve() -> None:
    """Polynomial.fit (SVD) and a Householder QR of [t^3, t^2, t, 1] solve one well-conditioned
    problem; they agree to ~cond * eps, so ARDist agrees to 1e-9 relative."""
    curve = fit_cubic(SPREAD_X.tolist(), SPREAD_Y.tolist())
    lo, hi = SPREAD_X.min(), SPREAD_X.max()
    t = (SPREAD_X - (lo + hi) / 2) / ((hi - lo) / 2)
    q, r = np.linalg.qr(np.vander(t, 4))
    coeffs = np.linalg.solve(r, q.T @ SPREAD_Y)
    other = Cubic(tuple(float(c) for c in coeffs), domain=(lo, hi), shift=(lo + hi) / 2,  # type: ignore[arg-type]
                  scale=(hi - lo) / 2)
    assert np.allclose(curve.coeffs, other.coeffs, rtol=1e-9, atol=1e-9)
    for x0, y0 in QUERIES:
        assert ardist(x0, y0, curve) == pytest.approx(ardist(x0, y0, other), rel=1e-9, abs=1e-12)


def test_fit_and_ardist_do_not_depend_on_the_order_of_the_points() -> None:
    rng = np.random.default_rng(1)
    curve = fit_cubic(SPREAD_X.tolist(), SPREAD_Y.tolist())
    for _ in range(5):
        perm = rng.permutation(len(SPREAD_X))
        other = fit_cubic(SPREAD_X[perm].tolist(), SPREAD_Y[perm].tolist())
        assert other.domain == curve.domain
        assert np.allclose(other.coeffs, curve.coeffs, rtol=1e-9, atol=1e-12)
        for x0, y0 in QUERIES:
            assert ardist(x0, y0, other) == pytest.approx(ardist(x0, y0, curve), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("dx, dy", [(-20.0, 0.0), (5.0, -7.5), (7.0, 30.0)])
def test_ardist_is_invariant_to_moving_all_points(dx: float, dy: float) -> None:
    """A translation moves the curve with the points: distances are unchanged. t is computed from
    x - shift, so a shift only adds rounding of ~eps * |x| / scale ~ 1e-15 to t."""
    curve = fit_cubic(SPREAD_X.tolist(), SPREAD_Y.tolist())
    moved = fit_cubic((SPREAD_X + dx).tolist(), (SPREAD_Y + dy).tolist())
    assert np.allclose(moved.coeffs[:3], curve.coeffs[:3], rtol=1e-9, atol=1e-9)
    assert moved.coeffs[3] == pytest.approx(curve.coeffs[3] + dy, rel=1e-9)
    for x0, y0 in QUERIES:
        assert ardist(x0 + dx, y0 + dy, moved) == pytest.approx(ardist(x0, y0, curve), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_ardist_scales_with_the_units(factor: float) -> None:
    """Scaling both axes scales every Euclidean distance by the same factor (the clean range stays
    above MIN_CLEAN_RANGE for these factors)."""
    assert factor * np.ptp(SPREAD_X) >= MIN_CLEAN_RANGE
    curve = fit_cubic(SPREAD_X.tolist(), SPREAD_Y.tolist())
    scaled = fit_cubic((factor * SPREAD_X).tolist(), (factor * SPREAD_Y).tolist())
    for x0, y0 in QUERIES:
        assert ardist(factor * x0, factor * y0, scaled) == pytest.approx(factor * ardist(x0, y0, curve), rel=1e-9)


def test_fitted_curve_distance_matches_brute_force_and_its_power_form() -> None:
    curve = fit_cubic(SPREAD_X.tolist(), SPREAD_Y.tolist())
    power = Cubic(curve.power_coeffs)
    for x0, y0 in QUERIES:
        d = ardist(x0, y0, curve)
        assert abs(d) == pytest.approx(brute_force_distance(curve, x0, y0), rel=1e-7, abs=1e-7)
        # the same curve in powers of x: terms ~600 cancel to values ~30, ~1e-13 absolute; 1e-6 is a wide margin
        assert d == pytest.approx(ardist(x0, y0, power), rel=1e-6, abs=1e-6)
        x, y = nearest_point(x0, y0, curve)
        assert y == pytest.approx(float(curve(x)), abs=1e-9)


def test_well_spread_points_are_accepted() -> None:
    curve, reason = curve_for_points(SPREAD_X.tolist(), SPREAD_Y.tolist(), name="synthetic")
    assert curve is not None and reason == "" and curve.name == "synthetic"
    assert fit_refusal(SPREAD_X.tolist(), SPREAD_Y.tolist()) == ""
    assert "t = (x - 76.85) / 14.85" in str(curve)


def test_published_mnist_points_are_refused_for_their_narrow_range() -> None:
    # AFD Table 1, MNIST: NT, AT, TRADES, AFD-DCGAN, AFD-WGAN (clean, AutoAttack)
    clean = [98.84, 99.35, 99.14, 99.24, 99.14]
    robust = [0.0, 89.99, 88.66, 88.79, 90.12]
    curve, reason = curve_for_points(clean, robust, name="published mnist")
    assert curve is None
    assert reason == ("no tradeoff curve for published mnist: its 5 points span only 0.51 points of clean accuracy "
                      "(98.84-99.35%), and a fitted curve needs a span of at least 5.")
    with pytest.raises(BenchError, match="span only 0.51"):
        fit_cubic(clean, robust)


def test_ill_determined_points_are_refused() -> None:
    # 4 distinct clean accuracies over 20 points, but three of them within 0.1 of each other
    clean, robust = [60.0, 79.9, 79.95, 80.0, 80.0], [50.0, 30.0, 31.0, 29.5, 30.2]
    curve, reason = curve_for_points(clean, robust, name="clustered")
    assert curve is None and "ill-determined" in reason and f"above {MAX_CONDITION:g}" in reason
    # the same four x values spread out are fine
    assert curve_for_points([60.0, 66.0, 73.0, 80.0], [50.0, 45.0, 38.0, 30.0])[1] == ""


def test_ardist_is_not_extrapolated_beyond_the_fitted_points() -> None:
    curve = fit_cubic(SPREAD_X.tolist(), SPREAD_Y.tolist(), name="synthetic")
    value, reason = ardist_or_reason(95.0, 20.0, curve)
    assert value is None
    assert reason == ("clean accuracy outside the curve's range: the curve 'synthetic' was fitted on clean accuracies "
                      "62-91.7% and a cubic is not extrapolated beyond its points.")
    with pytest.raises(BenchError, match="not extrapolated"):
        ardist(95.0, 20.0, curve)
    value, reason = ardist_or_reason(80.0, 40.0, curve)
    assert reason == "" and value == pytest.approx(ardist(80.0, 40.0, curve))
    # the published fits cover the clean range of the published points they describe
    assert ardist_or_reason(95.0, 50.0, published_fit("cifar10"))[1] == ""
    assert "not extrapolated" in ardist_or_reason(10.0, 5.0, published_fit("cifar100"))[1]


def test_published_fits_keep_the_coefficients_of_x() -> None:
    curve = published_fit("cifar10")
    assert not curve.scaled and curve.power_coeffs == curve.coeffs == (9.877e-5, -0.3922, 63.82, -2600.0)
    assert str(curve) == "c(x) = 9.877e-05 x^3 -0.3922 x^2 +63.82 x -2600"
    assert ardist(87.14, 44.04, "cifar10") == pytest.approx(-1.500, abs=5e-4)  # AT [37], ARREST Table 1


def test_bad_cubic_and_points_are_one_sentence_errors() -> None:
    with pytest.raises(BenchError, match="scale > 0"):
        Cubic((1.0, 0.0, 0.0, 0.0), shift=0.0, scale=0.0)
    with pytest.raises(BenchError, match="same length"):
        curve_for_points([60.0, 70.0, 80.0, 90.0], [1.0, 2.0, 3.0])
    with pytest.raises(BenchError, match="finite"):
        curve_for_points([60.0, 70.0, 80.0, float("nan")], [1.0, 2.0, 3.0, 4.0])


def test_fit_cubic_needs_four_distinct_points() -> None:
    with pytest.raises(BenchError, match="at least 4 distinct"):
        fit_cubic([80, 81, 81, 82], [50, 49, 48, 47])


def test_curve_from_csv(tmp_path: Path) -> None:
    f = tmp_path / "points.csv"
    x = np.array([60.0, 70.0, 80.0, 85.0, 90.0])
    f.write_text("clean,robust\n" + "".join(f"{a},{100 - a}\n" for a in x))
    curve = resolve_curve(str(f))
    assert curve(75.0) == pytest.approx(25.0, abs=1e-6)
    assert ardist(75.0, 30.0, f) == pytest.approx(5 / np.sqrt(2), rel=1e-6)  # distance to the line y = 100 - x

    bad = tmp_path / "bad.csv"
    bad.write_text("clean,aa\n80,50\n")
    with pytest.raises(BenchError, match="'robust'"):
        curve_from_csv(bad)


def test_unknown_curve_names_the_choices() -> None:
    with pytest.raises(BenchError, match="cifar10, cifar100"):
        resolve_curve("imagenet")
