"""The reports CLI functions, driven through argparse as ``bench`` will drive them."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import pytest

from robustbench_lite.reports import cli
from robustbench_lite.reports.store import add_record
from robustbench_lite.errors import BenchError

RECORDS = sorted((Path(__file__).resolve().parent / "fixtures" / "reports" / "records").glob("*.json"))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench")
    sub = p.add_subparsers(dest="command")
    cli.register(sub)
    return p


def run(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args))


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    path = tmp_path / "lb.sqlite"
    for p in RECORDS:
        add_record(path, json.loads(p.read_text()))
    return path


def test_every_option_has_help() -> None:
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {"ardist", "leaderboard", "report", "serve", "export"}
    for name, p in sub.choices.items():
        for action in p._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help and len(action.help) > 10, (name, action.dest)


def test_ardist_prints_ardist_and_sum(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run(["ardist", "--clean", "87.14", "--robust", "44.04", "--curve", "cifar10"]) == 0
    out = capsys.readouterr().out
    assert "ARDist: -1.500" in out and "Sum: 131.18" in out
    assert run(["ardist", "--clean", "73.05", "--robust", "24.32", "--curve", "cifar100"]) == 0
    assert "ARDist: 7.165" in capsys.readouterr().out
    f = tmp_path / "line.csv"
    f.write_text("clean,robust\n60,40\n70,30\n80,20\n90,10\n")
    assert run(["ardist", "--clean", "80", "--robust", "30", "--curve", str(f)]) == 0
    assert "ARDist: 7.071" in capsys.readouterr().out  # 10 / sqrt(2) above the line y = 100 - x
    with pytest.raises(BenchError, match="between 0 and 100"):
        run(["ardist", "--clean", "187", "--robust", "44"])


def test_leaderboard_formats_and_baselines(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["leaderboard", "--db", str(db), "--format", "csv"]) == 0
    table = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    assert list(table["dataset"]) == ["cifar10"] * 3 + ["mnist5k"] * 5  # one ranking per (dataset, threat)
    assert list(table["rank"]) == [1, 2, 3, 1, 2, 3, 4, 5]
    table = table[table["dataset"] == "mnist5k"].reset_index(drop=True)
    assert list(table["model"][:2]) == ["act_a09", "madry"]  # worst-case robust, descending
    assert list(table["model"][-1:]) == ["trades_b6"]  # failed checks rank last
    assert list(table["unreliable"][-1:]) == [True] and not table["unreliable"][:-1].any()
    extra = tmp_path / "mine.csv"
    extra.write_text("method,dataset,metric,value,norm,eps\nMyNet,mnist5k,clean,99.5,linf,0.3\n"
                     "MyNet,mnist5k,autoattack,93.0,linf,0.3\n")
    assert run(["leaderboard", "--db", str(db), "--dataset", "mnist5k", "--threat", "linf:0.3",
                "--with-baselines", "--baselines", str(extra), "--sort", "autoattack"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("== mnist5k, linf:0.3")
    first = out.splitlines()[3]
    assert "MyNet" in first and "published: mine" in first
    with pytest.raises(BenchError, match="valid: clean"):
        run(["leaderboard", "--db", str(db), "--sort", "nonsense"])


def test_export_and_report(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.csv"
    assert run(["export", "--db", str(db), "--out", str(out)]) == 0
    assert len(pd.read_csv(out)) == len(RECORDS)
    small = tmp_path / "small.sqlite"
    add_record(small, json.loads(RECORDS[0].read_text()))
    assert run(["report", "--db", str(small), "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "index.html").is_file() and "wrote" in capsys.readouterr().out


def test_missing_store_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="does not exist"):
        run(["leaderboard", "--db", str(tmp_path / "none.sqlite")])
