"""Single-step, momentum and minimum-Linf gradient attacks, written on the shared engine.

- ``fgsm``: one signed-gradient step of size eps (Goodfellow et al. 2015).
- ``mim``: momentum iterative FGSM (Dong et al. 2018).
- ``min_linf``: the smallest Linf adversarial per example, by bisection over eps with PGD
  (the role foolbox's iterative FGSM with an eps search plays in ACT's minimum-perturbation table).

All take x in [0,1], NCHW, and use ``torch.autograd.grad`` w.r.t. the input only.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..draws import rows as rows_of
from ..norms import get_norm
from ..pgd import default_step_size, pgd
from .base import Attack, AttackOutput, register_attack


@register_attack("fgsm")
@dataclass(frozen=True, kw_only=True)
class FGSM(Attack):
    """Fast gradient sign method (Goodfellow et al. 2015): ``x + eps * sign(grad CE)``, clipped to
    [0,1]. One gradient pass and one check per example; no random start.

    Example: ``create_attack("fgsm").run(model, x, y, eps=0.3, generator=g)``.
    """

    loss: str = "ce"
    norms_supported = ("linf",)
    row_keyed = True

    def run(self, model: nn.Module, x: Tensor, y: Tensor, *, eps: float | None,
            generator: torch.Generator) -> AttackOutput:
        if eps is None:
            raise ValueError("fgsm needs eps")
        res = pgd(model, x, y, norm="linf", eps=eps, steps=1, step_size=eps, loss=self.loss,
                  random_start="none", early_stop=False, generator=generator)
        assert res.success is not None
        return AttackOutput(res.x_adv, res.success)


@register_attack("mim")
@dataclass(frozen=True, kw_only=True)
class MIM(Attack):
    """Momentum iterative method (Dong et al. 2018, MI-FGSM), Linf: PGD with a momentum step.

    ``g <- decay * g + grad / ||grad||_1``; ``x <- clip_eps(x + step * sign(g))``. Defaults as in
    the paper: 10 steps of ``eps / steps``, ``decay = 1.0``, no random start. A configuration of
    the shared engine (:func:`evaluations.pgd.pgd` with ``momentum=decay``): a row leaves the batch
    as soon as it is misclassified (the iterate that broke it is returned), and the norm's
    projection and the [0,1] clip are the engine's.
    """

    steps: int = 10
    decay: float = 1.0
    rel_step_size: float | None = None  # default 1/steps (eps/steps per step)
    loss: str = "ce"
    norms_supported = ("linf",)
    row_keyed = True

    def run(self, model: nn.Module, x: Tensor, y: Tensor, *, eps: float | None,
            generator: torch.Generator) -> AttackOutput:
        if eps is None:
            raise ValueError("mim needs eps")
        step = (self.rel_step_size if self.rel_step_size is not None else 1.0 / max(1, self.steps)) * eps
        res = pgd(model, x, y, norm=self.norm, eps=eps, steps=self.steps, step_size=step, loss=self.loss,
                  random_start="none", momentum=self.decay, generator=generator)
        assert res.success is not None
        return AttackOutput(res.x_adv, res.success)


@register_attack("min_linf")
@dataclass(frozen=True, kw_only=True)
class MinLinf(Attack):
    """Smallest Linf adversarial per example (minimum-norm): bisection over eps with PGD.

    First PGD at ``eps_max`` (rows it cannot break have no adversarial: ``success`` False, norm
    inf); then ``search_steps`` bisection rounds, each a PGD of ``steps`` steps (step
    ``rel_step_size * eps``, uniform random start) at every row's midpoint radius. The upper bound
    is always the Linf norm of the best adversarial found, so ``norms`` is exact for the returned
    ``x_adv`` and within ``eps_max / 2**search_steps`` of the smallest radius PGD can break.
    The role of ACT's minimum perturbation (foolbox's iterative FGSM with an eps search).
    ``loss`` defaults to the logit margin (C&W's f6): its gradient points at the nearest boundary,
    while CE's mixes every class (on a linear 10-class model PGD-CE needs ~1.4x the optimal radius,
    PGD-margin 1.05x).
    """

    steps: int = 20
    loss: str = "margin"
    search_steps: int = 8
    eps_max: float = 1.0
    rel_step_size: float | None = None  # default: the PGD default (evaluations.pgd.default_step_size)
    norms_supported = ("linf",)
    minimum_norm = True
    kind = "minimum-norm"
    row_keyed = True  # per-row bisection, per-row PGD draws

    def run(self, model: nn.Module, x: Tensor, y: Tensor, *, eps: float | None,
            generator: torch.Generator) -> AttackOutput:
        x = x.detach()
        n = len(x)
        res = pgd(model, x, y, norm="linf", eps=self.eps_max, steps=self.steps,
                  step_size=default_step_size(self.eps_max, self.steps, self.rel_step_size),
                  loss=self.loss, generator=generator)
        success = res.success.clone()  # type: ignore[union-attr]
        best = torch.where(success.view(-1, *[1] * (x.ndim - 1)), res.x_adv, x)
        linf = get_norm("linf")
        hi = torch.where(success, linf.norm(best - x), torch.full((n,), float("inf"), device=x.device))
        lo = torch.zeros(n, device=x.device)
        for _ in range(self.search_steps):
            rows = success.nonzero().flatten()
            if not len(rows):
                break
            mid = (lo[rows] + hi[rows]) / 2
            r = pgd(model, x[rows], y[rows], norm="linf", eps=mid, steps=self.steps,
                    step_size=default_step_size(mid, self.steps, self.rel_step_size),
                    loss=self.loss, generator=rows_of(generator, rows))
            ok = r.success  # type: ignore[union-attr]
            found = linf.norm(r.x_adv - x[rows])
            better = ok & (found < hi[rows])
            best[rows[better]] = r.x_adv[better]
            hi[rows[better]] = found[better]
            lo[rows[~ok]] = mid[~ok]
        return AttackOutput(best, success, torch.where(success, hi, torch.full_like(hi, float("inf"))))
