"""The leaderboard site (reports.site) without a browser: its files, grouping, numbers and links.

The browser tests (tests/test_site_browser.py) drive the same site in Chromium; :func:`make_store`
builds the records both use: the report fixtures (mnist5k linf:0.3 and cifar10 linf:8/255, a failed
check, two seeds of one configuration), a real tiny evaluation with its run folder (synthetic
linf:0.3, suite ``tiny``, per_example.csv with minimum perturbations) and an L2 record of another suite.
"""
from __future__ import annotations

import copy
import csv
import json
import re
import shutil
import threading
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import binomtest

from robustbench_lite.cli import main
from robustbench_lite.errors import BenchError
from robustbench_lite.reports.leaderboard import leaderboard_entries
from robustbench_lite.reports.records import summarize
from robustbench_lite.reports.site import SiteFiles, build_site, make_server, store_records
from robustbench_lite.reports.store import add_record

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RECORDS = sorted((FIXTURES / "reports" / "records").glob("*.json"))
RUN = FIXTURES / "site" / "run_natural"


def make_store(tmp: Path) -> Path:
    """A results store of several datasets, threats and suites; one record with its run folder
    (adversarials.npz included), one with a folder that no longer exists, the rest without."""
    db = tmp / "lb.sqlite"
    for p in RECORDS:
        add_record(db, json.loads(p.read_text()), result_path=str(tmp / "gone" / p.stem / "result.json")
                   if p.stem == "trades" else None)
    run = tmp / "runs" / "natural_synthetic"
    shutil.copytree(RUN, run)
    np.savez(run / "adversarials.npz", x=np.zeros((2, 1, 4, 4), np.uint8), y=np.arange(2))
    add_record(db, json.loads((run / "result.json").read_text()), result_path=str(run / "result.json"))
    l2 = copy.deepcopy(json.loads((FIXTURES / "reports" / "records" / "madry_s0.json").read_text()))
    l2["checkpoint"].update(sha256="c" * 64, path="runs/madry_l2/ckpt.pt")
    l2["threat"] = {"norm": "l2", "eps": 1.5}
    l2["suite"] = {"name": "l2suite", "hash": "d" * 64}
    l2.update(clean_accuracy=99.0, robust_accuracy=70.0, n=200, sweeps=[])
    for row in l2["attacks"]:
        row.update(norm="l2", eps=1.5 if row["eps"] is not None else None)
    l2["attacks"] = [r for r in l2["attacks"] if r["attack"] != "min_linf"]
    add_record(db, l2)
    return db


def build(tmp: Path, robustbench: bool = True) -> SiteFiles:
    records, paths = store_records(make_store(tmp))
    return build_site(records, tmp / "site", result_paths=paths, robustbench=robustbench)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> SiteFiles:
    return build(tmp_path_factory.mktemp("site"))


