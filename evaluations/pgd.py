"""The one PGD engine, shared by training (Madry, TRADES, ACT, ARREST) and evaluation.

Projected gradient ascent (Madry et al. 2018) on a per-example loss, for any :class:`Norm`
(Linf / L2 / L1 strategy objects), with random start, restarts that keep the worst case per
example, a pluggable loss (CE, DLR, KL to a reference distribution, any callable), an optional
momentum step (MI-FGSM, Dong et al. 2018: MIM is this engine with ``momentum=decay``) and, for
evaluation, early stopping: an example that is already misclassified leaves the batch, so points
that break early cost far less than ``steps`` gradient passes, and the iterate that broke it is
what is returned.

Gradients are taken with ``torch.autograd.grad`` w.r.t. the input only, so no weight gradient
is computed or accumulated. The caller chooses the model's mode (evaluation attacks run inside
:func:`robustbench_lite.utils.frozen`).

Example::

    res = pgd(model, x, y, norm="linf", eps=0.3, steps=20, step_size=0.0375, generator=g)
    robust = ~res.success
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import Tensor, nn

from .losses import LossFn, get_loss, misclassified
from .norms import Norm, get_norm

RandomStart = Literal["uniform", "normal", "none"]

DEFAULT_REL_STEP = 2.5  # Madry et al.'s rule: the step is 2.5 * eps / steps


def default_step_size(eps: float | Tensor, steps: int, rel_step_size: float | None = None) -> float | Tensor:
    """The PGD step: ``rel_step_size * eps``, by default ``2.5 / steps * eps`` (Madry et al.'s
    rule: ``steps`` steps cover 2.5 eps). The one place this default lives; the
    PGD attack, the transfer attack, min_linf, the training log's held-out PGD and the H-Delta-H
    analysis all take it from here. ``eps`` may be a float or an (N,) tensor."""
    rel = rel_step_size if rel_step_size is not None else DEFAULT_REL_STEP / max(1, steps)
    return rel * eps


@dataclass
class PGDResult:
    """``x_adv`` (N,C,H,W) in [0,1]; ``success`` (N,) bool where the returned point is adversarial
    (``None`` when the caller asked for no success check, as training does)."""

    x_adv: Tensor
    success: Tensor | None


def _per_example(v: Tensor | float, n: int, like: Tensor) -> Tensor:
    t = torch.as_tensor(v, dtype=like.dtype, device=like.device)
    return t.expand(n).clone() if t.ndim == 0 else t.to(like)


def pgd(
    model: nn.Module | Callable[[Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    *,
    norm: str | Norm,
    eps: float | Tensor,
    steps: int,
    step_size: float | Tensor,
    loss: str | LossFn = "ce",
    random_start: RandomStart = "uniform",
    init_std: float = 0.001,
    restarts: int = 1,
    early_stop: bool = True,
    return_success: bool = True,
    is_adversarial: Callable[[Tensor, Tensor], Tensor] = misclassified,
    generator: torch.Generator | None = None,
    momentum: float | None = None,
) -> PGDResult:
    """Run PGD. ``random_start``: "uniform" in the ball (Madry; the start is clamped to [0,1]),
    "normal" (TRADES/ACT: ``x + init_std * randn``, not clamped before the first step) or "none".

    With ``early_stop`` (evaluation) a row stops as soon as ``is_adversarial`` holds and later
    restarts run only on rows not yet broken; the loss must then be row-wise in (logits, y).
    Training passes ``early_stop=False, return_success=False``: every row takes every step and
    no extra forward pass is spent on a success check.

    ``momentum`` (a decay factor, MI-FGSM; ``None``: plain PGD): each row accumulates
    ``g <- momentum * g + grad / ||grad||_1`` (``g`` starts at zero on every restart) and steps
    along the norm's steepest-ascent direction of ``g`` instead of the gradient's.
    """
    nrm = get_norm(norm)
    loss_fn = get_loss(loss)
    decay = float(momentum) if momentum is not None else 0.0
    n = x.shape[0]
    x = x.detach()
    eps_t = _per_example(eps, n, x)
    step_t = _per_example(step_size, n, x)
    out = x.clone()
    check = early_stop or return_success or restarts > 1
    success = torch.zeros(n, dtype=torch.bool, device=x.device)
    for r in range(max(1, restarts)):
        rows = (~success).nonzero().flatten()
        # draw the start for every row, so a row's start never depends on which others broke
        if random_start == "uniform":
            init = nrm.random_init(x.shape, eps_t, generator, x.device)
        elif random_start == "normal":
            gdev = generator.device if generator is not None else "cpu"
            init = init_std * torch.randn(x.shape, generator=generator, device=gdev).to(x.device)
        elif random_start == "none":
            init = None
        else:
            raise ValueError(f"unknown random_start {random_start!r}")
        if len(rows) == 0:
            break
        xa, ya, ea, sa = x[rows], y[rows], eps_t[rows], step_t[rows]
        cur = xa if init is None else xa + init[rows]
        if random_start == "uniform":
            cur = cur.clamp(0, 1)
        g = torch.zeros_like(cur) if momentum is not None else None
        for _ in range(steps):
            cur = cur.detach().requires_grad_(True)
            logits = model(cur)
            if early_stop:
                adv = is_adversarial(logits.detach(), ya)
                if adv.any():
                    hit = rows[adv]
                    out[hit] = cur.detach()[adv]
                    success[hit] = True
                    keep = ~adv
                    if not keep.any():
                        rows = rows[keep]
                        break
            grad = torch.autograd.grad(loss_fn(logits, ya).sum(), cur)[0]
            cur = cur.detach()
            if early_stop and adv.any():
                rows, xa, ya, ea, sa, cur, grad = rows[keep], xa[keep], ya[keep], ea[keep], sa[keep], cur[keep], grad[keep]
                if g is not None:
                    g = g[keep]
            if g is not None:
                g = decay * g + grad / grad.abs().flatten(1).sum(1).clamp_min(1e-12).view(-1, *[1] * (grad.ndim - 1))
                grad = g
            cur = cur + nrm.step(grad, sa, cur)
            cur = (xa + nrm.project(cur - xa, ea)).clamp(0, 1)
        if len(rows) == 0:
            continue
        cur = cur.detach()
        if check:
            with torch.no_grad():
                adv = is_adversarial(model(cur), ya)
            success[rows[adv]] = True
            # a failed row keeps the first restart's end point; a success always overwrites
            write = adv if r > 0 else torch.ones_like(adv)
            out[rows[write]] = cur[write]
        else:
            out[rows] = cur
    return PGDResult(out, success if check else None)
