"""Leaderboard entries: stored records grouped by configuration (seeds aggregated), the papers'
published rows and RobustBench's entries, each as one :class:`Entry`, with ARDist against the curve of
its dataset and threat. Ranking and rendering them is :mod:`reports.leaderboard`'s (see its docstring
for the rules)."""
from __future__ import annotations

import json
import logging
import os.path
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import pandas as pd

from robustbench_lite.results import mean_std, wilson_interval
from robustbench_lite.zoo import ZooEntry, all_entries, source_commit

from .ardist import Cubic, ardist_or_reason
from .baselines import DEFAULT_ARDIST_FIT, ardist_curve, baseline_entries, dataset_key, robustbench_points
from .records import RecordSummary, format_threat, same_eps
from .render import ACCURACIES, METRICS

logger = logging.getLogger(__name__)

THREAT_REL_TOL = 0.02  # "linf:0.031" selects linf:8/255 (0.03137), as the papers round it


@dataclass(frozen=True)
class Entry:
    """One leaderboard line: a configuration's records (or a published table row), aggregated.

    ``values`` maps each of METRICS to (mean, std); std is None for one seed or when not published.
    """

    model: str
    defense: str
    arch: str
    dataset: str
    threat: str
    values: Mapping[str, tuple[float | None, float | None]]
    sanity: str = ""
    n: str = ""
    seeds: int | None = None
    published: bool = False
    source: str = ""
    records: tuple[RecordSummary, ...] = field(default=(), repr=False)
    failed_checks: tuple[tuple[str, str, str], ...] = ()  # (model, check name, detail)
    scopes: Mapping[str, str] = field(default_factory=dict)  # metric -> "cascade" where not the attack's own
    notes: tuple[tuple[str, str], ...] = ()  # (metric, why) a cell is blank, e.g. no well-conditioned ARDist curve
    zoo: ZooEntry | None = None  # the RobustBench leaderboard entry this line shows
    ardist_fit: str = ""  # under the table: the curve ARDist used, when not the default (papers') fit
    suite: str = ""  # the suite that produced the row (RecordSummary.suite); "" for published rows
    verdict: str = ""  # AutoAttack, fast verdict, worst case, none; published rows: what the source reports
    intervals: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # accuracy -> 95% interval

    def get(self, metric: str) -> float | None:
        return self.values.get(metric, (None, None))[0]

    @property
    def group(self) -> tuple[str, str]:
        """(dataset, threat): the ranking this entry belongs to."""
        return self.dataset, self.threat

    @property
    def unreliable(self) -> bool:
        """A sanity check failed, or RobustBench flags the entry's evaluation as unreliable: its numbers
        cannot be trusted and it ranks after the others."""
        return bool(self.failed_checks) or (self.zoo is not None and self.zoo.unreliable)


def _group_key(s: RecordSummary) -> tuple[Any, ...]:
    config = {k: v for k, v in s.defense_config.items() if k != "seed"}
    return (s.defense, json.dumps(config, sort_keys=True, default=str), s.member, s.arch, s.dataset, s.norm,
            round(s.eps, 12), s.suite_hash)


def _group_name(names: Sequence[str]) -> str:
    unique = list(dict.fromkeys(names))
    if len(unique) == 1:
        return unique[0]
    prefix = re.sub(r"([_\-. ]+(s|seed))?[_\-. ]*$", "", os.path.commonprefix(unique))
    return prefix if len(prefix) >= 3 else f"{unique[0]} (+{len(unique) - 1})"


class _Curves:
    """The ARDist curve of each (dataset, threat) under one fit, computed once, and its footnote."""

    def __init__(self, fit: str, baselines: pd.DataFrame | None, zoo_table: Sequence[ZooEntry] | None = None) -> None:
        self.fit, self.baselines, self.zoo_table = fit, baselines, zoo_table
        self._cache: dict[tuple[Any, ...], tuple[Cubic | None, str, str]] = {}

    def __call__(self, dataset: str, norm: str | None, eps: float | None) -> tuple[Cubic | None, str, str]:
        """(curve or None, why not, footnote naming the fit -- "" for the default fit)."""
        key = (dataset_key(dataset), norm, eps)  # a tradeoff curve belongs to one dataset and threat
        if key not in self._cache:
            curve, why = ardist_curve(self.fit, dataset, self.baselines, norm, eps, self.zoo_table)
            self._cache[key] = (curve, why, self._note(dataset, norm, eps, curve))
        return self._cache[key]

    def _note(self, dataset: str, norm: str | None, eps: float | None, curve: Cubic | None) -> str:
        if self.fit == DEFAULT_ARDIST_FIT:
            return ""
        commit = f" at commit {source_commit()}" if self.zoo_table is None else ""
        points = robustbench_points(dataset, norm, eps, self.zoo_table) if norm and eps is not None else []
        threat = points[0].threat if points else (format_threat(norm, eps) if norm else "(no threat)")
        board = f"{dataset_key(dataset)} {threat}"  # the leaderboard's threat: linf:0.031 selects linf:8/255
        if curve is None or curve.domain is None:
            return f"ARDist fit 'robustbench': RobustBench's {board} leaderboard{commit} gives no curve; ARDist blank."
        return (f"ARDist fit 'robustbench': the signed distance to a cubic fitted on RobustBench's {board} leaderboard"
                f"{commit} (clean vs AutoAttack accuracy of its entries, those flagged unreliable left out), clean "
                f"{curve.domain[0]:.2f}-{curve.domain[1]:.2f}%, blank outside (never extrapolated): {curve}.")


