"""User mistakes the `bench` commands must answer with one sentence (exit 2, no traceback, nothing
already written lost): output paths that cannot be written, threat balls that cover the [0,1] box;
plus the notes (more --n-examples than the test split), --no-progress, the cascade footnote and a
`bench --help` that builds its parser without importing torch."""
import errno
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from robustbench_lite import progress
from robustbench_lite.cli import build_parser, main
from robustbench_lite.cliargs import format_summary
from robustbench_lite.errors import BenchError
from robustbench_lite.threat import ThreatModel
from robustbench_lite.utils import check_output_path
from eval_helpers import one_clear_error, run_cli

KEEP = b"an earlier result that must survive\n"


_run = run_cli


_one_clear_error = one_clear_error


# -- output paths -----------------------------------------------------------------------------------

def _folder_commands(tmp):
    """Every command that writes an output folder, with inputs that make it fail fast if the
    output path is *not* checked first (a missing model, a missing database ...)."""
    missing = tmp / "missing.pt"
    return {
        "eval": lambda out: ["eval", "--model", missing, "--out", out, "--no-db"],
        "train": lambda out: ["train", "--defense", "natural", "--dataset", "synthetic", "--preset", "mnist5k",
                              "--epochs", "1", "--out", out, "--no-progress"],
        "train-seeds": lambda out: ["train", "--defense", "natural", "--dataset", "synthetic", "--preset", "mnist5k",
                                    "--epochs", "1", "--seeds", "1", "2", "--out", out, "--no-progress"],
        "demo": lambda out: ["demo", "--defenses", "natural", "--out", out],
        "merge": lambda out: ["merge", tmp / "shard0", "--out", out],
        "transfer": lambda out: ["transfer", "--surrogates", missing, "--targets", missing, "--out", out],
        "analyze": lambda out: ["analyze", "--model", missing, "--out", out],
        "report": lambda out: ["report", "--db", tmp / "missing.sqlite", "--out", out],
    }


FOLDER_COMMANDS = ["eval", "train", "train-seeds", "demo", "merge", "transfer", "analyze", "report"]


@pytest.fixture
def keep_file(tmp_path):
    f = tmp_path / "precious.txt"
    f.write_bytes(KEEP)
    return f


@pytest.mark.parametrize("command", FOLDER_COMMANDS)
def test_out_naming_an_existing_file_is_one_sentence(capsys, tmp_path, keep_file, command):
    code, _, err = _run(capsys, *_folder_commands(tmp_path)[command](keep_file))
    _one_clear_error(code, err, "--out", "existing file")
    assert keep_file.read_bytes() == KEEP


@pytest.mark.parametrize("command", FOLDER_COMMANDS)
def test_out_under_a_regular_file_is_one_sentence(capsys, tmp_path, keep_file, command):
    code, _, err = _run(capsys, *_folder_commands(tmp_path)[command](keep_file / "sub" / "run"))
    _one_clear_error(code, err, "--out", "which is a file")
    assert keep_file.read_bytes() == KEEP


@pytest.fixture
def locked(tmp_path, monkeypatch):
    """A folder the process may not write in (the tests run as root, so permissions are simulated)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    real_access = os.access

    def access(path, mode, *args, **kwargs):
        if Path(path).resolve() == folder.resolve() and mode & os.W_OK:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    return folder


@pytest.mark.parametrize("command", FOLDER_COMMANDS)
def test_out_in_an_unwritable_folder_is_one_sentence(capsys, tmp_path, locked, command):
    code, _, err = _run(capsys, *_folder_commands(tmp_path)[command](locked / "run"))
    _one_clear_error(code, err, "--out", "no permission")
    assert list(locked.iterdir()) == []


@pytest.mark.parametrize("command", FOLDER_COMMANDS)
def test_out_naming_an_unwritable_folder_is_one_sentence(capsys, tmp_path, locked, command):
    code, _, err = _run(capsys, *_folder_commands(tmp_path)[command](locked))
    _one_clear_error(code, err, "--out", "not writable")


def _db(path):
    """An SQLite results store with no results table yet (export writes just the header). A file
    with another application's tables is refused instead (tests/test_reports_store_safety.py)."""
    with sqlite3.connect(str(path)) as conn:
        conn.execute("PRAGMA user_version = 2")  # a non-empty SQLite file without tables
    conn.close()
    return path


