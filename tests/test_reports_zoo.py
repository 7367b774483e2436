"""RobustBench's leaderboard entries in ``bench leaderboard --with-baselines``: a tiny store with one of
our runs plus the zoo table (a hand-made one, then the packaged one)."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from robustbench_lite import zoo
from robustbench_lite.cli import main
from robustbench_lite.reports.leaderboard import leaderboard, leaderboard_entries
from robustbench_lite.reports.store import add_record

RECORD = Path(__file__).resolve().parent / "fixtures" / "reports" / "records" / "arrest_phi45.json"  # cifar10 linf:8/255


def _z(name: str, dataset: str = "cifar10", threat: str = "linf:8/255", clean: float | None = 90.0,
       aa: float | None = 50.0, external: float | None = None, unreliable: bool = False) -> zoo.ZooEntry:
    return zoo.ZooEntry(dataset=dataset, threat=threat, name=name, paper="P", venue="V 2020", authors="A",
                        architecture="WideResNet-28-10", additional_data=None, number_forward_passes=1, eps="8/255",
                        clean_acc=clean, autoattack_acc=aa, external_acc=external, reported=None,
                        unreliable=unreliable, footnote="x<br>y", link="")


TABLE = [_z("Plain", aa=48.0), _z("Stronger", aa=60.0, external=40.0), _z("Flagged", aa=99.0, unreliable=True),
         _z("NoClean", clean=None, aa=30.0), _z("OtherNorm", threat="l2:0.5", aa=70.0),
         _z("OtherData", dataset="cifar100", aa=70.0), _z("ImageNet", dataset="imagenet", threat="linf:4/255")]


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    path = tmp_path / "lb.sqlite"
    add_record(path, json.loads(RECORD.read_text()))
    return path


def test_zoo_rows_rank_with_ours_and_never_mix_threats(db: Path) -> None:
    rec = json.loads(RECORD.read_text())
    entries = leaderboard_entries([rec], dataset="cifar10", threat="linf:8/255", with_baselines=True, zoo_table=TABLE)
    zoo_rows = [e for e in entries if e.zoo is not None]
    assert {e.model for e in zoo_rows} == {"Plain", "Stronger", "Flagged", "NoClean"}
    order = [e.model for e in entries if e.zoo is not None or e.source == "this run"]
    assert order == ["Plain", "arrest_phi45", "Stronger", "NoClean", "Flagged"]  # 48 > 47.05 > 40 > 30; flagged last
    stronger = next(e for e in zoo_rows if e.model == "Stronger")
    assert (stronger.get("autoattack"), stronger.get("best_known"), stronger.get("robust")) == (60.0, 40.0, 40.0)
    assert stronger.source == "published: RobustBench" and stronger.published
    no_clean = next(e for e in zoo_rows if e.model == "NoClean")
    assert no_clean.get("clean") is None and no_clean.get("sum") is None and no_clean.get("ardist") is None
    flagged = next(e for e in zoo_rows if e.model == "Flagged")
    assert flagged.unreliable and flagged.sanity == "UNRELIABLE (RobustBench)"
    l2 = leaderboard_entries([rec], dataset="cifar10", threat="l2:0.5", with_baselines=True, zoo_table=TABLE)
    assert [e.model for e in l2 if e.zoo is not None] == ["OtherNorm"] and not [e for e in l2 if not e.published]
    assert not [e for e in leaderboard_entries([rec], dataset="cifar10", threat="linf:8/255", zoo_table=TABLE)
                if e.zoo is not None]  # only with --with-baselines


def test_blank_cells_stay_blank(db: Path) -> None:
    rec = json.loads(RECORD.read_text())
    entries = leaderboard_entries([rec], dataset="cifar10", threat="linf:8/255", with_baselines=True, zoo_table=TABLE)
    from robustbench_lite.reports.render import render_table

    rows = list(csv.DictReader(io.StringIO(render_table(entries, "csv", with_source=True))))
    no_clean = next(r for r in rows if r["model"] == "NoClean")
    assert (no_clean["clean"], no_clean["best_known"], no_clean["extra_data"], no_clean["sum"]) == ("", "", "", "")
    assert next(r for r in rows if r["model"] == "Stronger")["best_known"] == "40.0"
    assert next(r for r in rows if r["model"] == "Flagged")["unreliable"] == "true"
    md = render_table(entries, "markdown", with_source=True)
    assert "| best_known | extra_data | venue | source |" in md and "Stronger: x y" in md


def test_packaged_table_counts_per_leaderboard(db: Path) -> None:
    commit = zoo.source_commit()[:7]
    for dataset, threat, n in (("cifar10", "linf:8/255", 99), ("cifar10", "l2:0.5", 21), ("cifar100", "linf:8/255", 38),
                               ("imagenet", "linf:4/255", 30)):
        text = leaderboard(db, dataset=dataset, threat=threat, with_baselines=True, fmt="csv")
        rows = list(csv.DictReader(io.StringIO(text)))
        ours = [r for r in rows if r["source"] == f"published: RobustBench {commit}"]
        assert len(ours) == n, (dataset, threat)
        assert {(r["dataset"], r["threat"]) for r in ours} == {(dataset, threat)}
    carmon = next(r for r in csv.DictReader(io.StringIO(leaderboard(db, dataset="cifar10", threat="linf:8/255",
                                                                        with_baselines=True, fmt="csv")))
                  if r["model"] == "Carmon2019Unlabeled")
    assert (carmon["clean"], carmon["autoattack"], carmon["robust"], carmon["best_known"], carmon["arch"]) == \
        ("89.69", "59.53", "59.53", "", "WideResNet-28-10")


def test_cli(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["leaderboard", "--db", str(db), "--dataset", "cifar10", "--threat", "linf:8/255", "--with-baselines"]) == 0
    out = capsys.readouterr().out
    assert "Carmon2019Unlabeled" in out and "arrest_phi45" in out and "ARREST Table 1" in out
    assert f"published: RobustBench {zoo.source_commit()[:7]}" in out and "UNRELIABLE (RobustBench)" in out
    assert main(["leaderboard", "--db", str(db), "--dataset", "cifar10", "--threat", "linf:8/255"]) == 0
    assert "Carmon2019Unlabeled" not in capsys.readouterr().out
