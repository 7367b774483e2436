"""The leaderboard as a static website: ``index.html`` (one ranked table per (dataset, threat)), a
page per evaluation, the run files, and our own small script and stylesheet. No CDN, no network:
the folder works opened from disk (``file://``) and from any static host.

The tables are rendered here, in HTML, from :func:`reports.leaderboard.leaderboard_entries` called
once per (dataset, threat) found in the records, so only comparable rows are ranked together; the
script (``site_assets/site.js``) adds sorting, the search box, the filters and tooltips.

Example::

    >>> records, paths = store_records("runs/leaderboard.sqlite")
    >>> build_site(records, "runs/site", result_paths=paths).index
    PosixPath('runs/site/index.html')
"""
from __future__ import annotations

import functools
import html
import http.server
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from robustbench_lite.errors import BenchError
from robustbench_lite.results import wilson_interval

from .baselines import dataset_key, load_baselines
from .leaderboard import Entry, leaderboard_entries
from .records import summarize, validate_record
from .site_checks import FLAG_HELP, failed_flag_tip
from .site_pages import Evaluation, evaluation_page, evaluation_slug, page
from .site_svg import Point, scatter

logger = logging.getLogger(__name__)

ASSETS = Path(__file__).with_name("site_assets")
ASSET_FILES = ("site.css", "site.js")
e = html.escape
# (key, header, tooltip of the header); the numbers are in %, except AUC, min. perturbation, ARDist and cost
COLUMNS = (
    ("rank", "rank", "rank in this (dataset, threat) table: robust accuracy, unreliable entries last"),
    ("model", "model", "the checkpoint (several seeds of one configuration read mean ± std)"),
    ("recipe", "recipe", "the defense recipe that trained it"),
    ("arch", "architecture", "the network architecture"),
    ("suite", "suite / verdict", "the attack suite and what its robust accuracy is"),
    ("clean", "clean %", "clean accuracy with its 95% Wilson interval on n points"),
    ("robust", "robust %", "robust accuracy (the worst case over every attack run) with its 95% Wilson interval"),
    ("n", "n", "points evaluated"),
    ("autoattack", "AutoAttack %", "AutoAttack accuracy († the worst case through its cascade stage)"),
    ("best_known", "best known %", "best-known (adaptive) accuracy: ours, the worst case over every attack of the "
                                   "suite; RobustBench's, its stronger-than-AutoAttack evaluation where one exists"),
    ("gap", "gap", "AutoAttack minus best known, in points: how much AutoAttack alone overestimates"),
    ("auc", "AUC", "mean area under the eps-sweep curves"),
    ("min_pert", "min. pert.", "mean minimum Linf perturbation found"),
    ("ardist", "ARDist", "signed distance to the dataset's published clean/robust tradeoff curve"),
    ("seconds", "attack s", "attack seconds, summed over the suite's attacks (mean over seeds)"),
    ("forwards", "forwards", "forward passes of the attacks (mean over seeds)"),
    ("backwards", "backwards", "backward passes of the attacks (mean over seeds)"),
    ("flags", "reliability", "sanity checks and flags: hover a flag for what it means"),
)
NUMERIC = {"rank", "clean", "robust", "n", "autoattack", "best_known", "gap", "auc", "min_pert", "ardist", "seconds",
           "forwards", "backwards"}
DECIMALS = {"clean": 2, "robust": 2, "autoattack": 2, "best_known": 2, "gap": 2, "auc": 3, "min_pert": 4,
            "ardist": 3, "seconds": 1, "forwards": 0, "backwards": 0}


@dataclass(frozen=True)
class SiteFiles:
    """What :func:`build_site` wrote."""

    index: Path
    pages: tuple[Path, ...]
    tables: int


@dataclass(frozen=True)
class Cell:
    text: str           # HTML
    sort: str = ""      # the value sorting uses ('' = missing: sorts last)
    title: str = ""     # why a cell is blank, or what it holds


