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
                             # (a 0 in a sweep is its clean anchor; a list of only 0s attacks nothing)
    cascade = false          # optional; overrides the suite's cascade for this attack (black-box
                             # attacks use it so their own accuracy, compared in the checks, is exact)
    steps = 20               # any option of the attack's class

Every key is checked as the CLI checks its flags, each mistake one sentence: unknown keys (top
level and per entry) or attack names, wrong types (``cascade``/``checks`` booleans, ``name``/
``description``/``label`` strings, attack options their declared types), empty or all-zero radius
lists, and radii outside the [0,1] box: a radius larger than the box's diameter in its norm (Linf 1;
L2 sqrt(D) and L1 D for D input values, checked against the dataset in :func:`check_suite_threat`),
or equal to it unless the suite declares it as the large-eps indicator stage (``max_eps`` for that
norm at or below the radius, as in ``fast`` and ``full``).

Before any work, :func:`check_suite_threat` refuses a suite with no attack at exactly the
evaluation's threat (norm and radius): its robust accuracy would be backed by no attack.
"""
from __future__ import annotations

import hashlib
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from robustbench_lite.errors import BenchError, is_number
from robustbench_lite.results import same_eps
from robustbench_lite.threat import NORM_ALIASES, NORMS, ThreatModel, format_threat, parse_eps

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


def _is_str(v: Any) -> bool:
    return isinstance(v, str) and bool(v.strip())


def _radii(where: str, key: str, value: Any, *, scale: bool = False) -> tuple[float, ...]:
    """An entry's ``eps`` (strings or numbers) or ``eps_scale`` (numbers): one value or a non-empty
    list, each finite and >= 0, not all 0 (a ball of radius 0 attacks nothing)."""
    vals = value if isinstance(value, list) else [value]
    if not vals:
        raise BenchError(f"{where}: {key!r} is an empty list; give at least one radius > 0.")
    out = []
    for v in vals:
        if scale:
            if not is_number(v) or not math.isfinite(v) or v < 0:
                raise BenchError(f"{where}: {key!r} must be non-negative numbers, got {v!r}.")
            out.append(float(v))
        elif isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise BenchError(f"{where}: {key!r} must be radii such as \"8/255\" or 0.3, got {v!r}.")
        else:
            try:
                out.append(parse_eps(v))
            except BenchError as e:
                raise BenchError(f"{where}: {key!r}: {str(e).rstrip('.')}.") from None
    if all(v == 0 for v in out):
        raise BenchError(f"{where}: {key!r} has only radius 0, which allows no perturbation (its accuracy would "
                         "be clean accuracy); give a radius > 0.")
    return tuple(sorted(set(out)))


def _bool(where: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise BenchError(f"{where}: {key!r} must be true or false, got {value!r}.")
    return value


def _box_limit(norm: str, eps: float, max_eps: Mapping[str, float], input_shape: Sequence[int] | None,
               where: str) -> None:
    """The [0,1]-box rule of ``--threat`` (:meth:`ThreatModel.check_box`) for a suite radius: never
    beyond the box's diameter in ``norm``; at the diameter (the whole box) only as the declared
    large-eps indicator stage (``max_eps[norm] <= eps``). Unknown input shapes check Linf only."""
    diameter = ThreatModel(norm, eps).box_diameter(input_shape)
    if diameter is None:
        return
    shape = f" of {'x'.join(str(int(s)) for s in input_shape)} inputs" if input_shape and norm != "linf" else ""
    if eps > diameter * (1 + 1e-9):
        raise BenchError(f"{where}: radius {format_threat(norm, eps)} lies beyond the [0,1] box{shape} (its {norm} "
                         f"diameter is {diameter:.4g}); give a radius < {diameter:.4g}.")
    declared = max_eps.get(norm)
    if eps >= diameter * (1 - 1e-9) and not (declared is not None and eps >= declared - 1e-12):
        raise BenchError(f"{where}: radius {format_threat(norm, eps)} covers the whole [0,1] box{shape}, so no model "
                         f"can be robust; give a smaller radius, or declare it the large-eps indicator with "
                         f"max_eps = {{ {norm} = \"{eps:g}\" }}.")


def parse_suite(text: str, default_name: str = "custom") -> Suite:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise BenchError(f"the suite is not valid TOML: {e}.") from None
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise BenchError(f"unknown suite key(s) {', '.join(unknown)}; valid: {', '.join(sorted(_TOP_KEYS))}.")
    for key in ("name", "description"):
        if key in data and not (isinstance(data[key], str) and (key == "description" or data[key].strip())):
            raise BenchError(f"the suite's {key!r} must be a{' non-empty' if key == 'name' else ''} string, got {data[key]!r}.")
    cascade = _bool("the suite", "cascade", data.get("cascade", True))
    checks = _bool("the suite", "checks", data.get("checks", False))
    max_eps_v = data.get("max_eps", {})
    if not isinstance(max_eps_v, dict) or not all(k in NORMS for k in max_eps_v):
        raise BenchError(f"'max_eps' must be a table norm = eps with norms among {', '.join(NORMS)}.")
    max_eps: dict[str, float] = {}
    for k, v in max_eps_v.items():
        if isinstance(v, list):
            raise BenchError(f"the suite: 'max_eps.{k}' must be one radius such as \"1.0\", got {v!r}.")
        e = _radii("the suite", f"max_eps.{k}", v)[0]
        _box_limit(k, e, {k: e}, None, "the suite: 'max_eps'")
        max_eps[k] = e
    entries = data.get("attacks", [])
    if not isinstance(entries, list) or not entries:
        raise BenchError("a suite needs at least one [[attacks]] entry.")
    specs: list[AttackSpec] = []
    labels: set[str] = set()
    user_files: list[str] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise BenchError(f"attack entry {i + 1} is {entry!r}, not a table; write each attack as an [[attacks]] table.")
        if "name" not in entry:
            raise BenchError(f"attack entry {i + 1} has no 'name'; known attacks: {', '.join(ATTACKS.names())}.")
        name = entry["name"]
        if not isinstance(name, str):
            raise BenchError(f"attack entry {i + 1}: 'name' must be a string, got {name!r}; known attacks: "
                             f"{', '.join(ATTACKS.names())}.")
        if isinstance(name, str) and is_user_attack(name):  # "file.py:Class" / "module:Class" (attacks/user.py)
            user_files.append(f"{name}={user_attack_hash(name)}")
            load_user_attack(name)
        cls = ATTACKS.get(name)
        opts = {k: v for k, v in entry.items() if k not in _ENTRY_KEYS}
        bad = sorted(set(opts) - set(attack_fields(cls)))
        if bad:
            raise BenchError(f"attack {name!r} has no option {', '.join(bad)}; valid: {', '.join(sorted(_ENTRY_KEYS | set(attack_fields(cls)) - {'norm'}))}.")
        label = entry.get("label", name)
        if not _is_str(label):
            raise BenchError(f"attack entry {i + 1} ({name!r}): 'label' must be a non-empty string, got {label!r}.")
        where = f"attack {label!r}"
        norm = entry.get("norm")
        if norm is not None:  # the spellings --threat accepts (Linf, inf, l_inf, ...)
            if not isinstance(norm, str) or NORM_ALIASES.get(norm.strip().lower()) is None:
                raise BenchError(f"{where}: unknown norm {norm!r}; known: {', '.join(NORMS)}.")
            norm = NORM_ALIASES[norm.strip().lower()]
        eps: tuple[float, ...] | None = None
        if "eps" in entry:
            eps = _radii(where, "eps", entry["eps"])
        scale: tuple[float, ...] | None = None
        if "eps_scale" in entry:
            if eps is not None:
                raise BenchError(f"{where}: give 'eps' or 'eps_scale', not both.")
            scale = _radii(where, "eps_scale", entry["eps_scale"], scale=True)
        for k, v in list(opts.items()):
            if isinstance(v, list):
                opts[k] = tuple(v)
        if label in labels:
            raise BenchError(f"two suite attacks share the label {label!r}; give one a distinct 'label'.")
        labels.add(label)
        attack = create_attack(name, **({"norm": norm} if norm else {}), **opts)
        casc = _bool(where, "cascade", entry["cascade"]) if "cascade" in entry else None
        if norm is not None or len(attack.norms_supported) == 1:  # otherwise the norm follows the threat: checked then
            for e in eps or ():
                _box_limit(attack.norm, e, max_eps, None, where)
        specs.append(AttackSpec(name, label, attack, norm, eps, casc, scale))
    surrogates = data.get("surrogates", [])
    if not isinstance(surrogates, list) or not all(_is_str(v) for v in surrogates):
        raise BenchError("'surrogates' must be a list of checkpoint paths.")
    for path in surrogates:  # each adds a black-box transfer attack (evaluations.attacks.transfer)
        label = f"transfer[{Path(path).stem}]"
        specs.append(AttackSpec("transfer", label, create_attack("transfer", surrogate=path), None, None, False))
    return Suite(
        name=data.get("name", default_name),
        description=data.get("description", ""),
        cascade=cascade,
        attacks=tuple(specs),
        hash=hashlib.sha256((text + "".join(f"\n#{u}" for u in user_files)).encode()).hexdigest(),
        text=text,
        checks=checks,
        extra={"max_eps": max_eps} if max_eps else {},
    )


def entry_radii(spec: AttackSpec, threat: ThreatModel, standard_eps: Mapping[str, float]) -> tuple[str, tuple[float, ...]]:
    """The norm and radii an entry attacks at for this threat and dataset (``standard_eps``: the
    dataset's radius per norm). A radius equal to the threat's up to rounding (``eps_scale = [1]``)
    is the threat's own, so that the attack counts at the threat."""
    # an attack made for one norm (cw_l2, deepfool_linf, ...) keeps it unless the suite says otherwise
    norm = spec.norm or (threat.norm if threat.norm in spec.attack.norms_supported else spec.attack.norm)
    if spec.eps is not None:
        radii = spec.eps
    elif spec.eps_scale is not None:
        base = threat.eps if norm == threat.norm else standard_eps.get(norm)
        if base is None:
            raise BenchError(f"attack {spec.label!r} scales the {norm} radius but the dataset has no standard {norm} radius.")
        radii = tuple(round(s * base, 10) for s in spec.eps_scale)
    elif norm == threat.norm:
        radii = (threat.eps,)
    elif norm in standard_eps:
        radii = (standard_eps[norm],)
    else:
        raise BenchError(f"attack {spec.label!r} uses norm {norm} but gives no eps and the dataset has no standard {norm} radius.")
    snapped = {threat.eps if norm == threat.norm and same_eps(e, threat.eps) else e for e in radii}
    return norm, tuple(sorted(snapped))


def check_suite_threat(suite: Suite, threat: ThreatModel, standard_eps: Mapping[str, float],
                       input_shape: Sequence[int] | None = None) -> list[tuple[str, str, tuple[float, ...]]]:
    """Refuse, before any work, a suite that cannot give a robust accuracy at ``threat``: no entry
    attacks at exactly its norm and radius, or a radius lies outside the [0,1] box of the dataset's
    ``input_shape`` (:func:`_box_limit`). Returns (label, norm, radii) per entry."""
    threat.check_box(input_shape, what="the evaluation's threat")  # radius 0 or a ball covering the box
    max_eps = suite.extra.get("max_eps", {})
    for norm, e in max_eps.items():  # L2/L1 are checked against the dataset's inputs only here
        _box_limit(norm, e, max_eps, input_shape, f"suite {suite.name!r}: 'max_eps'")
    resolved = []
    for spec in suite.attacks:
        norm, radii = entry_radii(spec, threat, standard_eps)
        for e in radii:
            _box_limit(norm, e, max_eps, input_shape, f"suite {suite.name!r}, attack {spec.label!r}")
        resolved.append((spec.label, norm, radii))
    if not any(norm == threat.norm and any(same_eps(e, threat.eps) for e in radii) for _, norm, radii in resolved):
        threats = [format_threat(n, e) for n, e in sorted({(norm, e) for _, norm, radii in resolved for e in radii if e > 0})]
        raise BenchError(f"suite {suite.name!r} has no attack at the threat {threat}, so it cannot give a robust accuracy "
                         f"there; it attacks at {', '.join(threats)}: pass one of these as --threat, or add an attack "
                         f"at {threat} to the suite.")
    return resolved