def test_export_out_naming_a_folder_is_one_sentence(capsys, tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "old.csv").write_bytes(KEEP)
    code, _, err = _run(capsys, "export", "--db", tmp_path / "missing.sqlite", "--out", folder)
    _one_clear_error(code, err, "--out", "is a folder")
    assert (folder / "old.csv").read_bytes() == KEEP


def test_export_out_under_a_file_or_unwritable_is_one_sentence(capsys, tmp_path, keep_file, locked):
    code, _, err = _run(capsys, "export", "--db", tmp_path / "missing.sqlite", "--out", keep_file / "x.csv")
    _one_clear_error(code, err, "--out", "which is a file")
    assert keep_file.read_bytes() == KEEP
    code, _, err = _run(capsys, "export", "--db", tmp_path / "missing.sqlite", "--out", locked / "x.csv")
    _one_clear_error(code, err, "--out", "no permission")


def test_export_replaces_its_csv_atomically(capsys, tmp_path):
    out = tmp_path / "table.csv"
    out.write_bytes(KEEP)
    code, _, err = _run(capsys, "export", "--db", tmp_path / "missing.sqlite", "--out", out)
    _one_clear_error(code, err, "does not exist")
    assert out.read_bytes() == KEEP  # a failed export leaves the old file
    code, _, err = _run(capsys, "export", "--db", _db(tmp_path / "lb.sqlite"), "--out", out)
    assert code == 0, err
    assert out.read_text().startswith("id,") and not list(tmp_path.glob(".table.csv.*"))


@pytest.mark.parametrize("bad", ["file", "folder", "under_file"])
def test_eval_db_that_cannot_be_a_store_is_caught_before_the_work(capsys, tmp_path, keep_file, bad):
    db = {"file": keep_file, "folder": tmp_path, "under_file": keep_file / "lb.sqlite"}[bad]
    code, _, err = _run(capsys, "eval", "--model", tmp_path / "missing.pt", "--out", tmp_path / "ev", "--db", db)
    _one_clear_error(code, err, "--db")
    assert keep_file.read_bytes() == KEEP
    assert not (tmp_path / "ev").exists()


def test_eval_file_where_an_output_folder_goes_is_one_sentence(capsys, tmp_path):
    out = tmp_path / "ev"
    (out / "result.json").mkdir(parents=True)
    code, _, err = _run(capsys, "eval", "--model", tmp_path / "missing.pt", "--out", out, "--no-db")
    _one_clear_error(code, err, "result.json")
    out2 = tmp_path / "ev2"
    out2.mkdir()
    (out2 / "parts").write_bytes(KEEP)
    code, _, err = _run(capsys, "eval", "--model", tmp_path / "missing.pt", "--out", out2, "--no-db")
    _one_clear_error(code, err, "parts")
    assert (out2 / "parts").read_bytes() == KEEP