def publish(db_path: str | Path, out_dir: str | Path, *, baselines: pd.DataFrame | None = None,
            robustbench: bool = False) -> tuple[Any, SiteFiles]:
    """Everything ``bench report`` (and ``bench demo``) writes from the store at ``db_path`` into
    ``out_dir``: report.md, report.html and the figures (:func:`reports.report.build_report`), then the
    site (index.html, a page per evaluation, the runs' files). Returns (ReportFiles, SiteFiles)."""
    from .report import build_report

    records, paths = store_records(db_path)
    baselines = load_baselines() if baselines is None else baselines
    files = build_report(records, out_dir, baselines=baselines, robustbench=robustbench, html_name="report.html")
    site = build_site(records, out_dir, result_paths=paths, baselines=baselines, robustbench=robustbench,
                      links=(("report.md", "report.md"), ("report.html", "report.html")))
    return files, site


def store_records(db_path: str | Path) -> tuple[list[dict[str, Any]], list[str | None]]:
    """The stored records and the ``result.json`` path each came from (None where not recorded)."""
    import json

    from .store import to_dataframe

    df = to_dataframe(db_path, include_record=True)
    paths = [None if pd.isna(p) else str(p) for p in df["result_path"]]
    return [json.loads(t) for t in df["record"]], paths


def _num(v: float | None, key: str) -> str:
    if v is None:
        return ""
    d = DECIMALS.get(key, 2)
    return f"{0.0 if round(v, d) == 0 else v:.{d}f}"


def _accuracy_cell(entry: Entry, metric: str) -> Cell:
    mean, std = entry.values.get(metric, (None, None))
    if mean is None:
        return Cell("", "", f"no {metric} accuracy")
    text = _num(mean, metric) + (f" ± {_num(std, metric)}" if std is not None else "")
    mark = "†" if entry.scopes.get(metric) == "cascade" else ""
    if entry.published:
        return Cell(e(text + mark), repr(mean), "no interval: the number of evaluated points is not published")
    if len(entry.records) != 1 or entry.records[0].n is None:
        return Cell(e(text + mark), repr(mean), f"no interval: the mean of {len(entry.records)} seeds (± their std)")
    n = entry.records[0].n
    if n <= 0:
        return Cell(e(text + mark), repr(mean), "no interval: no point was evaluated (n = 0)")
    successes = round(mean * n / 100)
    ci = wilson_interval(successes, n) if abs(100.0 * successes / n - mean) <= 0.006 + 1e-9 else None
    if ci is None:
        return Cell(e(text + mark), repr(mean), f"no interval: {mean}% is not a whole number of {n} points")
    return Cell(f'{e(text + mark)} <span class="ci">[{ci[0]:.1f}, {ci[1]:.1f}]</span>', repr(mean),
                f"95% Wilson interval on n = {n} points: {ci[0]:.2f} to {ci[1]:.2f}")


def _cost(entry: Entry, evals: Sequence[Evaluation], key: str) -> Cell:
    if entry.published or not evals:
        return Cell("", "", "not published")
    totals = []
    for ev in evals:
        rows = [r for r in ev.record.get("attacks") or [] if isinstance(r, Mapping)]
        vals = [r.get(key) for r in rows]
        if not rows or any(not isinstance(v, (int, float)) or isinstance(v, bool) for v in vals):
            return Cell("", "", f"{key} not recorded for every attack")
        totals.append(float(sum(vals)))
    mean = sum(totals) / len(totals)
    return Cell(_num(mean, key), repr(mean), f"{key} of the attacks" + (f", mean of {len(totals)} seeds" if len(totals) > 1 else ""))


