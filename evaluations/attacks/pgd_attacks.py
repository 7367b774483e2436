"""Gradient attacks built on the shared engine (:mod:`evaluations.pgd`)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..pgd import RandomStart, default_step_size, pgd
from .base import Attack, AttackOutput, register_attack


@register_attack("pgd")
@dataclass(frozen=True, kw_only=True)
class PGD(Attack):
    """Projected gradient descent (Madry et al. 2018) for Linf, L2 and L1 (x in [0,1], NCHW).

    ``step_size`` (absolute) wins over ``rel_step_size`` (a fraction of eps; the default 2.5/steps
    follows Madry et al.'s rule). ``restarts`` random starts keep the worst case per example; an
    example stops as soon as it is misclassified. Example: ``PGD(steps=100, restarts=5, step_size=0.003)``.
    """

    steps: int = 20
    rel_step_size: float | None = None
    step_size: float | None = None
    restarts: int = 1
    loss: str = "ce"
    random_start: RandomStart = "uniform"
    row_keyed = True  # per-row starts, steps and early exit: no computation mixes rows

    def step_for(self, eps: float) -> float:
        if self.step_size is not None:
            return float(self.step_size)
        return float(default_step_size(eps, self.steps, self.rel_step_size))

    def run(self, model: nn.Module, x: Tensor, y: Tensor, *, eps: float | None,
            generator: torch.Generator) -> AttackOutput:
        assert eps is not None
        res = pgd(model, x, y, norm=self.norm, eps=eps, steps=self.steps, step_size=self.step_for(eps),
                  loss=self.loss, random_start=self.random_start, restarts=self.restarts, generator=generator)
        assert res.success is not None
        return AttackOutput(res.x_adv, res.success)