def record_entries(summaries: Sequence[RecordSummary], baselines: pd.DataFrame | None,
                   ardist_fit: str = DEFAULT_ARDIST_FIT, zoo_table: Sequence[ZooEntry] | None = None) -> list[Entry]:
    """Group summaries by configuration (seeds aggregate) into entries; ARDist under ``ardist_fit``."""
    groups: dict[tuple[Any, ...], list[RecordSummary]] = {}
    for s in summaries:
        groups.setdefault(_group_key(s), []).append(s)
    split: list[list[RecordSummary]] = []
    for members in groups.values():  # seeds merge only when each record names its own seed
        seeds = [s.checkpoint_seed for s in members]
        if len(members) > 1 and (None in seeds or len(set(seeds)) < len(seeds)):
            split += [[s] for s in members]
        else:
            split.append(members)
    curves = _Curves(ardist_fit, baselines, zoo_table)
    out = []
    for members in split:
        members = sorted(members, key=lambda s: (s.checkpoint_seed is None, s.checkpoint_seed or 0, s.model))
        first = members[0]
        curve, no_curve, fit_note = curves(first.dataset, first.norm, first.eps)
        per_metric: dict[str, list[float | None]] = {m: [] for m in METRICS}
        notes: list[tuple[str, str]] = []
        for s in members:
            for m in ("clean", "autoattack", "pgd", "robust", "auc", "min_pert"):
                per_metric[m].append(getattr(s, m))
            per_metric["sum"].append(s.total)
            value, why = _ardist(s.clean, s.autoattack, curve, no_curve)
            per_metric["ardist"].append(value)
            if why:
                notes.append(("ardist", why))
            if s.robust is None:
                notes.append(("robust", s.robust_why))
        failed = tuple((s.model, str(c.get("name", "?")), str(c.get("detail", ""))) for s in members
                       for c in s.failed_checks)
        has_checks = any(s.checks for s in members)
        scopes = {m: "cascade" for m in ("autoattack", "pgd")
                  if any(getattr(s, f"{m}_scope") == "cascade" for s in members)}
        failed_names = list(dict.fromkeys(name for _, name, _ in failed))
        ns = sorted({s.n for s in members if s.n is not None})
        seeds = len({s.checkpoint_seed for s in members}) if len(members) > 1 else 1
        verdicts = list(dict.fromkeys(s.verdict for s in members))
        out.append(Entry(
            model=_group_name([s.model for s in members]), defense=first.defense, arch=first.arch,
            dataset=first.dataset, threat=first.threat, values={m: mean_std(v) for m, v in per_metric.items()},
            sanity=(("FAILED: " + ", ".join(failed_names) if failed else "ok") if has_checks else "not run")
            + _adaptive_mark(members),
            n="" if not ns else (str(ns[0]) if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"), seeds=seeds,
            source="this run", records=tuple(members), failed_checks=failed, scopes=scopes,
            notes=tuple(dict.fromkeys(notes)), ardist_fit=fit_note, suite=first.suite,
            verdict=verdicts[0] if len(verdicts) == 1 else "mixed: " + ", ".join(verdicts),
            intervals=_intervals(members)))
    return out


def _intervals(members: Sequence[RecordSummary]) -> dict[str, tuple[float, float]]:
    """The 95% Wilson interval of each accuracy over the members' pooled points: the number of
    points each accuracy counts (round(acc * n / 100)) summed over the seeds, out of their summed n.
    None of an accuracy when a member lacks it or its n."""
    out = {}
    for m in ACCURACIES:
        values = [(getattr(s, m), s.n) for s in members]
        if not values or any(v is None or not n for v, n in values):
            continue
        k = sum(int(round(float(v) * n / 100.0)) for v, n in values)  # type: ignore[arg-type, operator]
        total = sum(int(n) for _, n in values)  # type: ignore[arg-type]
        ci = wilson_interval(min(max(k, 0), total), total)
        if ci is not None:
            out[m] = ci
    return out


def _adaptive_mark(members: Sequence[RecordSummary]) -> str:
    """``; robust by adaptive[eot, bpda]`` when the adaptive evaluation changed the robust number."""
    remedies = list(dict.fromkeys(r for s in members for r in s.adaptive))
    return f"; robust by adaptive[{', '.join(remedies)}]" if remedies else ""


def _ardist(clean: float | None, robust: float | None, curve: Cubic | None, no_curve: str) -> tuple[float | None, str]:
    """ARDist of (clean, AutoAttack) against the dataset's curve, or None and why."""
    if curve is None:
        return None, no_curve
    if clean is None or robust is None:
        return None, "no AutoAttack accuracy"
    return ardist_or_reason(clean, robust, curve)


def published_entries(baselines: pd.DataFrame, dataset: str, norm: str | None = None,
                      eps: float | None = None, ardist_fit: str = DEFAULT_ARDIST_FIT,
                      zoo_table: Sequence[ZooEntry] | None = None) -> list[Entry]:
    """Published table rows of ``dataset`` (at the threat, if given) as leaderboard entries."""
    curves = _Curves(ardist_fit, baselines, zoo_table)
    out, seen = [], set()
    for e in baseline_entries(baselines, dataset, norm, eps):
        ident = (e["method"], e["architecture"], e["setting"], e["clean"], e["autoattack"], e["pgd"])
        if ident in seen:  # the same numbers quoted again in another table of the paper
            continue
        seen.add(ident)
        values = {m: (e[m], e[f"{m}_std"]) for m in ("clean", "autoattack", "pgd", "robust", "auc", "min_pert")}
        values["sum"] = (e["clean"] + e["robust"], None) if e["robust"] is not None else (None, None)
        curve, no_curve, fit_note = curves(dataset, e["norm"], e["eps"])
        value, why = _ardist(e["clean"], e["autoattack"], curve, no_curve)
        values["ardist"] = (value, None)
        notes = [("ardist", why)] if why else []
        if e["robust"] is None:
            notes.append(("robust", "the paper gives no robust accuracy"))
        name = e["method"] + (f" ({e['setting']})" if e["setting"] else "")
        out.append(Entry(model=name, defense="published", arch=e["architecture"], dataset=e["dataset"],
                         threat=format_threat(e["norm"], e["eps"]) if e["norm"] else "", values=values,
                         published=True, source=f"published: {e['source']}", ardist_fit=fit_note,
                         verdict=("AutoAttack" if e["autoattack"] is not None else "PGD (lowest published)")
                         if e["robust"] is not None else "none", notes=tuple(notes)))
    return out


def zoo_entries(dataset: str, norm: str | None = None, eps: float | None = None,
                table: Sequence[ZooEntry] | None = None, ardist_fit: str = DEFAULT_ARDIST_FIT) -> list[Entry]:
    """RobustBench's leaderboard entries of ``dataset`` (at the threat, if given; eps within 2 %, as the
    published tables) as leaderboard lines: ``autoattack`` is RobustBench's AutoAttack accuracy,
    ``best_known`` its ``external`` accuracy where a stronger evaluation exists, and ``robust`` the
    worst case of the two (the value RobustBench ranks by). Blank numbers stay blank."""
    rows = all_entries() if table is None else table
    curves = _Curves(ardist_fit, None, table)
    source = f"published: RobustBench {source_commit()[:7]}" if table is None else "published: RobustBench"
    out = []
    for z in rows:
        tm = z.threat_model
        if dataset_key(z.dataset) != dataset_key(dataset) or (norm is not None and tm.norm != norm):
            continue
        if eps is not None and not same_eps(tm.eps, eps, rel=THREAT_REL_TOL):
            continue
        robust = z.best_known
        values = {m: (None, None) for m in METRICS}
        values.update(clean=(z.clean_acc, None), autoattack=(z.autoattack_acc, None), robust=(robust, None),
                      best_known=(z.external_acc, None))
        if z.clean_acc is not None and robust is not None:
            values["sum"] = (z.clean_acc + robust, None)
        curve, no_curve, fit_note = curves(dataset, tm.norm, tm.eps)
        value, why = _ardist(z.clean_acc, z.autoattack_acc, curve, no_curve)
        values["ardist"] = (value, None)
        notes = [("ardist", why)] if why else []
        if robust is None:
            notes.append(("robust", "RobustBench gives no robust accuracy"))
        out.append(Entry(model=z.name, defense="published", arch=z.architecture, dataset=z.dataset, threat=z.threat,
                         values=values, sanity="UNRELIABLE (RobustBench)" if z.unreliable else "", published=True,
                         source=source, zoo=z, ardist_fit=fit_note,
                         verdict=("AutoAttack" if z.external_acc is None else "best known") if robust is not None else "none",
                         notes=tuple(notes)))
    return out