def _flags(entry: Entry) -> tuple[str, bool]:
    """(the flags' HTML, reliable?)"""
    badges = []
    for name in dict.fromkeys(n for _, n, _ in entry.failed_checks):
        badges.append(f'<span class="flag bad" tabindex="0" data-tip="{e(failed_flag_tip(name))}" '
                      f'title="{e(failed_flag_tip(name))}">{e(name)}</span>')
    if entry.zoo is not None and entry.zoo.unreliable:
        tip = FLAG_HELP["unreliable (RobustBench)"]
        badges.append(f'<span class="flag bad" tabindex="0" data-tip="{e(tip)}" title="{e(tip)}">unreliable '
                      "(RobustBench)</span>")
    if not entry.published and entry.sanity == "not run":
        tip = FLAG_HELP["checks not run"]
        badges.append(f'<span class="flag warn" tabindex="0" data-tip="{e(tip)}" title="{e(tip)}">checks not run</span>')
    if any(v == "cascade" for v in entry.scopes.values()):
        tip = FLAG_HELP["cascade"]
        badges.append(f'<span class="flag warn" tabindex="0" data-tip="{e(tip)}" title="{e(tip)}">cascade †</span>')
    if not badges and not entry.published:
        badges.append(f'<span class="flag ok" tabindex="0" data-tip="{e(FLAG_HELP["ok"])}" '
                      f'title="{e(FLAG_HELP["ok"])}">ok</span>')
    return " ".join(badges), not entry.unreliable


def _row(rank: int, entry: Entry, evals: Sequence[Evaluation], threat: str) -> tuple[dict[str, Cell], dict[str, str]]:
    """The cells of one leaderboard line in the table of ``threat`` and its filter attributes."""
    if evals:
        links = [f'<a href="{e(ev.href)}">{e(ev.summary.model if len(evals) > 1 else entry.model)}</a>' for ev in evals]
        model = links[0] if len(links) == 1 else f"{e(entry.model)}<br><small>seeds: {', '.join(links)}</small>"
    else:
        model = e(entry.model)
    suites = sorted({s.suite_name for s in entry.records})
    if suites:
        suite = ", ".join(suites) + " · worst case over its attacks"
    elif entry.zoo is not None:
        suite = f"{entry.source} · lower of AutoAttack and best known"
    else:
        suite = f"{entry.source} · as the paper reports"
    cells = {"rank": Cell(str(rank), str(rank)), "model": Cell(model, entry.model.lower()),
             "recipe": Cell(e(entry.defense), entry.defense.lower()), "arch": Cell(e(entry.arch), entry.arch.lower()),
             "suite": Cell(e(suite), suite.lower()),
             "clean": _accuracy_cell(entry, "clean"), "robust": _accuracy_cell(entry, "robust")}
    ns = sorted({s.n for s in entry.records if s.n is not None})
    cells["n"] = Cell(e(entry.n), str(ns[0]) if ns else "", "" if entry.n else "not published")
    aa = entry.get("autoattack")
    best = entry.get("best_known") if entry.zoo is not None else entry.get("robust")
    cells["autoattack"] = Cell(e(_num(aa, "autoattack") + ("†" if entry.scopes.get("autoattack") == "cascade" else "")),
                               "" if aa is None else repr(aa), "" if aa is not None else "no AutoAttack accuracy")
    cells["best_known"] = Cell(_num(best, "best_known"), "" if best is None else repr(best),
                               "" if best is not None else "no evaluation stronger than AutoAttack published")
    gap = aa - best if aa is not None and best is not None else None
    cells["gap"] = Cell(_num(gap, "gap"), "" if gap is None else repr(gap),
                        "" if gap is not None else "needs both AutoAttack and best-known accuracy")
    for key in ("auc", "min_pert", "ardist"):
        mean, std = entry.values.get(key, (None, None))
        why = dict(entry.notes).get(key, "") if mean is None else ""
        text = "" if mean is None else _num(mean, key) + (f" ± {_num(std, key)}" if std is not None else "")
        cells[key] = Cell(e(text), "" if mean is None else repr(mean), why)
    for key in ("seconds", "forwards", "backwards"):
        cells[key] = _cost(entry, evals, key)
    flags, reliable = _flags(entry)
    cells["flags"] = Cell(flags, "0" if reliable else "1")
    attrs = {"dataset": dataset_key(entry.dataset), "threat": threat,  # the table's (linf:0.031 is at 8/255)
             "suite": ", ".join(suites) if suites else "published", "recipe": entry.defense,
             "reliable": "reliable" if reliable else "unreliable", "origin": "published" if entry.published else "ours"}
    return cells, attrs


