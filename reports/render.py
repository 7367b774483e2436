"""Rendering ranked leaderboard entries as a text table, CSV, Markdown or an HTML fragment.

Entries of several (dataset, threat) pairs are never one table: :func:`render_table` splits them
(:func:`split_rankings`, keeping their order) and renders one table per ranking under a heading
naming the dataset and the threat (CSV: one file whose ``rank`` restarts in each ranking, with the
``dataset`` and ``threat`` columns). Accuracies measured on n points print with their 95% interval,
``85.00 [70.9, 92.9]``."""
from __future__ import annotations

import csv
import html
import io
import re
from typing import TYPE_CHECKING, Any, Callable, Sequence

from robustbench_lite.errors import BenchError

if TYPE_CHECKING:
    from .leaderboard import Entry

TEXT_COLUMNS = ("model", "defense", "arch", "dataset", "threat", "suite", "verdict")
METRICS = ("clean", "autoattack", "pgd", "robust", "auc", "min_pert", "sum", "ardist")
TEXT_SORT = TEXT_COLUMNS
SORT_COLUMNS = (*METRICS, "n", "seeds", *TEXT_SORT)
ACCURACIES = ("clean", "autoattack", "pgd", "robust")  # measured on n points: printed with a 95% interval
INTERVAL_NOTE = ("[lo, hi]: the 95% Wilson score interval of the accuracy on the row's n test points (pooled over "
                 "its seeds), the sampling error alone; published rows give no n and no interval.")
VERDICT_NOTE = ("suite: the suite that produced the row (its hash when it is not this version's built-in file of that "
                "name); verdict: what the robust accuracy is -- AutoAttack (its only attack at the threat), fast verdict "
                "(the built-in fast suite: AutoAttack-grade, not AutoAttack), worst case (per example over the "
                "suite's attacks at the threat), none (no attack ran at the threat: robust blank, ranked last).")
FORMATS = ("table", "csv", "markdown", "html")
DEFAULT_SORT = "robust"  # the suite's worst-case robust accuracy at the threat
# metric -> decimals shown
DECIMALS = {"clean": 2, "autoattack": 2, "pgd": 2, "robust": 2, "auc": 3, "min_pert": 5, "sum": 2, "ardist": 3}
SCOPED = ("autoattack", "pgd")  # columns named after an attack: its own accuracy, or marked as a cascade stage
CASCADE_MARK = "\u2020"
CASCADE_NOTE = (f"{CASCADE_MARK} the attack ran as a stage of a cascade, only on points earlier attacks left robust: the "
                "value is the worst case through its stage (at most the attack's own accuracy), not its own accuracy.")
ZOO_COLUMNS = ("best_known", "extra_data", "venue")  # shown when RobustBench's entries are in the table
ZOO_NOTE = ("RobustBench rows (source 'published: RobustBench <commit>'; its public model_info at that commit, MIT "
            "licence): autoattack is RobustBench's AutoAttack accuracy, best_known its best-known accuracy where an "
            "evaluation stronger than AutoAttack exists, robust the lower of the two; extra_data: trained with data "
            "beyond the training set.")
ZOO_UNRELIABLE_NOTE = ("Entries RobustBench flags as unreliable (sanity 'UNRELIABLE (RobustBench)': their evaluation is "
                       "known to overestimate robustness) rank after all others too.")
UNRELIABLE_NOTE = ("Entries whose sanity checks failed (chance-level accuracy, predictions collapsed to one class, "
                   "gradient masking, ...) rank after all others: their numbers cannot be trusted.")


def columns(with_source: bool, with_zoo: bool = False) -> list[str]:
    cols = ["rank", *TEXT_COLUMNS, *DECIMALS, "sanity", "n", "seeds"]
    cols += list(ZOO_COLUMNS) if with_zoo else []
    return [*cols, "source"] if with_source else cols


def _has_zoo(entries: Sequence["Entry"]) -> bool:
    return any(e.zoo is not None for e in entries)


def _zoo_cells(e: "Entry") -> list[str]:
    z = e.zoo
    if z is None:
        return ["", "", ""]
    extra = "" if z.additional_data is None else ("yes" if z.additional_data else "no")
    return [_fmt("autoattack", (z.external_acc, None)), extra, z.venue]


def _plain(text: str) -> str:
    """RobustBench's footnote HTML as one line of plain text."""
    return " ".join(html.unescape(re.sub(r"<br\s*/?>|<[^>]+>", " ", text)).split())


def _fmt(metric: str, value: tuple[float | None, float | None], scope: str = "",
         interval: tuple[float, float] | None = None) -> str:
    mean, std = value
    if mean is None:
        return ""
    d = DECIMALS[metric]
    mean = 0.0 if round(mean, d) == 0 else mean  # no "-0.000"
    text = f"{mean:.{d}f}" if std is None else f"{mean:.{d}f} ± {std:.{d}f}"
    text = text + CASCADE_MARK if scope == "cascade" else text
    return text if interval is None else f"{text} [{interval[0]:.1f}, {interval[1]:.1f}]"


