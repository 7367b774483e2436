"""``natural`` (plain cross-entropy) and ``madry`` (PGD adversarial training, Madry et al. 2018)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustbench_lite.evaluations.pgd import pgd

from .base import AttackConfig, Recipe, register_defense
from .ddp import Shard, on_global_batch


def attack_batch(model: nn.Module, x: Tensor, y: Tensor, attack: AttackConfig, generator: torch.Generator,
                 loss: object = "ce", shard: Shard | None = None) -> Tensor:
    """The training attack through the shared PGD engine: model in eval mode during the attack
    (restored after), every row takes every step, gradients w.r.t. the input only.

    Under DDP (``shard``) the attack runs on the global batch's shape, so its random start is the
    single-process one; a loss holding per-row references must hold them for the global batch
    (:func:`defenses.ddp.pad`)."""
    def run(m: object, xb: Tensor, yb: Tensor) -> Tensor:
        res = pgd(m, xb, yb, norm=attack.norm, eps=attack.eps, steps=attack.steps,  # type: ignore[arg-type]
                  step_size=attack.step_size, loss=loss, random_start=attack.random_start,  # type: ignore[arg-type]
                  early_stop=False, return_success=False, generator=generator)
        return res.x_adv

    was = model.training
    model.eval()
    try:
        x_adv = on_global_batch(shard, model, x, y, run)
    finally:
        model.train(was)
    return x_adv.detach()


@register_defense("natural")
class Natural(Recipe):
    """Standard training: mean cross-entropy on clean inputs."""

    def loss(self, model, x, y, generator):  # type: ignore[no-untyped-def]
        logits = model(x)
        return F.cross_entropy(logits, y), {"acc": float((logits.argmax(1) == y).float().mean())}


@register_defense("madry")
class Madry(Recipe):
    """PGD adversarial training (Madry et al. 2018; MadryLab/cifar10_challenge): mean cross-entropy
    on PGD examples only; uniform random start; attack settings from the preset."""

    def loss(self, model, x, y, generator):  # type: ignore[no-untyped-def]
        x_adv = attack_batch(model, x, y, self.attack, generator, shard=self.shard)
        logits = model(x_adv)
        return F.cross_entropy(logits, y), {"adv_acc": float((logits.argmax(1) == y).float().mean())}