def test_check_output_path_rules(tmp_path, keep_file):
    assert check_output_path(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checks only, creates nothing
    assert check_output_path(keep_file, kind="file") == keep_file  # a file output may replace a file
    with pytest.raises(BenchError, match="empty"):
        check_output_path("")
    with pytest.raises(BenchError, match="is a folder"):
        check_output_path(tmp_path, kind="file")
    with pytest.raises(BenchError, match="existing file"):
        check_output_path(keep_file)
    with pytest.raises(BenchError, match="which is a file"):
        check_output_path(keep_file / "a.csv", kind="file", flag="--db")
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(BenchError, match="broken symbolic link"):
        check_output_path(link)
    with pytest.raises(BenchError, match="broken symbolic link"):
        check_output_path(link / "sub")
    (tmp_path / "out" / "log.csv").mkdir(parents=True)
    with pytest.raises(BenchError, match="log.csv"):
        check_output_path(tmp_path / "out", files=("checkpoint.pt", "log.csv"))
    with pytest.raises(ValueError):
        check_output_path(tmp_path, kind="pipe")


# -- OSError while writing: one sentence when it is the user's path or disk, a traceback for a bug ------

def _raising_evaluate(exc):
    def fake(*args, **kwargs):
        raise exc

    return fake


@pytest.mark.parametrize("exc,needle", [
    (PermissionError(errno.EACCES, "Permission denied", "RUN/summary.csv"), "summary.csv: permission denied"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "RUN/.result.json.tmp", None, "RUN/result.json"),
     "result.json: is a directory"),
    (OSError(errno.ENOSPC, "No space left on device"), "no space left on device"),
])
def test_os_error_of_the_users_disk_is_one_sentence(capsys, tmp_path, monkeypatch, exc, needle):
    import robustbench_lite.evaluations.evaluate
    monkeypatch.setattr(robustbench_lite.evaluations.evaluate, "evaluate", _raising_evaluate(exc))
    code, _, err = _run(capsys, "eval", "--model", tmp_path / "m.pt", "--out", tmp_path / "ev", "--no-db")
    _one_clear_error(code, err, needle)


@pytest.mark.parametrize("exc", [OSError("an internal failure without a file"),
                                 OSError(errno.EIO, "Input/output error", "x"), ValueError("a bug")])
def test_other_errors_keep_their_traceback(tmp_path, monkeypatch, exc):
    import robustbench_lite.evaluations.evaluate
    monkeypatch.setattr(robustbench_lite.evaluations.evaluate, "evaluate", _raising_evaluate(exc))
    with pytest.raises(type(exc)):
        main(["eval", "--model", str(tmp_path / "m.pt"), "--out", str(tmp_path / "ev"), "--no-db"])


# -- threat models beyond the [0,1] box ------------------------------------------------------------

@pytest.mark.parametrize("text,shape", [
    ("linf:5", None), ("linf:1", None), ("linf:1.5", (1, 28, 28)), ("l2:28", (1, 28, 28)), ("l2:100", (1, 28, 28)),
    ("l1:784", (1, 28, 28)), ("l1:5000", (3, 32, 32)), ("l2:55.5", (3, 32, 32)), ("linf:0", None), ("l2:0", (1, 28, 28)),
])
def test_a_ball_covering_the_box_or_of_radius_0_is_an_error(text, shape):
    with pytest.raises(BenchError, match="--threat"):
        ThreatModel.parse(text).check_box(shape)


@pytest.mark.parametrize("text,shape,noted", [
    ("linf:0.3", (1, 28, 28), False), ("linf:8/255", (3, 32, 32), False), ("l2:2", (1, 28, 28), False),
    ("l1:12", (3, 32, 32), False), ("l2:100", None, False),  # L2 without a shape: nothing to compare with
    ("linf:0.5", (1, 28, 28), True), ("linf:0.99", None, True), ("l2:14", (1, 28, 28), True),
    ("l1:400", (1, 28, 28), True),
])
def test_a_sensible_ball_passes_and_one_reaching_the_centre_is_noted(text, shape, noted):
    remark = ThreatModel.parse(text).check_box(shape)
    assert (remark is not None) == noted
    if noted:
        assert "grey" in remark


@pytest.mark.parametrize("threat", ["linf:5", "linf:1", "l2:28", "l2:1e3", "l1:784", "linf:0", "0"])
def test_eval_threat_beyond_the_box_is_one_sentence(capsys, tmp_path, synthetic_ckpt, threat):
    out = tmp_path / "ev"
    code, _, err = _run(capsys, "eval", "--model", synthetic_ckpt, "--threat", threat, "--out", out, "--no-db")
    _one_clear_error(code, err, "--threat")
    assert not out.exists()


