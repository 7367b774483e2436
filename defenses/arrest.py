"""``arrest``: Adversarial finetuning with REpresentation conSTraint (Suzuki et al., WACV 2023).

Two stages in one run (``cfg.epochs`` = ``stage1_epochs`` + finetuning epochs):

- **Stage 1** (epochs ``< stage1_epochs``): standard training, mean CE on clean inputs. Skipped
  when ``init`` names a checkpoint (any of ours, e.g. ``bench train --defense natural``), loaded
  with :func:`robustbench_lite.checkpoint.load_checkpoint`; then ``stage1_epochs`` must be 0.
- **Stage 2, AFT** (the rest): at its first epoch the current weights are copied into the frozen
  reference theta_s (member ``reference``; ``requires_grad=False``, eval mode, in no optimizer) and the
  optimizer's momentum is reset. Per batch (Algorithm 1):

  1. PGD on CE only (shared engine; the model in eval mode);
  2. NR (variants ``aft_nr``, ``arrest``; AFT epochs ``< nr_epochs``, default the first half):
     per example, if ``d(h(x; theta), h(x; theta_s)) > tau`` (``tau = 1 - cos(phi)``, measured in
     eval mode) the input is ``clip(x + U(-eps, eps), 0, 1)`` instead of the PGD example;
  3. loss ``CE(f(x + Delta), y) + lambda * mean d(h(x + Delta; theta), h(x; theta_s))``
     (RGKD only in ``aft_rgkd``, ``arrest``), ``d`` the angular distance
     ``1 - |u.v| / (|u| |v|)`` on the flattened pre-pool feature map ``h``.

``eps_warmup_epochs`` counts from the start of stage 2. The LR schedule is the trainer's
(presets give ARREST's explicit ``lr_schedule`` over the absolute epochs). Example::

    bench train --defense arrest --dataset mnist5k --out runs/recipes/arrest
    bench train --defense arrest --preset cifar10_init --option init=runs/nat/checkpoint.pt --out runs/arrest
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_lite.errors import BenchError
from robustbench_lite.utils import frozen

from .base import Members, Optimizers, Recipe, TrainConfig, register_defense
from .options import Choice, Range
from .ddp import rand_like_batch
from .losses import angular_distance, noisy_replay_mask, nr_threshold
from .standard import attack_batch

VARIANTS = {"aft": (False, False), "aft_rgkd": (True, False), "aft_nr": (False, True), "arrest": (True, True)}


@register_defense("arrest")
class Arrest(Recipe):
    option_defaults = {"variant": "arrest", "lam": 50.0, "phi": 30.0, "stage1_epochs": 0, "nr_epochs": -1, "init": ""}
    # phi: the NR angle in degrees (tau = 1 - cos(phi) spans the angular distance's [0, 1] for phi in [0, 90])
    option_rules = {"variant": Choice(*VARIANTS), "lam": Range(0, None), "phi": Range(0, 90),
                    "stage1_epochs": Range(0, None), "nr_epochs": Range(0, None, also=(-1,), meaning="half the finetuning epochs")}

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__(cfg)
        self.use_rgkd, self.use_nr = VARIANTS[self.opts["variant"]]
        self.stage1 = int(self.opts["stage1_epochs"])
        self.warmup_start = self.stage1  # the eps warm-up counts from the start of stage 2
        if self.opts["init"] and self.stage1 != 0:
            raise BenchError("arrest: with init=<checkpoint> stage 1 is skipped, so stage1_epochs must be 0.")
        if self.opts["init"] and not Path(self.opts["init"]).is_file():
            raise BenchError(f"arrest init {self.opts['init']} is not a checkpoint file (it does not exist or is a folder).")
        if not self.opts["init"] and self.stage1 <= 0:
            raise BenchError("arrest needs a pretrained model: pass --option init=<natural checkpoint> or stage1_epochs>0.")
        if self.stage1 >= cfg.epochs:
            raise BenchError(f"arrest: stage1_epochs ({self.stage1}) leaves no finetuning epochs of {cfg.epochs}.")
        aft = cfg.epochs - self.stage1
        nr = int(self.opts["nr_epochs"])
        self.nr_epochs = aft // 2 if nr < 0 else nr
        self.tau = nr_threshold(float(self.opts["phi"]))

    @property
    def finetuning(self) -> bool:
        return self.epoch >= self.stage1

    def members(self, make_model: Callable[[], nn.Module]) -> Members:
        model = make_model()
        if self.opts["init"]:
            from robustbench_lite.checkpoint import load_checkpoint

            ck = load_checkpoint(self.opts["init"])
            if ck.arch != self.cfg.arch or ck.arch_kwargs != dict(self.cfg.arch_kwargs):
                raise BenchError(f"arrest init {self.opts['init']} is a {ck.arch} model, but this run trains {self.cfg.arch}.")
            model.load_state_dict(ck.model.state_dict())
        reference = copy.deepcopy(model)
        reference.requires_grad_(False).eval()
        return {"model": model, "reference": reference}

    def on_epoch_start(self, epoch: int, members: Members, optimizers: Optimizers) -> None:
        if epoch == self.stage1 and self.stage1 > 0:
            # stage 1 just ended: freeze its weights as theta_s and start finetuning with fresh momentum
            members["reference"].load_state_dict(members["model"].state_dict())
            optimizers["model"].state.clear()
        members["reference"].requires_grad_(False).eval()

    def train_step(self, members, optimizers, x, y, generator):  # type: ignore[no-untyped-def]
        model, opt = members["model"], optimizers["model"]
        if self.finetuning:
            loss, logs = self.finetune_loss(model, members["reference"], x, y, generator)
        else:
            model.train()
            logits = model(x)
            loss, logs = F.cross_entropy(logits, y), {"acc": float((logits.argmax(1) == y).float().mean())}
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": float(loss.detach()), **logs}

    def finetune_loss(self, model: nn.Module, reference: nn.Module, x: torch.Tensor, y: torch.Tensor,
                      generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        x_in = attack_batch(model, x, y, self.attack, generator, shard=self.shard)
        need_ref = self.use_rgkd or (self.use_nr and self.epoch - self.stage1 < self.nr_epochs)
        h_ref = None
        if need_ref:
            with torch.no_grad():
                h_ref = reference.features(x).pre_pool
        replaced = 0.0
        if self.use_nr and self.epoch - self.stage1 < self.nr_epochs:
            assert h_ref is not None
            with frozen(model), torch.no_grad():  # measured in eval mode
                dist = angular_distance(model.features(x).pre_pool, h_ref)
            switch = noisy_replay_mask(dist, self.tau)
            u = rand_like_batch(self.shard, x, generator)  # under DDP: the global batch's draw, this rank's rows
            noisy = (x + (2 * u - 1) * self.attack.eps).clamp(0, 1)
            x_in = torch.where(switch.view(-1, *([1] * (x.ndim - 1))), noisy, x_in)
            replaced = float(switch.float().mean())
        model.train()
        feats = model.features(x_in)
        ce = F.cross_entropy(feats.logits, y)
        loss = ce
        logs = {"adv_acc": float((feats.logits.argmax(1) == y).float().mean()), "nr_frac": replaced}
        if self.use_rgkd:
            assert h_ref is not None
            rgkd = angular_distance(feats.pre_pool, h_ref).mean()
            loss = ce + float(self.opts["lam"]) * rgkd
            logs["rgkd"] = float(rgkd.detach())
        return loss, logs
