"""The RobustBench leaderboard table: counts and spot entries against the JSON files at the pinned
commit (read by hand on 2025-03-31's commit 78fcc9e), the converter on a tiny git repository, lookup."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from robustbench_lite import zoo
from robustbench_lite.errors import BenchError

PINNED = "78fcc9e48a07a861268f295a777b975f25155964"
# `git ls-tree -r --name-only 78fcc9e model_info | cut -d/ -f2,3 | sort | uniq -c` (corruptions left out)
COUNTS = {("cifar10", "linf:8/255"): 99, ("cifar10", "l2:0.5"): 21, ("cifar100", "linf:8/255"): 38,
          ("imagenet", "linf:4/255"): 30}


def test_counts_and_commit() -> None:
    assert zoo.source_commit() == PINNED
    for (dataset, threat), n in COUNTS.items():
        assert len(zoo.entries(dataset, threat)) == n
    assert len(zoo.all_entries()) == sum(COUNTS.values())
    assert len({(e.dataset, e.threat, e.name) for e in zoo.all_entries()}) == sum(COUNTS.values())
    assert zoo.entries("cifar10", "linf:4/255") == [] and zoo.entries("mnist5k", "linf:0.3") == []


def test_spot_entries_match_the_json() -> None:
    e = zoo.lookup("Carmon2019Unlabeled")
    assert (e.dataset, e.threat, e.architecture, e.venue) == ("cifar10", "linf:8/255", "WideResNet-28-10", "NeurIPS 2019")
    assert (e.clean_acc, e.autoattack_acc, e.reported, e.external_acc) == (89.69, 59.53, 62.5, None)
    assert e.additional_data is True and e.unreliable is False and e.best_known == 59.53
    x = zoo.lookup("Xiao2020Enhancing")  # "eps": "0.031", "external": "7.40", "unreliable": true
    assert (x.eps, x.autoattack_acc, x.external_acc, x.best_known, x.unreliable) == ("0.031", 18.50, 7.40, 7.40, True)
    k = zoo.lookup("Kang2021Stable")
    assert (k.autoattack_acc, k.external_acc) == (71.28, 64.20)
    s = zoo.lookup("Standard_R50", dataset="imagenet")
    assert (s.threat, s.architecture, s.clean_acc, s.autoattack_acc) == ("linf:4/255", "ResNet-50", 76.52, 0.0)
    m = zoo.lookup("Bai2024MixedNUTS", dataset="cifar100", threat="linf:8/255")
    assert (m.clean_acc, m.autoattack_acc, m.external_acc, m.number_forward_passes) == (83.08, 41.91, 41.80, 2)


def test_blank_is_never_zero() -> None:
    """`reported` is "" in some JSON files and `unreliable` missing in others: blank / False, never 0."""
    blanks = [e for e in zoo.all_entries() if e.reported is None]
    assert blanks and all(e.reported is None for e in blanks)
    text = zoo.TABLE.read_text(encoding="utf-8")
    assert ",0," not in text.replace(",0.0,", "")  # no invented zeros (Standard_R50's AutoAttack is 0.0 as published)


def test_lookup_errors() -> None:
    with pytest.raises(BenchError, match="did you mean Carmon2019Unlabeled"):
        zoo.lookup("Carmon2019Unlabled")
    with pytest.raises(BenchError, match="several leaderboards .*cifar10 l2:0.5.*give --dataset and --threat"):
        zoo.lookup("Standard")
    assert zoo.lookup("Standard", threat="l2:0.5").threat == "l2:0.5"
    with pytest.raises(BenchError, match="not on the one asked for"):
        zoo.lookup("Carmon2019Unlabeled", dataset="cifar100")


def test_convert_entry_checks_numbers() -> None:
    info = {"name": "P", "eps": "8/255", "clean_acc": "90.1", "autoattack_acc": "", "reported": None}
    row = zoo.convert_entry(info, "cifar10", "linf:8/255", "X")
    assert (row["clean_acc"], row["autoattack_acc"], row["reported"], row["external_acc"], row["unreliable"]) == \
        ("90.1", "", "", "", "")
    with pytest.raises(BenchError, match="autoattack_acc 'n/a' is not a number"):
        zoo.convert_entry({**info, "autoattack_acc": "n/a"}, "cifar10", "linf:8/255", "X")
    with pytest.raises(BenchError, match="is not a percentage"):
        zoo.convert_entry({**info, "clean_acc": "190"}, "cifar10", "linf:8/255", "X")


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_build_table_from_a_git_repository(tmp_path: Path) -> None:
    repo = tmp_path / "rb"
    files = {
        "model_info/cifar10/Linf/A2020.json": {"name": "Paper A", "eps": "8/255", "clean_acc": "80.5",
                                                "autoattack_acc": "50.25", "external": "49.00", "unreliable": True,
                                                "additional_data": False, "architecture": "WideResNet-28-10"},
        "model_info/cifar10/L2/B2021.json": {"name": "Paper B", "eps": "0.5", "clean_acc": "90", "autoattack_acc": "70"},
        "model_info/cifar10/corruptions/C.json": {"name": "skipped"},
    }
    for rel, info in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(json.dumps(info))

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                              check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "x")
    commit = git("rev-parse", "HEAD").strip()
    rows = zoo.build_table(repo / ".git", commit)
    assert [(r["name"], r["threat"]) for r in rows] == [("B2021", "l2:0.5"), ("A2020", "linf:8/255")]
    out = zoo.write_table(rows, commit, tmp_path / "t.csv")
    got = {e.name: e for e in zoo.all_entries(out)}
    assert zoo.source_commit(out) == commit
    assert (got["A2020"].external_acc, got["A2020"].unreliable, got["A2020"].additional_data) == (49.0, True, False)
    assert (got["B2021"].reported, got["B2021"].additional_data, got["B2021"].unreliable) == (None, None, False)
    assert zoo.main(["--from", str(repo / ".git"), "--out", str(tmp_path / "u.csv")]) == 0
    assert (tmp_path / "u.csv").read_text() == out.read_text()
    assert zoo.main(["--from", str(tmp_path / "nowhere"), "--out", str(tmp_path / "v.csv")]) == 2


def test_core_module_is_torch_free() -> None:
    code = "import sys, robustbench_lite.zoo as z; z.all_entries(); print('torch' in sys.modules)"
    out = subprocess.run([__import__("sys").executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_tradeoff_figure_shows_the_robustbench_entries_when_asked() -> None:
    """bench report's tradeoff figure with ``robustbench=True``: every entry of the records' dataset and threat."""
    from types import SimpleNamespace

    from robustbench_lite.reports.figures import tradeoff_figure

    ours = SimpleNamespace(clean=80.0, autoattack=40.0, robust=40.0, model="ours", norm="linf", eps=8 / 255, dataset="cifar10",
                           threat="linf:8/255", autoattack_scope="exact", verdict="AutoAttack")
    want = [(e.clean_acc, e.autoattack_acc) for e in zoo.entries("cifar10", "linf:8/255")]
    for asked in (False, True):
        ax = tradeoff_figure("cifar10", [ours], None, robustbench=asked).axes[0]
        shown = [c for c in ax.collections if c.get_label().startswith("RobustBench")]
        assert len(shown) == asked
    assert shown[0].get_label() == f"RobustBench linf:8/255 ({PINNED[:7]})"
    assert sorted(map(tuple, shown[0].get_offsets().tolist())) == sorted(want)