def _group_of(e: "Entry") -> tuple[str, str | None, float | None]:
    from .baselines import dataset_key
    from .records import parse_threat

    try:
        norm, eps = parse_threat(e.threat)
    except BenchError:
        return dataset_key(e.dataset), None, None
    return dataset_key(e.dataset), norm, eps


def split_rankings(entries: Sequence["Entry"]) -> list[tuple[tuple[str, str], list["Entry"]]]:
    """((dataset, threat), entries) of each ranking, the entries in their given order. Records rank by
    their own (dataset, threat); a published row joins every ranking of its dataset and threat (eps
    within 2 %, as papers round 8/255 to 0.031), else forms its own."""
    from .records import same_eps

    groups: dict[tuple[str, str], list["Entry"]] = {}
    idents: dict[tuple[str, str], tuple[str, str | None, float | None]] = {}
    for e in entries:
        if not e.published and e.group not in idents:
            groups[e.group], idents[e.group] = [], _group_of(e)

    def same(a: tuple[str, str | None, float | None], b: tuple[str, str | None, float | None]) -> bool:
        if a[0] != b[0] or a[1] != b[1]:
            return False
        return a[2] == b[2] if a[2] is None or b[2] is None else same_eps(a[2], b[2], rel=0.02)

    records = dict(idents)
    for e in entries:  # in the given (ranked) order
        if not e.published:
            groups[e.group].append(e)
            continue
        mine = _group_of(e)
        keys = [k for k, ident in records.items() if same(ident, mine)]
        if not keys:  # a published row with no record of its dataset and threat: rows like it rank together
            keys = [k for k, ident in idents.items() if k not in records and same(ident, mine)][:1]
        if not keys:
            key = (e.dataset, e.threat or "threat not given")
            groups[key], idents[key] = [], mine
            keys = [key]
        for k in keys:
            groups[k].append(e)

    def order(k: tuple[str, str]) -> tuple[Any, ...]:
        ds, norm, eps = idents[k]
        return (ds, k[0], norm is None, norm or "", eps or 0.0, k[1])

    return [(k, groups[k]) for k in sorted(groups, key=order)]


def heading(key: tuple[str, str], n: int) -> str:
    """The title of one ranking."""
    return f"{key[0]}, {key[1]}: {n} entr{'y' if n == 1 else 'ies'} ranked together"


def footnotes(entries: Sequence["Entry"]) -> list[str]:
    """The notes a rendered table needs (cascade marks, unreliable entries ranked last, the ARDist fit
    when not the papers', why a cell is blank)."""
    notes = []
    if any(e.scopes.get(m) == "cascade" for e in entries for m in SCOPED):
        notes.append(CASCADE_NOTE)
    if any(e.intervals for e in entries):
        notes.append(INTERVAL_NOTE)
    if any(e.suite or e.verdict for e in entries):
        notes.append(VERDICT_NOTE)
    if any(e.unreliable for e in entries):
        notes.append(UNRELIABLE_NOTE)
    if _has_zoo(entries):
        notes.append(ZOO_NOTE)
        if any(e.zoo is not None and e.zoo.unreliable for e in entries):
            notes.append(ZOO_UNRELIABLE_NOTE)
        notes += [f"{e.model}: {_plain(e.zoo.footnote)}" for e in entries if e.zoo is not None and e.zoo.footnote
                  and (e.zoo.external_acc is not None or e.zoo.unreliable)]
    notes += list(dict.fromkeys(e.ardist_fit for e in entries if e.ardist_fit))  # the curve, if not the default
    blank: dict[tuple[str, str], list[str]] = {}
    for e in entries:
        for metric, why in e.notes:
            blank.setdefault((metric, why), []).append(e.model)
    notes += [f"{metric} blank for {', '.join(dict.fromkeys(models))}: {why}" for (metric, why), models in blank.items()]
    return notes


def cells(rank: int, e: "Entry", with_source: bool, with_zoo: bool = False) -> list[str]:
    """The display strings of one entry, in :func:`columns` order."""
    row = [str(rank), e.model, e.defense, e.arch, e.dataset, e.threat, e.suite, e.verdict]
    row += [_fmt(m, e.values.get(m, (None, None)), e.scopes.get(m, ""), e.intervals.get(m)) for m in DECIMALS]
    row += [e.sanity, e.n, "" if e.seeds is None else str(e.seeds)]
    row += _zoo_cells(e) if with_zoo else []
    return [*row, e.source] if with_source else row


def _text(entries: Sequence["Entry"], with_source: bool) -> str:
    zoo = with_source and _has_zoo(entries)
    head = columns(with_source, zoo)
    rows = [cells(i + 1, e, with_source, zoo) for i, e in enumerate(entries)]
    widths = [max(len(h), *(len(r[j]) for r in rows)) if rows else len(h) for j, h in enumerate(head)]
    right = {j for j, h in enumerate(head) if h in DECIMALS or h in ("rank", "n", "seeds", "best_known")}

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if j in right else v.ljust(w) for j, (v, w) in enumerate(zip(values, widths))).rstrip()

    out = [line(head), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows] if rows else ["(no entries)"]
    out += footnotes(entries)
    return "\n".join(out) + "\n"


