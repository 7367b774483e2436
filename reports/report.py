"""A Markdown report and a static HTML page built from result records.

``build_report`` writes ``report.md``, ``index.html`` and the figures (PNG + PDF) into one folder;
the HTML is self-contained apart from the image files beside it.

Example::

    >>> files = build_report(load_records("runs/leaderboard.sqlite"), "runs/report")
    >>> files.html
    PosixPath('runs/report/index.html')
"""
from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from robustbench_lite.errors import BenchError

from .baselines import load_baselines
from .figures import FigureFile, make_figures
from .leaderboard import Entry, leaderboard_entries
from .records import RecordSummary, adaptive_lines, summarize, validate_record
from .render import render_table

logger = logging.getLogger(__name__)

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1300px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; }
th { background: #f0f0f0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.published { color: #555; background: #fafafa; } tr.failed td { background: #fff1f0; }
.fail { color: #b00020; font-weight: 600; } .ok { color: #1b7a1b; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; border: 1px solid #eee; }
code { background: #f4f4f4; padding: 0 3px; }
"""


REPORT_FILES = ("report.md", "report.html", "index.html")
FIGURES_DIR = "figures"
SITE_DIRS = ("eval", "runs", "assets")  # the site's folders beside figures/ (reports/site.py)


def check_report_inputs(out_dir: str | Path, inputs: Sequence[str | Path]) -> None:
    """A :class:`BenchError`, before anything is written, when a file :func:`build_report` would write
    into ``out_dir`` (``report.md``, ``index.html``, anything under ``figures/``) is one of ``inputs``
    (the results store and its ``-wal``/``-shm`` files, baseline CSV files)."""
    from .store import same_path

    out = Path(out_dir)
    folders = [(out / d).resolve() for d in (FIGURES_DIR, *SITE_DIRS)]
    for item in inputs:
        p = Path(item)
        clash = any(same_path(p, out / name) for name in REPORT_FILES)
        if clash or any(p.resolve().is_relative_to(f) for f in folders):
            raise BenchError(f"--out {out} would overwrite the input {p} (the report writes {', '.join(REPORT_FILES)} "
                             f"and {', '.join(d + '/' for d in (FIGURES_DIR, *SITE_DIRS))} there); choose another --out folder.")


@dataclass(frozen=True)
class ReportFiles:
    """What :func:`build_report` wrote."""

    markdown: Path
    html: Path
    figures: tuple[FigureFile, ...]


def _scalar_analyses(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    analyses = record.get("analyses")
    if not isinstance(analyses, Mapping):
        return []
    out = []
    for k, v in analyses.items():
        if isinstance(v, (int, float, str, bool)) or v is None:
            out.append((str(k), f"{v:.4g}" if isinstance(v, float) else str(v)))
    return out


def _check_rows(summaries: Sequence[RecordSummary]) -> list[tuple[str, int, int, list[Mapping[str, Any]]]]:
    return [(s.model, len(s.checks), s.checks_failed, list(s.failed_checks)) for s in summaries]


def _published_tables(records: Sequence[Mapping[str, Any]], summaries: Sequence[RecordSummary],
                      baselines: pd.DataFrame) -> list[tuple[str, list[Entry]]]:
    out = []
    for ds in sorted({s.dataset for s in summaries}):
        entries = leaderboard_entries(records, dataset=ds, with_baselines=True, baselines=baselines)
        if any(e.published for e in entries):
            out.append((ds, entries))
    return out


def _markdown(title: str, records: Sequence[Mapping[str, Any]], summaries: Sequence[RecordSummary],
              entries: Sequence[Entry], published: Sequence[tuple[str, list[Entry]]],
              figures: Sequence[FigureFile], out_dir: Path) -> str:
    md = [f"# {title}", "", f"{len(records)} result record(s), {len(entries)} leaderboard entr"
          f"{'y' if len(entries) == 1 else 'ies'}. Accuracies in %, with their 95% interval on the entry's n points. "
          "One ranking per (dataset, threat): only rows at the same dataset and threat are ranked together, by the "
          "robust accuracy at the threat (entries with a failed sanity check, then entries with no robust accuracy, "
          "last); each row names its suite and the kind of verdict; several seeds of one configuration read "
          "mean ± std.", "", "## Leaderboard", "",
          render_table(entries, "markdown")]
    md += ["## Sanity checks", "", "| model | checks | failed |", "| --- | ---: | ---: |"]
    for model, total, failed, _ in _check_rows(summaries):
        md.append(f"| {model} | {total} | {failed} |")
    md.append("")
    failures = [(m, c) for m, _, _, fails in _check_rows(summaries) for c in fails]
    ran = sum(total for _, total, _, _ in _check_rows(summaries))
    unchecked = [m for m, total, _, _ in _check_rows(summaries) if not total]
    if failures:
        md += ["Failed checks:", ""]
        md += [f"- **{m}**: `{c.get('name', '?')}` failed: {c.get('detail', '')}" for m, c in failures]
    elif ran:
        md.append(f"All {ran} checks passed.")
    else:
        md.append("No check ran: these results were recorded without sanity checks.")
    if unchecked and ran:
        md += ["", "No check ran for: " + ", ".join(unchecked) + "."]
    adaptive = [(s.model, adaptive_lines(r)) for r, s in zip(records, summaries)]
    if any(lines for _, lines in adaptive):
        md += ["", "## Adaptive evaluation", "", "Remedies the failed attack-failure indicators called for "
               "(docs/evaluation.md, Adaptive evaluation); each adds an `adaptive[...]` row to the worst case.", ""]
        md += [f"- **{m}**: " + "; ".join(lines) for m, lines in adaptive if lines]
    md += ["", "## Figures", ""]
    for f in figures:
        md += [f"### {f.title}", "", f"![{f.title}]({f.png.relative_to(out_dir).as_posix()})", "",
               f"[PDF]({f.pdf.relative_to(out_dir).as_posix()})", ""]
    for ds, ents in published:
        md += [f"## Compared with published results: {ds}", "", render_table(ents, "markdown", with_source=True)]
    scalars = [(s.model, _scalar_analyses(r)) for r, s in zip(records, summaries)]
    if any(items for _, items in scalars):
        md += ["## Model analyses (scalars)", ""]
        for model, items in scalars:
            if items:
                md.append(f"- **{model}**: " + ", ".join(f"{k} = {v}" for k, v in items))
        md.append("")
    md += ["## Provenance", "", "| model | checkpoint sha256 | suite | threat | n | seed | date | versions |",
           "| --- | --- | --- | --- | ---: | ---: | --- | --- |"]
    for s in summaries:
        versions = ", ".join(f"{k} {v}" for k, v in sorted(s.versions.items()))
        md.append(f"| {s.model} | `{s.sha256[:12]}` | {s.suite_name} (`{s.suite_hash[:12]}`) | {s.threat} | "
                  f"{s.n if s.n is not None else ''} | {s.seed if s.seed is not None else ''} | {s.date} | {versions} |")
    return "\n".join(md) + "\n"


def _html(title: str, records: Sequence[Mapping[str, Any]], summaries: Sequence[RecordSummary],
          entries: Sequence[Entry], published: Sequence[tuple[str, list[Entry]]],
          figures: Sequence[FigureFile], out_dir: Path) -> str:
    e = html.escape
    h = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{e(title)}</title>",
         f"<style>{CSS}</style></head><body>", f"<h1>{e(title)}</h1>",
         f"<p>{len(records)} result record(s). Accuracies in %, with their 95% interval on the entry's n points. "
         "One ranking per (dataset, threat): only rows at the same dataset and threat are ranked together, by the "
         "robust accuracy at the threat; each row names its suite and the kind of verdict; several seeds of one "
         "configuration read mean ± std. Rows with a failed sanity check are shaded and ranked last, then rows with "
         "no robust accuracy.</p>",
         "<h2>Leaderboard</h2>", render_table(entries, "html"), "<h2>Sanity checks</h2>",
         "<table><thead><tr><th>model</th><th>checks</th><th>failed</th><th>details</th></tr></thead><tbody>"]
    for model, total, failed, fails in _check_rows(summaries):
        detail = "<br>".join(f'<span class="fail">{e(str(c.get("name", "?")))}</span>: {e(str(c.get("detail", "")))}'
                             for c in fails) or ('<span class="ok">all passed</span>' if total else "no checks run")
        h.append(f'<tr><td>{e(model)}</td><td class="num">{total}</td><td class="num">{failed}</td><td>{detail}</td></tr>')
    h += ["</tbody></table>", "<h2>Figures</h2>"]
    for f in figures:
        png, pdf = f.png.relative_to(out_dir).as_posix(), f.pdf.relative_to(out_dir).as_posix()
        h.append(f'<figure><img src="{e(png)}" alt="{e(f.title)}"><figcaption>{e(f.title)} '
                 f'(<a href="{e(pdf)}">PDF</a>)</figcaption></figure>')
    for ds, ents in published:
        h += [f"<h2>Compared with published results: {e(ds)}</h2>",
              f"<details><summary>{sum(x.published for x in ents)} published rows</summary>",
              render_table(ents, "html", with_source=True), "</details>"]
    scalars = [(s.model, _scalar_analyses(r)) for r, s in zip(records, summaries)]
    if any(items for _, items in scalars):
        h.append("<h2>Model analyses (scalars)</h2><ul>")
        h += [f"<li><b>{e(m)}</b>: " + ", ".join(f"{e(k)} = {e(v)}" for k, v in items) + "</li>"
              for m, items in scalars if items]
        h.append("</ul>")
    h.append("<h2>Provenance</h2><table><thead><tr><th>model</th><th>checkpoint sha256</th><th>suite</th>"
             "<th>threat</th><th>n</th><th>seed</th><th>date</th><th>versions</th></tr></thead><tbody>")
    for s in summaries:
        versions = ", ".join(f"{k} {v}" for k, v in sorted(s.versions.items()))
        h.append(f"<tr><td>{e(s.model)}</td><td><code>{e(s.sha256[:12])}</code></td><td>{e(s.suite_name)} "
                 f"<code>{e(s.suite_hash[:12])}</code></td><td>{e(s.threat)}</td>"
                 f'<td class="num">{"" if s.n is None else s.n}</td><td class="num">{"" if s.seed is None else s.seed}'
                 f"</td><td>{e(s.date)}</td><td>{e(versions)}</td></tr>")
    h += ["</tbody></table>", "</body></html>"]
    return "\n".join(h) + "\n"


def build_report(records: Sequence[Mapping[str, Any]], out_dir: str | Path,
                 baselines: pd.DataFrame | None = None, title: str = "robustbench_lite report",
                 robustbench: bool = False, html_name: str = "index.html") -> ReportFiles:
    """Write figures, ``report.md`` and ``index.html`` for ``records`` into ``out_dir``.

    ``html_name`` names the static HTML page (``bench report`` writes ``report.html``: its
    ``index.html`` is the leaderboard site, :func:`reports.site.build_site`).

    ``baselines`` defaults to the packaged paper tables (``load_baselines(extra_files=...)`` adds yours);
    ``robustbench`` adds RobustBench's leaderboard entries (same dataset and threat) to the tradeoff figures.
    """
    records = [validate_record(dict(r), where=f"record {i + 1}") for i, r in enumerate(records)]
    if not records:
        raise BenchError("there are no result records to report on; add results with `bench eval` first.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if baselines is None:
        baselines = load_baselines()
    summaries = [summarize(r) for r in records]
    entries = leaderboard_entries(records, baselines=baselines)
    published = _published_tables(records, summaries, baselines)
    figures = tuple(make_figures(records, out / "figures", baselines, robustbench))
    md_path, html_path = out / "report.md", out / html_name
    md_path.write_text(_markdown(title, records, summaries, entries, published, figures, out), encoding="utf-8")
    html_path.write_text(_html(title, records, summaries, entries, published, figures, out), encoding="utf-8")
    logger.info("wrote %s and %s with %d figures", md_path, html_path, len(figures))
    return ReportFiles(md_path, html_path, figures)