def test_transfer_and_train_check_the_threat_too(capsys, tmp_path, synthetic_ckpt):
    out = tmp_path / "tr"
    code, _, err = _run(capsys, "transfer", "--surrogates", synthetic_ckpt, "--targets", synthetic_ckpt,
                        "--threat", "linf:5", "--out", out)
    _one_clear_error(code, err, "--threat", "covers")
    assert not out.exists()
    code, _, err = _run(capsys, "train", "--defense", "madry", "--dataset", "synthetic", "--preset", "mnist5k",
                        "--eps", "5", "--out", tmp_path / "t", "--no-progress")
    _one_clear_error(code, err, "--eps", "covers")
    assert not (tmp_path / "t" / "checkpoint.pt").exists()


def _record(n=64, clean=100.0, cascade=False, attacked=(64, 64), exact=None, dataset="synthetic"):
    rows = [{"attack": "clean", "label": "clean", "norm": "linf", "eps": 0.0, "n": n, "attacked": n,
             "accuracy": clean, "worst_case": clean, "seconds": 0.0}]
    for i, a in enumerate(attacked):
        row = {"attack": "pgd", "label": f"pgd{i}", "norm": "linf", "eps": 0.3, "n": n, "attacked": a,
               "accuracy": 50.0, "worst_case": 40.0, "seconds": 1.0}
        if exact is not None:
            row["exact"] = exact[i]
        rows.append(row)
    return {"summary": rows, "attacks": rows[1:], "threat": {"norm": "linf", "eps": 0.3}, "robust_accuracy": 40.0,
            "clean_accuracy": clean, "n": n, "suite": {"name": "s", "cascade": cascade},
            "checkpoint": {"dataset": dataset}, "checks": []}


@pytest.mark.parametrize("threat,noted", [("linf:0.3", False), ("l2:2", False), ("linf:0.6", True)])
def test_eval_sensible_threat_runs_and_a_huge_one_is_noted(capsys, tmp_path, monkeypatch, synthetic_ckpt, threat,
                                                           noted):
    import robustbench_lite.evaluations.evaluate
    seen = {}

    def fake(model, out, opts):
        seen["threat"] = opts.threat
        return _record()

    monkeypatch.setattr(robustbench_lite.evaluations.evaluate, "evaluate", fake)
    code, _, err = _run(capsys, "eval", "--model", synthetic_ckpt, "--threat", threat, "--out", tmp_path / "ev",
                        "--no-db")
    assert code == 0, err
    assert seen["threat"] == threat
    assert ("bench: note: --threat" in err) == noted


# -- --n-examples beyond the test split ---------------------------------------------------------------

def test_n_examples_beyond_the_split_is_a_note_and_n_is_the_real_count(capsys, caplog, tmp_path, synthetic_ckpt):
    suite = tmp_path / "tiny.toml"
    suite.write_text('name = "tiny"\ncascade = false\n\n[[attacks]]\nname = "pgd"\nlabel = "pgd2"\nsteps = 2\n')
    out = tmp_path / "ev"
    code, stdout, err = _run(capsys, "eval", "--model", synthetic_ckpt, "--suite", suite, "--n-examples", "100000",
                             "--out", out, "--no-db")
    assert code == 0, err
    notes = [line for line in err.splitlines() if line.startswith("bench: note:")]
    assert len(notes) == 1 and "100,000" in notes[0] and "64 test examples of synthetic" in notes[0], err
    rec = json.loads((out / "result.json").read_text())
    assert rec["n"] == 64 and len(rec["indices"]) == 64
    assert any("100,000 examples were asked for" in r.getMessage() for r in caplog.records)


def test_n_examples_within_the_split_has_no_note(capsys, tmp_path, monkeypatch, synthetic_ckpt):
    import robustbench_lite.evaluations.evaluate
    monkeypatch.setattr(robustbench_lite.evaluations.evaluate, "evaluate", lambda model, out, opts: _record(n=64))
    code, _, err = _run(capsys, "eval", "--model", synthetic_ckpt, "--n-examples", "64", "--out", tmp_path / "ev",
                        "--no-db")
    assert code == 0 and "bench: note:" not in err, err
    code, _, err = _run(capsys, "eval", "--model", synthetic_ckpt, "--n-examples", "65", "--out", tmp_path / "ev",
                        "--no-db")
    assert code == 0 and "bench: note: --n-examples 65 is more than the 64 test examples of synthetic" in err, err


