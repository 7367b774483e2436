"""The report: figures, report.md and index.html built from the fixture records only."""
from __future__ import annotations

import ast
import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from robustbench_lite.reports.figures import analyses_figure, parameter_groups
from robustbench_lite.reports.records import summarize
from robustbench_lite.reports.report import ReportFiles, build_report
from robustbench_lite.errors import BenchError

ROOT = Path(__file__).resolve().parents[1]
RECORDS = sorted((Path(__file__).resolve().parent / "fixtures" / "reports" / "records").glob("*.json"))


def records() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in RECORDS]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> ReportFiles:
    return build_report(records(), tmp_path_factory.mktemp("report"))


def test_files_exist(report: ReportFiles) -> None:
    assert report.markdown.is_file() and report.html.is_file()
    kinds = sorted(f.kind for f in report.figures)
    # 2 (dataset, threat) x (AutoAttack, worst case); 1 record with sweeps; transfer rows; alpha (act) and phi (arrest) sweeps; 1 record with analyses
    assert kinds == ["analyses", "parameter", "parameter", "sweep", *["tradeoff"] * 4, "transfer"]
    for f in report.figures:
        assert f.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.png.stat().st_size > 10_000
        assert f.pdf.read_bytes()[:5] == b"%PDF-"


def test_markdown_and_html_mention_every_model_and_failed_check(report: ReportFiles) -> None:
    md = report.markdown.read_text(encoding="utf-8")
    page = report.html.read_text(encoding="utf-8")
    models = {summarize(r).model for r in records()}
    failed = [(c["name"], c["detail"]) for r in records() for c in r.get("checks", []) if not c["passed"]]
    assert len(failed) == 2
    for text in (md, page):
        for m in models:
            assert m in text, m
        for name, detail in failed:
            assert name in text and detail in text, name
    assert ("| madry | madry | small_cnn | mnist5k | linf:0.3 | quick (edited or older text 9f2c0000) | worst case | "
            "98.80 ± 0.14 [98.2, 99.2] |") in md
    assert "posterior_entropy = 0.412" in md  # a scalar analysis is listed, not plotted


def test_html_is_self_contained_except_images(report: ReportFiles) -> None:
    page = report.html.read_text(encoding="utf-8")
    refs = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert refs and all(not r.startswith(("http:", "https:", "/")) for r in refs)
    for ref in refs:
        assert (report.html.parent / ref).is_file(), ref
    assert "<style>" in page and "<script" not in page


def test_parameter_sweeps_need_two_values() -> None:
    groups = parameter_groups([summarize(r) for r in records()])
    assert sorted((p, len(fam)) for p, fam in groups) == [("alpha", 2), ("phi", 2)]
    one = [summarize(r) for r in records() if r["checkpoint"]["defense"] == "act"][:1]
    assert parameter_groups(one) == []


def test_malformed_analyses_do_not_break_anything(tmp_path: Path) -> None:
    rec = copy.deepcopy(records()[0])
    rec["analyses"] = {"note": "text only", "mixed": [1, "a", None], "empty": {}, "nested": {"a": {"b": 1}}}
    assert analyses_figure(rec) is None
    rec2 = copy.deepcopy(rec)
    del rec2["analyses"]
    assert analyses_figure(rec2) is None
    files = build_report([rec], tmp_path / "r")
    assert "analyses" not in {f.kind for f in files.figures}
    assert "note = text only" in files.markdown.read_text(encoding="utf-8")


def test_no_records_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="no result records"):
        build_report([], tmp_path)
    with pytest.raises(BenchError, match="not a robustbench_lite result"):
        build_report([{"format": "something else"}], tmp_path)


TORCH_FREE_CORE = ("robustbench_lite.errors", "robustbench_lite.results", "robustbench_lite.files", "robustbench_lite.threat",
                   "robustbench_lite.cliargs", "robustbench_lite.zoo")


def test_reports_imports_only_robustbench_lite_errors() -> None:
    """Static contract: no torch, no model code; from the core only its torch-free modules."""
    for path in sorted((ROOT / "reports").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                assert not name.startswith(("torch", "torchvision", "evaluations", "defenses", "robustbench_lite.evaluations",
                                             "robustbench_lite.defenses")), (path.name, name)
                if name.startswith("robustbench_lite"):
                    assert name in TORCH_FREE_CORE, (path.name, name)


def _imports_torch(code: str) -> bool:
    out = subprocess.run([sys.executable, "-c", code + "; import sys; print('torch' in sys.modules)"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    return out.stdout.strip().endswith("True")


@pytest.mark.slow
def test_importing_reports_does_not_import_torch() -> None:
    assert not _imports_torch("import robustbench_lite.errors, robustbench_lite.results, robustbench_lite.files, "
                              "robustbench_lite.threat")
    assert not _imports_torch("import robustbench_lite.reports, robustbench_lite.reports.cli, robustbench_lite.reports.report, "
                              "robustbench_lite.reports.store")
