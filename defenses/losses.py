"""The recipes' loss terms as plain functions of tensors (unit-tested against hand-computed values).

- :func:`trades_kl` — TRADES robust term (Zhang et al. 2019; yaodongyu/TRADES trades_loss).
- :func:`mimicry_kl` — ACT's mimicry term (Arani et al. 2020; NeurAI-Lab/ACT utilities/losses.py).
- :func:`act_losses`, :func:`act_attack_loss` — ACT's L_G / L_F (Eqs. 1-2) and the training attack's loss.
- :func:`angular_distance`, :func:`noisy_replay_mask` — ARREST's RGKD distance and NR switch (Eqs. 3-5).
- :func:`discriminator_loss`, :func:`feature_loss` — AFD's L_D / L_F, DCGAN (Eqs. 9-10) or WGAN (Eqs. 11-12).

All logits are (N, K); all reductions are stated in each docstring.
"""
from __future__ import annotations

import math
from typing import Callable

import torch.nn.functional as F
from torch import Tensor

from robustbench_lite.errors import BenchError


def trades_kl(logits_adv: Tensor, logits_nat: Tensor) -> Tensor:
    """``sum_i KL(softmax(nat_i) || softmax(adv_i)) / N`` — the natural softmax is NOT detached
    (gradients flow through both arguments, as in the official ``trades_loss``)."""
    return F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits_nat, dim=1), reduction="sum") / logits_adv.shape[0]


def mimicry_kl(student: Tensor, teacher: Tensor, temperature: float = 1.0) -> Tensor:
    """``T^2 * sum_i KL(softmax(teacher_i/T) || softmax(student_i/T)) / N``, teacher detached.

    T = 4 is the authors' code; T = 1 is the plain ``D_KL`` of the paper's equations (batch mean)."""
    t = float(temperature)
    p = F.softmax(teacher.detach() / t, dim=1)
    return t * t * F.kl_div(F.log_softmax(student / t, dim=1), p, reduction="sum") / student.shape[0]


def act_losses(g_adv: Tensor, f_nat: Tensor, y: Tensor, *, alpha: float, temperature: float) -> tuple[Tensor, Tensor]:
    """ACT Eqs. (1)-(2): ``L_G = (1-a) CE(G(x'), y) + a KL(F(x) || G(x'))`` and
    ``L_F = (1-a) CE(F(x), y) + a KL(G(x') || F(x))``; each model mimics the other's detached output."""
    l_g = (1 - alpha) * F.cross_entropy(g_adv, y) + alpha * mimicry_kl(g_adv, f_nat, temperature)
    l_f = (1 - alpha) * F.cross_entropy(f_nat, y) + alpha * mimicry_kl(f_nat, g_adv, temperature)
    return l_g, l_f


def act_attack_loss(f_nat: Tensor, *, alpha: float, form: str = "code") -> Callable[[Tensor, Tensor], Tensor]:
    """Per-example loss the ACT attack maximises over delta, with F(x) fixed and no temperature.

    ``code``: the authors' batch objective ``(1-a) CE_mean + a KL_sum`` split per example, i.e.
    ``(1-a)/N * CE_i + a * KL_i`` (each row's sign step sees exactly the code's gradient).
    ``paper``: Eq. (1) per example, ``(1-a) CE_i + a KL_i``.
    """
    if form not in ("code", "paper"):
        raise BenchError(f"act attack_form must be 'code' or 'paper', got {form!r}.")
    p_ref = F.softmax(f_nat.detach(), dim=1)
    n = f_nat.shape[0]
    w_ce = (1 - alpha) / n if form == "code" else (1 - alpha)

    def loss(logits: Tensor, y: Tensor) -> Tensor:
        ce = F.cross_entropy(logits, y, reduction="none")
        kl = F.kl_div(F.log_softmax(logits, dim=1), p_ref, reduction="none").sum(1)
        return w_ce * ce + alpha * kl

    return loss


def angular_distance(u: Tensor, v: Tensor, eps: float = 1e-12) -> Tensor:
    """ARREST's ``d(u, v) = 1 - |u.v| / (|u| |v|)`` per row of the flattened inputs, in [0, 1]."""
    u, v = u.flatten(1), v.flatten(1)
    # norms from clamped squared sums: an all-zero (post-ReLU) map gives distance 1 and a zero,
    # not NaN, gradient (the gradient of ``Tensor.norm`` at 0 is NaN)
    nu = (u * u).sum(1).clamp_min(eps).sqrt()
    nv = (v * v).sum(1).clamp_min(eps).sqrt()
    return 1 - (u * v).sum(1).abs() / (nu * nv)


def nr_threshold(phi_degrees: float) -> float:
    """ARREST's tau = 1 - cos(phi)."""
    return 1 - math.cos(math.radians(phi_degrees))


def noisy_replay_mask(distance: Tensor, tau: float) -> Tensor:
    """True where NR replaces the PGD example by ``x + U(-eps, eps)``: ``d(h(x; theta), h(x; theta_s)) > tau``."""
    return distance > tau


GAN_LOSSES = ("dcgan", "wgan")


def _check(kind: str) -> None:
    if kind not in GAN_LOSSES:
        raise BenchError(f"afd gan_loss must be one of {', '.join(GAN_LOSSES)}, got {kind!r}.")


def discriminator_loss(d_clean: Tensor, d_adv: Tensor, kind: str) -> Tensor:
    """AFD L_D. DCGAN (Eq. 9): ``mean S(-D(z)) + mean S(D(z'))`` (S = softplus);
    WGAN (the code's default): ``mean D(z') - mean D(z)``. Clean features are the "real" domain."""
    _check(kind)
    d_clean, d_adv = d_clean.flatten(), d_adv.flatten()
    if kind == "dcgan":
        return F.softplus(-d_clean).mean() + F.softplus(d_adv).mean()
    return d_adv.mean() - d_clean.mean()


def feature_loss(d_adv: Tensor, kind: str) -> Tensor:
    """AFD L_F for the feature extractor. DCGAN (Eq. 10): ``mean S(-D(z'))``; WGAN: ``-mean D(z')``."""
    _check(kind)
    d_adv = d_adv.flatten()
    if kind == "dcgan":
        return F.softplus(-d_adv).mean()
    return -d_adv.mean()

