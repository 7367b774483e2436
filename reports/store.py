"""The results store: one embedded SQLite file (default ``runs/leaderboard.sqlite``).

One row per (checkpoint sha256, member, suite hash, threat norm, threat eps). Re-evaluating the
same checkpoint with the same suite and threat replaces its row (UPSERT on that UNIQUE key).
Numbers are stored as REAL/INTEGER, JSON as TEXT, and the full record is kept beside them so any
derived column can be recomputed. Several processes may write at once: the file is in WAL mode,
waits up to ``BUSY_TIMEOUT_S`` for a lock, and every write is one ``BEGIN IMMEDIATE`` transaction.

Example::

    >>> add_record("runs/leaderboard.sqlite", json.load(open("runs/eval/result.json")), "runs/eval/result.json")
    >>> to_dataframe("runs/leaderboard.sqlite")[["dataset", "defense", "autoattack"]]
"""
from __future__ import annotations

import json
import logging
import sqlite3
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from robustbench_lite.errors import BenchError
from robustbench_lite.files import atomic_write_text, check_output_path

from .records import summarize, validate_record

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

logger = logging.getLogger(__name__)

DEFAULT_DB = Path("runs") / "leaderboard.sqlite"
SCHEMA_VERSION = 2  # 2: autoattack_scope, pgd_scope (robustbench_lite.results.column_value)
BUSY_TIMEOUT_S = 60.0
UNIQUE_KEY = ("checkpoint_sha256", "member", "suite_hash", "threat_norm", "threat_eps")

# (column, SQLite type) in table order; ``id`` is added in front.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("checkpoint_sha256", "TEXT NOT NULL"), ("member", "TEXT NOT NULL"), ("checkpoint_path", "TEXT"),
    ("model", "TEXT"), ("arch", "TEXT"), ("dataset", "TEXT"), ("defense", "TEXT"), ("defense_config", "TEXT"),
    ("checkpoint_seed", "INTEGER"), ("threat_norm", "TEXT NOT NULL"), ("threat_eps", "REAL NOT NULL"),
    ("suite_name", "TEXT"), ("suite_hash", "TEXT NOT NULL"), ("n", "INTEGER"), ("seed", "INTEGER"),
    ("versions", "TEXT"), ("date", "TEXT"), ("clean", "REAL"), ("autoattack", "REAL"), ("autoattack_scope", "TEXT"),
    ("pgd", "REAL"), ("pgd_scope", "TEXT"), ("auc", "REAL"), ("min_pert", "REAL"), ("robust", "REAL"), ("checks_failed", "INTEGER"), ("checks", "TEXT"),
    ("result_path", "TEXT"), ("record", "TEXT NOT NULL"), ("stored_at", "TEXT"),
)
COLUMN_NAMES = tuple(c for c, _ in COLUMNS)


