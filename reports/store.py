"""The results store: one embedded SQLite file (default ``runs/leaderboard.sqlite``).

One row per (checkpoint sha256, member, suite hash, threat norm, threat eps). Re-evaluating the
same checkpoint with the same suite and threat replaces its row (UPSERT on that UNIQUE key).
Numbers are stored as REAL/INTEGER, JSON as TEXT, and the full record is kept beside them so any
derived column can be recomputed. Several processes may write at once: the file is in WAL mode,
waits up to ``BUSY_TIMEOUT_S`` for a lock, and every write is one ``BEGIN IMMEDIATE`` transaction.

Only our own stores are read or written (:func:`check_store`, called by every reader and writer, and by
``bench eval`` before the evaluation runs): an SQLite file of another application (tables but no
``results`` table), a ``results`` table without our columns, a newer schema, or a damaged file is one
sentence, and the file is left untouched (no table, index or WAL mode is added to it).

Example::

    >>> add_record("runs/leaderboard.sqlite", json.load(open("runs/eval/result.json")), "runs/eval/result.json")
    >>> to_dataframe("runs/leaderboard.sqlite")[["dataset", "defense", "autoattack"]]
"""
from __future__ import annotations

import json
import logging
import os
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


def check_store(db_path: str | Path, *, flag: str = "--db", write: bool = True) -> Path:
    """Check, before any long work, that ``db_path`` is (or can become) our results store: absent,
    empty, or an SQLite file that is ours (:func:`check_ours`); with ``write`` also a writable file path
    (:func:`~robustbench_lite.files.check_output_path`). Raises :class:`BenchError`; creates and
    changes nothing (the file is opened read-only)."""
    p = check_output_path(db_path, kind="file", flag=flag, example=DEFAULT_DB.name) if write else Path(db_path)
    if p.is_file() and p.stat().st_size > 0:
        try:
            with open(p, "rb") as f:
                head = f.read(len(SQLITE_HEADER))
        except OSError as e:
            raise BenchError(f"{flag} {p} cannot be read: {e.strerror or e}.") from None
        if head != SQLITE_HEADER:
            raise BenchError(f"{flag} {p} is not an SQLite results store; choose another file.")
        try:
            with closing(sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)) as conn:
                check_ours(conn, p, flag=flag)
        except sqlite3.DatabaseError as e:
            raise BenchError(f"{flag} {p} cannot be read as an SQLite results store ({e}): a damaged file, or one "
                             "this user cannot open; restore it or choose another file.") from None
    return p


def check_ours(conn: sqlite3.Connection, p: Path, *, flag: str = "--db") -> None:
    """A :class:`BenchError` unless the open database is empty or holds our ``results`` table (its
    key columns and the record), in a schema this version reads."""
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                         "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    if "results" not in tables:
        if tables:
            shown = ", ".join(tables[:5]) + (f" and {len(tables) - 5} more" if len(tables) > 5 else "")
            raise BenchError(f"{flag} {p} is an SQLite database of another application (tables {shown}), not a "
                             "robustbench_lite results store; it was left untouched, choose another file.")
        return
    have = {r[1] for r in conn.execute("PRAGMA table_info(results)")}
    missing = [c for c in ("id", *UNIQUE_KEY, "record") if c not in have]
    if missing:
        raise BenchError(f"{flag} {p} has a 'results' table that is not robustbench_lite's (no column "
                         f"{', '.join(missing)}); it was left untouched, choose another file.")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise BenchError(f"{flag} {p} uses schema {version}, newer than this version ({SCHEMA_VERSION}); "
                         "upgrade robustbench_lite.")


def same_path(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name the same file (after resolving links; hard links too when both exist)."""
    pa, pb = Path(a), Path(b)
    try:
        if pa.exists() and pb.exists():
            return os.path.samefile(pa, pb)
    except OSError:
        pass
    return pa.resolve() == pb.resolve()


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
    check_store(db_path)  # another application's file, or a damaged one, is refused untouched
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


def _read(db_path: str | Path, sql: str) -> list[tuple[Any, ...]] | None:
    """The rows of ``sql`` from our store (None when it has no results table yet); a foreign or
    damaged database is one :class:`BenchError` sentence."""
    p = Path(db_path)
    if p.is_file():
        check_store(p, write=False)
    with closing(_connect(p, create=False)) as conn:
        try:
            if not _has_table(conn):
                return None
            return conn.execute(sql).fetchall()
        except sqlite3.DatabaseError as e:
            raise BenchError(f"--db {p} cannot be read as an SQLite results store ({e}): a damaged file; restore it "
                             "or choose another file.") from None


def _record(text: Any, rid: Any, db_path: str | Path) -> dict[str, Any]:
    try:
        record = json.loads(text)
    except (TypeError, ValueError):
        record = None
    if not isinstance(record, dict):
        raise BenchError(f"--db {db_path}: row {rid} of the results table holds no result record (damaged store).")
    return record


def load_records(db_path: str | Path) -> list[dict[str, Any]]:
    """Every stored result record (the full JSON), in insertion order; [] for a store with no results
    table yet. A missing, foreign or damaged database is a :class:`BenchError`."""
    rows = _read(db_path, "SELECT id, record FROM results ORDER BY id")
    return [] if rows is None else [_record(text, rid, db_path) for rid, text in rows]


def to_dataframe(db_path: str | Path, include_record: bool = False) -> pd.DataFrame:
    """The store as a DataFrame with typed columns (the full record JSON only if asked).

    The numbers are derived again from each stored record (the ground truth) with today's rules,
    so a row stored by an older version reads as the leaderboard shows it."""
    import pandas as pd

    cols = ["id", *[c for c in COLUMN_NAMES if include_record or c != "record"]]
    stored = _read(db_path, "SELECT id, record, result_path, stored_at FROM results ORDER BY id")
    if stored is None:
        return pd.DataFrame(columns=cols)
    rows = []
    for rid, text, result_path, stored_at in stored:
        row = {**record_row(_record(text, rid, db_path), result_path), "id": rid, "stored_at": stored_at}
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
    rename); returns its path. ``out_csv`` naming a folder, lying under a file, or naming the
    database itself (or its ``-wal``/``-shm``/``-journal`` files) is a BenchError, before anything is written."""
    out = check_output_path(out_csv, kind="file")
    db = Path(db_path)
    for own in (db, *(db.with_name(db.name + s) for s in ("-wal", "-shm", "-journal"))):
        if same_path(out, own):
            raise BenchError(f"--out {out} is the results store {db} itself (or one of its files); writing the CSV "
                             "there would destroy it, so choose another file.")
    text = to_dataframe(db_path).to_csv(index=False)
    atomic_write_text(out, text)
    return out
