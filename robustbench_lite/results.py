"""The result schema and the worst-case rule: the one torch-free module every consumer asks.

A result record (``result.json``, written by ``bench eval``) keeps one row per (attack, eps).
A row knows what produced it, never by its display label alone:

- ``label``  the suite's display name (``pgd20``, ``autoattack_l2``; unique within a suite)
- ``attack`` the attack's registry name (``pgd``, ``autoattack``, ``square``, ...)
- ``kind``   ``white-box``, ``black-box``, ``minimum-norm`` or ``transfer``
- ``exact``  True when ``accuracy`` is the attack's own accuracy: it ran on every clean-correct
  point (or broke the point at a smaller eps of its own sweep). False in a cascade, where it ran
  only on the points earlier attacks left robust: its ``accuracy`` counts the skipped points as
  robust and so is only an upper bound of its own accuracy.
- ``worst_case`` the suite's accuracy at that (norm, eps) over this row and every row before it;
  None where no attack ran at exactly that (norm, eps) on every point it had to attack
  (:func:`coverage_gap`). ``accuracy`` is None (and ``exact`` False) where the row's own attack
  skipped a point it had to attack. ``blank_reason`` says why a cell of the row is blank.

A robust accuracy exists only where an attack at exactly that threat backs it: at a threat
(norm, eps) at least one attack ran at that norm and radius on every point it had to attack (each
clean-correct point not already broken there by an earlier attack). Attacks at a smaller radius or
another norm alone give no robust accuracy at the threat (the record's ``robust_accuracy`` is then
None with ``robust_accuracy_note``), never the clean accuracy. A minimum-norm attack counts at the
radii of its grid only (each is a row); it is not interpolated to other radii.

The worst-case rule (AutoAttack's, per example): at a threat (norm, eps) a point is robust only
if it is clean-correct and no attack broke it at that norm with a radius <= eps (a perturbation
inside a smaller ball is inside every larger one).

Leaderboard columns are read through :func:`column_value`: a column named after an attack
(``autoattack``, ``pgd``) shows that attack's own accuracy where a row of it is exact; where it ran
as a stage of a cascade, the worst case through that stage (earlier attacks + it: at most its own
accuracy, and what RobustBench calls the AutoAttack accuracy when it is the last stage), marked
``cascade``; otherwise nothing. Example::

    >>> rows = summary_rows([True, True, False], [part_pgd, part_aa], norm="linf", eps=0.3, kinds=kinds)
    >>> column_value(rows, "autoattack", "linf", 0.3)
    Cell(value=50.0, scope='exact')
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol, Sequence

from .files import atomic_write_json, atomic_write_text, csv_text
from .threat import NORM_ALIASES, format_threat

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

RESULT_FORMAT = "robustbench_lite/result"
RESULT_FORMAT_VERSION = 2

WHITE_BOX, BLACK_BOX, MINIMUM_NORM, TRANSFER = "white-box", "black-box", "minimum-norm", "transfer"
KINDS = (WHITE_BOX, BLACK_BOX, MINIMUM_NORM, TRANSFER)
EXACT, CASCADE = "exact", "cascade"
EPS_TOL = 1e-12

SUMMARY_COLUMNS = ("label", "attack", "kind", "norm", "eps", "n", "attacked", "exact", "accuracy", "worst_case",
                   "blank_reason", "mean_min_norm", "median_min_norm", "seconds", "forwards", "backwards", "silent_success",
                   "no_gradient", "still_improving", "unverified")


class PerExample(Protocol):
    """What the rule needs of one finished (attack, eps): ``evaluations.parts.Part`` is one."""

    attack: str
    label: str
    norm: str
    eps: float
    robust: Sequence[bool]      # clean-correct and not broken by this attack at this eps
    attacked: Sequence[bool]    # the attack ran on this point
    norms: Sequence[float] | None


def pct(mask: Sequence[bool]) -> float:
    """Share of True in percent, rounded to 2 decimals (0.0 for an empty mask)."""
    return round(100.0 * sum(1 for m in mask if m) / len(mask), 2) if len(mask) else 0.0


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float] | None:
    """The 95% Wilson score interval (Wilson 1927) of a share of ``successes`` in ``n`` trials, in
    percent: the sampling error of an accuracy measured on ``n`` points. None when ``n`` is 0 (no
    interval exists). Unlike the normal approximation it stays inside [0, 100] and is not empty at
    0% or 100% (n = 40 at 85%: about 71.0 to 92.9)."""
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"{successes} successes out of {n} trials")
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    lo, hi = max(0.0, 100.0 * (centre - half)), min(100.0, 100.0 * (centre + half))
    return (0.0 if successes == 0 else lo), (100.0 if successes == n else hi)


def binom_tail(k: int, n: int, p: float, *, upper: bool) -> float:
    """P(X >= k) (``upper``) or P(X <= k) for X ~ Binomial(n, p): the exact one-sided p-value of ``k``
    successes in ``n`` trials (``scipy.stats.binomtest(k, n, p, alternative="greater"/"less")``),
    summed in log space so that large ``n`` neither overflows nor underflows."""
    if not 0 <= k <= n:
        raise ValueError(f"{k} successes out of {n} trials")
    if p <= 0.0 or p >= 1.0:
        x = n if p >= 1.0 else 0  # all mass on one count
        return float((x >= k) if upper else (x <= k))
    idx = range(k, n + 1) if upper else range(0, k + 1)
    lc = math.lgamma(n + 1)
    logs = [lc - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p) + (n - i) * math.log1p(-p) for i in idx]
    top = max(logs)
    return min(1.0, math.exp(top) * math.fsum(math.exp(v - top) for v in logs))


def worst_case(clean: Sequence[bool], parts: Iterable[PerExample], norm: str, eps: float) -> list[bool]:
    """Per example: robust at (norm, eps) against every part given (the worst-case rule)."""
    robust = [bool(c) for c in clean]
    for p in parts:
        if p.norm == norm and p.eps <= eps + EPS_TOL:
            robust = [r and bool(q) for r, q in zip(robust, p.robust)]
    return robust


def part_covers(clean: Sequence[bool], part: PerExample, before: Sequence[PerExample]) -> bool:
    """Whether ``part`` ran on every point it had to attack at its own (norm, eps): each clean-correct
    point that no part of ``before`` (the parts run before it: earlier attacks, its own smaller
    radii) broke at that norm with a radius <= its eps. A radius-0 part needs no point: nothing can
    move inside a ball of radius 0, so the clean verdict is its verdict."""
    if part.eps != part.eps:  # NaN: a minimum-norm run itself, not a radius
        return False
    if part.eps <= EPS_TOL:
        return True
    todo = worst_case(clean, before, part.norm, part.eps)
    return len(part.attacked) == len(todo) and all(bool(a) for a, t in zip(part.attacked, todo) if t)


def coverage_gap(clean: Sequence[bool], parts: Sequence[PerExample], norm: str, eps: float) -> str:
    """Why no robust accuracy exists at the threat (norm, eps) for these parts, or "" when one does.

    A robust accuracy exists only where at least one attack ran at exactly that norm and radius on
    every point it had to attack (:func:`part_covers`). Attacks at a smaller radius, another norm, a
    radius 0 below a radius > 0, or on only some of the points are not evidence at the threat: the
    worst case over them would be an accuracy no attack at the threat produced (with no attack at all,
    the clean accuracy). A minimum-norm attack counts at the radii of its grid, like any other."""
    at = [i for i, p in enumerate(parts) if p.norm == norm and same_eps(p.eps, eps)]
    where = format_threat(norm, eps)
    if not at:
        ran = sorted({format_threat(p.norm, p.eps) for p in parts if p.eps == p.eps})
        return f"no attack ran at {where} (attacks ran at: {', '.join(ran) or 'no radius'})"
    if any(part_covers(clean, parts[i], parts[:i]) for i in at):
        return ""
    labels = ", ".join(sorted({parts[i].label for i in at}))
    return f"no attack at {where} ran on every point it had to attack ({labels} skipped some)"


def robust_at(clean: Sequence[bool], parts: Sequence[PerExample], norm: str, eps: float) -> tuple[float | None, str]:
    """The robust accuracy (%) at (norm, eps), the worst case per example over ``parts``, and ""; or
    None and the reason (:func:`coverage_gap`) where no attack at that threat backs it."""
    why = coverage_gap(clean, parts, norm, eps)
    return (None, why) if why else (pct(worst_case(clean, parts, norm, eps)), "")


def is_exact(clean: Sequence[bool], part: PerExample, own_earlier: Iterable[PerExample] = ()) -> bool:
    """Whether ``part.robust`` is the attack's own verdict on every clean-correct point: each one
    was attacked, or broken by the same attack at a smaller eps of its sweep (``own_earlier``)."""
    if part.eps == 0 and part.norms is None:
        return True  # nothing can move inside a ball of radius 0: the clean verdict is exact
    covered = [bool(a) for a in part.attacked]
    for q in own_earlier:
        covered = [c or (bool(k) and not bool(r)) for c, k, r in zip(covered, clean, q.robust)]
    return all(cov for cov, c in zip(covered, clean) if c)


def mean_median(values: Iterable[float]) -> tuple[float | None, float | None]:
    v = sorted(x for x in values if x is not None and math.isfinite(x))
    if not v:
        return None, None
    mid = len(v) // 2
    return sum(v) / len(v), (v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2)


def mean_std(values: Iterable[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation of the finite values (std None for fewer than two; both
    None for none): how several seeds of one configuration are reported."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return None, None
    m = sum(v) / len(v)
    return m, (math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else None)


def summary_rows(clean: Sequence[bool], parts: Sequence[Any], *, kinds: Mapping[str, str],
                 norm: str, eps: float) -> list[dict[str, Any]]:
    """The ``summary`` of a record: the clean row, then one row per part, in suite order.

    ``parts`` are :class:`PerExample` with ``seconds``, ``forwards`` and ``backwards``; ``kinds``
    maps each registry name to its kind."""
    n = len(clean)
    rows: list[dict[str, Any]] = [{
        "label": "clean", "attack": "clean", "kind": "clean", "norm": norm, "eps": 0.0, "n": n, "attacked": n,
        "exact": True, "accuracy": pct(clean), "worst_case": pct(clean), "blank_reason": None, "mean_min_norm": None,
        "median_min_norm": None, "seconds": 0.0, "forwards": n, "backwards": 0, "unverified": 0}]
    for i, p in enumerate(parts):
        own = [q for q in parts[:i] if q.label == p.label and q.norm == p.norm and q.eps < p.eps]
        mean, med = mean_median(v for v, c in zip(p.norms, clean) if c) if p.norms is not None else (None, None)
        worst, why = robust_at(clean, parts[:i + 1], p.norm, p.eps)
        covers = part_covers(clean, p, parts[:i])
        if not covers:  # the reason for the blank accuracy (and, when it is blank too, the worst case)
            why = "; ".join(w for w in (why, f"{p.label} skipped points it had to attack at its radius, so its "
                                        "accuracy is no measurement") if w)
        rows.append({
            "label": p.label, "attack": p.attack, "kind": kinds.get(p.attack, WHITE_BOX), "norm": p.norm,
            "eps": p.eps, "n": n, "attacked": sum(1 for a in p.attacked if a), "exact": covers and is_exact(clean, p, own),
            "accuracy": pct(p.robust) if covers else None, "worst_case": worst, "blank_reason": why or None,
            "mean_min_norm": mean, "median_min_norm": med, "seconds": round(float(p.seconds), 3),
            "forwards": p.forwards, "backwards": p.backwards, "unverified": int(getattr(p, "unverified", 0) or 0)})
    return rows


# -- output files --------------------------------------------------------------------------------

SWEEP_COLUMNS = ("label", "attack", "norm", "eps", "exact", "accuracy", "auc")


def per_example_csv(indices: Sequence[int], labels: Sequence[int], clean: Sequence[bool],
                    parts: Sequence[PerExample]) -> str:
    """``per_example.csv``: index, label, clean_correct, then ``robust[<label>@<norm>:<eps>]`` per
    part and ``min_norm[<label>]`` per minimum-norm attack (empty: none found)."""
    cols = ["index", "label", "clean_correct"] + [f"robust[{p.key}]" for p in parts]  # type: ignore[attr-defined]
    norm_parts = {p.label: p for p in parts if p.norms is not None}
    cols += [f"min_norm[{lab}]" for lab in norm_parts]
    lines = [",".join(cols)]
    for j, (i, lab) in enumerate(zip(indices, labels)):
        row = [str(i), str(lab), str(int(clean[j]))] + [str(int(p.robust[j])) for p in parts]
        row += ["" if p.norms[j] == float("inf") else f"{p.norms[j]:.6g}" for p in norm_parts.values()]  # type: ignore[index]
        lines.append(",".join(row))
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, record: dict[str, Any], clean: Sequence[bool], parts: Sequence[PerExample]) -> None:
    """Every output file of an evaluation, each written atomically: per_example.csv, summary.csv,
    sweeps.csv, checks.json (when checks ran) and, last, result.json (with ``transfer`` rows)."""
    target = (record.get("checkpoint") or {}).get("path")
    transfer = [{"surrogate": r.get("surrogate"), "target": target, "norm": r["norm"], "eps": r["eps"],
                 "n": r["attacked"], "success_rate": r.get("success_rate")} for r in record["attacks"] if r["kind"] == TRANSFER]
    record.pop("transfer", None)
    if transfer:
        record["transfer"] = transfer
    atomic_write_text(out / "per_example.csv", per_example_csv(record["indices"], record["labels"], clean, parts))
    atomic_write_text(out / "summary.csv", csv_text(record["summary"], SUMMARY_COLUMNS))
    atomic_write_text(out / "sweeps.csv", csv_text(record["sweeps"], SWEEP_COLUMNS))
    if record.get("checks"):
        atomic_write_json(out / "checks.json", record["checks"])
    atomic_write_json(out / "result.json", record)


# -- reading rows -------------------------------------------------------------------------------

def same_eps(a: float | None, b: float | None, rel: float = 1e-6) -> bool:
    return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=rel, abs_tol=EPS_TOL)


def num(x: Any) -> float | None:
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


@dataclass(frozen=True)
class Cell:
    """A leaderboard cell: the value and what it is (``exact``: the attack's own accuracy;
    ``cascade``: the worst case through the attack's stage of a cascade), or no value and why."""

    value: float | None
    scope: str = ""
    why: str = ""


def rows_at(rows: Iterable[Mapping[str, Any]], attack: str, norm: str, eps: float) -> list[Mapping[str, Any]]:
    """Rows of registry name ``attack`` at threat (norm, eps)."""
    return [r for r in rows if r.get("attack") == attack and r.get("norm") == norm and same_eps(num(r.get("eps")), eps)]


def column_value(rows: Iterable[Mapping[str, Any]], attack: str, norm: str, eps: float) -> Cell:
    """The leaderboard value of attack ``attack`` at (norm, eps) (see the module docstring).

    Several exact rows (e.g. PGD-20 and PGD-100): the lowest, the strongest of them."""
    at = rows_at(rows, attack, norm, eps)
    if not at:
        return Cell(None, why=f"no {attack} row at {norm}:{eps:g}")
    exact = [v for v in (num(r.get("accuracy")) for r in at if r.get("exact") is True) if v is not None]
    if exact:
        return Cell(min(exact), EXACT)
    staged = [v for v in (num(r.get("worst_case")) for r in at) if v is not None]
    if staged:
        return Cell(min(staged), CASCADE, f"{attack} ran on the points earlier attacks left robust: the worst case "
                    "through its stage, at most its own accuracy")
    return Cell(None, why=f"{attack} has no usable accuracy at {norm}:{eps:g}")


def recorded_robust(record: Mapping[str, Any]) -> tuple[float | None, str]:
    """A record's robust accuracy as a reader (the leaderboard, a report) may show it, and ""; or
    None and why. New records carry None (with ``robust_accuracy_note``) where no attack at the
    threat backs a number; a record written before that rule may carry the clean accuracy there, so
    its number counts only where an attack row at exactly its threat has a worst case."""
    value = num(record.get("robust_accuracy"))
    if value is None:
        return None, str(record.get("robust_accuracy_note") or "the record has no robust accuracy")
    threat = record.get("threat") if isinstance(record.get("threat"), Mapping) else {}
    norm = NORM_ALIASES.get(str(threat.get("norm", "")).lower())
    eps = num(threat.get("eps"))
    rows = [r for r in record.get("attacks") or [] if isinstance(r, Mapping)
            and NORM_ALIASES.get(str(r.get("norm", "")).lower()) == norm and same_eps(num(r.get("eps")), eps)]
    if norm is None or eps is None or not any(num(r.get("worst_case")) is not None for r in rows):
        return None, f"no attack ran at the record's threat {format_threat(norm or '?', eps)}"
    return value, ""


# -- older records -------------------------------------------------------------------------------

# Kinds of the built-in attacks, used only to read format_version 1 records (which lack 'kind').
_V1_KINDS = {"square": BLACK_BOX, "transfer": TRANSFER, "cw_l2": MINIMUM_NORM, "ddn": MINIMUM_NORM,
             "deepfool_linf": MINIMUM_NORM, "deepfool_l2": MINIMUM_NORM, "min_linf": MINIMUM_NORM}


def _v1_suite(suite: Mapping[str, Any]) -> tuple[dict[str, str], set[str]]:
    """(label -> registry name, labels whose entry does not cascade) from the suite text a
    version 1 record embeds."""
    try:
        data = tomllib.loads(str(suite.get("text") or ""))
    except tomllib.TOMLDecodeError:
        return {}, set()
    entries = [e for e in data.get("attacks", []) if isinstance(e, dict)]
    names = {str(e.get("label", e.get("name"))): str(e.get("name")) for e in entries}
    own = {str(e.get("label", e.get("name"))) for e in entries if e.get("cascade") is False}
    for path in data.get("surrogates", []) or []:
        label = f"transfer[{str(path).rsplit('/', 1)[-1].rsplit('.', 1)[0]}]"
        names[label] = "transfer"
        own.add(label)
    return names, own


def upgrade_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A format_version 1 record (rows identified by their label only) read as version 2.

    The registry name comes from the suite text the record embeds. A row is exact where the suite
    or its entry did not cascade, where no other attack ran before it at its norm and a radius
    <= its own, or where its ``attacked`` count covers every clean-correct point."""
    rec = dict(record)
    if int(rec.get("format_version", 1) or 1) >= 2:
        return rec
    names, own = _v1_suite(rec.get("suite") or {})
    cascade = bool((rec.get("suite") or {}).get("cascade", True))
    n = num(rec.get("n"))
    clean = num(rec.get("clean_accuracy"))
    n_clean = round(clean * n / 100) if clean is not None and n else None

    def up(row: Mapping[str, Any], before: list[Mapping[str, Any]]) -> dict[str, Any]:
        r = dict(row)
        label = str(r.get("attack", ""))
        name = "clean" if label == "clean" else names.get(label, label)
        attacked, eps = num(r.get("attacked")), num(r.get("eps")) or 0.0
        first = not any(str(b.get("attack")) not in (label, "clean") and b.get("norm") == r.get("norm")
                        and (num(b.get("eps")) or 0.0) <= eps + EPS_TOL for b in before)
        exact = (label == "clean" or not cascade or label in own or first or eps == 0
                 or (attacked is not None and n_clean is not None and attacked >= n_clean))
        r.update({"label": label, "attack": name, "exact": bool(exact),
                  "kind": "clean" if label == "clean" else _V1_KINDS.get(name, WHITE_BOX)})
        return r

    for key in ("attacks", "summary"):
        if isinstance(rec.get(key), list):
            old = [r for r in rec[key] if isinstance(r, Mapping)]
            rec[key] = [up(r, old[:i]) for i, r in enumerate(old)]
    if isinstance(rec.get("sweeps"), list):
        rec["sweeps"] = [{**s, "label": s.get("label", s.get("attack"))} for s in rec["sweeps"] if isinstance(s, Mapping)]
    rec["format_version"] = RESULT_FORMAT_VERSION
    return rec
