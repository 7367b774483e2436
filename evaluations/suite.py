"""Suites are TOML files: ``evaluations/suites/<name>.toml`` or a user's own file.

Format::

    name = "quick"
    description = "..."
    cascade = false          # true: an attack runs only on points every earlier attack left robust
    [[attacks]]
    name = "pgd"             # a registered attack
    label = "pgd20"          # optional display name (default: name)
    norm = "linf"            # optional; default the evaluation's threat norm
    eps = ["0.1", "0.3"]     # optional; one value or a sweep; default the threat's eps
    eps_scale = [0.5, 1, 2]  # optional instead of eps: multiples of the dataset's standard radius
                             # for the attack's norm (the threat's eps when it is the threat norm)
    cascade = false          # optional; overrides the suite's cascade for this attack (black-box
                             # attacks use it so their own accuracy, compared in the checks, is exact)
    steps = 20               # any option of the attack's class

Unknown keys or attack names are clear errors listing what is valid.
"""
from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustbench_lite.errors import BenchError, is_number
from robustbench_lite.threat import NORMS, parse_eps

from .attacks import ATTACKS, Attack, attack_fields, create_attack
from .attacks.user import is_user_attack, load_user_attack, user_attack_hash

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SUITES_DIR = Path(__file__).parent / "suites"
_TOP_KEYS = {"name", "description", "cascade", "attacks", "checks", "surrogates", "max_eps"}
_ENTRY_KEYS = {"name", "label", "norm", "eps", "eps_scale", "cascade"}


@dataclass(frozen=True)
class AttackSpec:
    name: str
    label: str
    attack: Attack
    norm: str | None
    eps: tuple[float, ...] | None
    cascade: bool | None = None  # None: the suite's setting
    eps_scale: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    cascade: bool
    attacks: tuple[AttackSpec, ...]
    hash: str
    text: str
    checks: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def suite_names() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def load_suite(name_or_path: str | Path) -> Suite:
    """A suite by name (``quick``, ``full``, ...) or from a TOML file path."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise BenchError(f"suite file {p} does not exist.")
        text = p.read_text()
    else:
        f = SUITES_DIR / f"{name_or_path}.toml"
        if not f.is_file():
            raise BenchError(f"unknown suite {str(name_or_path)!r}; known: {', '.join(suite_names())} (or a .toml file).")
        text = f.read_text()
    return parse_suite(text, default_name=p.stem)


def parse_suite(text: str, default_name: str = "custom") -> Suite:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise BenchError(f"the suite is not valid TOML: {e}.") from None
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise BenchError(f"unknown suite key(s) {', '.join(unknown)}; valid: {', '.join(sorted(_TOP_KEYS))}.")
    entries = data.get("attacks", [])
    if not isinstance(entries, list) or not entries:
        raise BenchError("a suite needs at least one [[attacks]] entry.")
    specs: list[AttackSpec] = []
    labels: set[str] = set()
    user_files: list[str] = []
    for i, entry in enumerate(entries):
        if "name" not in entry:
            raise BenchError(f"attack entry {i + 1} has no 'name'; known attacks: {', '.join(ATTACKS.names())}.")
        name = entry["name"]
        if isinstance(name, str) and is_user_attack(name):  # "file.py:Class" / "module:Class" (attacks/user.py)
            user_files.append(f"{name}={user_attack_hash(name)}")
            load_user_attack(name)
        cls = ATTACKS.get(name)
        opts = {k: v for k, v in entry.items() if k not in _ENTRY_KEYS}
        bad = sorted(set(opts) - set(attack_fields(cls)))
        if bad:
            raise BenchError(f"attack {name!r} has no option {', '.join(bad)}; valid: {', '.join(sorted(_ENTRY_KEYS | set(attack_fields(cls)) - {'norm'}))}.")
        norm = entry.get("norm")
        if norm is not None and norm not in NORMS:
            raise BenchError(f"attack {name!r}: unknown norm {norm!r}; known: {', '.join(NORMS)}.")
        eps_v = entry.get("eps")
        eps: tuple[float, ...] | None = None
        if eps_v is not None:
            eps = tuple(sorted(parse_eps(e) for e in (eps_v if isinstance(eps_v, list) else [eps_v])))
        scale_v = entry.get("eps_scale")
        scale: tuple[float, ...] | None = None
        if scale_v is not None:
            if eps is not None:
                raise BenchError(f"attack {name!r}: give 'eps' or 'eps_scale', not both.")
            vals = scale_v if isinstance(scale_v, list) else [scale_v]
            if not all(is_number(v) and v >= 0 for v in vals):
                raise BenchError(f"attack {name!r}: 'eps_scale' must be non-negative numbers.")
            scale = tuple(sorted(float(v) for v in vals))
        for k, v in list(opts.items()):
            if isinstance(v, list):
                opts[k] = tuple(v)
        label = entry.get("label", name)
        if label in labels:
            raise BenchError(f"two suite attacks share the label {label!r}; give one a distinct 'label'.")
        labels.add(label)
        attack = create_attack(name, **({"norm": norm} if norm else {}), **opts)
        casc = entry.get("cascade")
        if casc is not None and not isinstance(casc, bool):
            raise BenchError(f"attack {label!r}: 'cascade' must be true or false.")
        specs.append(AttackSpec(name, label, attack, norm, eps, casc, scale))
    surrogates = data.get("surrogates", [])
    if not isinstance(surrogates, list) or not all(isinstance(v, str) for v in surrogates):
        raise BenchError("'surrogates' must be a list of checkpoint paths.")
    for path in surrogates:  # each adds a black-box transfer attack (evaluations.attacks.transfer)
        label = f"transfer[{Path(path).stem}]"
        specs.append(AttackSpec("transfer", label, create_attack("transfer", surrogate=path), None, None, False))
    max_eps = data.get("max_eps", {})
    if not isinstance(max_eps, dict) or not all(k in NORMS for k in max_eps):
        raise BenchError(f"'max_eps' must be a table norm = eps with norms among {', '.join(NORMS)}.")
    return Suite(
        name=str(data.get("name", default_name)),
        description=str(data.get("description", "")),
        cascade=bool(data.get("cascade", True)),
        attacks=tuple(specs),
        hash=hashlib.sha256((text + "".join(f"\n#{u}" for u in user_files)).encode()).hexdigest(),
        text=text,
        checks=bool(data.get("checks", False)),
        extra={"max_eps": {k: parse_eps(v) for k, v in max_eps.items()}} if max_eps else {},
    )
