"""ARDist and Sum (Suzuki et al., "Adversarial Finetuning with Latent Representation Constraint to
Mitigate Accuracy-Robustness Tradeoff", ICCV 2023, Section 5.1).

A tradeoff curve is a cubic ``y = c(x)`` through the (standard %, AutoAttack %) points of existing
methods of one data set. ARDist of a point ``(x0, y0)`` is its shortest Euclidean distance to the
curve, positive above it (``y0 > c(x0)``) and negative below. Sum is ``clean + robust``.

Fitting. ARREST Section 5.1 fits the cubic by polynomial regression. Fitted in the raw clean
accuracy (``numpy.polyfit`` on x near 99) the monomial Vandermonde matrix has a condition number
near 1e15 for the published MNIST points, and the coefficients then depend on the BLAS (one machine
computed ARDist 48.31, another 2.81). Here the cubic is fitted in the centred and scaled variable
``t = (x - shift) / scale`` that maps the clean range of the points onto [-1, 1]
(``numpy.polynomial.Polynomial.fit``), so the normal equations never see x^3 ~ 1e6 beside 1. A curve
is only fitted when the points can determine it (:func:`curve_for_points`): at least 4 distinct
clean accuracies, a clean range of at least ``MIN_CLEAN_RANGE`` points and a condition number of
the scaled Vandermonde matrix of at most ``MAX_CONDITION``; otherwise the answer is None with the
reason. A fitted cubic is never extrapolated: ARDist of a point outside the clean range the curve
was fitted on is refused (:func:`ardist_or_reason`). The published ARREST fits ``c10`` and ``c100``
are used as printed (coefficients of x itself: ``shift`` 0, ``scale`` 1); they describe the published
methods of their data set only, so ARDist of a clean accuracy outside the clean range of those methods'
points (``fits.csv``: ``clean_min``-``clean_max``, CIFAR-10 81.94-95.37 %, CIFAR-100 56.49-76.76 %, the
points of ARREST Table 1 and AFD Table 1) is refused too; inside it the nearest point is sought on the
whole curve, as the paper does.

Plausible points. :func:`point_refusal` says why a (clean, robust) point cannot be placed on a tradeoff
plot at all: not finite or outside [0, 100], robust above clean (every point that survives an attack was
classified correctly), or both at most 1 (fractions where percent is expected). ``bench ardist`` and the
leaderboard (:func:`ardist_or_reason`) refuse such points; a curve file's points obey the same rules.

Distance. ``f(t) = (x(t) - x0)^2 + (c(t) - y0)^2`` with ``x(t) = shift + scale t`` is a degree-6
polynomial whose global minimum over the real line sits at a real root of ``f'`` (degree 5). ``f``
is evaluated at the real part of every root of ``f'`` (numpy.roots); a superset of the real critical
points cannot give a value below the global minimum, so no tolerance on imaginary parts is needed.
The best point is then polished by Newton steps on ``f'``. A fitted cubic exists only over the clean
range of its points, so there the nearest point is sought on that arc only: the critical points
clipped into the range plus its two ends (the published ARREST fits have no range: the whole curve).

Example::

    >>> round(ardist(87.14, 44.04, published_fit("cifar10")), 3)   # AT [37], ARREST Table 1
    -1.5
"""
from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from numpy.polynomial import Polynomial

from robustbench_lite.errors import BenchError

logger = logging.getLogger(__name__)

FITS_CSV = Path(__file__).resolve().parent / "baselines" / "fits.csv"

# A cubic has 4 coefficients: fewer distinct clean accuracies leave it undetermined.
MIN_DISTINCT_POINTS = 4
# Narrowest clean-accuracy range (percentage points) a fitted tradeoff curve may span. Published
# accuracies are rounded to 0.01 and vary from seed to seed by 0.1-0.5 points (the stds of ACT
# Table 2); over a span of w points the slope of a cubic through them is then uncertain by about
# 2 * 0.3 / w, i.e. more than 0.1 below 5 points, and ARDist is measured along the normal of that
# slope. The ARREST fits span 25+ points (CIFAR-10 ~82-95 %, CIFAR-100 ~56-77 % with the AFD rows);
# the five published MNIST points span 0.51 (98.84-99.35 %), a range in which AutoAttack accuracy
# jumps from 0 (natural training) to 90, so no curve through them describes a tradeoff.
MIN_CLEAN_RANGE = 5.0
# Largest condition number of the scaled Vandermonde matrix [t^3, t^2, t, 1] (t in [-1, 1]).
# Well-spread points give 7-20 (the published CIFAR-10/100, Tiny-ImageNet points: 8, 7, 14); it
# passes 1e3 only when 3 of 4 determining points sit within ~3 % of the span of each other. At 1e3
# the 0.005 rounding of printed accuracies (~1e-4 relative) can move the coefficients by at most
# ~10 %, and floating-point differences between BLAS builds stay below 1e3 * 2.2e-16 ~ 1e-12 relative.
MAX_CONDITION = 1e3


