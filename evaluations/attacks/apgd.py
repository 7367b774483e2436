"""Auto-PGD (Croce & Hein 2020) on the shared engine (:func:`evaluations.pgd.apgd`).

- ``apgd_ce``: APGD on cross-entropy (AutoAttack's first stage).
- ``apgd_dlr``: APGD on the untargeted DLR loss (``apgd-dlr`` of AutoAttack's ``plus``/custom versions).
- ``apgd_t``: APGD-T, targeted DLR on the ``n_target_classes`` runner-up classes of the clean
  logits, one after the other, each only on the points still robust.

These are our own implementation, distinct from the ``autoattack`` attack (pyautoattack): a point
leaves the batch the moment an iterate of it is misclassified, so points that break cost only the
iterations they needed. On the same points and starts they break what pyautoattack's APGD-CE /
APGD-T break (tests/test_apgd.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import Tensor, nn

from robustbench_lite.errors import BenchError

from ..draws import AnyGenerator, rows as rows_of
from ..pgd import APGDResult, apgd, apgd_start
from .base import Attack, AttackOutput, register_attack

StartFn = Callable[[Tensor, Tensor], Tensor]  # (x rows, eps rows) -> start points


def _check_rho_momentum(attack: "APGDCE | APGDTargeted") -> None:
    if not 0 < attack.rho <= 1:
        raise BenchError(f"attack {attack.name!r}: option 'rho' must be in (0, 1], got {attack.rho!r}.")
    if not 0 < attack.momentum <= 1:
        raise BenchError(f"attack {attack.name!r}: option 'momentum' must be in (0, 1], got {attack.momentum!r}.")


def clean_logits(model: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        return model(x)


def apgd_targeted(model: nn.Module, x: Tensor, y: Tensor, *, norm: str, eps: float, steps: int, n_targets: int,
                  loss: str = "dlr", restarts: int = 1, rho: float = 0.75, momentum: float = 0.75,
                  generator: AnyGenerator = None, logits: Tensor | None = None,
                  start: StartFn | None = None, more_targets: int = 0, more_keep: float = 1.0) -> APGDResult:
    """Targeted APGD on the ``n_targets`` classes ranked 2nd, 3rd, ... by the clean ``logits``
    (computed here when not given; the Minimum-Margin attack's and APGD-T's target order), each
    target only on the rows still robust. Then ``more_targets`` further ranks, each only on the
    ``more_keep`` fraction of the still-robust rows whose best loss so far is highest (closest to
    the boundary; A3's online discarding applied to targets). ``start(x_rows, eps_rows)`` overrides
    APGD's random start (the tests use it to reproduce pyautoattack's draws). A row misclassified
    at ``x`` is a success with ``x`` itself. Returns per row the breaking point, else the
    highest-loss point over targets."""
    n = len(x)
    z = clean_logits(model, x) if logits is None else logits
    order = z.argsort(dim=1, descending=True)
    success = z.argmax(1) != y
    out = x.clone()
    best = torch.full((n,), float("-inf"), dtype=x.dtype, device=x.device)
    eps_t = torch.full((n,), float(eps), dtype=x.dtype, device=x.device)
    for rank in range(1, min(n_targets + more_targets, z.shape[1] - 1) + 1):
        for _ in range(max(1, restarts)):
            rows = (~success).nonzero().flatten()
            if len(rows) == 0:
                return APGDResult(out, success, best)
            if rank > n_targets:  # a further target: only the rows closest to the boundary
                rows = rows[best[rows].argsort(descending=True)[:math.ceil(more_keep * len(rows))]].sort().values
            gen = rows_of(generator, rows)  # a row's draws: one per (target, restart) it is attacked at
            x0 = start(x[rows], eps_t[rows]) if start is not None else apgd_start(norm, x[rows], eps_t[rows], gen)
            res = apgd(model, x[rows], y[rows], norm=norm, eps=eps, steps=steps, loss=loss, target=order[rows, rank],
                       rho=rho, momentum=momentum, x_init=x0, generator=gen)
            write = res.success | (res.loss > best[rows])
            out[rows[write]], best[rows[write]] = res.x_adv[write], res.loss[write]
            success[rows[res.success]] = True
    return APGDResult(out, success, best)


@register_attack("apgd_ce")
@dataclass(frozen=True, kw_only=True)
class APGDCE(Attack):
    """Auto-PGD on cross-entropy (Croce & Hein 2020), Linf / L2 / L1, with per-point early exit.

    ``steps`` iterations (default 100, as in AutoAttack) from APGD's random start on the eps sphere;
    step ``2 eps`` (``eps`` in L1) halved at the checkpoints 0.22, 0.41, 0.57, ... of ``steps`` where
    the loss rose in at most ``rho`` of the window's steps or the best loss stalled; momentum
    ``momentum``; ``restarts`` fresh starts for the points still robust. Our own code, distinct from
    ``autoattack``'s pyautoattack stage. Example: ``create_attack("apgd_ce", steps=50)``.
    """

    steps: int = 100
    restarts: int = 1
    rho: float = 0.75
    momentum: float = 0.75
    loss: Literal["ce", "dlr"] = "ce"
    row_keyed = True  # per-row step sizes, checkpoints and early exit: no computation mixes rows

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_rho_momentum(self)

    def run(self, model: nn.Module, x: Tensor, y: Tensor, *, eps: float | None,
            generator: torch.Generator) -> AttackOutput:
        if eps is None:
            raise ValueError(f"{self.name} needs eps")
        res = apgd(model, x, y, norm=self.norm, eps=eps, steps=self.steps, loss=self.loss, restarts=self.restarts,
                   rho=self.rho, momentum=self.momentum, generator=generator)
        return AttackOutput(res.x_adv, res.success)


@register_attack("apgd_dlr")
@dataclass(frozen=True, kw_only=True)
class APGDDLR(APGDCE):
    """Auto-PGD on the untargeted DLR loss (difference of logits ratio, Croce & Hein 2020): invariant
    to shifting and rescaling the logits, so it is not fooled by saturated softmax outputs. Same
    options as ``apgd_ce`` (``steps`` 100, ``rho`` 0.75, ``momentum`` 0.75, ``restarts`` 1); needs 3+ classes."""

    loss: Literal["ce", "dlr"] = "dlr"


@register_attack("apgd_t")
@dataclass(frozen=True, kw_only=True)
class APGDTargeted(Attack):
    """APGD-T (Croce & Hein 2020): targeted DLR loss, one target after another, the classes ranked
    2nd to ``n_target_classes + 1`` by the clean logits (AutoAttack: 9), ``steps`` iterations each
    (100), only on the points still robust, with per-point early exit; ``restarts`` per target.
    Needs at least 4 classes (the DLR-T denominator). Example: ``create_attack("apgd_t", n_target_classes=3)``.
    """

    steps: int = 100
    n_target_classes: int = 9
    restarts: int = 1
    rho: float = 0.75
    momentum: float = 0.75
    loss: Literal["dlr", "margin"] = "dlr"
    row_keyed = True  # targets from each row's own clean logits; per-row APGD

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_rho_momentum(self)
        if self.n_target_classes < 1:
            raise BenchError(f"attack {self.name!r}: option 'n_target_classes' must be a positive integer, got {self.n_target_classes!r}.")

    def run(self, model: nn.Module, x: Tensor, y: Tensor, *, eps: float | None,
            generator: torch.Generator) -> AttackOutput:
        if eps is None:
            raise ValueError(f"{self.name} needs eps")
        res = apgd_targeted(model, x, y, norm=self.norm, eps=eps, steps=self.steps, n_targets=self.n_target_classes,
                            loss=self.loss, restarts=self.restarts, rho=self.rho, momentum=self.momentum,
                            generator=generator)
        return AttackOutput(res.x_adv, res.success)