def _table(caption: str, rows: Sequence[tuple[dict[str, Cell], dict[str, str]]]) -> str:
    head = "".join(f'<th scope="col" title="{e(tip)}"{" class=num" if k in NUMERIC else ""} data-key="{k}" '
                   f'data-type="{"num" if k in NUMERIC else "text"}"><button type="button">{e(label)}</button></th>'
                   for k, label, tip in COLUMNS)
    body = []
    for cells, attrs in rows:
        data = " ".join(f'data-{k}="{e(v)}"' for k, v in attrs.items())
        cls = " ".join(c for c in (attrs["origin"], "" if attrs["reliable"] == "reliable" else "unreliable") if c)
        tds = "".join(
            (f'<th scope="row" class="model" data-v="{e(c.sort)}">{c.text}</th>' if k == "model" else
             f'<td{" class=num" if k in NUMERIC else ""} data-v="{e(c.sort)}"'
             f'{f" title={chr(34)}{e(c.title)}{chr(34)}" if c.title else ""}>{c.text}</td>')
            for k, c in ((k, cells[k]) for k, _, _ in COLUMNS))
        body.append(f'<tr class="{cls}" {data}>{tds}</tr>')
    return (f'<div class="scroll"><table class="board"><caption>{e(caption)}</caption><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _tradeoff(title: str, entries: Sequence[Entry]) -> str:
    points = []
    for x in entries:
        clean, robust = x.get("clean"), x.get("robust")
        if clean is None or robust is None:
            continue
        kind = "unreliable" if x.unreliable else ("published" if x.published else "ours")
        aa = x.get("autoattack")
        tip = (f"{x.model} ({'published' if x.published else 'ours'}{', unreliable' if x.unreliable else ''}): "
               f"clean {clean:.2f}%, robust {robust:.2f}%" + (f", AutoAttack {aa:.2f}%" if aa is not None else ""))
        points.append(Point(x.model, clean, robust, kind, tip))
    if not points:
        return ""
    svg = scatter(points, "clean accuracy (%)", "robust accuracy (%)", f"{title}: clean against robust accuracy")
    return (f'<figure class="tradeoff">{svg}<figcaption>Clean against robust accuracy of the entries of {e(title)} '
            "only (circles: ours, squares: published, crosses: unreliable; hover or focus a point for its numbers). No "
            "tradeoff curve is drawn: each published curve was fitted to one dataset and threat.</figcaption></figure>")


def _groups(summaries: Sequence[Any]) -> list[tuple[str, str]]:
    return sorted({(dataset_key(s.dataset), s.threat) for s in summaries}, key=lambda g: (g[0], g[1]))


def _select(name: str, label: str, values: Sequence[str]) -> str:
    opts = "".join(f'<option value="{e(v)}">{e(v)}</option>' for v in values)
    return (f'<label>{e(label)} <select data-filter="{name}"><option value="">all</option>{opts}</select></label>')


def build_site(records: Sequence[Mapping[str, Any]], out_dir: str | Path, *,
               result_paths: Sequence[str | Path | None] | None = None, baselines: pd.DataFrame | None = None,
               robustbench: bool = False, title: str = "robustbench_lite leaderboard",
               links: Sequence[tuple[str, str]] = ()) -> SiteFiles:
    """Write the site for ``records`` into ``out_dir``: index.html, eval/<slug>.html per record, the run
    files under runs/<slug>/ and assets/. ``result_paths[i]`` is where record i's result.json was written
    (its folder holds the run's files); ``robustbench`` adds the published rows (RobustBench's and the
    papers') of each table's dataset and threat; ``links`` are (label, relative href) shown at the top."""
    records = [validate_record(dict(r), where=f"record {i + 1}") for i, r in enumerate(records)]
    if not records:
        raise BenchError("there are no result records to build a site from; add results with `bench eval` first.")
    paths = list(result_paths) if result_paths is not None else [None] * len(records)
    if len(paths) != len(records):
        raise BenchError(f"{len(paths)} result paths were given for {len(records)} records.")
    out = Path(out_dir)
    (out / "eval").mkdir(parents=True, exist_ok=True)
    (out / "assets").mkdir(exist_ok=True)
    for name in ASSET_FILES:
        shutil.copyfile(ASSETS / name, out / "assets" / name)
    if baselines is None:
        baselines = load_baselines()
    evals: dict[tuple[Any, ...], list[Evaluation]] = {}
    slugs: set[str] = set()
    for rec, p in zip(records, paths):
        s = summarize(rec)
        slug = evaluation_slug(s)
        while slug in slugs:
            slug += "_"
        slugs.add(slug)
        run_dir = Path(p).parent if p else None
        ev = Evaluation(rec, s, run_dir if run_dir is not None and run_dir.is_dir() else None, slug)
        evals.setdefault((s.sha256, s.member, s.suite_hash, s.norm, s.eps, s.model), []).append(ev)
    all_evals = [ev for group in evals.values() for ev in group]
    pages = []
    for ev in all_evals:
        path = out / ev.href
        path.write_text(evaluation_page(ev, out), encoding="utf-8")
        pages.append(path)
    sections, seen, all_attrs = [], [], []
    for ds, threat in _groups([ev.summary for ev in all_evals]):
        entries = leaderboard_entries(records, dataset=ds, threat=threat, with_baselines=robustbench,
                                      baselines=baselines)
        ours = {id(r) for x in entries for r in x.records}
        if not entries or ours in seen:
            continue  # the same table again: 0.031 selects the records at 8/255 too
        seen.append(ours)
        rows = []
        for rank, x in enumerate(entries, 1):
            mine = [ev for r in x.records for ev in evals.get((r.sha256, r.member, r.suite_hash, r.norm, r.eps, r.model), [])]
            mine = list({ev.slug: ev for ev in mine}.values())
            rows.append(_row(rank, x, mine, threat))
        all_attrs += [a for _, a in rows]
        name = f"{ds} {threat}"
        sections.append(f'<section class="board" data-dataset="{e(ds)}" data-threat="{e(threat)}" '
                        f'aria-labelledby="h-{len(sections)}"><h2 id="h-{len(sections)}">{e(name)}</h2>'
                        f"{_table(f'{name}: {len(entries)} entries ranked by robust accuracy (unreliable last)', rows)}"
                        f"{_tradeoff(name, entries)}</section>")
    filters = "".join(_select(k, label, sorted({a[k] for a in all_attrs})) for k, label in (
        ("dataset", "dataset"), ("threat", "threat"), ("suite", "suite"), ("recipe", "recipe"),
        ("reliable", "reliability"), ("origin", "ours / published")))
    top = "".join(f'<a href="{e(h)}">{e(t)}</a> ' for t, h in links)
    body = (f"<header><h1>{e(title)}</h1><p>{len(records)} evaluation(s) in {len(sections)} table(s), one per "
            "(dataset, threat): only comparable rows are ranked together. Accuracies in %, with 95% Wilson intervals "
            "in brackets; click a column (or focus it and press Enter) to sort, hover a flag for what it means, "
            f"open a model for its attacks, checks and files. {top}</p></header>"
            f'<form class="controls" role="search" onsubmit="return false"><label>search <input type="search" '
            f'id="search" placeholder="any text, e.g. a model or recipe"></label>{filters}</form>'
            f'<p id="status" class="status" aria-live="polite"></p><main>{"".join(sections)}</main>')
    index = out / "index.html"
    index.write_text(page(title, body), encoding="utf-8")
    logger.info("wrote the site %s: %d table(s), %d evaluation page(s)", index, len(sections), len(pages))
    return SiteFiles(index, tuple(pages), len(sections))


def make_server(folder: str | Path, port: int = 0) -> http.server.ThreadingHTTPServer:
    """An HTTP server of ``folder`` on 127.0.0.1 (port 0: a free one); call ``serve_forever``."""
    root = Path(folder)
    if not (root / "index.html").is_file():
        raise BenchError(f"{root} has no index.html; build a site there with `bench report --out {root}` first.")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    try:
        return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as err:
        raise BenchError(f"cannot serve on 127.0.0.1:{port} ({err.strerror}); choose another --port.") from None