@dataclass(frozen=True)
class Cubic:
    """``c(x) = a3 t^3 + a2 t^2 + a1 t + a0`` with ``t = (x - shift) / scale``.

    ``coeffs`` are highest degree first (numpy order). The published ARREST fits and a
    ``Cubic((a3, a2, a1, a0))`` built by hand have ``shift`` 0 and ``scale`` 1, so the coefficients are
    those of x itself; a fitted cubic maps the clean range of its points (``domain``) onto [-1, 1].
    """

    coeffs: tuple[float, float, float, float]
    name: str = "fitted"
    domain: tuple[float, float] | None = None  # clean-accuracy range of the points a fit came from
    shift: float = 0.0
    scale: float = 1.0
    arc_only: bool = True  # nearest point on the arc over ``domain`` only (False: the whole curve, as ARREST)

    def __post_init__(self) -> None:
        if len(self.coeffs) != 4 or not all(math.isfinite(float(c)) for c in self.coeffs):
            raise BenchError(f"a cubic needs 4 finite coefficients, got {self.coeffs!r}.")
        if not (math.isfinite(self.shift) and math.isfinite(self.scale) and self.scale > 0):
            raise BenchError(f"a cubic needs a finite shift and a finite scale > 0, got shift={self.shift!r}, "
                             f"scale={self.scale!r}.")

    def covers(self, clean: float) -> bool:
        """True unless the curve was fitted on points and ``clean`` lies outside their range:
        a cubic extrapolated beyond its points says nothing about the tradeoff there."""
        return self.domain is None or self.domain[0] <= clean <= self.domain[1]

    def to_t(self, x: float | np.ndarray) -> float | np.ndarray:
        """The fitting variable ``t = (x - shift) / scale`` of a clean accuracy ``x``."""
        return (np.asarray(x, dtype=float) - self.shift) / self.scale if self.scaled else x

    @property
    def scaled(self) -> bool:
        """True when the coefficients are those of a centred and scaled variable, not of x."""
        return self.shift != 0.0 or self.scale != 1.0

    @property
    def power_coeffs(self) -> tuple[float, float, float, float]:
        """The coefficients of x itself (highest first), for display: expanding a fitted cubic into
        powers of x near 99 cancels digits, so evaluate the curve with ``curve(x)``, not with these."""
        if not self.scaled:
            return self.coeffs
        p = Polynomial(self.coeffs[::-1], domain=[self.shift - self.scale, self.shift + self.scale],
                       window=[-1.0, 1.0]).convert()
        c = list(p.coef) + [0.0] * (4 - len(p.coef))
        return tuple(float(v) for v in c[::-1])  # type: ignore[return-value]

    def __call__(self, x: float | np.ndarray) -> float | np.ndarray:
        return np.polyval(self.coeffs, self.to_t(x))

    def __str__(self) -> str:
        a3, a2, a1, a0 = self.coeffs
        if not self.scaled:
            return f"c(x) = {a3:.4g} x^3 {a2:+.4g} x^2 {a1:+.4g} x {a0:+.4g}"
        return (f"c(x) = {a3:.4g} t^3 {a2:+.4g} t^2 {a1:+.4g} t {a0:+.4g}, t = (x - {self.shift:.6g}) / "
                f"{self.scale:.6g}")