def _grouped(render: Callable[[Sequence["Entry"], bool], str], title: Callable[[str], str],
             sep: str) -> Callable[[Sequence["Entry"], bool], str]:
    def grouped(entries: Sequence["Entry"], with_source: bool) -> str:
        parts = [title(heading(key, len(ents))) + render(ents, with_source) for key, ents in split_rankings(entries)]
        return sep.join(parts) if parts else render([], with_source)
    return grouped


def _markdown(entries: Sequence["Entry"], with_source: bool) -> str:
    zoo = with_source and _has_zoo(entries)
    head = columns(with_source, zoo)
    align = ["---:" if h in DECIMALS or h in ("rank", "n", "seeds", "best_known") else "---" for h in head]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"

    out = [line(head), line(align)] + [line(cells(i + 1, e, with_source, zoo)) for i, e in enumerate(entries)]
    notes = footnotes(entries)
    return "\n".join(out + ([""] + notes if notes else [])) + "\n"


def _html(entries: Sequence["Entry"], with_source: bool) -> str:
    zoo = with_source and _has_zoo(entries)
    head = columns(with_source, zoo)
    num = {j for j, h in enumerate(head) if h in DECIMALS or h in ("rank", "n", "seeds", "best_known")}
    out = ['<table class="leaderboard">', "<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head)
           + "</tr></thead>", "<tbody>"]
    for i, e in enumerate(entries):
        tds = "".join(f'<td class="num">{html.escape(v)}</td>' if j in num else f"<td>{html.escape(v)}</td>"
                      for j, v in enumerate(cells(i + 1, e, with_source, zoo)))
        cls = ' class="published"' if e.published else (' class="failed"' if e.failed_checks else "")
        out.append(f"<tr{cls}>{tds}</tr>")
    out += ["</tbody>", "</table>"]
    out += [f'<p class="note">{html.escape(n)}</p>' for n in footnotes(entries)]
    return "\n".join(out) + "\n"


def _flag(v: bool | None) -> str:
    return "" if v is None else str(v).lower()


def _num(v: float | None) -> str:
    return "" if v is None else repr(round(v, 6))


def _csv(entries: Sequence["Entry"], with_source: bool) -> str:
    """Machine-readable: numbers as numbers, each metric's std in its own ``*_std`` column, each
    accuracy's 95% interval in ``*_ci_low`` / ``*_ci_high``, why a cell is blank in ``blank``."""
    head = ["rank", *TEXT_COLUMNS]
    for m in DECIMALS:
        head += [m, f"{m}_std"] + ([f"{m}_scope"] if m in SCOPED else [])
        head += [f"{m}_ci_low", f"{m}_ci_high"] if m in ACCURACIES else []
    zoo = _has_zoo(entries)
    head += ["sanity", "unreliable", "n", "seeds"] + (list(ZOO_COLUMNS) if zoo else []) + ["published", "source", "blank"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    ranked = [(i + 1, e) for _, ents in split_rankings(entries) for i, e in enumerate(ents)]
    for rank, e in ranked:
        row: list[str] = [str(rank), e.model, e.defense, e.arch, e.dataset, e.threat, e.suite, e.verdict]
        for m in DECIMALS:
            mean, std = e.values.get(m, (None, None))
            row += [_num(mean), _num(std)]
            if m in SCOPED:
                row.append("" if mean is None else e.scopes.get(m, "exact"))
            if m in ACCURACIES:
                ci = e.intervals.get(m)
                row += ["", ""] if ci is None else [_num(ci[0]), _num(ci[1])]
        row += [e.sanity, str(e.unreliable).lower(), e.n, "" if e.seeds is None else str(e.seeds)]
        if zoo:
            z = e.zoo
            row += ["", "", ""] if z is None else [_num(z.external_acc), _flag(z.additional_data), z.venue]
        row += [str(e.published).lower(), e.source, "; ".join(f"{m}: {why}" for m, why in e.notes)]
        w.writerow(row)
    return buf.getvalue()


RENDERERS: dict[str, Callable[[Sequence["Entry"], bool], str]] = {
    "table": _grouped(_text, lambda t: f"== {t} ==\n", "\n"),
    "csv": _csv,
    "markdown": _grouped(_markdown, lambda t: f"#### {t}\n\n", "\n"),
    "html": _grouped(_html, lambda t: f"<h3>{html.escape(t)}</h3>\n", ""),
}


def render_table(entries: Sequence["Entry"], fmt: str = "table", with_source: bool = False) -> str:
    """Render ranked entries, one table per (dataset, threat) ranking (:func:`split_rankings`) under
    its heading; ``fmt`` is one of ``table``, ``csv``, ``markdown``, ``html``."""
    if fmt not in RENDERERS:
        raise BenchError(f"unknown format {fmt!r}; valid: {', '.join(RENDERERS)}.")
    return RENDERERS[fmt](entries, with_source)
