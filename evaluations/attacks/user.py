"""AutoAttack's ``rand`` version, and a user's own attack class named in a suite.

- ``autoattack_rand``: pyautoattack's ``version='rand'`` (Croce & Hein 2020): APGD-CE and APGD-DLR,
  one restart each, every gradient averaged over 20 draws of the model (EoT). Its own verdict is one
  random forward pass per point; a suite's adaptive evaluation judges on K fresh draws instead
  (:mod:`evaluations.eot`).
- :func:`load_user_attack`: a suite entry ``name = "path/to/attack.py:MyAttack"`` (or
  ``"package.module:MyAttack"``) names a subclass of :class:`~evaluations.attacks.Attack` that
  writes only ``run``; it is registered under that name, so it gets everything ours get: the front
  door (blocks, seeds), the cascade, resume, shards, torchrun and the attack-path indicators.
  Loading the file runs its code: it is the user's explicit choice, as with ``--arch file.py:callable``.

Example (``my_attack.py``)::

    @dataclass(frozen=True, kw_only=True)
    class MyAttack(Attack):
        steps: int = 10
        def run(self, model, x, y, *, eps, generator):
            ...
            return AttackOutput(x_adv, model(x_adv).argmax(1) != y)
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

from robustbench_lite.errors import BenchError

from .autoattack import AutoAttackStandard
from .base import ATTACKS, Attack, register_attack


@register_attack("autoattack_rand")
@dataclass(frozen=True, kw_only=True)
class AutoAttackRand(AutoAttackStandard):
    """AutoAttack ``version='rand'`` through pyautoattack: APGD-CE and APGD-DLR with EoT over 20
    draws, for randomised defenses. Linf and L2."""

    version: str = "rand"
    norms_supported = ("linf", "l2")


def is_user_attack(name: str) -> bool:
    """Whether a suite's attack ``name`` is a ``file.py:Class`` / ``module:Class`` reference."""
    return ":" in name


def user_attack_hash(name: str) -> str | None:
    """The sha256 of a ``file.py:Class`` reference's file (None for a module path): it goes into the
    suite's hash, so a resumed or merged run never reuses parts made by another version of the file."""
    path = Path(name.rsplit(":", 1)[0])
    if path.suffix == ".py" and path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    return None


def load_user_attack(name: str) -> type[Attack]:
    """The attack class of a ``file.py:Class`` / ``module:Class`` reference, registered under
    ``name`` (once per process). Bad references, files and classes are one-sentence errors."""
    if name in ATTACKS:
        return ATTACKS.get(name)
    from robustbench_lite.models.registry import load_callable

    cls = load_callable(name, flag="suite attack", wanted="an Attack class")  # a bad file or name: one BenchError
    if not (isinstance(cls, type) and issubclass(cls, Attack)):
        raise BenchError(f"the suite's attack {name!r} is not a subclass of robustbench_lite.evaluations.attacks.Attack.")
    if not dataclasses.is_dataclass(cls) or cls.run is Attack.run:
        raise BenchError(f"the suite's attack {name!r} must be a @dataclass(frozen=True, kw_only=True) that defines run().")
    sub = type(cls.__name__, (cls,), {"__module__": cls.__module__, "__qualname__": cls.__qualname__})
    sub = dataclass(frozen=True, kw_only=True)(sub)  # its own class, so that setting its name leaves cls alone
    return register_attack(name)(sub)
