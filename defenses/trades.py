"""``trades``: TRADES (Zhang et al., ICML 2019; yaodongyu/TRADES ``trades_loss``).

Per batch:

1. attack (model in eval mode): start ``x + 0.001 * randn`` (preset ``random_start = "normal"``),
   maximise ``KL(softmax(f(x)) || softmax(f(x')))`` through the shared PGD engine (sign step,
   projection, clamp to [0,1] for Linf; normalised-gradient step of size ``step_size`` for L2);
2. loss (model in train mode): ``CE_mean(f(x), y) + beta * sum KL(softmax(f(x)) || softmax(f(x'))) / N``
   with the natural softmax NOT detached.

Options: ``beta`` (default 6, the official default; presets set the papers' values: MNIST 1,
ACT's CIFAR re-run 1/lambda = 5).

L2 variant: the official code runs SGD on delta with lr ``2 eps / steps``, per-example gradient
renormalisation, then clamps ``x + delta`` to [0,1] and renorms delta to the eps ball. The shared
engine's L2 step is the same normalised-gradient ascent, but projects to the ball before clamping
to [0,1] and leaves a zero-gradient row in place (the official code gives it a random direction).
Presets set ``step_size = 2 eps / steps`` so the step matches; the remaining difference only
matters where the box constraint is active. Example::

    bench train --defense trades --dataset mnist5k --out runs/recipes/trades
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from robustbench_lite.evaluations.losses import kl_to
from robustbench_lite.utils import frozen

from .base import Recipe, register_defense
from .options import Range
from .ddp import pad
from .losses import trades_kl
from .standard import attack_batch


@register_defense("trades")
class Trades(Recipe):
    option_defaults = {"beta": 6.0}
    option_rules = {"beta": Range(0, None)}  # the weight of the KL term (0: natural training on clean inputs)

    def loss(self, model, x, y, generator):  # type: ignore[no-untyped-def]
        with frozen(model), torch.no_grad():  # eval mode, as the official trades_loss
            p_nat = F.softmax(model(x), dim=1)
        x_adv = attack_batch(model, x, y, self.attack, generator, loss=kl_to(pad(self.shard, p_nat, 1.0 / p_nat.shape[1])),
                             shard=self.shard)
        model.train()
        logits_nat = model(x)
        logits_adv = model(x_adv)
        robust = trades_kl(logits_adv, logits_nat)
        loss = F.cross_entropy(logits_nat, y) + float(self.opts["beta"]) * robust
        return loss, {"kl": float(robust.detach()), "acc": float((logits_nat.argmax(1) == y).float().mean()),
                      "adv_acc": float((logits_adv.argmax(1) == y).float().mean())}
