"""``afd``: Adversarial Feature Desensitization (Bashivan et al., NeurIPS 2021; BashivanLab/afd).

Networks (members): ``model`` = E + Dc as one :class:`robustbench_lite.models.afd.AFDNet`
(``arch = "afd_net"``, ``arch_kwargs = {backbone = ...}``; evaluable by ``bench eval``) and
``discriminator`` = Da, a spectrally normalised projection discriminator conditioned on the label
(:class:`ProjectionDiscriminator`).

Optimizers (SGD, momentum from the config; all follow the trainer's LR schedule):
``model`` over E+Dc (``lr``, ``weight_decay``), ``discriminator`` over Da (``lr_discriminator``,
``weight_decay_discriminator``), ``features`` over E only (``lr_features``, no weight decay).

Per batch (``update_order = "code"``, the default): x' = attack(x) with E, Dc in eval mode; (1) E+Dc
step on ``CE(Dc(E(x)), y)`` (clean only); (2) Da step on L_D with fresh, detached features;
(3) fresh forward, E step on L_F (Da in eval mode and frozen). ``update_order = "paper"``
(Algorithm 1 as printed): all three losses at the same parameters, then the three steps.

``gan_loss``: ``wgan`` (code default; Lipschitz control by spectral norm only) or ``dcgan`` (Eqs. 9-10).
``reset_classifier`` (default true): Dc gets PyTorch's default linear init (see :func:`reset_linear_`).
``attack``: ``apgd`` (pyautoattack's APGD-CE, 1 restart, ``cfg.attack.steps`` iterations; its seed
drawn from the run's generator, its random start seeded from it, the global RNG restored after it;
it returns the highest-loss iterate of every row, ``best_loss=True``) or ``pgd`` (shared engine).
Example::

    bench train --defense afd --dataset mnist5k --out runs/recipes/afd
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from robustbench_lite.data import get_dataset
from robustbench_lite.errors import BenchError
from robustbench_lite.models.afd import AFDNet
from robustbench_lite.utils import frozen

from .base import Members, Optimizers, Recipe, TrainConfig, register_defense
from .options import Choice, Range
from .ddp import allreduce_grads_, on_global_batch, unwrap
from .losses import GAN_LOSSES, discriminator_loss, feature_loss
from .standard import attack_batch


class ProjectionDiscriminator(nn.Module):
    """Da(z, y) = SN-Linear(d,1)(h) + <SN-Embedding(K,d)(y), h>, h = [SN-Linear(d,d) - LeakyReLU(0.2)] x 2 (z).

    Projection discriminator (Miyato & Koyama 2018) with every layer spectrally normalised.
    ``z`` (N, d), ``y`` (N,) -> (N,) scores (higher = "clean")."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.fc1 = spectral_norm(nn.Linear(dim, dim))
        self.fc2 = spectral_norm(nn.Linear(dim, dim))
        self.out = spectral_norm(nn.Linear(dim, 1))
        self.embed = spectral_norm(nn.Embedding(num_classes, dim))

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        h = F.leaky_relu(self.fc1(z), 0.2)
        h = F.leaky_relu(self.fc2(h), 0.2)
        return self.out(h).squeeze(1) + (self.embed(y) * h).sum(1)


def reset_linear_(params: list[nn.Parameter]) -> None:
    """PyTorch's default ``nn.Linear`` init on Dc's (weight, bias): the authors' Dc is a fresh linear
    layer, while e.g. small_cnn zero-initialises its last layer (TRADES), which on unit-norm features
    leaves the clean cross-entropy at a saddle (no class-discriminative gradient reaches E)."""
    import math

    with torch.no_grad():
        weights = [p for p in params if p.ndim == 2]
        if len(weights) != 1:
            raise BenchError("afd reset_classifier expects the backbone's head to be one linear layer.")
        w = weights[0]
        nn.init.kaiming_uniform_(w, a=math.sqrt(5))
        bound = 1 / math.sqrt(w.shape[1])
        for p in params:
            if p.ndim == 1:
                nn.init.uniform_(p, -bound, bound)