def _connect(db_path: str | Path, *, create: bool) -> sqlite3.Connection:
    p = Path(db_path)
    if not create and not p.is_file():
        raise BenchError(f"results store {p} does not exist; add results with `bench eval` first.")
    if create:
        p.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(str(p), timeout=BUSY_TIMEOUT_S, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        if create:
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.DatabaseError as e:
        raise BenchError(f"{p} is not a usable SQLite results store ({e}).") from None
    return conn


SQLITE_HEADER = b"SQLite format 3\x00"
# SQLite error names that mean the user's file or disk, not a bug in our SQL
_USER_SQLITE_ERRORS = ("SQLITE_READONLY", "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN", "SQLITE_IOERR",
                       "SQLITE_FULL", "SQLITE_PERM", "SQLITE_NOTADB", "SQLITE_CORRUPT")
_USER_SQLITE_MESSAGES = ("readonly", "locked", "unable to open", "disk i/o", "full", "not a database", "malformed")


def check_store(db_path: str | Path, *, flag: str = "--db") -> Path:
    """Check, before any long work, that ``db_path`` can hold the results store: a writable file path
    (:func:`~robustbench_lite.utils.check_output_path`) that is absent, empty or an SQLite file.
    Raises :class:`BenchError`; creates nothing."""
    p = check_output_path(db_path, kind="file", flag=flag, example=DEFAULT_DB.name)
    if p.is_file() and p.stat().st_size > 0:
        try:
            with open(p, "rb") as f:
                head = f.read(len(SQLITE_HEADER))
        except OSError as e:
            raise BenchError(f"{flag} {p} cannot be read: {e.strerror or e}.") from None
        if head != SQLITE_HEADER:
            raise BenchError(f"{flag} {p} is not an SQLite results store; choose another file.")
    return p


def _is_user_sqlite_error(e: sqlite3.Error) -> bool:
    name = getattr(e, "sqlite_errorname", None)  # Python >= 3.11
    if name:
        return any(str(name).startswith(n) for n in _USER_SQLITE_ERRORS)
    return any(m in str(e).lower() for m in _USER_SQLITE_MESSAGES)


def _create_schema(conn: sqlite3.Connection) -> None:
    cols = ",\n  ".join(f"{name} {typ}" for name, typ in COLUMNS)
    conn.execute(f"CREATE TABLE IF NOT EXISTS results (\n  id INTEGER PRIMARY KEY,\n  {cols},\n"
                 f"  UNIQUE ({', '.join(UNIQUE_KEY)})\n)")
    conn.execute("CREATE INDEX IF NOT EXISTS results_dataset ON results (dataset, threat_norm, threat_eps)")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    have = {r[1] for r in conn.execute("PRAGMA table_info(results)")}
    for name, typ in COLUMNS:  # an older store gains the new columns (filled as its rows are re-stored)
        if name not in have:
            conn.execute(f"ALTER TABLE results ADD COLUMN {name} {typ}")
    if version < SCHEMA_VERSION:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    elif version > SCHEMA_VERSION:
        raise BenchError(f"the results store uses schema {version}, newer than this version ({SCHEMA_VERSION}); "
                         "upgrade robustbench_lite.")


def _json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def record_row(record: Mapping[str, Any], result_path: str | Path | None = None) -> dict[str, Any]:
    """The typed column values stored for one record."""
    s = summarize(record)
    return {
        "checkpoint_sha256": s.sha256, "member": s.member, "checkpoint_path": s.path, "model": s.model,
        "arch": s.arch, "dataset": s.dataset, "defense": s.defense, "defense_config": _json(s.defense_config),
        "checkpoint_seed": s.checkpoint_seed, "threat_norm": s.norm, "threat_eps": round(s.eps, 12),
        "suite_name": s.suite_name, "suite_hash": s.suite_hash, "n": s.n, "seed": s.seed,
        "versions": _json(s.versions), "date": s.date, "clean": s.clean, "autoattack": s.autoattack,
        "autoattack_scope": s.autoattack_scope or None, "pgd": s.pgd, "pgd_scope": s.pgd_scope or None,
        "auc": s.auc, "min_pert": s.min_pert, "robust": s.robust, "checks_failed": s.checks_failed,
        "checks": _json(list(s.checks)), "result_path": None if result_path is None else str(result_path),
        "record": _json(record), "stored_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def add_record(db_path: str | Path, record: Mapping[str, Any], result_path: str | Path | None = None) -> int:
    """Insert a record, or update the row of the same checkpoint, member, suite and threat.

    Returns the row id. Creates the file and table if needed.
    """
    validate_record(dict(record))
    row = record_row(record, result_path)
    names = ", ".join(COLUMN_NAMES)
    marks = ", ".join(f":{c}" for c in COLUMN_NAMES)
    updates = ", ".join(f"{c} = excluded.{c}" for c in COLUMN_NAMES if c not in UNIQUE_KEY)
    sql = (f"INSERT INTO results ({names}) VALUES ({marks}) "
           f"ON CONFLICT ({', '.join(UNIQUE_KEY)}) DO UPDATE SET {updates}")
    with closing(_connect(db_path, create=True)) as conn:
        try:
            conn.execute("BEGIN IMMEDIATE")
            _create_schema(conn)
            conn.execute(sql, row)
            rid = conn.execute(
                "SELECT id FROM results WHERE " + " AND ".join(f"{k} = :{k}" for k in UNIQUE_KEY), row).fetchone()[0]
            conn.execute("COMMIT")
        except BaseException as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error) and _is_user_sqlite_error(e):
                raise BenchError(f"cannot write the results store {db_path} ({e}).") from None
            raise
    logger.info("stored %s (%s, %s) in %s as row %d", row["model"], row["dataset"], row["suite_name"], db_path, rid)
    return int(rid)


def add_result_file(db_path: str | Path, result_json: str | Path) -> int:
    """Read a ``result.json`` and store it with its path as provenance."""
    from .records import read_record

    return add_record(db_path, read_record(result_json), result_path=result_json)


def _has_table(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'results'").fetchone() is not None


def load_records(db_path: str | Path) -> list[dict[str, Any]]:
    """Every stored result record (the full JSON), in insertion order."""
    with closing(_connect(db_path, create=False)) as conn:
        if not _has_table(conn):
            return []
        return [json.loads(r[0]) for r in conn.execute("SELECT record FROM results ORDER BY id")]


def to_dataframe(db_path: str | Path, include_record: bool = False) -> pd.DataFrame:
    """The store as a DataFrame with typed columns (the full record JSON only if asked).

    The numbers are derived again from each stored record (the ground truth) with today's rules,
    so a row stored by an older version reads as the leaderboard shows it."""
    import pandas as pd

    cols = ["id", *[c for c in COLUMN_NAMES if include_record or c != "record"]]
    with closing(_connect(db_path, create=False)) as conn:
        if not _has_table(conn):
            return pd.DataFrame(columns=cols)
        stored = conn.execute("SELECT id, record, result_path, stored_at FROM results ORDER BY id").fetchall()
    rows = []
    for rid, text, result_path, stored_at in stored:
        row = {**record_row(json.loads(text), result_path), "id": rid, "stored_at": stored_at}
        rows.append([row[c] for c in cols])
    df = pd.DataFrame(rows, columns=cols)
    for c, typ in (("id", "INTEGER"), *COLUMNS):
        if c in df.columns and typ.startswith("INTEGER"):
            df[c] = df[c].astype("Int64")
        elif c in df.columns and typ.startswith("REAL"):
            df[c] = df[c].astype("float64")
    return df


def export_csv(db_path: str | Path, out_csv: str | Path) -> Path:
    """Write every stored row (without the full record JSON) to a CSV file (atomically: temp file +
    rename); returns its path. ``out_csv`` naming a folder, or lying under a file, is a BenchError."""
    out = check_output_path(out_csv, kind="file")
    text = to_dataframe(db_path).to_csv(index=False)
    atomic_write_text(out, text)
    return out
