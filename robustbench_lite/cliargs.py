"""What every ``bench`` command shares: argparse types, the notes, the up-front output checks, the
summary table. A core module: it imports none of ``evaluations``, ``defenses`` or ``reports`` (not
even lazily), so each package's ``cli.py`` can use it without importing the front door
(:mod:`robustbench_lite.cli`).

Every package contributes its subcommands the same way: its ``cli.py`` has one
``add_<cmd>(sub)`` (the subparser, ending in ``set_defaults(func=cmd_<cmd>)``) and one
``cmd_<cmd>(args) -> int`` per command, and ``register(sub)`` calling the ``add_<cmd>`` in order.
Building a parser imports nothing heavy (no torch, pandas or matplotlib): each ``cmd_<cmd>``
imports what it needs when it runs, and checks its output paths before any long work.

Example::

    def register(sub: Subparsers) -> None:
        add_merge(sub)
        add_transfer(sub)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:  # pragma: no cover
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

# the files `bench eval` / `bench merge` write inside --out (a folder of one of these names is an error up front)
EVAL_FILES = ("result.json", "summary.csv", "sweeps.csv", "per_example.csv", "checks.json", "adversarials.npz")
TRAIN_FILES = ("checkpoint.pt", "log.csv")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` only where it tells something: not for flags, not for a None default,
    and not where the help text already says what the default is."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text.lower():
            return text
        return super()._get_help_string(action)


def note(text: str) -> None:
    """A remark the user should see that is not an error: ``bench: note: ...`` on stderr."""
    print(f"bench: note: {text}", file=sys.stderr)


def check_out_folder(path: str | Path, flag: str = "--out", files: Sequence[str] = ()) -> Path:
    """The one up-front check of an output folder (see :func:`robustbench_lite.files.check_output_path`)."""
    from .files import check_output_path

    return check_output_path(path, kind="folder", flag=flag, files=files)


def check_threat_text(text: str, dataset: str | None, *, flag: str = "--threat", allow_zero: bool = False) -> None:
    """Parse a --threat/--eps the user gave and check it against the [0,1] box of ``dataset``'s inputs
    (:meth:`ThreatModel.check_box`): a ball covering the box (or eps 0, unless ``allow_zero``) is an
    error; one that reaches the box's centre from every input is a note."""
    from .threat import ThreatModel

    tm = ThreatModel.parse(text, what=flag)
    if allow_zero and tm.eps == 0:
        return
    shape = None
    if dataset is not None:
        from .data import get_dataset

        shape = get_dataset(dataset).input_shape
    remark = tm.check_box(shape, what=flag)
    if remark:
        note(remark)


def checkpoint_dataset(model: str | Path) -> str | None:
    """The dataset a checkpoint of ours names (None for a plain state_dict); a bad file is a BenchError."""
    from .checkpoint import FORMAT, read_checkpoint_dict

    obj = read_checkpoint_dict(model)
    name = obj.get("dataset") if obj.get("format") == FORMAT else None
    return name if isinstance(name, str) else None


def note_n_examples(asked: int | None, used: int | None, dataset: str | None, flag: str = "--n-examples") -> None:
    """The note for an ``--n-examples`` larger than the test split (the record's ``n`` is the real count)."""
    if asked is None or used is None or asked <= used:
        return
    of = f" of {dataset}" if dataset else ""
    note(f"{flag} {asked:,} is more than the {used:,} test examples{of}; evaluated all {used:,}.")


def positive_int(text: str) -> int:
    """argparse type for counts and sizes: a bad value is argparse's one-line usage error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def format_summary(rec: dict[str, Any]) -> str:
    """The table ``bench eval``, ``bench merge`` print: one row per attack, the robust accuracy, the checks."""
    lines = [f"{'attack':<16}{'norm':<6}{'eps':>9}{'attacked':>9}{'acc %':>9}{'worst %':>9}{'sec':>9}"]
    for r in rec["summary"]:
        label = r.get("label", r["attack"])  # the suite's display name (records before format 2: 'attack')
        lines.append(f"{label:<16}{r['norm']:<6}{r['eps']:>9.4g}{r.get('attacked', r['n']):>9}{_pct(r['accuracy'])}"
                     f"{_pct(r['worst_case'])}{r['seconds']:>9.1f}")
    if _cascade_skipped(rec):
        lines.append("(acc %: points an attack did not run on, because an earlier attack at that threat broke them, "
                     "count as robust to it; --all-points runs every attack on every point)")
    at = f"{rec['threat']['norm']}:{rec['threat']['eps']:.4g}"
    if rec.get("robust_accuracy") is None:  # no attack at the threat backs a number: never the clean accuracy
        lines.append(f"robust accuracy (worst case at {at}): none, {rec.get('robust_accuracy_note') or 'no attack ran at the threat'}")
    else:
        lines.append(f"robust accuracy (worst case at {at}): {rec['robust_accuracy']:.2f}%")
    blank = [r for r in rec["summary"] if None in (r.get("accuracy"), r.get("worst_case")) and r.get("blank_reason")]
    lines += [f"(- for {r.get('label', r['attack'])} at {r['norm']}:{r['eps']:.4g}: {r['blank_reason']})" for r in blank]
    checks = rec.get("checks") or []
    failed = [c for c in checks if not c["passed"]]
    lines += [f"CHECK FAILED {c['name']}: {c['detail']}" for c in failed]
    if checks:
        lines.append(f"sanity checks: {len(checks) - len(failed)}/{len(checks)} passed (docs/checks.md explains each)")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    """A percentage in the summary table's 9-character column; blank (-) where there is none."""
    return f"{'-':>9}" if value is None else f"{value:>9.2f}"


def _cascade_skipped(rec: dict[str, Any]) -> bool:
    """Whether some attack row's accuracy counts points it skipped as robust: a row marked
    ``exact: false``, or (records without that mark) a cascading suite in which an attack ran on
    fewer points than the clean-correct ones."""
    rows = rec.get("attacks")
    if rows is None:
        rows = [r for r in rec.get("summary", []) if r.get("attack") != "clean"]
    if any("exact" in r for r in rows):
        return any(r.get("exact") is False for r in rows)
    if not (rec.get("suite") or {}).get("cascade"):
        return False
    attacked = [r.get("attacked") for r in rows if isinstance(r.get("attacked"), int)]
    if not attacked:
        return False
    n = rec.get("n")  # the examples this record's rows count (a shard's own)
    clean = rec.get("clean_accuracy")
    correct = max(attacked)  # the first attack of a cascade runs on every clean-correct point
    if isinstance(n, int) and isinstance(clean, (int, float)):
        correct = min(correct, round(clean * n / 100))
    return any(a < correct for a in attacked)
