"""The leaderboard: stored results (and optionally published baselines) ranked in one table.

Entries are ranked by the suite's worst-case robust accuracy at the threat (``robust``, descending)
by default; entries without the sort value come after those with it, and an entry with a failed
sanity check (a model at chance level, predictions collapsed to one class, gradient masking, ...)
comes after every entry without one: a broken model cannot rank first. The ``autoattack`` and
``pgd`` columns follow :func:`robustbench_lite.results.column_value`: the attack's own accuracy, or,
marked ``cascade``, the worst case through its stage of a cascade. Records of several seeds of one configuration (same defense, defense
config, member, arch, dataset, threat and suite; different ``checkpoint.seed``) are one entry whose
numbers read "mean ± std" (sample std) with a ``seeds`` count.

With baselines, RobustBench's leaderboard entries of the same dataset and threat join too
(:func:`zoo_entries`, from :mod:`robustbench_lite.zoo`): ``autoattack`` is RobustBench's AutoAttack
accuracy, ``best_known`` its stronger evaluation where one exists, ``robust`` the worst case of the two;
entries RobustBench flags unreliable rank last, as entries with a failed check do.

ARDist (``ardist_fit="published"``, the default) uses the published ARREST fit of the dataset (cifar10,
cifar100), else a cubic fitted to the published (clean, AutoAttack) points of that dataset when at least
4 exist, else it stays blank. ``ardist_fit="robustbench"`` uses a cubic fitted to RobustBench's entries
of the same dataset and threat (:func:`reports.baselines.curve_for_robustbench`; the same refusals) and
says so, with the commit, under the table. A fitted cubic is never extrapolated: ARDist stays blank for
a clean accuracy outside the range of the points it was fitted on (the five published MNIST points span
98.8-99.4% clean).

Example::

    >>> print(leaderboard("runs/leaderboard.sqlite", dataset="cifar10", threat="linf:8/255"))
"""
from __future__ import annotations

import json
import logging
import os.path
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from robustbench_lite.errors import BenchError
from robustbench_lite.results import mean_std
from robustbench_lite.zoo import ZooEntry, all_entries, source_commit

from .ardist import Cubic, ardist_or_reason
from .baselines import (ARDIST_FITS, DEFAULT_ARDIST_FIT, ardist_curve, baseline_entries, dataset_key, load_baselines,
                        robustbench_points)
