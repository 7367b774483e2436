"""``act``: Adversarial Concurrent Training (Arani, Sarfraz & Zonooz, BMVC 2020; NeurAI-Lab/ACT).

Two networks trained together, each with its own SGD optimizer and independent initialisation:
the robust model G (member ``model``, the one ``bench eval`` evaluates) and the natural model F
(member ``natural``; ``bench eval --member natural``). Per batch, in the authors' order:

1. F forward on clean x (train mode);
2. attack G (eval mode) maximising ``(1-a) CE(G(x'), y) + a KL(F(x) || G(x'))`` with F(x) fixed
   and no temperature (``act_attack_loss``), start ``x + 0.001 randn``;
3. G forward on x' (train mode);
4. ``L_G = (1-a) CE(G(x'), y) + a T^2 KL_T(F(x) || G(x'))``, ``L_F = (1-a) CE(F(x), y) + a T^2 KL_T(G(x') || F(x))``,
   each target detached; each loss steps its own optimizer. F's CE term sees only clean x.

Options: ``alpha`` (0.9), ``temperature`` (4 = authors' code; 1 = the equations as printed),
``attack_form`` ("code": ``(1-a) CE_mean + a KL_sum``; "paper": Eq. 1 per example). Example::

    bench train --defense act --dataset mnist5k --out runs/recipes/act
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from .base import Members, Optimizers, Recipe, register_defense
from .options import Choice, Range
from .ddp import pad
from .losses import act_attack_loss, act_losses
from .standard import attack_batch


@register_defense("act")
class ACT(Recipe):
    option_defaults = {"alpha": 0.9, "temperature": 4.0, "attack_form": "code"}
    option_rules = {"alpha": Range(0, 1), "temperature": Range(0, None, open_low=True),
                    "attack_form": Choice("code", "paper")}

    def members(self, make_model: Callable[[], nn.Module]) -> Members:
        return {"model": make_model(), "natural": make_model()}

    def optimizers(self, members: Members) -> Optimizers:
        return {"model": self.sgd(members["model"].parameters()), "natural": self.sgd(members["natural"].parameters())}

    def train_step(self, members, optimizers, x, y, generator):  # type: ignore[no-untyped-def]
        g, f = members["model"], members["natural"]
        alpha, temp = float(self.opts["alpha"]), float(self.opts["temperature"])
        f.train()
        f_nat = f(x)
        # under DDP the attack loss sees F(x) of the global batch's shape (its code form divides by N)
        x_adv = attack_batch(g, x, y, self.attack, generator, shard=self.shard,
                             loss=act_attack_loss(pad(self.shard, f_nat.detach()), alpha=alpha,
                                                  form=str(self.opts["attack_form"])))
        g.train()
        g_adv = g(x_adv)
        l_g, l_f = act_losses(g_adv, f_nat, y, alpha=alpha, temperature=temp)
        for name, loss in (("model", l_g), ("natural", l_f)):
            opt = optimizers[name]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return {"loss": float(l_g.detach()), "loss_natural": float(l_f.detach()),
                "adv_acc": float((g_adv.argmax(1) == y).float().mean()),
                "natural_acc": float((f_nat.argmax(1) == y).float().mean())}

