"""AutoAttack (Croce & Hein 2020) through pyautoattack, the reference implementation."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robustbench_lite.progress import note
from robustbench_lite.utils import frozen

from .base import Attack, AttackOutput, predict, register_attack

logger = logging.getLogger(__name__)
_AA_NORM = {"linf": "Linf", "l2": "L2", "l1": "L1"}


def _seed_of(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device).item())


_STAGES = {"apgd": lambda a: f"apgd-{a.loss}", "apgd_targeted": lambda a: "apgd-t",
           "fab": lambda a: "fab-t" if a.targeted else "fab", "square": lambda a: "square"}


def _show_stages(aa: object) -> None:
    """Name AutoAttack's running stage on the progress bar (wraps each sub-attack's ``perturb``;
    the arguments, the seeds and so the results are untouched)."""
    for attr, stage in _STAGES.items():
        sub = getattr(aa, attr, None)
        if sub is None or not hasattr(sub, "perturb"):
            continue

        def perturb(x: Tensor, *args: object, _run=sub.perturb, _sub=sub, _stage=stage, **kw: object) -> Tensor:
            note(f"{_stage(_sub)} on {len(x)} points")
            return _run(x, *args, **kw)

        sub.perturb = perturb


@register_attack("autoattack")
@dataclass(frozen=True, kw_only=True)
class AutoAttackStandard(Attack):
    """AutoAttack, ``version="standard"`` by default: APGD-CE, APGD-T, FAB-T, Square, each run only
    on points still robust (pyautoattack's own cascade). ``attacks`` with ``version="standard"`` runs
    that subset with the standard settings (100 iterations, 9 targets, 5000 queries); with
    ``version="custom"`` pyautoattack's custom settings apply. The seed comes from the runner's generator, so runs are reproducible."""

    version: str = "standard"
    attacks: tuple[str, ...] | None = None

    def make(self, model: nn.Module, eps: float, seed: int, device: torch.device):  # type: ignore[no-untyped-def]
        from pyautoattack import AutoAttack

        if self.version == "standard" and self.attacks:
            # the standard configuration (iterations, restarts, targets, queries), restricted to a subset
            aa = AutoAttack(model, norm=_AA_NORM[self.norm], eps=eps, version="standard", seed=seed, device=device)
            aa.attacks_to_run = [a for a in aa.attacks_to_run if a in self.attacks]
            return aa
        kw = {"attacks": list(self.attacks)} if self.attacks else {}
        return AutoAttack(model, norm=_AA_NORM[self.norm], eps=eps, version=self.version, seed=seed, device=device, **kw)

    def run(self, model: nn.Module, x: Tensor, y: Tensor, *, eps: float | None,
            generator: torch.Generator) -> AttackOutput:
        assert eps is not None
        aa = self.make(model, eps, _seed_of(generator), x.device)
        _show_stages(aa)
        with frozen(model, eval_mode=False):  # pyautoattack calls backward(): no weight gradient may accumulate
            x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=len(x))  # the front door's block
        x_adv = x_adv.to(x.device)
        return AttackOutput(x_adv, predict(model, x_adv, len(x_adv)) != y)


@register_attack("square")
@dataclass(frozen=True, kw_only=True)
class Square(AutoAttackStandard):
    """Square Attack alone (Andriushchenko et al. 2020), the query-based black-box attack, as
    configured in standard AutoAttack (5000 queries, p_init 0.8), through pyautoattack."""

    version: str = "custom"
    attacks: tuple[str, ...] | None = ("square",)
    n_queries: int = 5000
    white_box = False
    kind = "black-box"
    norms_supported = ("linf", "l2")

    def make(self, model: nn.Module, eps: float, seed: int, device: torch.device):  # type: ignore[no-untyped-def]
        aa = super().make(model, eps, seed, device)
        aa.square.n_queries = self.n_queries
        return aa
