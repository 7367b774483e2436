"""Reading ``result.json`` records written by ``bench eval``: validation and the derived numbers.

Every table, plot and store row is derived from a record through :func:`summarize`, so the
definitions below ("AutoAttack accuracy", "PGD accuracy", ...) live in exactly one place.

Example::

    >>> s = summarize(json.load(open("runs/eval/result.json")))
    >>> s.autoattack, s.robust, s.threat
    (85.2, 85.2, 'linf:0.3')
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from robustbench_lite.errors import BenchError
from robustbench_lite.threat import NORM_ALIASES, format_eps, format_threat, parse_eps, parse_threat  # noqa: F401
from robustbench_lite.results import (RESULT_FORMAT, RESULT_FORMAT_VERSION, column_value, num, same_eps,  # noqa: F401
                                     upgrade_record)
from robustbench_lite.results import recorded_robust

# Checkpoint file stems that say nothing about the model; the parent folder names it instead.
GENERIC_STEMS = frozenset({"ckpt", "checkpoint", "model", "last", "best", "final", "weights"})


def model_name(path: str, member: str = "model") -> str:
    """The checkpoint file stem (its folder's name when the stem is generic such as ``ckpt``)."""
    p = Path(str(path))
    name = p.parent.name if p.stem.lower() in GENERIC_STEMS and p.parent.name else p.stem
    name = name or "?"
    return name if member in ("", "model") else f"{name}[{member}]"


@dataclass(frozen=True)
class RecordSummary:
    """The numbers a leaderboard row needs, derived from one result record (accuracies in %)."""

    sha256: str
    path: str
    model: str
    arch: str
    dataset: str
    defense: str
    defense_config: Mapping[str, Any]
    member: str
    checkpoint_seed: int | None
    norm: str
    eps: float
    suite_name: str
    suite_hash: str
    n: int | None
    seed: int | None
    date: str
    versions: Mapping[str, Any]
    clean: float | None
    autoattack: float | None      # see robustbench_lite.results.column_value
    pgd: float | None
    auc: float | None
    min_pert: float | None
    robust: float | None
    checks: tuple[Mapping[str, Any], ...] = field(default=())
    autoattack_scope: str = ""    # "exact" (its own accuracy), "cascade" (worst case through its stage) or ""
    pgd_scope: str = ""
    num_classes: int | None = None
    threat_attacks: tuple[str, ...] = ()  # registry names of the attacks with a row at the threat
    robust_why: str = ""  # why ``robust`` is None (no attack ran at the threat on every point it had to)
    adaptive: tuple[str, ...] = ()  # the remedies of the adaptive evaluation that changed ``robust`` (evaluations.adaptive)

    @property
    def threat(self) -> str:
        return format_threat(self.norm, self.eps)

    @property
    def suite(self) -> str:
        """The suite that produced the record: its name, and for anything but this version's built-in
        file of that name, its hash (``custom`` when the name is not a built-in suite's)."""
        builtin = builtin_suites().get(self.suite_hash)
        if builtin is not None and builtin == self.suite_name:
            return builtin
        if self.suite_name in builtin_suites().values():
            return f"{self.suite_name} (edited or older text {self.suite_hash[:8]})"
        return f"{self.suite_name or '?'} (custom {self.suite_hash[:8]})"

    @property
    def verdict(self) -> str:
        """What kind of verdict the robust accuracy is: ``AutoAttack`` (AutoAttack was the only attack at
        the threat), ``fast verdict`` (this version's built-in fast suite: AutoAttack-grade, not
        AutoAttack) or ``worst case`` (per example over the suite's attacks at the threat); ``none``
        when no robust accuracy was measured."""
        if self.robust is None:
            return "none"
        if builtin_suites().get(self.suite_hash) == "fast":
            return "fast verdict"
        if set(self.threat_attacks) == {"autoattack"}:
            return "AutoAttack"
        return "worst case"

    @property
    def failed_checks(self) -> tuple[Mapping[str, Any], ...]:
        return tuple(c for c in self.checks if not c.get("passed", False))

    @property
    def checks_failed(self) -> int:
        return len(self.failed_checks)

    @property
    def total(self) -> float | None:
        """Sum = clean + robust (worst case over the suite)."""
        return None if self.clean is None or self.robust is None else self.clean + self.robust


@functools.lru_cache(maxsize=1)
def builtin_suites() -> dict[str, str]:
    """suite hash -> name of the suites shipped with this version (``evaluations/suites/*.toml``; the
    hash is the sha256 of the file's text, as :mod:`robustbench_lite.evaluations.suite` computes it).
    Read as data: reports never import the evaluation code."""
    spec = importlib.util.find_spec("robustbench_lite.evaluations")
    out: dict[str, str] = {}
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        for f in sorted(Path(folder, "suites").glob("*.toml")):
            out[hashlib.sha256(f.read_text(encoding="utf-8").encode()).hexdigest()] = f.stem
    return out


def validate_record(record: Any, where: str = "record") -> dict[str, Any]:
    """Check the few fields everything relies on; raise one clear :class:`BenchError` otherwise."""
    if not isinstance(record, dict):
        raise BenchError(f"{where} is not a JSON object.")
    fmt = record.get("format")
    if fmt != RESULT_FORMAT:
        raise BenchError(f"{where} is not a robustbench_lite result (format {fmt!r}, expected {RESULT_FORMAT!r}).")
    version = record.get("format_version", 0)
    if not isinstance(version, int) or version > RESULT_FORMAT_VERSION:
        raise BenchError(f"{where} has result format_version {version!r}; this version reads up to "
                         f"{RESULT_FORMAT_VERSION}, so upgrade robustbench_lite.")
    for key in ("checkpoint", "suite", "threat"):
        if not isinstance(record.get(key), dict):
            raise BenchError(f"{where} has no {key!r} object.")
    if not record["checkpoint"].get("sha256"):
        raise BenchError(f"{where} has no checkpoint.sha256, so it cannot be stored or compared.")
    if not record["suite"].get("hash"):
        raise BenchError(f"{where} has no suite.hash, so it cannot be stored or compared.")
    threat = record["threat"]
    if "norm" not in threat or "eps" not in threat:
        raise BenchError(f"{where} has a threat without 'norm' and 'eps'.")
    parse_threat(f"{threat['norm']}:{threat['eps']}")
    return record


def read_record(path: str | Path) -> dict[str, Any]:
    """Load and validate one ``result.json``."""
    p = Path(path)
    try:
        record = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchError(f"result file {p} does not exist.") from None
    except json.JSONDecodeError as e:
        raise BenchError(f"result file {p} is not valid JSON ({e.msg} at line {e.lineno}).") from None
    return validate_record(record, where=str(p))


def sweep_auc(record: Mapping[str, Any], norm: str) -> float | None:
    """Mean over attacks of the sweep AUC for ``norm`` (each attack's curve counted once)."""
    per_attack: dict[str, float] = {}
    for row in record.get("sweeps") or []:
        row_norm = NORM_ALIASES.get(str(row.get("norm", "")).lower())
        auc = num(row.get("auc"))
        if row_norm == norm and auc is not None:
            per_attack.setdefault(str(row.get("label", row.get("attack"))), auc)
    return sum(per_attack.values()) / len(per_attack) if per_attack else None


def summarize(record: Mapping[str, Any]) -> RecordSummary:
    """Derive the leaderboard numbers of a (validated) record."""
    validate_record(record)
    record = upgrade_record(record)
    ck = record["checkpoint"]
    norm, eps = parse_threat(f"{record['threat']['norm']}:{record['threat']['eps']}")
    rows = [{**r, "norm": NORM_ALIASES.get(str(r.get("norm", norm)).lower(), r.get("norm")), "eps": r.get("eps", eps)}
            for r in record.get("attacks") or [] if isinstance(r, Mapping)]
    aa, pgd = column_value(rows, "autoattack", norm, eps), column_value(rows, "pgd", norm, eps)
    min_pert = next((v for v in (num(r.get("mean_min_norm")) for r in record.get("attacks") or []
                                 if r.get("attack") == "min_linf") if v is not None), None)
    checks = tuple(dict(c) for c in record.get("checks") or [] if isinstance(c, Mapping))
    seed = ck.get("seed")
    robust, robust_why = recorded_robust(record)
    if robust is None and num(record.get("robust_accuracy")) is not None:
        # a record (of an older version) whose robust accuracy no attack at the threat produced: it is
        # the clean accuracy under another name, never shown as robust
        robust_why = (f"no attack of the suite ran at {format_threat(norm, eps)}, so the recorded "
                      f"robust accuracy ({float(record['robust_accuracy']):g}%) is not an attack's")
    at_threat = tuple(dict.fromkeys(str(r.get("attack")) for r in rows
                                    if r.get("norm") == norm and same_eps(num(r.get("eps")), eps)))
    path = str(ck.get("path", ""))
    member = str(ck.get("member") or "model")
    return RecordSummary(
        sha256=str(ck["sha256"]), path=path, model=model_name(path, member), arch=str(ck.get("arch", "")),
        dataset=str(ck.get("dataset", "")), defense=str(ck.get("defense", "")),
        defense_config=dict(ck.get("defense_config") or {}), member=member,
        checkpoint_seed=int(seed) if isinstance(seed, (int, float)) and not isinstance(seed, bool) else None,
        norm=norm, eps=eps, suite_name=str(record["suite"].get("name", "")), suite_hash=str(record["suite"]["hash"]),
        n=int(record["n"]) if num(record.get("n")) is not None else None,
        seed=int(record["seed"]) if num(record.get("seed")) is not None else None,
        date=str(record.get("date", "")), versions=dict(record.get("versions") or {}),
        clean=num(record.get("clean_accuracy")), autoattack=aa.value, pgd=pgd.value,
        auc=sweep_auc(record, norm), min_pert=min_pert, robust=robust, checks=checks,
        autoattack_scope=aa.scope, pgd_scope=pgd.scope,
        num_classes=int(ck["num_classes"]) if num(ck.get("num_classes")) is not None else None,
        threat_attacks=at_threat, robust_why=robust_why,
        adaptive=_changed_by(record.get("adaptive")),
    )


def _changed_by(adaptive: Any) -> tuple[str, ...]:
    """The remedies that ran and broke points, when the adaptive evaluation changed the robust accuracy."""
    if not isinstance(adaptive, Mapping) or not adaptive.get("changed"):
        return ()
    return tuple(str(r.get("remedy")) for r in adaptive.get("remedies") or []
                 if isinstance(r, Mapping) and r.get("ran") and (r.get("broken") or r.get("remedy") == "eot"))


def adaptive_lines(record: Mapping[str, Any]) -> list[str]:
    """What the adaptive evaluation did (``record["adaptive"]``, evaluations.adaptive), one plain
    sentence per remedy, then the robust accuracy before and after; [] when no remedy was asked for."""
    ad = record.get("adaptive")
    if not isinstance(ad, Mapping):
        return []
    lines = []
    for r in ad.get("remedies") or []:
        if not isinstance(r, Mapping):
            continue
        why = ", ".join(str(c) for c in r.get("reasons") or []) or "asked for"
        if r.get("ran"):
            lines.append(f"adaptive[{r.get('remedy')}] (for {why}): broke {r.get('broken', 0)} of the {r.get('points', 0)} "
                         f"points still robust in {float(r.get('seconds') or 0):.1f} s; {r.get('note') or ''}".rstrip("; "))
        else:
            lines.append(f"adaptive[{r.get('remedy')}] (for {why}) did not run: {r.get('note') or 'no reason recorded'}")
    before, after = num(ad.get("robust_accuracy_before")), num(ad.get("robust_accuracy_after"))
    if before is not None or after is not None:
        fmt = lambda v: "blank" if v is None else f"{v:.2f}%"  # noqa: E731
        lines.append(f"robust accuracy {fmt(before)} before the remedies, {fmt(after)} after"
                     + (" (changed by the escalation)" if ad.get("changed") else " (unchanged)"))
    exp = ad.get("expected")
    if isinstance(exp, Mapping):
        lines.append(f"randomised model: accuracies are expected accuracies over {exp.get('verdict_draws')} fresh draws "
                     f"per point ({exp.get('definition', '')})")
    return lines