from .records import RecordSummary, format_threat, parse_threat, same_eps, summarize
from .render import DEFAULT_SORT, FORMATS, METRICS, SORT_COLUMNS, TEXT_SORT, render_table  # noqa: F401
from .store import load_records

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

    def get(self, metric: str) -> float | None:
        return self.values.get(metric, (None, None))[0]

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
        key = (dataset_key(dataset),) if self.fit == DEFAULT_ARDIST_FIT else (dataset_key(dataset), norm, eps)
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
    curves = _Curves(ardist_fit, baselines, zoo_table)
    out = []
    for members in groups.values():
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
        failed = tuple((s.model, str(c.get("name", "?")), str(c.get("detail", ""))) for s in members
                       for c in s.failed_checks)
        has_checks = any(s.checks for s in members)
        scopes = {m: "cascade" for m in ("autoattack", "pgd")
                  if any(getattr(s, f"{m}_scope") == "cascade" for s in members)}
        failed_names = list(dict.fromkeys(name for _, name, _ in failed))
        ns = sorted({s.n for s in members if s.n is not None})
        seeds = len({s.checkpoint_seed for s in members}) if len(members) > 1 else 1
        out.append(Entry(
            model=_group_name([s.model for s in members]), defense=first.defense, arch=first.arch,
            dataset=first.dataset, threat=first.threat, values={m: mean_std(v) for m, v in per_metric.items()},
            sanity=(("FAILED: " + ", ".join(failed_names) if failed else "ok") if has_checks else "not run") + _adaptive_mark(members),
            n="" if not ns else (str(ns[0]) if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"), seeds=seeds,
            source="this run", records=tuple(members), failed_checks=failed, scopes=scopes,
            notes=tuple(dict.fromkeys(notes)), ardist_fit=fit_note))
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
        values["ardist"] = (_ardist(e["clean"], e["autoattack"], curve, no_curve)[0], None)
        name = e["method"] + (f" ({e['setting']})" if e["setting"] else "")
        out.append(Entry(model=name, defense="published", arch=e["architecture"], dataset=e["dataset"],
                         threat=format_threat(e["norm"], e["eps"]) if e["norm"] else "", values=values,
                         published=True, source=f"published: {e['source']}", ardist_fit=fit_note))
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
        values["ardist"] = (_ardist(z.clean_acc, z.autoattack_acc, curve, no_curve)[0], None)
        out.append(Entry(model=z.name, defense="published", arch=z.architecture, dataset=z.dataset, threat=z.threat,
                         values=values, sanity="UNRELIABLE (RobustBench)" if z.unreliable else "", published=True,
                         source=source, zoo=z, ardist_fit=fit_note))
    return out


def rank_entries(entries: Sequence[Entry], sort: str = DEFAULT_SORT) -> list[Entry]:
    """Entries ordered by ``sort``: numbers descending, text ascending, missing values last; an
    entry with a failed sanity check after every entry without one."""
    if sort not in SORT_COLUMNS:
        raise BenchError(f"unknown sort column {sort!r}; valid: {', '.join(SORT_COLUMNS)}.")

    def key(e: Entry) -> tuple[Any, ...]:
        tie = (-(e.get("clean") or 0.0), e.model, e.source)
        if sort in TEXT_SORT:
            value = getattr(e, sort)
            return (e.unreliable, value == "", value.lower(), *tie)
        if sort == "n":
            value = float(e.n.split("-")[0]) if e.n else None
        elif sort == "seeds":
            value = e.seeds
        else:
            value = e.get(sort)
        return (e.unreliable, value is None, -(value or 0.0), *tie)

    return sorted(entries, key=key)


def select_summaries(records: Iterable[Mapping[str, Any]], dataset: str | None = None,
                     threat: str | None = None) -> list[RecordSummary]:
    """Summaries of the records of ``dataset`` (``mnist`` also selects ``mnist5k``) at ``threat``."""
    out = [summarize(r) for r in records]
    if dataset is not None:
        out = [s for s in out if dataset_key(s.dataset) == dataset_key(dataset)]
    if threat is not None:
        norm, eps = parse_threat(threat)
        out = [s for s in out if s.norm == norm and same_eps(s.eps, eps, rel=THREAT_REL_TOL)]
    return out


def leaderboard_entries(records: Iterable[Mapping[str, Any]], dataset: str | None = None,
                        threat: str | None = None, with_baselines: bool = False,
                        baselines: pd.DataFrame | None = None, sort: str = DEFAULT_SORT,
                        zoo_table: Sequence[ZooEntry] | None = None,
                        ardist_fit: str = DEFAULT_ARDIST_FIT) -> list[Entry]:
    """Ranked entries of ``records`` (plus, ``with_baselines``, the published rows and RobustBench's
    leaderboard entries of the same datasets and threats; ``zoo_table`` defaults to the packaged one).
    ``ardist_fit``: ``published`` (the papers' curves) or ``robustbench`` (a cubic fitted on RobustBench's
    leaderboard of each line's dataset and threat)."""
    if sort not in SORT_COLUMNS:
        raise BenchError(f"unknown sort column {sort!r}; valid: {', '.join(SORT_COLUMNS)}.")
    if ardist_fit not in ARDIST_FITS:
        raise BenchError(f"unknown ARDist fit {ardist_fit!r}; valid: {', '.join(ARDIST_FITS)}.")
    summaries = select_summaries(records, dataset, threat)
    if baselines is None:
        baselines = load_baselines()
    entries = record_entries(summaries, baselines, ardist_fit, zoo_table)
    if with_baselines:
        if threat is not None:
            norm, eps = parse_threat(threat)
            datasets = {dataset_key(dataset)} if dataset else {dataset_key(s.dataset) for s in summaries}
            wanted: set[tuple[str, str | None, float | None]] = {(ds, norm, eps) for ds in datasets}
        else:
            wanted = {(dataset_key(s.dataset), s.norm, s.eps) for s in summaries}
            if not wanted and dataset:
                wanted = {(dataset_key(dataset), None, None)}
        seen: set[tuple[str, ...]] = set()
        for ds, norm, eps in sorted(wanted, key=lambda t: (t[0], t[1] or "", t[2] or 0.0)):
            for e in published_entries(baselines, ds, norm, eps, ardist_fit, zoo_table):
                ident = (e.model, e.source, e.arch, e.threat)
                if ident not in seen:
                    seen.add(ident)
                    entries.append(e)
            for e in zoo_entries(ds, norm, eps, zoo_table, ardist_fit):
                ident = ("RobustBench", e.model, e.dataset, e.threat)
                if ident not in seen:  # records at 8/255 and at 0.031 select the same leaderboard
                    seen.add(ident)
                    entries.append(e)
    return rank_entries(entries, sort)


def leaderboard(db_path: str | Path, dataset: str | None = None, threat: str | None = None,
                with_baselines: bool = False, sort: str = DEFAULT_SORT, fmt: str = "table",
                baselines: pd.DataFrame | None = None, ardist_fit: str = DEFAULT_ARDIST_FIT) -> str:
    """The leaderboard of a results store rendered as ``table``, ``csv``, ``markdown`` or ``html``.

    ``baselines`` defaults to the packaged paper tables (pass ``load_baselines(extra_files=...)``
    to add your own CSV files); ``ardist_fit`` chooses ARDist's curve (``published`` or ``robustbench``).
    """
    if fmt not in FORMATS:
        raise BenchError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}.")
    entries = leaderboard_entries(load_records(db_path), dataset, threat, with_baselines, baselines, sort,
                                  ardist_fit=ardist_fit)
    return render_table(entries, fmt, with_source=with_baselines)
