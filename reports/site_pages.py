"""The site's page per evaluation, and the page skeleton every page of the site shares.

An :class:`Evaluation` is one stored record with the run folder it came from (``result_path``'s
folder, when it still exists). Its files are copied into ``runs/<slug>/`` of the site so the links
work from disk and from any static host; a file the run folder lacks is written from the record
where the record holds it (``result.json``, ``summary.csv``) and otherwise listed as missing.
"""
from __future__ import annotations

import csv
import hashlib
import html
import json
import logging
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from robustbench_lite.files import csv_text
from robustbench_lite.results import SUMMARY_COLUMNS, num, upgrade_record

from .records import RecordSummary, adaptive_lines
from .site_checks import check_help
from .site_svg import Series, histogram, lines

logger = logging.getLogger(__name__)

RUN_FILES = ("result.json", "summary.csv", "per_example.csv", "sweeps.csv", "checks.json", "adversarials.npz")
e = html.escape


def page(title: str, body: str, depth: int = 0) -> str:
    """A whole HTML page: our stylesheet and script only (no network), ``depth`` folders below the root."""
    up = "../" * depth
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{e(title)}</title><link rel=\"icon\" href=\"data:,\"><link rel=\"stylesheet\" href=\"{up}assets/site.css\"></head><body>"
            f'<div id="tip" role="tooltip" hidden></div>{body}'
            f'<script src="{up}assets/site.js"></script></body></html>\n')


@dataclass(frozen=True)
class Evaluation:
    """One stored evaluation: its record, its summary, its run folder (or None) and its page's slug."""

    record: Mapping[str, Any]
    summary: RecordSummary
    run_dir: Path | None
    slug: str

    @property
    def href(self) -> str:
        return f"eval/{self.slug}.html"


def evaluation_slug(s: RecordSummary) -> str:
    """A stable file name for an evaluation: the model's name and a hash of the store's unique key."""
    key = f"{s.sha256}|{s.member}|{s.suite_hash}|{s.norm}|{s.eps!r}"
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", s.model).strip("._-")[:40] or "model"
    return f"{stem}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def summary_table_rows(site_run: Path) -> tuple[list[str], list[dict[str, str]]]:
    """(columns, rows as text) of the per-attack table: the site's copy of summary.csv, as written
    (:func:`copy_run_files` writes it from the record's rows where the run folder has none)."""
    path = site_run / "summary.csv"
    if not path.is_file():
        return [], []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = [dict(r) for r in reader]
        return list(reader.fieldnames or []), rows


