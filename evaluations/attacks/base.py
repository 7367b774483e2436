"""Attack base classes and registry (the Foolbox 3 shape: a subclass writes only ``run``; the
runner owns batching, in blocks of example positions so shards reproduce an unsharded run).
The model is an argument of ``run``, never of the constructor.

Two kinds:
- fixed-epsilon (``minimum_norm = False``): ``run(model, x, y, eps=..., generator=...)`` returns
  an :class:`AttackOutput` whose ``success`` says where ``x_adv`` is misclassified inside the ball.
- minimum-norm (``minimum_norm = True``): ``run(model, x, y, generator=...)`` also returns
  ``norms`` (N,), the size of the smallest adversarial found (``inf`` where none was found); the
  accuracy at every eps of a sweep follows from one run: robust at eps iff ``norms > eps``.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor, nn

from robustbench_lite.errors import BenchError, is_number
from robustbench_lite.registry import Registry


@dataclass
class AttackOutput:
    x_adv: Tensor
    success: Tensor  # (N,) bool: misclassified and (for fixed-eps attacks) inside the ball
    norms: Tensor | None = None  # (N,) float, minimum-norm attacks only; inf where failed


@dataclass(frozen=True, kw_only=True)
class Attack:
    """Base of every registered attack. Subclasses are frozen dataclasses with keyword-only,
    documented hyperparameters; ``norm`` is the threat norm the attack works in."""

    norm: str = "linf"

    name: ClassVar[str] = ""
    minimum_norm: ClassVar[bool] = False
    white_box: ClassVar[bool] = True      # uses gradients (for the obfuscation checks)
    kind: ClassVar[str] = "white-box"     # the result row's kind: white-box, black-box, minimum-norm, transfer
    norms_supported: ClassVar[tuple[str, ...]] = ("linf", "l2", "l1")

    def __post_init__(self) -> None:
        if self.norm not in self.norms_supported:
            raise BenchError(f"attack {self.name!r} supports norms {', '.join(self.norms_supported)}, not {self.norm!r}.")
        _check_options(self)

    def run(self, model: nn.Module, x: Tensor, y: Tensor, *, eps: float | None,
            generator: torch.Generator) -> AttackOutput:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        return {"name": self.name, **dataclasses.asdict(self)}


# Ranges of the options our attacks share by name (a user's own attack is only type-checked):
# counts are >= 1, step sizes and radii > 0; for these floats 0 is a real setting.
_COUNTS = frozenset({"steps", "restarts", "n_queries", "binary_search_steps", "search_steps", "candidates", "batch_size"})
_POSITIVE = frozenset({"stepsize", "step_size", "rel_step_size", "initial_const", "init_epsilon", "gamma", "eps_max"})
_NON_NEGATIVE = frozenset({"confidence", "overshoot", "decay"})


@functools.cache
def _hints(cls: type[Attack]) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _check_options(attack: Attack) -> None:
    """Every option has its declared type, and the shared counts and step sizes their range: a typo
    in a suite such as ``steps = 0`` must not run an attack that does nothing and so report clean
    accuracy as robust accuracy."""
    hints = _hints(type(attack))
    for f in dataclasses.fields(attack):
        value, hint, name = getattr(attack, f.name), hints[f.name], f.name
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            args = typing.get_args(hint)
            if value is None and type(None) in args:
                continue
            hint = next(a for a in args if a is not type(None))
        where = f"attack {attack.name!r}: option {name!r}"
        if hint is int and (not isinstance(value, int) or isinstance(value, bool) or (name in _COUNTS and value < 1)):
            raise BenchError(f"{where} must be a {'positive ' if name in _COUNTS else ''}integer, got {value!r}.")
        if hint is float:
            if not is_number(value):
                raise BenchError(f"{where} must be a number, got {value!r}.")
            if name in _POSITIVE and not (math.isfinite(value) and value > 0):
                raise BenchError(f"{where} must be a positive number, got {value!r}.")
            if name in _NON_NEGATIVE and not (math.isfinite(value) and value >= 0):
                raise BenchError(f"{where} must be a non-negative number, got {value!r}.")
        if hint in (str, bool) and not isinstance(value, hint):
            raise BenchError(f"{where} must be a {'string' if hint is str else 'boolean (true or false)'}, got {value!r}.")
        if typing.get_origin(hint) is typing.Literal and value not in typing.get_args(hint):
            raise BenchError(f"{where} must be one of {', '.join(map(repr, typing.get_args(hint)))}, got {value!r}.")
        if hint == tuple[str, ...] and not (isinstance(value, tuple) and all(isinstance(v, str) for v in value)):
            raise BenchError(f"{where} must be a list of strings, got {list(value) if isinstance(value, tuple) else value!r}.")


ATTACKS: Registry[type[Attack]] = Registry("attack")


def register_attack(name: str) -> Callable[[type[Attack]], type[Attack]]:
    """``@register_attack("pgd")``: the attack class is registered and knows its name."""
    return ATTACKS.register(name, set_name=True)


def attack_fields(cls: type[Attack]) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def create_attack(name: str, **kwargs: Any) -> Attack:
    """Build a registered attack; unknown options are a clear error listing the valid ones."""
    cls = ATTACKS.get(name)
    valid = attack_fields(cls)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise BenchError(f"attack {name!r} has no option {', '.join(unknown)}; valid: {', '.join(valid)}.")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise BenchError(f"bad options for attack {name!r}: {e}.") from None


def predict(model: nn.Module, x: Tensor, batch_size: int = 512) -> Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)]) if len(x) else torch.zeros(0, dtype=torch.long, device=x.device)
