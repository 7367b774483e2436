"""The SQLite results store: typed round trip, upsert on re-evaluation, concurrent writers."""
from __future__ import annotations

import copy
import json
import multiprocessing as mp
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from robustbench_lite.reports.store import add_record, add_result_file, export_csv, load_records, to_dataframe
from robustbench_lite.errors import BenchError

RECORDS = Path(__file__).resolve().parent / "fixtures" / "reports" / "records"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((RECORDS / f"{name}.json").read_text())


def test_round_trip_keeps_records_and_types(tmp_path: Path) -> None:
    db = tmp_path / "lb.sqlite"
    names = ["madry_s0", "trades", "arrest_phi30"]
    for n in names:
        add_record(db, fixture(n), result_path=f"runs/{n}/result.json")
    assert load_records(db) == [fixture(n) for n in names]

    with sqlite3.connect(db) as conn:
        types = conn.execute("SELECT typeof(clean), typeof(autoattack), typeof(n), typeof(threat_eps), "
                             "typeof(checks_failed), typeof(defense_config), typeof(auc) FROM results "
                             "WHERE dataset = 'mnist5k' AND defense = 'madry'").fetchone()
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert types == ("real", "real", "integer", "real", "integer", "text", "real")
    assert mode == "wal"

    df = to_dataframe(db)
    assert len(df) == 3 and "record" not in df.columns
    assert df["clean"].dtype == "float64" and str(df["n"].dtype) == "Int64"
    row = df.set_index("model").loc["trades_b6"]
    # derived columns, checked against the fixture by hand: two PGD rows 90.3 / 89.7 -> the lowest
    assert (row["autoattack"], row["pgd"], row["robust"], row["checks_failed"]) == (86.9, 89.7, 86.9, 1)
    assert json.loads(row["defense_config"]) == {"beta": 6.0}
    assert row["result_path"] == "runs/trades/result.json"
    madry = df.set_index("model").loc["madry_s0"]
    assert madry["auc"] == pytest.approx((0.771 + 0.853) / 2)  # Linf sweeps only, one AUC per attack
    assert madry["min_pert"] == pytest.approx(0.3412)
    assert df.set_index("model").loc["arrest_phi30", "threat_eps"] == pytest.approx(8 / 255)
    assert json.loads(df.loc[0, "versions"])["torch"] == "2.14.1"


def test_re_evaluation_updates_the_row(tmp_path: Path) -> None:
    db = tmp_path / "lb.sqlite"
    rec = fixture("madry_s0")
    first = add_record(db, rec)
    again = copy.deepcopy(rec)
    again["clean_accuracy"] = 97.5
    again["date"] = "2026-11-23T08:00:00+00:00"
    assert add_record(db, again) == first
    df = to_dataframe(db)
    assert len(df) == 1 and df.loc[0, "clean"] == 97.5 and df.loc[0, "date"].startswith("2026-11-23")

    other_suite = copy.deepcopy(rec)
    other_suite["suite"]["hash"] = "f" * 64
    other_threat = copy.deepcopy(rec)
    other_threat["threat"]["eps"] = 0.2
    other_member = copy.deepcopy(rec)
    other_member["checkpoint"]["member"] = "natural"
    for r in (other_suite, other_threat, other_member):
        add_record(db, r)
    assert len(to_dataframe(db)) == 4


def _writer(db: str, worker: int, count: int) -> None:
    base = json.loads((RECORDS / "madry_s0.json").read_text())
    for i in range(count):
        rec = copy.deepcopy(base)
        rec["checkpoint"]["sha256"] = f"{worker:02d}{i:04d}".ljust(64, "0")
        rec["clean_accuracy"] = 90.0 + i / 10
        add_record(db, rec)


def test_two_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    db = str(tmp_path / "lb.sqlite")
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    procs = [ctx.Process(target=_writer, args=(db, w, 20)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0]
    df = to_dataframe(db)
    assert len(df) == 40
    assert df["checkpoint_sha256"].nunique() == 40


def test_export_csv_has_numbers(tmp_path: Path) -> None:
    db = tmp_path / "lb.sqlite"
    for n in ("madry_s0", "natural"):
        add_record(db, fixture(n))
    out = export_csv(db, tmp_path / "out" / "results.csv")
    back = pd.read_csv(out)
    assert len(back) == 2 and "record" not in back.columns
    assert back["clean"].dtype == "float64"
    assert sorted(back["clean"]) == [98.9, 99.3]
    assert back.loc[back["model"] == "natural", "autoattack"].isna().all()


def test_add_result_file_records_its_path(tmp_path: Path) -> None:
    db = tmp_path / "lb.sqlite"
    add_result_file(db, RECORDS / "natural.json")
    assert to_dataframe(db).loc[0, "result_path"].endswith("natural.json")


def test_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="does not exist"):
        load_records(tmp_path / "missing.sqlite")
    bad = fixture("natural")
    del bad["checkpoint"]["sha256"]
    with pytest.raises(BenchError, match="sha256"):
        add_record(tmp_path / "lb.sqlite", bad)
    newer = fixture("natural")
    newer["format_version"] = 99
    with pytest.raises(BenchError, match="format_version"):
        add_record(tmp_path / "lb.sqlite", newer)
    not_db = tmp_path / "text.sqlite"
    not_db.write_text("hello, this is not a database" * 10)
    with pytest.raises(BenchError, match="not an SQLite results store"):
        load_records(not_db)