class Page(HTMLParser):
    """The parts of a page the tests read: links, script/style refs, tables (rows of cell texts and
    the row elements' attributes), sections."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.refs: list[tuple[str, str]] = []
        self.tables: list[dict[str, Any]] = []
        self.sections: list[dict[str, str]] = []
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        for k in ("href", "src"):
            if k in a:
                self.refs.append((tag, a[k]))
        if tag == "section":
            self.sections.append(a)
        elif tag == "table":
            self.tables.append({"attrs": a, "head": [], "rows": [], "row_attrs": []})
        elif tag == "tr" and self.tables:
            self.tables[-1]["row_attrs"].append(a)
            self.tables[-1]["_cur"] = []
        elif tag in ("td", "th") and self.tables:
            self._cell = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self.tables:
            self.tables[-1]["_cur"].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self.tables:
            t = self.tables[-1]
            cur = t.pop("_cur", [])
            if not t["head"] and not t["rows"] and t["row_attrs"] == [{}]:
                t["head"] = cur
                t["row_attrs"].pop()
            else:
                t["rows"].append(cur)


def page_of(path: Path) -> Page:
    return Page(path.read_text(encoding="utf-8"))


def board_rows(page: Page) -> list[dict[str, str]]:
    out = []
    for t in page.tables:
        for cells, attrs in zip(t["rows"], t["row_attrs"]):
            out.append({**dict(zip(t["head"], cells)), **{f"@{k}": v for k, v in attrs.items()}})
    return out


def test_site_files_and_no_network(site: SiteFiles) -> None:
    root = site.index.parent
    assert (root / "assets" / "site.js").is_file() and (root / "assets" / "site.css").is_file()
    assert len(site.pages) == len(RECORDS) + 2
    for path in [site.index, *site.pages]:
        text = path.read_text(encoding="utf-8")
        page = Page(text)
        assert not re.search(r"(src|href)=\"(https?:)?//", text), path  # no CDN, nothing fetched
        assert ("script", "assets/site.js" if path == site.index else "../assets/site.js") in page.refs
        for tag, ref in page.refs:  # every link resolves inside the folder (the empty favicon is inline)
            if ref == "data:,":
                continue
            target = (path.parent / ref.split("#")[0]).resolve()
            assert target.is_file() and root.resolve() in target.parents, (path.name, ref)


def test_one_table_per_dataset_and_threat_ranked_as_the_leaderboard(site: SiteFiles) -> None:
    page = page_of(site.index)
    groups = [(s["data-dataset"], s["data-threat"]) for s in page.sections]
    assert groups == [("cifar10", "linf:8/255"), ("mnist5k", "l2:1.5"), ("mnist5k", "linf:0.3"), ("synthetic", "linf:0.3")]
    records, _ = store_records(make_store(site.index.parent.parent / "again"))
    for (ds, threat), table in zip(groups, page.tables):
        rows = [dict(zip(table["head"], cells)) | attrs for cells, attrs in zip(table["rows"], table["row_attrs"])]
        assert {(r["data-dataset"], r["data-threat"]) for r in rows} == {(ds, threat)}  # only comparable rows
        expected = leaderboard_entries(records, dataset=ds, threat=threat, with_baselines=True)
        assert [r["model"].split("seeds:")[0].strip() for r in rows] == [e.model for e in expected]
        assert [r["rank"] for r in rows] == [str(i) for i in range(1, len(rows) + 1)]
    cifar = [dict(zip(page.tables[0]["head"], c)) | a for c, a in zip(page.tables[0]["rows"], page.tables[0]["row_attrs"])]
    assert sum(r["data-origin"] == "published" for r in cifar) > 50  # RobustBench's rows beside ours
    assert {r["@data-origin"] for r in board_rows(page) if r["@data-threat"] != "linf:8/255"} == {"ours"}


def test_intervals_are_wilson_on_n_points(site: SiteFiles) -> None:
    rows = {r["model"].split("seeds:")[0]: r for r in board_rows(page_of(site.index)) if r["@data-origin"] == "ours"}
    natural = summarize(json.loads((FIXTURES / "reports" / "records" / "natural.json").read_text()))
    for name, n, pct in (("nat", 32, 100.0), ("madry_l2", 200, 99.0), ("natural", natural.n, natural.clean)):
        k = round(pct * n / 100)
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")  # scipy, the reference
        assert rows[name]["clean %"] == f"{pct:.2f} [{100 * ci.low:.1f}, {100 * ci.high:.1f}]", name
    assert "[" not in rows["madry"]["clean %"] and "±" in rows["madry"]["clean %"]  # two seeds: mean ± std, no interval


def test_gap_cost_and_flags(site: SiteFiles) -> None:
    page = page_of(site.index)
    rows = {r["model"]: r for r in board_rows(page) if r["@data-origin"] == "ours"}
    nat = json.loads((RUN / "result.json").read_text())
    r = rows["nat"]
    assert r["forwards"] == f"{sum(a['forwards'] for a in nat['attacks']):.0f}"
    assert r["attack s"] == f"{sum(a['seconds'] for a in nat['attacks']):.1f}"
    assert r["AutoAttack %"] == "" and r["gap"] == ""  # the tiny suite runs no AutoAttack: blank, not 0
    m = rows["madry_l2"]
    assert float(m["gap"]) == pytest.approx(float(m["AutoAttack %"].rstrip("†")) - float(m["best known %"]), abs=0.011)
    bad = [x for x in board_rows(page) if x["@data-reliable"] == "unreliable"]
    assert bad and all(x["@data-reliable"] == "unreliable" for x in bad)
    text = site.index.read_text(encoding="utf-8")
    failed = {c["name"] for p in RECORDS for c in json.loads(p.read_text()).get("checks", []) if not c["passed"]}
    for name in failed:  # each failed check is a flag whose tooltip says what it means
        assert re.search(rf'data-tip="Failed check {name}: [^"]+What to do: [^"]+"', text), name


def _csv_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_evaluation_page_matches_summary_csv_and_links_run_files(site: SiteFiles) -> None:
    root = site.index.parent
    nat = next(p for p in site.pages if p.name.startswith("nat-"))
    page = page_of(nat)
    table = next(t for t in page.tables if t["attrs"].get("class") == "attacks")
    assert [table["head"], *table["rows"]] == _csv_rows(RUN / "summary.csv")
    links = {ref for tag, ref in page.refs if tag == "a"}
    slug = nat.stem
    for name in ("per_example.csv", "summary.csv", "result.json", "sweeps.csv", "checks.json", "adversarials.npz"):
        assert f"../runs/{slug}/{name}" in links, name
        assert (root / "runs" / slug / name).read_bytes() == (root.parent / "runs" / "natural_synthetic" / name).read_bytes()
    text = nat.read_text(encoding="utf-8")
    assert "bench verify " in text and "bench reproduce " in text and "natural_synthetic --out" in text
    assert RUN.joinpath("result.json").read_text().count("710fbbc96714") and "710fbbc96714b44d" in text  # checkpoint hash
    checks = next(t for t in page.tables if t["attrs"].get("class") == "checks")
    assert len(checks["rows"]) == len(json.loads((RUN / "checks.json").read_text()))


def test_minimum_perturbation_histogram_counts_per_example_csv(site: SiteFiles) -> None:
    nat = next(p for p in site.pages if p.name.startswith("nat-"))
    with (RUN / "per_example.csv").open(newline="") as f:
        found = [float(r["min_norm[min_linf]"]) for r in csv.DictReader(f) if r["min_norm[min_linf]"]]
    text = nat.read_text(encoding="utf-8")
    counts = [int(c) for c in re.findall(r'data-tip="(\d+) point\(s\) with minimum perturbation', text)]
    assert sum(counts) == len(found) > 0
    assert f"{len(found)} point(s) with a perturbation found, mean {sum(found) / len(found):.4g}" in text
    assert "(AUC " in text  # the eps-sweep curves carry their AUC


def test_records_without_run_folder_get_files_from_the_record(site: SiteFiles) -> None:
    root = site.index.parent
    trades = next(p for p in site.pages if p.name.startswith("trades"))
    text = trades.read_text(encoding="utf-8")
    assert "per_example.csv: missing: the run folder is not found" in text
    rec = json.loads((root / "runs" / trades.stem / "result.json").read_text())
    assert rec["checkpoint"]["sha256"] == json.loads((FIXTURES / "reports" / "records" / "trades.json").read_text())["checkpoint"]["sha256"]
    rows = _csv_rows(root / "runs" / trades.stem / "summary.csv")
    assert rows[0][:3] == ["label", "attack", "kind"] and all(r[1] and r[2] for r in rows[1:])  # format 1 upgraded
    table = next(t for t in page_of(trades).tables if t["attrs"].get("class") == "attacks")
    assert [table["head"], *table["rows"]] == rows


def test_tradeoff_points_inside_the_frame_with_tooltips(site: SiteFiles) -> None:
    text = site.index.read_text(encoding="utf-8")
    for svg in re.findall(r"<svg.*?</svg>", text, flags=re.S):
        frame = re.search(r'class="frame" x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)"', svg)
        x0, y0, w, h = map(float, frame.groups())
        centres = [(float(a), float(b)) for a, b in re.findall(r'<circle cx="([\d.-]+)" cy="([\d.-]+)"', svg)]
        centres += [(float(a) + 4.5, float(b) + 4.5) for a, b in re.findall(r'<rect x="([\d.-]+)" y="([\d.-]+)" width="9"', svg)]
        assert centres
        for cx, cy in centres:
            assert x0 + 5 <= cx <= x0 + w - 5 and y0 + 5 <= cy <= y0 + h - 5, (cx, cy)
        assert len(re.findall(r"<g class=\"pt[^\"]*\" tabindex=\"0\" data-tip=\"[^\"]+: clean [\d.]+%, robust", svg)) == \
            len(re.findall(r"<g class=\"pt", svg))
    assert "No tradeoff curve is drawn" in text and "<polyline" not in text  # no curve fitted elsewhere


def test_empty_and_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="no result records"):
        build_site([], tmp_path / "s")
    with pytest.raises(BenchError, match="not a robustbench_lite result"):
        build_site([{"format": "x"}], tmp_path / "s")
    with pytest.raises(BenchError, match="has no index.html"):
        make_server(tmp_path)


def test_cli_report_writes_the_site_and_serve_serves_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = make_store(tmp_path)
    out = tmp_path / "out"
    assert main(["report", "--db", str(db), "--out", str(out)]) == 0
    assert "wrote the site" in capsys.readouterr().out
    assert (out / "report.md").is_file() and "<script" not in (out / "report.html").read_text(encoding="utf-8")
    assert 'id="search"' in (out / "index.html").read_text(encoding="utf-8")
    (out / "report.md").write_text("kept")
    assert main(["serve", str(tmp_path / "nothing"), "--port", "0"]) == 2  # one sentence, nothing lost
    assert "has no index.html" in capsys.readouterr().err and (out / "report.md").read_text() == "kept"
    server = make_server(out)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        for ref in ("index.html", "assets/site.js", *[f"eval/{p.name}" for p in (out / "eval").iterdir()]):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/{ref}", timeout=10) as r:
                assert r.status == 200
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("xy", [[(0.0, 0.0), (100.0, 100.0)], [(100.0, 12.5)], [(0.0, 0.0)], [(99.2, 99.4), (99.4, 99.2)],
                                [(50.0, 50.0)] * 3])
def test_scatter_never_puts_a_point_on_the_frame(xy: list[tuple[float, float]]) -> None:
    from robustbench_lite.reports.site_svg import Point, scatter

    svg = scatter([Point(f"p{i}", x, y, "ours", f"p{i}: clean {x}%, robust {y}%") for i, (x, y) in enumerate(xy)], "x", "y", "t")
    x0, y0, w, h = map(float, re.search(r'class="frame" x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)"',
                                        svg).groups())
    centres = [(float(a), float(b)) for a, b in re.findall(r'<circle cx="([\d.-]+)" cy="([\d.-]+)"', svg)]
    assert len(centres) == len(xy)
    for cx, cy in centres:  # the marker's radius (5.5) and more inside
        assert x0 + 6 <= cx <= x0 + w - 6 and y0 + 6 <= cy <= y0 + h - 6, (cx, cy)
    ticks = [float(t) for t in re.findall(r'class="tick"[^>]*>([-\d.e]+)<', svg)]
    assert ticks and min(ticks) >= -5 and max(ticks) <= 105  # accuracy axes stay near [0, 100]


def test_degenerate_and_hostile_records_build_and_stay_escaped(tmp_path: Path) -> None:
    rec = json.loads((FIXTURES / "reports" / "records" / "natural.json").read_text())
    odd = copy.deepcopy(rec)
    odd["checkpoint"].update(sha256="e" * 64, path='runs/<img src=x onerror="alert(1)">/ckpt.pt', defense="<b>x</b>")
    odd.update(n=0, clean_accuracy=50.0, robust_accuracy=None, attacks=[], sweeps=[], checks=["not a check"])
    odd.pop("summary", None)
    files = build_site([rec, odd], tmp_path / "s")
    for path in [files.index, *files.pages]:
        text = path.read_text(encoding="utf-8")
        assert "<img src=x" not in text and "<b>x</b>" not in text
    rows = {r["model"]: r for r in board_rows(page_of(files.index))}
    bad = rows['<img src=x onerror="alert(1)">']
    assert bad["clean %"] == "50.00" and bad["robust %"] == ""  # no interval on 0 points and bad["attack s"] == "" and bad["gap"] == ""
    assert "No per-attack rows" in next(p for p in files.pages if "onerror" in p.name).read_text(encoding="utf-8")


@pytest.mark.slow
def test_bench_serve_prints_the_address_it_serves(tmp_path: Path) -> None:
    import subprocess
    import sys

    files = build_site([json.loads((FIXTURES / "reports" / "records" / "natural.json").read_text())], tmp_path / "s")
    proc = subprocess.Popen([sys.executable, "-m", "robustbench_lite", "serve", str(files.index.parent)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        url = re.search(r"at (http://127\.0\.0\.1:\d+/)", line).group(1)
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200 and b'id="search"' in r.read()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_suite_column_says_what_the_robust_accuracy_is(site: SiteFiles) -> None:
    rows = board_rows(page_of(site.index))
    ours = [r for r in rows if r["@data-origin"] == "ours"]
    assert all(r["suite / verdict"].endswith("worst case over its attacks") for r in ours)
    assert {r["suite / verdict"].split(" · ")[0] for r in ours} >= {"quick", "tiny", "l2suite"}
    zoo = [r for r in rows if "RobustBench" in r["suite / verdict"]]
    assert zoo and all(r["suite / verdict"].endswith("lower of AutoAttack and best known") for r in zoo)
    for r in zoo:  # RobustBench ranks by the lower of the two
        aa, best = r["AutoAttack %"], r["best known %"]
        if aa and best:
            assert float(r["robust %"]) == pytest.approx(min(float(aa), float(best)), abs=0.006)


def test_every_check_the_evaluation_writes_is_described_on_the_site() -> None:
    """Each check name the evaluation can write (model, result, indicator and attack-path checks)
    has its meaning and remedy in the site's help, never the 'does not describe' fallback."""
    import re

    from robustbench_lite.evaluations.attack_paths import PATH_CHECKS
    from robustbench_lite.evaluations.indicators import INDICATOR_CHECKS
    from robustbench_lite.reports.site_checks import CHECK_HELP

    root = Path(__file__).resolve().parents[1] / "evaluations"
    written = {m for f in root.glob("*.py") for m in re.findall(r'_check\("([a-z_]+)"', f.read_text())}
    written |= set(INDICATOR_CHECKS) | {name for name, *_ in PATH_CHECKS}
    assert "breaks_verified" in written and "above_chance_level" in written
    assert sorted(written - set(CHECK_HELP)) == []


def test_evaluation_page_shows_the_recorded_command_line(tmp_path: Path) -> None:
    from robustbench_lite.reports.site import build_site

    rec = json.loads(sorted((Path(__file__).resolve().parent / "fixtures" / "reports" / "records").glob("*.json"))[0].read_text())
    rec["provenance"] = {"argv": ["bench", "eval", "--model", "m.pt", "--suite", "fast"],
                         "project": {"version": "0.1.0", "commit": "abc1234"}, "threads": {"intra_op": 2}}
    page = build_site([rec], tmp_path / "s").pages[0].read_text()
    assert "bench eval --model m.pt --suite fast" in page and "commit abc1234" in page
    assert "not recorded in result.json" not in page
