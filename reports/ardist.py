"""ARDist and Sum (Suzuki et al., "Adversarial Finetuning with Latent Representation Constraint to
Mitigate Accuracy-Robustness Tradeoff", ICCV 2023, Section 5.1).

A tradeoff curve is a cubic ``y = c(x)`` through the (standard %, AutoAttack %) points of existing
methods. ARDist of a point ``(x0, y0)`` is its shortest Euclidean distance to the curve, positive
above it (``y0 > c(x0)``) and negative below. Sum is ``clean + robust``.

The distance is exact: ``f(x) = (x - x0)^2 + (c(x) - y0)^2`` is a degree-6 polynomial whose global
minimum over the real line sits at a real root of ``f'`` (degree 5). ``f`` is evaluated at the real
part of every root of ``f'`` (numpy.roots); a superset of the real critical points cannot give a
value below the global minimum, so no tolerance on imaginary parts is needed. The best point is
then polished by Newton steps on ``f'``.

Example::

    >>> round(ardist(87.14, 44.04, published_fit("cifar10")), 3)   # AT [37], ARREST Table 1
    -1.5
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from robustbench_lite.errors import BenchError

FITS_CSV = Path(__file__).resolve().parent / "baselines" / "fits.csv"


@dataclass(frozen=True)
class Cubic:
    """``c(x) = a3 x^3 + a2 x^2 + a1 x + a0``; ``coeffs`` are highest degree first (numpy order)."""

    coeffs: tuple[float, float, float, float]
    name: str = "fitted"
    domain: tuple[float, float] | None = None  # clean-accuracy range of the points a fit came from

    def covers(self, clean: float) -> bool:
        """True unless the curve was fitted on points and ``clean`` lies outside their range:
        a cubic extrapolated beyond its points says nothing about the tradeoff there."""
        return self.domain is None or self.domain[0] <= clean <= self.domain[1]

    def __post_init__(self) -> None:
        if len(self.coeffs) != 4 or not all(math.isfinite(float(c)) for c in self.coeffs):
            raise BenchError(f"a cubic needs 4 finite coefficients, got {self.coeffs!r}.")

    def __call__(self, x: float | np.ndarray) -> float | np.ndarray:
        return np.polyval(self.coeffs, x)

    def __str__(self) -> str:
        a3, a2, a1, a0 = self.coeffs
        return f"c(x) = {a3:.4g} x^3 {a2:+.4g} x^2 {a1:+.4g} x {a0:+.4g}"


def fit_cubic(clean: Sequence[float], robust: Sequence[float], name: str = "fitted") -> Cubic:
    """Least-squares cubic (numpy.polyfit, degree 3) through (clean %, robust %) points."""
    x = np.asarray(clean, dtype=float)
    y = np.asarray(robust, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise BenchError("clean and robust accuracies must be two lists of the same length.")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise BenchError("tradeoff points must be finite numbers.")
    if len(np.unique(x)) < 4:
        raise BenchError(f"fitting a cubic needs at least 4 distinct clean accuracies, got {len(np.unique(x))}.")
    return Cubic(tuple(float(c) for c in np.polyfit(x, y, 3)), name=name,  # type: ignore[arg-type]
                 domain=(float(x.min()), float(x.max())))


def _read_fits() -> dict[str, tuple[Cubic, str]]:
    with FITS_CSV.open(newline="", encoding="utf-8") as f:
        return {row["name"]: (Cubic((float(row["a3"]), float(row["a2"]), float(row["a1"]), float(row["a0"])),
                                    name=row["name"]), row["dataset"])
                for row in csv.DictReader(f)}


def published_fit_names() -> list[str]:
    return sorted(_read_fits())


def published_fit(name: str) -> Cubic:
    """A published curve by name (``cifar10``, ``cifar100``), read from ``baselines/fits.csv``."""
    fits = _read_fits()
    key = name.strip().lower().replace("-", "")
    if key not in fits:
        raise BenchError(f"unknown published fit {name!r}; known: {', '.join(sorted(fits))}.")
    return fits[key][0]


def published_fit_for_dataset(dataset: str) -> Cubic | None:
    """The published curve of a dataset id (``cifar10``), or None if the papers give none."""
    for cubic, ds in _read_fits().values():
        if ds == dataset:
            return cubic
    return None


def curve_from_csv(path: str | Path) -> Cubic:
    """Fit a cubic to a CSV file of points with columns ``clean`` and ``robust`` (percent)."""
    p = Path(path)
    try:
        with p.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields = [c.strip() for c in reader.fieldnames or []]
            for col in ("clean", "robust"):
                if col not in fields:
                    raise BenchError(f"curve file {p} has no {col!r} column (it needs columns clean, robust).")
            rows = [{k.strip(): v for k, v in r.items() if k is not None} for r in reader]
    except FileNotFoundError:
        raise BenchError(f"curve file {p} does not exist.") from None
    try:
        x = [float(r["clean"]) for r in rows]
        y = [float(r["robust"]) for r in rows]
    except (TypeError, ValueError):
        raise BenchError(f"curve file {p} has a clean or robust value that is not a number.") from None
    return fit_cubic(x, y, name=p.stem)


def resolve_curve(spec: str | Path | Cubic) -> Cubic:
    """A :class:`Cubic`, a published fit name, or a CSV file of points."""
    if isinstance(spec, Cubic):
        return spec
    s = str(spec)
    if s.strip().lower().replace("-", "") in _read_fits():
        return published_fit(s)
    if s.lower().endswith(".csv") or Path(s).exists():
        return curve_from_csv(s)
    raise BenchError(f"unknown curve {s!r}; give one of {', '.join(published_fit_names())} or a CSV file of points.")


def nearest_point(clean: float, robust: float, curve: Cubic) -> tuple[float, float]:
    """The point (x, c(x)) of the curve nearest to (clean, robust), over all real x."""
    x0, y0 = float(clean), float(robust)
    c = np.poly1d(curve.coeffs)
    f = np.poly1d([1.0, -x0]) ** 2 + (c - y0) ** 2
    df, d2f = f.deriv(), f.deriv(2)
    candidates = np.concatenate([np.real(np.roots(df.coeffs)), [x0]])
    x = float(candidates[np.argmin(f(candidates))])
    for _ in range(3):  # Newton polish on f'; keep a step only if it lowers f
        h = d2f(x)
        if h <= 0:
            break
        x_new = x - df(x) / h
        if f(x_new) > f(x):
            break
        x = float(x_new)
    return x, float(c(x))


def ardist(clean: float, robust: float, curve: str | Path | Cubic) -> float:
    """Signed shortest distance from (clean %, robust %) to the curve; positive above it."""
    for v in (clean, robust):
        if v is None or not math.isfinite(float(v)):
            raise BenchError(f"ARDist needs finite accuracies, got clean={clean!r}, robust={robust!r}.")
    cubic = resolve_curve(curve)
    vertical = float(robust) - float(cubic(float(clean)))
    if vertical == 0.0:
        return 0.0
    x, y = nearest_point(clean, robust, cubic)
    return math.copysign(math.hypot(x - float(clean), y - float(robust)), vertical)


def accuracy_sum(clean: float, robust: float) -> float:
    """Sum = clean + robust accuracy (percent points), as in ARREST Table 1."""
    return float(clean) + float(robust)
