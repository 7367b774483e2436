"""Databases are never damaged (issue #19): another application's SQLite file, a results table with
other columns, or a damaged file is one sentence in every command that reads or writes the store,
left byte-for-byte untouched; no command writes over one of its own inputs."""
from __future__ import annotations

import hashlib
import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from robustbench_lite.cli import main
from robustbench_lite.errors import BenchError
from robustbench_lite.reports.store import add_record, check_store, export_csv, load_records, to_dataframe

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "reports" / "records"


def record(name: str = "madry_s0") -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def foreign_app(tmp_path: Path) -> Path:
    p = tmp_path / "app.sqlite"
    with closing(sqlite3.connect(p)) as conn, conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO users (name) VALUES ('ada')")
    return p


def foreign_results(tmp_path: Path) -> Path:
    p = tmp_path / "other.sqlite"
    with closing(sqlite3.connect(p)) as conn, conn:
        conn.execute("CREATE TABLE results (run TEXT, score REAL)")
        conn.execute("INSERT INTO results VALUES ('a', 1.0)")
    return p


def damaged(tmp_path: Path) -> Path:
    p = tmp_path / "damaged.sqlite"
    add_record(p, record())
    data = bytearray(p.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # header kept, first page's b-tree destroyed
    p.write_bytes(bytes(data))
    return p


def bad_record_row(tmp_path: Path) -> Path:
    p = tmp_path / "badrow.sqlite"
    add_record(p, record())
    with closing(sqlite3.connect(p)) as conn, conn:
        conn.execute("UPDATE results SET record = 'not json'")
    return p


MAKERS = {"foreign_app": foreign_app, "foreign_results": foreign_results, "damaged": damaged,
          "bad_record_row": bad_record_row}


@pytest.mark.parametrize("kind", ["foreign_app", "foreign_results"])
def test_add_record_refuses_a_foreign_database_untouched(tmp_path: Path, kind: str) -> None:
    p = MAKERS[kind](tmp_path)
    before = digest(p)
    with pytest.raises(BenchError, match="robustbench_lite"):
        check_store(p)
    with pytest.raises(BenchError, match="left untouched"):
        add_record(p, record())
    assert digest(p) == before
    assert not Path(str(p) + "-wal").exists()


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_readers_say_one_sentence(tmp_path: Path, kind: str) -> None:
    p = MAKERS[kind](tmp_path)
    for read in (load_records, to_dataframe):
        with pytest.raises(BenchError):
            read(p)


@pytest.mark.parametrize("kind", sorted(MAKERS))
@pytest.mark.parametrize("command", ["leaderboard", "report", "export"])
def test_commands_on_foreign_or_damaged_databases(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  kind: str, command: str) -> None:
    p = MAKERS[kind](tmp_path)
    before = digest(p)
    extra = {"leaderboard": [], "report": ["--out", str(tmp_path / "rep")],
             "export": ["--out", str(tmp_path / "out.csv")]}[command]
    code = main([command, "--db", str(p), *extra])
    out, err = capsys.readouterr()
    assert code != 0 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert digest(p) == before
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "rep" / "report.md").exists()


def test_an_older_store_without_the_new_columns_still_reads(tmp_path: Path) -> None:
    p = tmp_path / "old.sqlite"
    add_record(p, record())
    with closing(sqlite3.connect(p)) as conn, conn:  # a store of schema 1 lacked the scope columns
        conn.execute("ALTER TABLE results DROP COLUMN autoattack_scope")
    assert len(load_records(p)) == 1
    add_record(p, record("madry_s1"))
    assert len(load_records(p)) == 2


def test_export_refuses_to_write_over_its_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "lb.sqlite"
    add_record(p, record())
    before = digest(p)
    for out in (p, tmp_path / "." / "lb.sqlite", Path(str(p) + "-wal")):
        with pytest.raises(BenchError, match="results store"):
            export_csv(p, out)
        code = main(["export", "--db", str(p), "--out", str(out)])
        assert code != 0 and "choose another file" in capsys.readouterr().err
    link = tmp_path / "link.sqlite"
    link.symlink_to(p)
    with pytest.raises(BenchError, match="results store"):
        export_csv(p, link)
    assert digest(p) == before and len(load_records(p)) == 1
    assert main(["export", "--db", str(p), "--out", str(tmp_path / "lb.csv")]) == 0


@pytest.mark.parametrize("where", ["report.md", "index.html", "figures/lb.sqlite"])
def test_report_refuses_to_write_over_its_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 where: str) -> None:
    out = tmp_path / "rep"
    p = out / where
    p.parent.mkdir(parents=True)
    add_record(p, record())
    before = digest(p)
    code = main(["report", "--db", str(p), "--out", str(out)])
    err = capsys.readouterr().err
    assert code != 0 and "would overwrite the input" in err
    assert digest(p) == before


def test_report_refuses_to_write_over_a_baselines_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "lb.sqlite"
    add_record(db, record())
    out = tmp_path / "rep"
    out.mkdir()
    extra = out / "index.html"
    extra.write_text("method,dataset,metric,value\nX,cifar10,clean,80\n")
    code = main(["report", "--db", str(db), "--out", str(out), "--baselines", str(extra)])
    assert code != 0 and "would overwrite the input" in capsys.readouterr().err
    assert extra.read_text().startswith("method,")


@pytest.mark.parametrize("kind", ["foreign_app", "foreign_results", "damaged"])
def test_eval_refuses_a_foreign_database_before_evaluating(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    import robustbench_lite.evaluations.evaluate as evaluate_module

    def must_not_run(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the evaluation ran before the database was checked")

    monkeypatch.setattr(evaluate_module, "evaluate", must_not_run)
    p = MAKERS[kind](tmp_path)
    before = digest(p)
    code = main(["eval", "--model", str(tmp_path / "ckpt.pt"), "--out", str(tmp_path / "ev"), "--db", str(p)])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "--db" in err and digest(p) == before