def _record_summary_rows(record: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    record = upgrade_record(record)  # format 1 rows get their registry name, kind and exactness
    rows = record.get("summary") or record.get("attacks") or []
    return [r for r in rows if isinstance(r, Mapping)]


def copy_run_files(ev: Evaluation, site_run: Path) -> list[tuple[str, str]]:
    """Copy the run's files into ``site_run``; (file name, note) for each file, note '' when copied
    from the run folder, else how it was made or why it is missing."""
    site_run.mkdir(parents=True, exist_ok=True)
    out = []
    for name in RUN_FILES:
        src = ev.run_dir / name if ev.run_dir is not None else None
        dst = site_run / name
        if src is not None and src.is_file():
            shutil.copyfile(src, dst)
            out.append((name, ""))
        elif name == "result.json":
            dst.write_text(json.dumps(ev.record, indent=1, default=str) + "\n", encoding="utf-8")
            out.append((name, "written from the stored record (the run folder is not found)"))
        elif name == "summary.csv" and _record_summary_rows(ev.record):
            rows = _record_summary_rows(ev.record)
            extra = [k for r in rows for k in r if k not in SUMMARY_COLUMNS]
            dst.write_text(csv_text(rows, [*SUMMARY_COLUMNS, *dict.fromkeys(extra)]), encoding="utf-8")
            out.append((name, "written from the stored record's summary rows (the run folder has no summary.csv)"))
        elif name in ("result.json", "summary.csv", "per_example.csv"):
            out.append((name, "missing: the run folder is not found" if ev.run_dir is None or not ev.run_dir.is_dir()
                        else "missing from the run folder"))
            logger.info("%s: %s %s", ev.summary.model, name, out[-1][1])
    return out


def min_norm_columns(per_example: Path) -> dict[str, list[float]]:
    """The ``min_norm[<label>]`` columns of a per_example.csv: the minimum perturbation found per
    point (empty cells, where none was found, are left out)."""
    if not per_example.is_file():
        return {}
    with per_example.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        cols = [c for c in reader.fieldnames or [] if c.startswith("min_norm[")]
        out: dict[str, list[float]] = {c[len("min_norm["):-1]: [] for c in cols}
        for row in reader:
            for c in cols:
                v = num(row.get(c) or None)
                if v is not None:
                    out[c[len("min_norm["):-1]].append(v)
    return out


def _sweep_series(record: Mapping[str, Any]) -> dict[str, list[tuple[Series, float | None]]]:
    """Per norm: one series per attack of the record's eps sweeps, with its AUC."""
    by: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in record.get("sweeps") or []:
        if isinstance(r, Mapping) and num(r.get("eps")) is not None and num(r.get("accuracy")) is not None:
            by.setdefault((str(r.get("norm", "")), str(r.get("label") or r.get("attack"))), []).append(r)
    out: dict[str, list[tuple[Series, float | None]]] = {}
    for (norm, label), rows in sorted(by.items()):
        rows = sorted(rows, key=lambda r: num(r["eps"]) or 0.0)
        auc = next((num(r.get("auc")) for r in rows if num(r.get("auc")) is not None), None)
        name = f"{label} (AUC {auc:.4g})" if auc is not None else f"{label} (no AUC)"
        xs = tuple(float(num(r["eps"]) or 0.0) for r in rows)
        ys = tuple(float(num(r["accuracy"]) or 0.0) for r in rows)
        tips = tuple(f"{label} at {norm} eps {x:.6g}: accuracy {y:.2f}%" for x, y in zip(xs, ys))
        out.setdefault(norm, []).append((Series(name, xs, ys, tips), auc))
    return out


def _table(cols: Sequence[str], rows: Sequence[Mapping[str, str]], caption: str, cls: str = "") -> str:
    head = "".join(f'<th scope="col">{e(c)}</th>' for c in cols)
    body = "".join("<tr>" + "".join(
        f'<td class="{"num" if num(r.get(c)) is not None else ""}">{e(r.get(c) or "")}</td>' for c in cols) + "</tr>"
        for r in rows)
    return (f'<div class="scroll"><table class="{cls}"><caption>{e(caption)}</caption><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def _checks_section(record: Mapping[str, Any]) -> str:
    checks = [c for c in record.get("checks") or [] if isinstance(c, Mapping)]
    if not checks:
        return ("<h2>Checks and indicators</h2><p>No check ran for this evaluation: its suite runs none, so its "
                "numbers are unchecked (docs/checks.md).</p>")
    rows = []
    for c in checks:
        name = str(c.get("name", "?"))
        meaning, todo = check_help(name)
        passed = c.get("passed") is True
        count = "" if c.get("count") is None else (f"{c['count']} of {c['n']}" if c.get("n") is not None else str(c["count"]))
        rows.append({"check": name, "verdict": "passed" if passed else "FAILED", "indicator": str(c.get("indicator") or ""),
                     "count": count, "detail": str(c.get("detail", "")), "a failure means": meaning,
                     "what to do on a failure": todo})
    cols = ["check", "verdict", "indicator", "count", "detail", "a failure means", "what to do on a failure"]
    failed = sum(1 for c in checks if c.get("passed") is not True)
    return (f"<h2>Checks and indicators</h2><p>{len(checks)} ran, {failed} failed. docs/checks.md explains each.</p>"
            + _table(cols, rows, "Sanity checks and attack-failure indicators", "checks"))


def _provenance(ev: Evaluation) -> str:
    r, s = ev.record, ev.summary
    ck = r.get("checkpoint") or {}
    items = [("checkpoint", str(ck.get("path") or "")), ("checkpoint sha256", s.sha256), ("member", s.member),
             ("architecture", s.arch), ("dataset", s.dataset), ("defense recipe", s.defense),
             ("defense config", json.dumps(s.defense_config, sort_keys=True) if s.defense_config else ""),
             ("suite", f"{s.suite_name} (hash {s.suite_hash})"), ("threat", s.threat),
             ("points (n)", "" if s.n is None else str(s.n)), ("seed", "" if s.seed is None else str(s.seed)),
             ("date", s.date), ("versions", ", ".join(f"{k} {v}" for k, v in sorted(s.versions.items()))),
             ("device", str(r.get("device") or ""))]
    prov = r.get("provenance") if isinstance(r.get("provenance"), Mapping) else {}
    command = prov.get("argv")
    if isinstance(command, (list, tuple)):
        command = " ".join(str(c) for c in command)
    items.append(("command line", str(command) if command else "not recorded in result.json"))
    project = prov.get("project") if isinstance(prov.get("project"), Mapping) else {}
    if project:
        items.append(("project", f"robustbench_lite {project.get('version') or '?'}, commit {project.get('commit') or 'unknown'}"))
    for key in ("dtype", "autocast", "threads", "deterministic"):
        if prov.get(key) is not None:
            items.append((key, json.dumps(prov[key], sort_keys=True) if isinstance(prov[key], Mapping) else str(prov[key])))
    if r.get("merged_from"):
        items.append(("merged from", ", ".join(str(x) for x in r["merged_from"])))
    dl = "".join(f"<dt>{e(k)}</dt><dd>{e(v) or '<span class=muted>not recorded</span>'}</dd>" for k, v in items)
    return f'<h2>Provenance</h2><dl class="prov">{dl}</dl>'


def evaluation_page(ev: Evaluation, site_root: Path) -> str:
    """The page of one evaluation (written to ``site_root / ev.href`` by the caller); copies its files."""
    s = ev.summary
    site_run = site_root / "runs" / ev.slug
    files = copy_run_files(ev, site_run)
    cols, rows = summary_table_rows(site_run)
    parts = [f'<nav><a href="../index.html">&larr; leaderboard</a></nav><h1>{e(s.model)}</h1>',
             f"<p>{e(s.dataset)} &middot; {e(s.threat)} &middot; suite {e(s.suite_name)} &middot; recipe "
             f"{e(s.defense or 'unknown')} &middot; {e(s.arch)}. Clean accuracy "
             f"{'' if s.clean is None else f'{s.clean:.2f}%'}, robust accuracy (worst case over the suite) "
             f"{'' if s.robust is None else f'{s.robust:.2f}%'} on {'' if s.n is None else s.n} points.</p>"]
    parts.append("<h2>Per-attack results</h2>")
    if rows:
        parts.append(f"<p>One row per (attack, eps), as in <a href=\"../runs/{e(ev.slug)}/summary.csv\">summary.csv</a>"
                     " (accuracies in %, seconds of attack time, forward and backward passes, and the attack-failure "
                     "indicator counts silent_success, no_gradient, still_improving where measured).</p>")
        parts.append(_table(cols, rows, f"Per-attack results of {s.model}", "attacks"))
    else:
        parts.append("<p>No per-attack rows: the record holds neither summary nor attack rows.</p>")
    parts.append("<h2>Robust accuracy against eps</h2>")
    sweeps = _sweep_series(ev.record)
    if not sweeps:
        parts.append("<p>No eps sweep was run in this suite.</p>")
    for norm, series in sweeps.items():
        parts.append(f"<figure>{lines([x for x, _ in series], f'eps ({norm})', 'accuracy (%)', f'{s.model}: accuracy against {norm} eps')}"
                     f"<figcaption>{e(norm)} sweeps; AUC is the normalised area under each curve.</figcaption></figure>")
    parts.append("<h2>Minimum perturbations</h2>")
    norms = min_norm_columns(site_run / "per_example.csv")
    if not (site_run / "per_example.csv").is_file():
        parts.append("<p>per_example.csv is not available, so the distribution cannot be drawn.</p>")
    elif not any(norms.values()):
        parts.append("<p>No minimum-norm attack found a perturbation in this run.</p>")
    for label, values in norms.items():
        if values:
            med = sorted(values)[len(values) // 2]
            parts.append(f"<figure>{histogram(values, f'minimum perturbation ({label})', f'{label}: minimum perturbations')}"
                         f"<figcaption>{e(label)}: {len(values)} point(s) with a perturbation found, mean "
                         f"{math.fsum(values) / len(values):.4g}, median {med:.4g} (from per_example.csv).</figcaption></figure>")
    parts.append(_checks_section(ev.record))
    adaptive = adaptive_lines(ev.record)
    if adaptive:
        parts.append("<h2>Adaptive evaluation</h2><ul>" + "".join(f"<li>{e(t)}</li>" for t in adaptive) + "</ul>")
    parts.append(_provenance(ev))
    links = "".join(f'<li><a href="../runs/{e(ev.slug)}/{e(n)}">{e(n)}</a>{" (" + e(note) + ")" if note else ""}</li>'
                    if not note.startswith("missing") else f"<li>{e(n)}: {e(note)}</li>" for n, note in files)
    parts.append(f'<h2>Files</h2><ul class="files">{links}</ul>')
    run = str(ev.run_dir) if ev.run_dir is not None else "RUN_DIR"
    where = "" if ev.run_dir is not None else " (RUN_DIR: the folder of this run's result.json, not recorded in the store)"
    parts.append(f"<h2>Verify or reproduce</h2><p>Check the stored numbers against the run's files, or run the "
                 f"evaluation again into a new folder{e(where)}:</p><pre><code>bench verify {e(run)}\n"
                 f"bench reproduce {e(run)} --out {e(run)}-reproduced</code></pre>")
    return page(f"{s.model}: {s.dataset} {s.threat}", "<main>" + "".join(parts) + "</main>", depth=1)
