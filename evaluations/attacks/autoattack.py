"""AutoAttack (Croce & Hein 2020) through pyautoattack, the reference implementation."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robustbench_lite import progress
from robustbench_lite.utils import frozen

from .base import Attack, AttackOutput, predict, register_attack

logger = logging.getLogger(__name__)
_AA_NORM = {"linf": "Linf", "l2": "L2", "l1": "L1"}


def _seed_of(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device).item())


_STAGES = {"apgd": lambda a: f"apgd-{a.loss}", "apgd_targeted": lambda a: "apgd-t",
           "fab": lambda a: "fab-t" if a.targeted else "fab", "square": lambda a: "square"}


def _runs_per_stage(sub: object, stage: str) -> int:
    """How many single runs pyautoattack's ``perturb`` makes at most: restarts, times targets."""
    restarts = int(getattr(sub, "n_restarts", 1) or 1)
    targeted = stage in ("apgd-t", "fab-t")
    return restarts * (int(getattr(sub, "n_target_classes", 1) or 1) if targeted else 1)


def _show_stages(aa: object, n_points: int, label: str = "autoattack") -> None:
    """Progress inside AutoAttack (issue #19): each sub-attack's ``perturb`` is wrapped to say, when
    it begins, which stage runs on how many points and the robust fraction so far (one log line
    through :func:`robustbench_lite.progress.stage`, and the innermost bar), and each of its single
    runs (restarts, targets) to advance a note on the bar. pyautoattack runs the block as one batch
    (``batch_size=len(x)``), so the points a stage receives are exactly those still robust. The
    arguments, the seeds and so the results are untouched."""
    for attr, stage in _STAGES.items():
        sub = getattr(aa, attr, None)
        if sub is None or not hasattr(sub, "perturb"):
            continue
        count = {"run": 0, "of": 1, "name": ""}

        def perturb(x: Tensor, *args: object, _run=sub.perturb, _sub=sub, _stage=stage, _count=count,
                    **kw: object) -> Tensor:
            name = _stage(_sub)
            _count.update(run=0, of=_runs_per_stage(_sub, name), name=name)
            progress.stage(f"{label} stage {name} on {len(x)} points, robust {len(x)}/{n_points} "
                           f"({100 * len(x) / max(n_points, 1):.1f}%) so far", logger)
            return _run(x, *args, **kw)

        sub.perturb = perturb
        if hasattr(sub, "attack_single_run"):
            def single(*args: object, _run=sub.attack_single_run, _count=count, **kw: object) -> object:
                _count["run"] += 1
                progress.note(f"{label} {_count['name']} run {_count['run']} of at most {_count['of']}")
                return _run(*args, **kw)

            sub.attack_single_run = single


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
        _show_stages(aa, len(x), self.name)
        with frozen(model, eval_mode=False):  # pyautoattack calls backward(): no weight gradient may accumulate
            x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=max(len(x), 1))  # the front door's block
        x_adv = x_adv.to(x.device)
        success = predict(model, x_adv, len(x_adv)) != y
        held = int((~success).sum())
        progress.stage(f"{self.name} done, robust {held}/{len(x)} ({100 * held / max(len(x), 1):.1f}%)", logger)
        return AttackOutput(x_adv, success)


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