def _points(clean: Sequence[float], robust: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The points as float arrays sorted by (clean, robust): the fit is then bitwise the same for
    any order of the input."""
    try:
        x = np.asarray(clean, dtype=float)
        y = np.asarray(robust, dtype=float)
    except (TypeError, ValueError):
        raise BenchError("tradeoff points must be numbers.") from None
    if x.shape != y.shape or x.ndim != 1:
        raise BenchError("clean and robust accuracies must be two lists of the same length.")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise BenchError("tradeoff points must be finite numbers.")
    order = np.lexsort((y, x))
    return x[order], y[order]


def fit_refusal(clean: Sequence[float], robust: Sequence[float], name: str = "fitted") -> str:
    """Why no cubic should be fitted to these (clean %, robust %) points, in one sentence, or "".

    Refused: fewer than ``MIN_DISTINCT_POINTS`` distinct clean accuracies, a clean range narrower
    than ``MIN_CLEAN_RANGE`` points, or a scaled Vandermonde matrix with a condition number above
    ``MAX_CONDITION`` (the points leave the cubic ill-determined).
    """
    x, _ = _points(clean, robust)
    distinct = len(np.unique(x))
    if distinct < MIN_DISTINCT_POINTS:
        return (f"no tradeoff curve for {name}: fitting a cubic needs at least {MIN_DISTINCT_POINTS} distinct "
                f"clean accuracies, got {distinct}.")
    lo, hi = float(x[0]), float(x[-1])
    if hi - lo < MIN_CLEAN_RANGE:
        return (f"no tradeoff curve for {name}: its {len(x)} points span only {hi - lo:.2f} points of clean accuracy "
                f"({lo:.2f}-{hi:.2f}%), and a fitted curve needs a span of at least {MIN_CLEAN_RANGE:g}.")
    t = (x - (lo + hi) / 2) / ((hi - lo) / 2)
    cond = float(np.linalg.cond(np.vander(t, 4)))
    if not cond <= MAX_CONDITION:
        return (f"no tradeoff curve for {name}: the points leave the cubic ill-determined (condition number "
                f"{cond:.3g} of the scaled Vandermonde matrix, above {MAX_CONDITION:g}; most points share one "
                f"clean accuracy).")
    return ""


def curve_for_points(clean: Sequence[float], robust: Sequence[float],
                     name: str = "fitted") -> tuple[Cubic | None, str]:
    """A least-squares cubic through (clean %, robust %) points, fitted on ``t`` in [-1, 1]
    (ARREST Section 5.1), and "" -- or None and the one-sentence reason of :func:`fit_refusal`.

    Raises :class:`BenchError` for input that is not two equally long lists of finite numbers.
    """
    reason = fit_refusal(clean, robust, name)
    if reason:
        logger.info("%s", reason)
        return None, reason
    x, y = _points(clean, robust)
    lo, hi = float(x[0]), float(x[-1])
    shift, scale = (lo + hi) / 2, (hi - lo) / 2
    # Polynomial.fit with domain = window = [-1, 1] fits on t exactly as computed here (no second
    # mapping); it scales the Vandermonde columns and solves by SVD (lstsq).
    fit = Polynomial.fit((x - shift) / scale, y, 3, domain=[-1.0, 1.0], window=[-1.0, 1.0])
    coef = list(fit.coef) + [0.0] * (4 - len(fit.coef))
    return Cubic(tuple(float(c) for c in coef[::-1]), name=name,  # type: ignore[arg-type]
                 domain=(lo, hi), shift=shift, scale=scale), ""


def fit_cubic(clean: Sequence[float], robust: Sequence[float], name: str = "fitted") -> Cubic:
    """Like :func:`curve_for_points`, but a refused fit is a :class:`BenchError` with the reason."""
    curve, reason = curve_for_points(clean, robust, name)
    if curve is None:
        raise BenchError(reason)
    return curve


def _read_fits() -> dict[str, tuple[Cubic, str]]:
    return {name: (cubic, ds) for name, (cubic, ds, _) in _read_fits_threats().items()}


def _read_fits_threats() -> dict[str, tuple[Cubic, str, str]]:
    with FITS_CSV.open(newline="", encoding="utf-8") as f:
        return {row["name"]: (Cubic((float(row["a3"]), float(row["a2"]), float(row["a1"]), float(row["a0"])),
                                    name=row["name"], domain=(float(row["clean_min"]), float(row["clean_max"])),
                                    arc_only=False), row["dataset"], row["threat"])
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


def published_fit_for_dataset(dataset: str, norm: str | None = None, eps: float | None = None) -> Cubic | None:
    """The published curve of a dataset id (``cifar10``), or None if the papers give none; with a
    threat (``norm``, ``eps``), only a curve published for that threat (ARREST's are Linf 8/255: a
    tradeoff at another radius or norm is another curve)."""
    from robustbench_lite.results import same_eps
    from robustbench_lite.threat import parse_threat

    for cubic, ds, threat in _read_fits_threats().values():
        if ds != dataset:
            continue
        if norm is not None:
            fit_norm, fit_eps = parse_threat(threat)
            if fit_norm != norm or (eps is not None and not same_eps(fit_eps, eps, rel=0.02)):
                continue
        return cubic
    return None


def published_fit_threat(dataset: str) -> str | None:
    """The threat the published curve of ``dataset`` was fitted at (``linf:8/255``), or None."""
    return next((threat for _, ds, threat in _read_fits_threats().values() if ds == dataset), None)


def curve_from_csv(path: str | Path) -> Cubic:
    """Fit a cubic to a CSV file of points with columns ``clean`` and ``robust`` (percent); a fit
    :func:`fit_refusal` refuses is a :class:`BenchError` with the reason."""
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
    for i, (cx, ry) in enumerate(zip(x, y)):
        why = point_refusal(cx, ry)
        if why:
            raise BenchError(f"curve file {p}, point {i + 1}: {why}")
    if x and max(x) <= 1.0 and max(y) <= 1.0:
        raise BenchError(f"curve file {p} has every clean and robust value at most 1, which look like fractions; "
                         "give accuracies in percent (0-100).")
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
    """The point (x, c(x)) of the curve nearest to (clean, robust): over all real x, or, for a curve
    fitted on points (``domain``), over their clean range only (the cubic is never extrapolated).

    Minimised over the curve's own variable ``t`` (x = shift + scale t), in which a fitted cubic is
    well conditioned; for ``shift`` 0 and ``scale`` 1 this is x itself.
    """
    x0, y0 = float(clean), float(robust)
    c = np.poly1d(curve.coeffs)
    f = np.poly1d([curve.scale, curve.shift - x0]) ** 2 + (c - y0) ** 2
    df, d2f = f.deriv(), f.deriv(2)
    candidates = np.concatenate([np.real(np.roots(df.coeffs)), [float(curve.to_t(x0))]])
    lo, hi = -np.inf, np.inf
    if curve.domain is not None and curve.arc_only:  # the arc over the points' clean range: critical points in it, and its ends
        lo, hi = float(curve.to_t(curve.domain[0])), float(curve.to_t(curve.domain[1]))
        candidates = np.concatenate([np.clip(candidates, lo, hi), [lo, hi]])
    t = float(candidates[np.argmin(f(candidates))])
    for _ in range(3):  # Newton polish on f'; keep a step only if it stays on the arc and lowers f
        h = d2f(t)
        if h <= 0:
            break
        t_new = t - df(t) / h
        if not lo <= t_new <= hi or f(t_new) > f(t):
            break
        t = float(t_new)
    return curve.shift + curve.scale * t, float(c(t))


def _outside_reason(clean: float | None, curve: Cubic) -> str:
    """Why there is no ARDist outside the curve's range; without ``clean`` one sentence shared by every
    such row (the leaderboard's footnote lists the rows once)."""
    lo, hi = curve.domain or (-math.inf, math.inf)
    what = "was fitted on" if curve.arc_only else "describes published methods with"
    head = "clean accuracy outside the curve's range" if clean is None else f"no ARDist for clean accuracy {float(clean):g}%"
    return (f"{head}: the curve {curve.name!r} {what} clean accuracies {lo:g}-{hi:g}% and a cubic is not "
            "extrapolated beyond its points.")


def point_refusal(clean: float | None, robust: float | None) -> str:
    """Why (clean %, robust %) is not a point of an accuracy-robustness plot, in one sentence, or "":
    missing, not finite or outside [0, 100]; robust above clean (a point robust to an attack is first
    classified correctly); or both at most 1 (fractions, not percent)."""
    if clean is None or robust is None:
        return "no ARDist without both a clean and a robust (AutoAttack) accuracy."
    c, r = float(clean), float(robust)
    for name, v in (("clean", c), ("robust", r)):
        if not math.isfinite(v) or not 0.0 <= v <= 100.0:
            return f"the {name} accuracy must be a percentage between 0 and 100, got {v:g}."
    if r > c:
        return (f"robust accuracy {r:g}% is above clean accuracy {c:g}%, which no evaluation can give (a point "
                "robust to an attack is first classified correctly).")
    if c <= 1.0 and r <= 1.0 and c > 0.0:
        return (f"clean {c:g} and robust {r:g} look like fractions; accuracies are in percent (e.g. 87.14, "
                "not 0.8714).")
    return ""


def ardist(clean: float, robust: float, curve: str | Path | Cubic) -> float:
    """Signed shortest distance from (clean %, robust %) to the curve; positive above it
    (ARREST Section 5.1). A clean accuracy outside the range a curve was fitted on is a
    :class:`BenchError` (see :func:`ardist_or_reason` for None and the reason instead)."""
    for v in (clean, robust):
        if v is None or not math.isfinite(float(v)):
            raise BenchError(f"ARDist needs finite accuracies, got clean={clean!r}, robust={robust!r}.")
    cubic = resolve_curve(curve)
    if not cubic.covers(float(clean)):
        raise BenchError(_outside_reason(clean, cubic))
    vertical = float(robust) - float(cubic(float(clean)))
    if vertical == 0.0:
        return 0.0
    x, y = nearest_point(clean, robust, cubic)
    return math.copysign(math.hypot(x - float(clean), y - float(robust)), vertical)


def ardist_or_reason(clean: float | None, robust: float | None, curve: Cubic) -> tuple[float | None, str]:
    """ARDist and "", or None and one sentence why not: the point is not a plausible accuracy pair
    (:func:`point_refusal`) or the clean accuracy lies outside the range the curve covers (no
    extrapolation)."""
    why = point_refusal(clean, robust)
    if why or clean is None or robust is None:
        return None, why
    if not curve.covers(float(clean)):
        return None, _outside_reason(None, curve)
    return ardist(clean, robust, curve), ""


def accuracy_sum(clean: float, robust: float) -> float:
    """Sum = clean + robust accuracy (percent points), as in ARREST Table 1."""
    return float(clean) + float(robust)