@register_defense("afd")
class AFD(Recipe):
    ddp_find_unused = True  # the feature step (3) trains E only: Dc gets no gradient
    option_defaults = {"gan_loss": "wgan", "attack": "apgd", "lr_features": 0.5, "lr_discriminator": 0.5,
                       "weight_decay_discriminator": -1.0, "update_order": "code",
                       "reset_classifier": True}
    option_rules = {"gan_loss": Choice(*GAN_LOSSES), "attack": Choice("apgd", "pgd"),
                    "lr_features": Range(0, None, open_low=True), "lr_discriminator": Range(0, None, open_low=True),
                    "weight_decay_discriminator": Range(0, None, also=(-1,), meaning="the run's weight_decay"),
                    "update_order": Choice("code", "paper")}

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__(cfg)
        if cfg.arch != "afd_net":
            raise BenchError(f"afd trains arch 'afd_net' (set arch_kwargs backbone = ...), not {cfg.arch!r}.")
        self.input_shape = get_dataset(cfg.dataset).input_shape

    # -- networks -----------------------------------------------------------------------------
    def members(self, make_model: Callable[[], nn.Module]) -> Members:
        model = make_model()
        if not isinstance(model, AFDNet):
            raise BenchError("afd needs arch 'afd_net'.")
        with frozen(model), torch.no_grad():
            dim = model.features(torch.zeros(2, *self.input_shape)).pooled.shape[1]
        if self.opts["reset_classifier"]:
            _, cls = model.split_parameters(self.input_shape)
            reset_linear_(cls)
        return {"model": model, "discriminator": ProjectionDiscriminator(dim, model.num_classes)}

    def optimizers(self, members: Members) -> Optimizers:
        model = members["model"]
        assert isinstance(model, AFDNet)
        feat, _ = model.split_parameters(self.input_shape)
        wd_d = float(self.opts["weight_decay_discriminator"])
        return {
            "model": self.sgd(model.parameters()),
            "discriminator": self.sgd(members["discriminator"].parameters(), lr=float(self.opts["lr_discriminator"]),
                                      weight_decay=self.cfg.weight_decay if wd_d < 0 else wd_d),
            "features": self.sgd(feat, lr=float(self.opts["lr_features"]), weight_decay=0.0),
        }

    # -- attack --------------------------------------------------------------------------------
    def adversarial(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator) -> Tensor:
        """x' for the batch, E and Dc in eval mode, detached."""
        if self.opts["attack"] == "pgd":
            return attack_batch(model, x, y, self.attack, generator, shard=self.shard)
        from pyautoattack.autopgd_base import APGDAttack

        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))

        def run(m: object, xb: Tensor, yb: Tensor) -> Tensor:
            apgd = APGDAttack(m, n_iter=self.attack.steps, norm="Linf" if self.attack.norm == "linf" else "L2",
                              n_restarts=1, eps=self.attack.eps, seed=seed, loss="ce", device=x.device)
            return apgd.perturb(xb, yb, best_loss=True)

        # frozen: eval mode and no weight gradients inside, the model's mode restored after; under DDP
        # APGD runs on the global batch's shape (its random start is the single-process one)
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []), frozen(model):
            torch.manual_seed(seed)
            x_adv = on_global_batch(self.shard, model, x, y, run)
        return x_adv.detach()

    # -- the three updates ---------------------------------------------------------------------
    def step_classifier(self, members: Members, optimizers: Optimizers, x: Tensor, y: Tensor) -> Tensor:
        """(1) E + Dc on the clean cross-entropy (Eq. 7)."""
        model = members["model"]
        model.train()
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizers["model"].zero_grad(set_to_none=True)
        loss.backward()
        optimizers["model"].step()
        self._acc = float((logits.argmax(1) == y).float().mean())
        return loss.detach()

    def step_discriminator(self, members: Members, optimizers: Optimizers, x: Tensor, x_adv: Tensor, y: Tensor) -> Tensor:
        """(2) Da on L_D with fresh features of E (detached)."""
        model, disc = members["model"], members["discriminator"]
        model.train()
        with torch.no_grad():
            z, z_adv = model.features(x).pooled, model.features(x_adv).pooled
        disc.train()
        loss = discriminator_loss(disc(z, y), disc(z_adv, y), str(self.opts["gan_loss"]))
        optimizers["discriminator"].zero_grad(set_to_none=True)
        loss.backward()
        optimizers["discriminator"].step()
        return loss.detach()

    def step_features(self, members: Members, optimizers: Optimizers, x_adv: Tensor, y: Tensor) -> Tensor:
        """(3) E alone on L_F (fresh forward); Da frozen and in eval mode, Dc not involved."""
        model, disc = members["model"], members["discriminator"]
        model.train()
        with frozen(disc):
            loss = feature_loss(disc(model.features(x_adv).pooled, y), str(self.opts["gan_loss"]))
            optimizers["features"].zero_grad(set_to_none=True)
            loss.backward()
        optimizers["features"].step()
        return loss.detach()

    def _paper_step(self, members: Members, optimizers: Optimizers, x: Tensor, x_adv: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Algorithm 1 as printed: L_C, L_D, L_F at the same parameters, then the three updates."""
        # torch.autograd.grad below is no backward DDP's hooks see: under DDP the passes run on the
        # modules themselves and the gradients are all-reduced by hand before the steps
        model, disc = unwrap(members["model"]), unwrap(members["discriminator"])
        kind = str(self.opts["gan_loss"])
        model.train()
        disc.train()
        fx, fa = model.features(x), model.features(x_adv)
        l_c = F.cross_entropy(fx.logits, y)
        l_d = discriminator_loss(disc(fx.pooled.detach(), y), disc(fa.pooled.detach(), y), kind)
        l_f = feature_loss(disc(fa.pooled, y), kind)
        self._acc = float((fx.logits.argmax(1) == y).float().mean())
        grads = {}
        for name, loss in (("model", l_c), ("discriminator", l_d), ("features", l_f)):
            params = [p for g in optimizers[name].param_groups for p in g["params"]]
            grads[name] = (params, torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True))
        for name in ("model", "discriminator", "features"):
            optimizers[name].zero_grad(set_to_none=True)
            for p, g in zip(*grads[name]):
                p.grad = g
            if self.shard is not None:
                allreduce_grads_(grads[name][0], self.shard)
            optimizers[name].step()
        return l_c.detach(), l_d.detach(), l_f.detach()

    def train_step(self, members, optimizers, x, y, generator):  # type: ignore[no-untyped-def]
        x_adv = self.adversarial(members["model"], x, y, generator)
        if self.opts["update_order"] == "paper":
            l_c, l_d, l_f = self._paper_step(members, optimizers, x, x_adv, y)
        else:
            l_c = self.step_classifier(members, optimizers, x, y)
            l_d = self.step_discriminator(members, optimizers, x, x_adv, y)
            l_f = self.step_features(members, optimizers, x_adv, y)
        return {"loss": float(l_c), "loss_d": float(l_d), "loss_f": float(l_f), "acc": self._acc}
