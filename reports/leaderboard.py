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
cifar100) at the threat it was fitted at (Linf 8/255), else a cubic fitted to the published (clean,
AutoAttack) points of that dataset and threat when at least 4 exist, else it stays blank with the reason. ``ardist_fit="robustbench"`` uses a cubic fitted to RobustBench's entries
of the same dataset and threat (:func:`reports.baselines.curve_for_robustbench`; the same refusals) and
says so, with the commit, under the table. A fitted cubic is never extrapolated: ARDist stays blank for
a clean accuracy outside the range of the points it was fitted on (the five published MNIST points span
98.8-99.4% clean).

Rankings. Only comparable rows are ranked together: one ranking per (dataset, threat)
(:class:`Ranking`), rendered under a heading that names both. A published row (a paper's table,
RobustBench) joins only the ranking of its own dataset and threat (eps within ``THREAT_REL_TOL``).
Each row names the suite that produced it (``suite``: this version's built-in suite by name; any
other suite text with its hash) and the kind of verdict its robust accuracy is (``verdict``:
``AutoAttack``, ``fast verdict``, ``worst case`` of the suite's attacks, ``none`` when no attack ran
at the threat); the same model under two suites is two rows. Seeds merge only when every record
names a distinct ``checkpoint.seed``; otherwise each record is its own row, and rows that would still
read alike get the checkpoint's hash in their name. Accuracies on n points carry their 95% Wilson
score interval (:func:`robustbench_lite.results.wilson_interval`; over the pooled points of the
seeds). A row with no robust accuracy shows the cell blank with the reason and ranks after every row
with one (after the rows with failed checks' rule, which comes first).

Public functions (used by the report and the website):

- :func:`leaderboard_rankings` -- the :class:`Ranking` objects of records (+ baselines), each ranked;
- :func:`ranking_groups` -- the (dataset, threat) pairs present, in ranking order;
- :func:`ranking_entries` -- the ranked entries of one (dataset, threat);
- :func:`rankings` -- split already-built entries into rankings;
- :func:`leaderboard_entries` -- every ranking's entries, concatenated in ranking order;
- :func:`leaderboard` -- a store rendered as text, CSV, Markdown or HTML, one table per ranking.

Example::

    >>> print(leaderboard("runs/leaderboard.sqlite", dataset="cifar10", threat="linf:8/255"))
"""
from __future__ import annotations

import json
import logging
import os.path
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from robustbench_lite.errors import BenchError
from robustbench_lite.results import mean_std, wilson_interval
from robustbench_lite.zoo import ZooEntry, all_entries, source_commit

from .ardist import Cubic, ardist_or_reason
from .baselines import (ARDIST_FITS, DEFAULT_ARDIST_FIT, ardist_curve, baseline_entries, dataset_key, load_baselines,
                        robustbench_points)
from .records import RecordSummary, format_threat, parse_threat, same_eps, summarize
from .render import (ACCURACIES, DEFAULT_SORT, FORMATS, METRICS, SORT_COLUMNS, TEXT_SORT, render_table,  # noqa: F401
                     split_rankings)
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
            sanity=("FAILED: " + ", ".join(failed_names) if failed else "ok") if has_checks else "not run",
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
                         published=True, source=f"published: {e['source']}", ardist_fit=fit_note,
                         verdict=("AutoAttack" if e["autoattack"] is not None else "PGD (lowest published)")
                         if e["robust"] is not None else "none",
                         notes=(() if e["robust"] is not None else (("robust", "the paper gives no robust accuracy"),))))
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
                         source=source, zoo=z, ardist_fit=fit_note,
                         verdict=("AutoAttack" if z.external_acc is None else "best known") if robust is not None else "none",
                         notes=(() if robust is not None else (("robust", "RobustBench gives no robust accuracy"),))))
    return out


def rank_entries(entries: Sequence[Entry], sort: str = DEFAULT_SORT) -> list[Entry]:
    """Entries ordered by ``sort``: numbers descending, text ascending, missing values last; an
    entry with a failed sanity check after every entry without one."""
    if sort not in SORT_COLUMNS:
        raise BenchError(f"unknown sort column {sort!r}; valid: {', '.join(SORT_COLUMNS)}.")

    def key(e: Entry) -> tuple[Any, ...]:
        tie = (-(e.get("clean") or 0.0), e.model, e.source)
        first = (e.unreliable, e.get("robust") is None)  # broken, then unmeasured rows last whatever the sort
        if sort in TEXT_SORT:
            value = getattr(e, sort)
            return (*first, value == "", value.lower(), *tie)
        if sort == "n":
            value = float(e.n.split("-")[0]) if e.n else None
        elif sort == "seeds":
            value = e.seeds
        else:
            value = e.get(sort)
        return (*first, value is None, -(value or 0.0), *tie)

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
    """Every ranking's entries (:func:`leaderboard_rankings`), concatenated in ranking order; a
    published row that joins two rankings (e.g. ``mnist`` and ``mnist5k``) appears in each."""
    return [e for r in leaderboard_rankings(records, dataset, threat, with_baselines, baselines, sort, zoo_table,
                                            ardist_fit) for e in r.entries]


@dataclass(frozen=True)
class Ranking:
    """The ranked entries of one (dataset, threat): the only rows that may be compared."""

    dataset: str
    threat: str
    entries: tuple[Entry, ...]

    @property
    def title(self) -> str:
        return f"{self.dataset}, {self.threat}"


def _distinguish(entries: Sequence[Entry]) -> list[Entry]:
    """Rows of one ranking that would read alike (same model, suite, verdict) get their checkpoint's
    hash in the name, so that no two rows are mistaken for one."""
    count: dict[tuple[str, str, str], int] = {}
    for e in entries:
        count[(e.model, e.suite, e.verdict)] = count.get((e.model, e.suite, e.verdict), 0) + 1
    out = []
    for e in entries:
        if count[(e.model, e.suite, e.verdict)] > 1 and e.records:
            shas = "+".join(dict.fromkeys(r.sha256[:8] for r in e.records))
            e = replace(e, model=f"{e.model} [{shas}]")
        out.append(e)
    return out


def rankings(entries: Sequence[Entry], sort: str = DEFAULT_SORT) -> list[Ranking]:
    """Split entries into one :class:`Ranking` per (dataset, threat) (published rows join the ranking
    of their own dataset and threat; :func:`reports.render.split_rankings`), each ranked by ``sort``."""
    return [Ranking(ds, threat, tuple(_distinguish(rank_entries(ents, sort))))
            for (ds, threat), ents in split_rankings(entries)]


def _all_entries(records: Iterable[Mapping[str, Any]], dataset: str | None, threat: str | None,
                 with_baselines: bool, baselines: pd.DataFrame | None, sort: str,
                 zoo_table: Sequence[ZooEntry] | None, ardist_fit: str) -> list[Entry]:
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
    return entries


def leaderboard_rankings(records: Iterable[Mapping[str, Any]], dataset: str | None = None,
                         threat: str | None = None, with_baselines: bool = False,
                         baselines: pd.DataFrame | None = None, sort: str = DEFAULT_SORT,
                         zoo_table: Sequence[ZooEntry] | None = None,
                         ardist_fit: str = DEFAULT_ARDIST_FIT) -> list[Ranking]:
    """One :class:`Ranking` per (dataset, threat) of ``records`` (only ``dataset`` / ``threat`` if given),
    plus, ``with_baselines``, the published rows and RobustBench's leaderboard entries of the same
    datasets and threats (``zoo_table`` defaults to the packaged one). ``ardist_fit``: ``published``
    (the papers' curves) or ``robustbench`` (a cubic fitted on RobustBench's leaderboard of each line's
    dataset and threat)."""
    return rankings(_all_entries(records, dataset, threat, with_baselines, baselines, sort, zoo_table, ardist_fit),
                    sort)


def ranking_groups(records: Iterable[Mapping[str, Any]], with_baselines: bool = False,
                   baselines: pd.DataFrame | None = None) -> list[tuple[str, str]]:
    """The (dataset, threat) pairs the records (and, ``with_baselines``, the published rows joining
    them) are ranked in, in ranking order."""
    return [(r.dataset, r.threat) for r in leaderboard_rankings(records, with_baselines=with_baselines,
                                                                baselines=baselines)]


def ranking_entries(records: Iterable[Mapping[str, Any]], dataset: str, threat: str, with_baselines: bool = False,
                    baselines: pd.DataFrame | None = None, sort: str = DEFAULT_SORT,
                    zoo_table: Sequence[ZooEntry] | None = None,
                    ardist_fit: str = DEFAULT_ARDIST_FIT) -> list[Entry]:
    """The ranked entries of one (dataset, threat) ranking ([] when nothing is stored there)."""
    found = leaderboard_rankings(records, dataset, threat, with_baselines, baselines, sort, zoo_table, ardist_fit)
    return list(found[0].entries) if found else []


def _present(records: Sequence[Mapping[str, Any]]) -> str:
    counts: dict[tuple[str, str], int] = {}
    for s in (summarize(r) for r in records):
        counts[(s.dataset, s.threat)] = counts.get((s.dataset, s.threat), 0) + 1
    return "; ".join(f"{ds} {th} ({n})" for (ds, th), n in sorted(counts.items()))


def leaderboard(db_path: str | Path, dataset: str | None = None, threat: str | None = None,
                with_baselines: bool = False, sort: str = DEFAULT_SORT, fmt: str = "table",
                baselines: pd.DataFrame | None = None, ardist_fit: str = DEFAULT_ARDIST_FIT) -> str:
    """The leaderboard of a results store rendered as ``table``, ``csv``, ``markdown`` or ``html``.

    ``baselines`` defaults to the packaged paper tables (pass ``load_baselines(extra_files=...)``
    to add your own CSV files); ``ardist_fit`` chooses ARDist's curve (``published`` or ``robustbench``).
    """
    if fmt not in FORMATS:
        raise BenchError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}.")
    records = load_records(db_path)
    if not records and not (with_baselines and dataset):
        raise BenchError(f"the results store {db_path} holds no results yet; add some with `bench eval --model "
                         f"CKPT --db {db_path}`.")
    entries = leaderboard_entries(records, dataset, threat, with_baselines, baselines, sort, ardist_fit=ardist_fit)
    if not entries:
        wanted = " and ".join(x for x in (f"dataset {dataset!r}" if dataset else "",
                                          f"threat {threat!r}" if threat else "") if x)
        held = f"it holds {_present(records)}" if records else "it holds no results"
        raise BenchError(f"no entries for {wanted or 'these filters'} in {db_path}; {held}.")
    return render_table(entries, fmt, with_source=with_baselines)
