"""What an evaluation's output folder may already hold: the rule that keeps ``bench eval`` and
``bench merge`` from overwriting an evaluation or mixing its parts with another run's.

Every finished part (``parts/*.json``, ``parts/blocks/*/*.json``) carries the fingerprint of the run
that made it (checkpoint hash, suite hash, seed, threat, example count, cascade, batch size, shard,
data file, member); ``result.json`` names the checkpoint and suite. The rule:

- an empty or new folder: any evaluation may write there;
- a folder holding an evaluation, without ``--resume``: refused, even for the same run (a re-run
  could differ, on another device, and would replace what is there): pass ``--resume`` to continue
  or reuse it, or choose a new ``--out``;
- with ``--resume``: every part there must have this run's fingerprint (the finished ones are reused,
  the rest computed); a part of another run (another checkpoint, suite, seed, threat, batch size,
  data file ...) is refused, naming what differs, so a stale part is never mixed in and an
  evaluation of another run is never replaced;
- ``bench merge`` writes into a folder only where it is new or holds the same run (the merge of the
  same shards, or the unsharded run they are shards of: the same numbers).

Example::

    check_eval_folder(out, None, resume=False)       # up front in the CLI: no fingerprint needed
    check_eval_folder(out, fingerprint, resume=True)  # before the first attack
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from robustbench_lite.errors import BenchError

#: fingerprint keys whose values are too long to print: named only
_NAMED = ("suite", "checkpoint", "threat", "member", "data_file", "model")


def _read_fingerprint(path: Path) -> Any:
    try:
        return json.loads(path.read_text()).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return "unreadable"


def existing_parts(out: Path) -> dict[Path, Any]:
    """The finished parts in ``out/parts`` (and the first block of each unfinished part's folder), each
    with its fingerprint (``"unreadable"`` for a damaged file)."""
    parts_dir = out / "parts"
    if not parts_dir.is_dir():
        return {}
    found = {p: _read_fingerprint(p) for p in sorted(parts_dir.glob("*.json"))}
    blocks = parts_dir / "blocks"
    if blocks.is_dir():
        for folder in sorted(q for q in blocks.iterdir() if q.is_dir()):
            for p in sorted(folder.glob("*.json"))[:1]:  # the blocks of one folder are written by one run
                found[p] = _read_fingerprint(p)
    return found


def holds_evaluation(out: Path) -> bool:
    """Whether ``out`` holds an evaluation's result or any finished part."""
    return (out / "result.json").is_file() or bool(existing_parts(out))


def _describe(out: Path) -> str:
    """'the evaluation of runs/a/checkpoint.pt with suite quick' or 'an evaluation' when unknown."""
    try:
        rec = json.loads((out / "result.json").read_text())
        ck, suite = (rec.get("checkpoint") or {}).get("path"), (rec.get("suite") or {}).get("name")
        if ck and suite:
            return f"the evaluation of {ck} with suite {suite}"
    except (OSError, ValueError, AttributeError):
        pass
    return "an evaluation"


def _difference(old: Any, new: dict[str, Any]) -> str:
    if not isinstance(old, dict):
        return "an unreadable fingerprint"
    keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return ", ".join(f"another {k}" if k in _NAMED else f"{k} {old.get(k)} (now {new.get(k)})" for k in keys) \
        or "another fingerprint"


def check_eval_folder(out: str | Path, fingerprint: dict[str, Any] | None, *, resume: bool,
                      flag: str = "--out") -> None:
    """Refuse (one sentence) an output folder this evaluation must not write in (see the module's rule).
    ``fingerprint=None`` checks only what needs no fingerprint (the CLI's first look, before loading)."""
    out = Path(out)
    if not out.is_dir() or not holds_evaluation(out):
        return
    if not resume:
        raise BenchError(f"{flag} {out} already holds {_describe(out)}; pass --resume to continue it (finished parts "
                         f"of the same run are reused), or choose a new {flag}.")
    if fingerprint is None:
        return
    for path, old in existing_parts(out).items():
        if old != fingerprint:
            raise BenchError(f"{flag} {out} holds parts of another run ({path.name} was made with "
                             f"{_difference(old, fingerprint)}); --resume continues only the same run: "
                             f"choose a new {flag}.")
    if not existing_parts(out):  # a result.json without parts: compare what it names
        _check_result_matches(out, fingerprint, flag, "--resume continues only the same run")


def _check_result_matches(out: Path, fingerprint: dict[str, Any], flag: str, why: str) -> None:
    try:
        rec = json.loads((out / "result.json").read_text())
    except (OSError, ValueError):
        raise BenchError(f"{flag} {out} holds a result.json that cannot be read; choose a new {flag}.") from None
    got = {"checkpoint": (rec.get("checkpoint") or {}).get("sha256"), "suite": (rec.get("suite") or {}).get("hash"),
           "seed": rec.get("seed"), "threat": rec.get("threat")}
    if any(fingerprint.get(k) != v for k, v in got.items()):
        raise BenchError(f"{flag} {out} holds {_describe(out)}, another run; {why}: choose a new {flag}.")


def check_merge_folder(out: str | Path, fingerprint: dict[str, Any]) -> None:
    """``bench merge``: ``out`` must be new, empty, or hold the same run (see the module's rule)."""
    out = Path(out)
    if not out.is_dir() or not holds_evaluation(out):
        return
    parts = existing_parts(out)
    for path, old in parts.items():
        if old != fingerprint:
            raise BenchError(f"--out {out} already holds {_describe(out)}, another run ({path.name} was made with "
                             f"{_difference(old, fingerprint)}); merge into a new --out.")
    if not parts:
        _check_result_matches(out, fingerprint, "--out", "a merge writes only into a new folder or one of the same run")