# -- the cascade footnote ------------------------------------------------------------------------------

FOOTNOTE = "count as robust to it"


@pytest.mark.parametrize("rec,shown", [
    (_record(cascade=False, attacked=(64, 64)), False),
    (_record(cascade=False, attacked=(64, 30)), False),  # a sweep's own broken points, not a cascade
    (_record(cascade=True, attacked=(64, 64)), False),  # nothing was skipped
    (_record(cascade=True, attacked=(64, 30)), True),
    (_record(clean=50.0, cascade=True, attacked=(32, 32)), False),  # every clean-correct point attacked
    (_record(cascade=False, attacked=(64, 30), exact=(True, False)), True),  # rows that say so win
    (_record(cascade=True, attacked=(64, 30), exact=(True, True)), False),
])
def test_cascade_footnote_only_where_a_cascade_skipped_points(rec, shown):
    assert (FOOTNOTE in format_summary(rec)) == shown


# -- --no-progress ---------------------------------------------------------------------------------------

def _stop_and_record(seen):
    def fake(*args, **kwargs):
        seen["enabled"] = progress.enabled()
        seen["kwargs"] = kwargs
        raise BenchError("stopped by the test")

    return fake


@pytest.mark.parametrize("command", ["eval", "transfer", "analyze", "demo", "train"])
def test_no_progress_turns_the_bars_off_for_the_command_only(capsys, tmp_path, monkeypatch, command):
    seen = {}
    fake = _stop_and_record(seen)
    ck = str(tmp_path / "m.pt")
    if command == "eval":
        import robustbench_lite.evaluations.evaluate
        monkeypatch.setattr(robustbench_lite.evaluations.evaluate, "evaluate", fake)
        argv = ["eval", "--model", ck, "--out", tmp_path / "o", "--no-db"]
    elif command == "transfer":
        import robustbench_lite.evaluations.transfer
        monkeypatch.setattr(robustbench_lite.evaluations.transfer, "transfer_matrix", fake)
        argv = ["transfer", "--surrogates", ck, "--targets", ck, "--out", tmp_path / "o"]
    elif command == "analyze":
        import robustbench_lite.evaluations.analyses
        monkeypatch.setattr(robustbench_lite.evaluations.analyses, "analyze", fake)
        argv = ["analyze", "--model", ck, "--out", tmp_path / "o"]
    else:
        import robustbench_lite.defenses
        monkeypatch.setattr(robustbench_lite.defenses, "train", fake)
        argv = (["demo", "--defenses", "natural", "--out", tmp_path / "o"] if command == "demo" else
                ["train", "--defense", "natural", "--dataset", "synthetic", "--preset", "mnist5k", "--out", tmp_path / "o"])
    monkeypatch.setattr(progress, "_enabled", None)
    monkeypatch.delenv("BENCH_PROGRESS", raising=False)
    code, _, err = _run(capsys, *argv, "--no-progress")
    _one_clear_error(code, err, "stopped by the test")
    assert seen["enabled"] is False
    if command in ("train", "demo"):
        assert seen["kwargs"]["progress"] is False
    assert progress.enabled()  # restored: main() does not leak the setting into the process
    code, _, err = _run(capsys, *argv)
    _one_clear_error(code, err, "stopped by the test")
    assert seen["enabled"] is True


# -- the parser: every subcommand, fast, none lost to an ImportError ------------------------------------

ALL_COMMANDS = {"train", "eval", "demo", "merge", "transfer", "analyze", "verify", "reproduce", "ardist", "leaderboard",
                "report", "serve", "export"}


