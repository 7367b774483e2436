"""Cheaper-than-AutoAttack gradient attacks on the shared engine (the ``fast`` suite's stages).

- ``margin_topk``: the Minimum-Margin attack (Gao et al., ICML 2022): targeted C&W margin attacks
  on the top-k runner-up classes ranked from the clean logits, one after the other, each only on
  the points still robust (APGD step control, :func:`evaluations.pgd.apgd`).
- ``a3``: an Adaptive-Auto-Attack-style attack (Liu et al., CVPR 2022): restarts that start from
  adaptive direction initialisation (ODI steps along a random logit-space direction biased toward
  a runner-up class and toward the directions that broke points in earlier restarts), then APGD on
  the margin loss, with online discarding: after ``full_restarts`` restarts only the still-robust
  points whose best margin so far is highest (closest to the boundary) are attacked again, a
  fraction shrinking by ``keep`` per restart. Our own code after the papers and the authors' public
  code (liuye6666/adaptive_auto_attack); step sizes and restart counts are options here, not
  hard-coded per dataset.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from robustbench_lite.errors import BenchError

from ..draws import rand, rows as rows_of
from ..losses import logit_direction_loss, margin_loss
from ..pgd import apgd, pgd
from .apgd import apgd_targeted, clean_logits
from .base import Attack, AttackOutput, register_attack


@register_attack("margin_topk")
@dataclass(frozen=True, kw_only=True)
class MarginTopK(Attack):
    """Minimum-Margin attack (Gao et al. 2022): the targeted margin ``z_t - z_y`` maximised for each
    of the ``k`` classes ranked 2nd.. by the clean logits (default 3), ``steps`` APGD iterations per
    target (20; step halving, momentum 0.75), each target only on the points still robust, early exit
    per point. ``loss = "dlr"`` uses APGD-T's scale-invariant targeted DLR instead. ``more_targets``
    further ranks (default 0) run only on the ``more_keep`` fraction (0.25) of the still-robust
    points with the highest best loss so far: the classes APGD-T's 9 targets reach beyond the top k,
    spent only on the points closest to the boundary (A3's discarding).
    Example: ``create_attack("margin_topk", k=3, steps=50, more_targets=6)``.
    """

    k: int = 3
    steps: int = 20
    restarts: int = 1
    loss: Literal["margin", "dlr"] = "margin"
    more_targets: int = 0
    more_keep: float = 0.25

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k < 1:
            raise BenchError(f"attack {self.name!r}: option 'k' must be a positive integer, got {self.k!r}.")
        if self.more_targets < 0:
            raise BenchError(f"attack {self.name!r}: option 'more_targets' must be a non-negative integer, "
                             f"got {self.more_targets!r}.")
        if not 0 < self.more_keep <= 1:
            raise BenchError(f"attack {self.name!r}: option 'more_keep' must be in (0, 1], got {self.more_keep!r}.")

    @property
    def row_keyed(self) -> bool:  # type: ignore[override]
        """The top-k targets are per row; ``more_targets`` keeps a quarter of the block's survivors
        (it depends on the block), so then the front door runs canonical blocks."""
        return self.more_targets == 0

    def run(self, model: nn.Module, x: Tensor, y: Tensor, *, eps: float | None,
            generator: torch.Generator) -> AttackOutput:
        if eps is None:
            raise ValueError(f"{self.name} needs eps")
        res = apgd_targeted(model, x, y, norm=self.norm, eps=eps, steps=self.steps, n_targets=self.k, loss=self.loss,
                            restarts=self.restarts, generator=generator, more_targets=self.more_targets,
                            more_keep=self.more_keep)
        return AttackOutput(res.x_adv, res.success)


@register_attack("a3")
@dataclass(frozen=True, kw_only=True)
class A3(Attack):
    """Adaptive-Auto-Attack-style restarts with adaptive direction initialisation and online
    discarding (after Liu et al. 2022), Linf / L2 / L1, early exit per point.

    Restart 0: APGD on the margin loss from APGD's random start. Restart r >= 1: ``odi_steps`` ODI
    steps (step eps, uniform start) maximising ``<w, logits>``, with ``w`` uniform in [-1,1] per class
    plus the mean direction (in clean-logit rank order) of the rows broken in earlier restarts, and
    ``w = 0.8`` on the class ranked ``1 + (r - 1) mod target_classes`` among the runner-ups; then
    ``steps`` APGD margin iterations from there. From restart ``full_restarts`` on, only the
    ``max(keep**(r - full_restarts + 1), min_keep)`` fraction of the still-robust points with the
    highest best margin so far is attacked; the others are discarded (reported robust).
    Defaults: ``restarts`` 6, ``steps`` 20, ``odi_steps`` 7, ``full_restarts`` 2, ``keep`` 0.7,
    ``min_keep`` 0.1, ``target_classes`` 9. Example: ``create_attack("a3", restarts=10, keep=0.5)``.
    """

    restarts: int = 6
    steps: int = 20
    odi_steps: int = 7
    full_restarts: int = 2
    keep: float = 0.7
    min_keep: float = 0.1
    target_classes: int = 9

    def __post_init__(self) -> None:
        super().__post_init__()
        for opt in ("keep", "min_keep"):
            v = getattr(self, opt)
            if not 0 < v <= 1:
                raise BenchError(f"attack {self.name!r}: option {opt!r} must be in (0, 1], got {v!r}.")
        for opt in ("odi_steps", "full_restarts"):
            if getattr(self, opt) < 0:
                raise BenchError(f"attack {self.name!r}: option {opt!r} must be a non-negative integer, got {getattr(self, opt)!r}.")
        if self.target_classes < 1:
            raise BenchError(f"attack {self.name!r}: option 'target_classes' must be a positive integer, got {self.target_classes!r}.")

    def fraction(self, r: int) -> float:
        """The fraction of still-robust points attacked at restart ``r`` (online discarding)."""
        if r < self.full_restarts:
            return 1.0
        return max(self.keep ** (r - self.full_restarts + 1), self.min_keep)

    def run(self, model: nn.Module, x: Tensor, y: Tensor, *, eps: float | None,
            generator: torch.Generator) -> AttackOutput:
        if eps is None:
            raise ValueError(f"{self.name} needs eps")
        n = len(x)
        z = clean_logits(model, x)
        n_cls = z.shape[1]
        order = z.argsort(dim=1, descending=True)  # rank j -> class
        success = z.argmax(1) != y
        out = x.clone()
        best = margin_loss(z, y)  # the best margin loss seen per point (max_{i!=y} z_i - z_y)
        hits = torch.zeros(n_cls, dtype=x.dtype, device=x.device)  # sum of rank-ordered directions that broke rows
        n_hits = 0
        for r in range(self.restarts):
            # draw for every point, so a point's draws never depend on which others broke
            w_rank = (2 * rand((n, n_cls), generator, x.device) - 1).to(x.dtype)
            robust = (~success).nonzero().flatten()
            if len(robust) == 0:
                break
            m = max(1, math.ceil(self.fraction(r) * len(robust)))
            rows = robust[best[robust].argsort(descending=True)[:m]].sort().values
            xr, yr = x[rows], y[rows]
            x0 = None
            w_used = None
            if r > 0 and self.odi_steps > 0:
                if n_hits:
                    w_rank = w_rank + hits / n_hits
                w_rank[:, 1 + (r - 1) % min(self.target_classes, n_cls - 1)] = 0.8
                w_used = w_rank[rows]
                w = torch.zeros_like(w_used).scatter_(1, order[rows], w_used)  # rank order -> class order
                odi = pgd(model, xr, yr, norm=self.norm, eps=eps, steps=self.odi_steps, step_size=eps,
                          loss=logit_direction_loss, target=w, random_start="uniform",
                          generator=rows_of(generator, rows))
                assert odi.success is not None
                x0 = odi.x_adv
                done = odi.success
                self._record(out, success, rows[done], x0[done])
                hits, n_hits = hits + w_used[done].sum(0), n_hits + int(done.sum())
                left = ~done
                rows, xr, yr, x0, w_used = rows[left], xr[left], yr[left], x0[left], w_used[left]
                if len(rows) == 0:
                    continue
            res = apgd(model, xr, yr, norm=self.norm, eps=eps, steps=self.steps, loss="margin", x_init=x0,
                       generator=rows_of(generator, rows))
            self._record(out, success, rows[res.success], res.x_adv[res.success])
            if w_used is not None:
                hits, n_hits = hits + w_used[res.success].sum(0), n_hits + int(res.success.sum())
            fail = ~res.success
            better = fail & (res.loss > best[rows])
            best[rows[better]] = res.loss[better]
            out[rows[better]] = res.x_adv[better]
        return AttackOutput(out, success)

    @staticmethod
    def _record(out: Tensor, success: Tensor, rows: Tensor, x_adv: Tensor) -> None:
        out[rows] = x_adv
        success[rows] = True
