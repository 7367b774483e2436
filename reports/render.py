"""Rendering ranked leaderboard entries as a text table, CSV, Markdown or an HTML fragment."""
from __future__ import annotations

import csv
import html
import io
import re
from typing import TYPE_CHECKING, Callable, Sequence

from robustbench_lite.errors import BenchError

if TYPE_CHECKING:
    from .leaderboard import Entry

TEXT_COLUMNS = ("model", "defense", "arch", "dataset", "threat")
METRICS = ("clean", "autoattack", "pgd", "robust", "auc", "min_pert", "sum", "ardist")
TEXT_SORT = TEXT_COLUMNS
SORT_COLUMNS = (*METRICS, "n", "seeds", *TEXT_SORT)
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


def _fmt(metric: str, value: tuple[float | None, float | None], scope: str = "") -> str:
    mean, std = value
    if mean is None:
        return ""
    d = DECIMALS[metric]
    mean = 0.0 if round(mean, d) == 0 else mean  # no "-0.000"
    text = f"{mean:.{d}f}" if std is None else f"{mean:.{d}f} ± {std:.{d}f}"
    return text + CASCADE_MARK if scope == "cascade" else text


def footnotes(entries: Sequence["Entry"]) -> list[str]:
    """The notes a rendered table needs (cascade marks, unreliable entries ranked last, the ARDist fit
    when not the papers', why a cell is blank)."""
    notes = []
    if any(e.scopes.get(m) == "cascade" for e in entries for m in SCOPED):
        notes.append(CASCADE_NOTE)
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
    row = [str(rank), e.model, e.defense, e.arch, e.dataset, e.threat]
    row += [_fmt(m, e.values.get(m, (None, None)), e.scopes.get(m, "")) for m in DECIMALS]
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
    """Machine-readable: numbers as numbers, each metric's std in its own ``*_std`` column."""
    head = ["rank", *TEXT_COLUMNS]
    for m in DECIMALS:
        head += [m, f"{m}_std"] + ([f"{m}_scope"] if m in SCOPED else [])
    zoo = _has_zoo(entries)
    head += ["sanity", "unreliable", "n", "seeds"] + (list(ZOO_COLUMNS) if zoo else []) + ["published", "source"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    for i, e in enumerate(entries):
        row: list[str] = [str(i + 1), e.model, e.defense, e.arch, e.dataset, e.threat]
        for m in DECIMALS:
            mean, std = e.values.get(m, (None, None))
            row += [_num(mean), _num(std)]
            if m in SCOPED:
                row.append("" if mean is None else e.scopes.get(m, "exact"))
        row += [e.sanity, str(e.unreliable).lower(), e.n, "" if e.seeds is None else str(e.seeds)]
        if zoo:
            z = e.zoo
            row += ["", "", ""] if z is None else [_num(z.external_acc), _flag(z.additional_data), z.venue]
        row += [str(e.published).lower(), e.source]
        w.writerow(row)
    return buf.getvalue()


RENDERERS: dict[str, Callable[[Sequence["Entry"], bool], str]] = {
    "table": _text, "csv": _csv, "markdown": _markdown, "html": _html,
}


def render_table(entries: Sequence["Entry"], fmt: str = "table", with_source: bool = False) -> str:
    """Render ranked entries; ``fmt`` is one of ``table``, ``csv``, ``markdown``, ``html``."""
    if fmt not in RENDERERS:
        raise BenchError(f"unknown format {fmt!r}; valid: {', '.join(RENDERERS)}.")
    return RENDERERS[fmt](entries, with_source)
