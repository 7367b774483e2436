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

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from robustbench_lite.errors import BenchError
from robustbench_lite.zoo import ZooEntry

from .baselines import ARDIST_FITS, DEFAULT_ARDIST_FIT, dataset_key, load_baselines
from .entries import THREAT_REL_TOL, Entry, published_entries, record_entries, zoo_entries  # noqa: F401
from .records import RecordSummary, format_threat, parse_threat, same_eps, summarize
from .render import (DEFAULT_SORT, FORMATS, METRICS, SORT_COLUMNS, TEXT_SORT, render_table,  # noqa: F401
                     split_rankings)
from .store import load_records

logger = logging.getLogger(__name__)


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
    hash in the name, and, if that is shared too (one checkpoint evaluated twice), their n, evaluation
    seed and date, so that no two rows are mistaken for one."""
    def key(e: Entry, model: str) -> tuple[str, str, str]:
        return model, e.suite, e.verdict

    def count(keys: Sequence[tuple[str, str, str]]) -> dict[tuple[str, str, str], int]:
        out: dict[tuple[str, str, str], int] = {}
        for k in keys:
            out[k] = out.get(k, 0) + 1
        return out

    def label(e: Entry, full: bool) -> str:
        parts = ["+".join(dict.fromkeys(r.sha256[:8] for r in e.records))]
        if full:
            r = e.records[0]
            parts += [f"n={e.n}", *([f"seed {r.seed}"] if r.seed is not None else []), *([r.date] if r.date else [])]
        return f"{e.model} [{', '.join(parts)}]"

    plain = count([key(e, e.model) for e in entries])
    short = [label(e, False) if plain[key(e, e.model)] > 1 and e.records else e.model for e in entries]
    again = count([key(e, m) for e, m in zip(entries, short)])
    names = [label(e, True) if again[key(e, m)] > 1 and e.records else m for e, m in zip(entries, short)]
    return [e if m == e.model else replace(e, model=m) for e, m in zip(entries, names)]


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
    """The ranked entries of one (dataset, threat) ranking ([] when nothing is stored there): the
    ranking of exactly that dataset and threat (``mnist`` does not give ``mnist5k``'s), else the one of
    that dataset whose threat is within ``THREAT_REL_TOL`` (``linf:0.031`` finds ``linf:8/255``)."""
    norm, eps = parse_threat(threat)
    found = leaderboard_rankings(records, dataset, threat, with_baselines, baselines, sort, zoo_table, ardist_fit)
    mine = [r for r in found if r.dataset == dataset]
    for r in mine:
        if r.threat == format_threat(norm, eps):
            return list(r.entries)
    for r in mine:
        try:
            r_norm, r_eps = parse_threat(r.threat)
        except BenchError:
            continue
        if r_norm == norm and same_eps(r_eps, eps, rel=THREAT_REL_TOL):
            return list(r.entries)
    return []


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
