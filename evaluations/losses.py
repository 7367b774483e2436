"""Per-example losses an attack maximises. Each maps (logits, y) -> (N,) tensor.

- ``ce``: cross-entropy (Madry et al. 2018).
- ``dlr``: difference of logits ratio (Croce & Hein 2020, AutoAttack).
- ``kl_to(p_ref)``: KL(p_ref || softmax(logits)), summed over classes, the TRADES inner loss.
- any callable with that signature (ACT's L_G, custom losses).
- targeted (logits, y, target) -> (N,): ``dlr_targeted_loss`` (APGD-T), ``margin_targeted_loss``
  (C&W targeted margin), ``logit_direction_loss`` (ODI / A3 start directions).
"""
from __future__ import annotations

from typing import Callable

import torch.nn.functional as F
from torch import Tensor

from robustbench_lite.errors import BenchError

LossFn = Callable[[Tensor, Tensor], Tensor]


def ce_loss(logits: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def dlr_loss(logits: Tensor, y: Tensor) -> Tensor:
    """-(z_y - max_{i!=y} z_i) / (z_pi1 - z_pi3 + 1e-12) (untargeted DLR)."""
    srt = logits.sort(dim=1).values
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.clone()
    other.scatter_(1, y[:, None], float("-inf"))
    z_other = other.max(1).values
    return -(z_y - z_other) / (srt[:, -1] - srt[:, -3] + 1e-12)


def kl_to(p_ref: Tensor) -> LossFn:
    """KL(p_ref || softmax(logits)) per example; ``p_ref`` is fixed (detached) probabilities."""
    p_ref = p_ref.detach()

    def loss(logits: Tensor, _y: Tensor) -> Tensor:
        return F.kl_div(F.log_softmax(logits, dim=1), p_ref, reduction="none").sum(1)

    return loss


def margin_loss(logits: Tensor, y: Tensor) -> Tensor:
    """max_{i!=y} z_i - z_y (C&W's f6, untargeted), positive once misclassified."""
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.clone()
    other.scatter_(1, y[:, None], float("-inf"))
    return other.max(1).values - z_y


LOSSES: dict[str, LossFn] = {"ce": ce_loss, "dlr": dlr_loss, "margin": margin_loss}


def get_loss(loss: str | LossFn) -> LossFn:
    if callable(loss):
        return loss
    try:
        return LOSSES[loss]
    except KeyError:
        raise BenchError(f"unknown attack loss {loss!r}; known: {', '.join(LOSSES)} (or a callable).") from None


def misclassified(logits: Tensor, y: Tensor) -> Tensor:
    return logits.argmax(1) != y


# Targeted losses take a third argument: the per-row target classes (N,), which the engines
# subset together with ``y`` when broken rows leave the batch (``pgd(..., target=t)``).
TargetedLossFn = Callable[[Tensor, Tensor, Tensor], Tensor]


def dlr_targeted_loss(logits: Tensor, y: Tensor, target: Tensor) -> Tensor:
    """Targeted DLR (Croce & Hein 2020, APGD-T): ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)``
    with ``pi`` the logits sorted in decreasing order; needs at least 4 classes."""
    srt = logits.sort(dim=1).values
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    z_t = logits.gather(1, target[:, None]).squeeze(1)
    return -(z_y - z_t) / (srt[:, -1] - 0.5 * (srt[:, -3] + srt[:, -4]) + 1e-12)


def margin_targeted_loss(logits: Tensor, y: Tensor, target: Tensor) -> Tensor:
    """``z_t - z_y`` (C&W's targeted margin, the Minimum-Margin attack's loss), positive once the
    target logit passes the true one."""
    return logits.gather(1, target[:, None]).squeeze(1) - logits.gather(1, y[:, None]).squeeze(1)


def logit_direction_loss(logits: Tensor, _y: Tensor, w: Tensor) -> Tensor:
    """``<w, z>`` for a per-row direction ``w`` (N, C) in logit space: output-diversified
    initialisation (ODI, Tashiro et al. 2020) and A3's adaptive direction initialisation."""
    return (logits * w).sum(1)


TARGETED_LOSSES: dict[str, TargetedLossFn] = {"dlr": dlr_targeted_loss, "margin": margin_targeted_loss}


def get_targeted_loss(loss: str | TargetedLossFn) -> TargetedLossFn:
    if callable(loss):
        return loss
    try:
        return TARGETED_LOSSES[loss]
    except KeyError:
        raise BenchError(f"unknown targeted attack loss {loss!r}; known: {', '.join(TARGETED_LOSSES)}.") from None
