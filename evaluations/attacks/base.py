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
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from robustbench_lite.errors import BenchError
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
    norms_supported: ClassVar[tuple[str, ...]] = ("linf", "l2", "l1")

    def __post_init__(self) -> None:
        if self.norm not in self.norms_supported:
            raise BenchError(f"attack {self.name!r} supports norms {', '.join(self.norms_supported)}, not {self.norm!r}.")

    def run(self, model: nn.Module, x: Tensor, y: Tensor, *, eps: float | None,
            generator: torch.Generator) -> AttackOutput:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        return {"name": self.name, **dataclasses.asdict(self)}


ATTACKS: Registry[type[Attack]] = Registry("attack")


def register_attack(name: str):  # type: ignore[no-untyped-def]
    def deco(cls: type[Attack]) -> type[Attack]:
        cls.name = name
        return ATTACKS.register(name)(cls)

    return deco


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