def test_help_lists_every_command_without_importing_torch():
    code = ("import json, sys\n"
            "from robustbench_lite.cli import build_parser\n"
            "p = build_parser()\n"
            "sub = {a.dest: a for a in p._actions}['command']\n"
            "print(json.dumps(sorted(sub.choices)))\n"
            "print(json.dumps(sorted(m for m in ('torch', 'torchvision', 'tqdm') if m in sys.modules)))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert res.returncode == 0, res.stderr
    commands, heavy = res.stdout.strip().splitlines()
    assert set(json.loads(commands)) == ALL_COMMANDS
    assert json.loads(heavy) == []


def test_help_imports_no_pandas_or_matplotlib():
    code = ("import sys\n"
            "from robustbench_lite.cli import build_parser\n"
            "build_parser()\n"
            "print(sorted(m for m in ('pandas', 'matplotlib') if m in sys.modules))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_a_subcommand_module_that_fails_to_import_is_not_silently_dropped(monkeypatch):
    import robustbench_lite.reports
    monkeypatch.delattr(robustbench_lite.reports, "cli", raising=False)
    monkeypatch.setitem(sys.modules, "robustbench_lite.reports.cli", None)  # importing it now raises ImportError
    with pytest.raises(ImportError):
        build_parser()


@pytest.mark.parametrize("package,commands", [
    ("defenses", ["train"]),
    ("evaluations", ["eval", "merge", "transfer", "analyze", "verify", "reproduce"]),
    ("reports", ["ardist", "leaderboard", "report", "serve", "export"]),
])
def test_each_package_registers_the_commands_that_run_its_code(package, commands):
    import argparse
    import importlib

    sub = argparse.ArgumentParser(prog="bench").add_subparsers(dest="command")
    importlib.import_module(f"robustbench_lite.{package}.cli").register(sub)
    assert list(sub.choices) == commands
    assert all(callable(p.get_default("func")) for p in sub.choices.values())


ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("evaluations", "defenses", "reports")


def _imported_modules(path: Path, package: str) -> set[str]:
    """Every module ``path`` imports anywhere (functions included), absolute; ``importlib.import_module``
    of a string literal counts too."""
    import ast

    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.add(node.args[0].value)
    return found


def _in(modules: set[str], prefixes: list[str]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


def test_the_core_imports_no_package_and_no_package_cli_imports_the_front_door():
    """The ground floor (robustbench_lite's own modules but the front door: cli.py, __init__.py,
    __main__.py) imports none of evaluations, defenses, reports, not even lazily; the packages' CLIs
    take their shared helpers from robustbench_lite.cliargs, never from robustbench_lite.cli."""
    upward = [f"robustbench_lite.{p}" for p in PACKAGES] + list(PACKAGES)
    core = [p for p in (ROOT / "robustbench_lite").rglob("*.py")
            if p.relative_to(ROOT).as_posix() not in ("robustbench_lite/cli.py", "robustbench_lite/__init__.py",
                                                       "robustbench_lite/__main__.py")]
    assert any(p.name == "cliargs.py" for p in core)
    for path in core:
        package = ".".join(path.relative_to(ROOT).parts[:-1])  # what a relative import starts from
        assert _in(_imported_modules(path, package), upward) == [], path
    for name in PACKAGES:
        path = ROOT / name / "cli.py"
        found = _imported_modules(path, f"robustbench_lite.{name}")
        assert _in(found, ["robustbench_lite.cli"]) == [], path
        assert "robustbench_lite.cliargs" in found, path


def test_defenses_stay_lazy_yet_complete():
    """`from robustbench_lite.defenses import cli` (the parser) loads no recipe; any public name loads them all."""
    code = ("import sys\n"
            "from robustbench_lite.defenses import cli\n"
            "print('torch' in sys.modules)\n"
            "from robustbench_lite.defenses import DEFENSES\n"
            "print(' '.join(DEFENSES.names()))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[1])
    assert res.returncode == 0, res.stderr
    lazy, names = res.stdout.strip().splitlines()
    assert lazy == "False"
    assert {"natural", "madry", "trades", "act", "afd", "arrest"} <= set(names.split())
