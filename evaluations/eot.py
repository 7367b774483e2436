"""Expectation over Transformation (EoT) for randomised defenses (Athalye, Carlini & Wagner, ICML 2018;
Athalye et al., "Synthesizing Robust Adversarial Examples", 2018).

A randomised defense (input noise, random resizing or shifts, stochastic layers) answers a fixed
input with a different prediction on each forward pass. Two things then go wrong in an ordinary
evaluation: the attack follows the gradient of one random draw (noise, not a direction), and the
verdict at the returned point is one draw of a random variable.

- :class:`EoTModel` wraps the model so that every forward pass returns the mean logits over
  ``draws`` independent forward passes. Every gradient attack (ours and the libraries') then
  follows the gradient of the expected logits, and a score-based attack (Square) compares
  expected scores: its loss is averaged over the draws. Example::

      out = create_attack("apgd_ce")(EoTModel(model, draws=20), x, y, eps=8 / 255)

- :func:`correct_fraction` is the verdict: per point, the share of ``k`` fresh forward passes of
  the true model (not the averaged one) that classify it correctly.
- :func:`expected_accuracy` turns those shares into the reported number: the expected accuracy
  over the defense's randomness, ``mean_i P(model(x_i) = y_i)``, with a 95% interval.

Why one draw is not enough: a point classified correctly with probability ``p`` is counted robust
with probability ``p`` by a single-draw verdict, so one evaluation's number is a random variable
whose per-point error is Bernoulli noise; worse, an attack that checks success on its own draws
keeps the first draw that happens to be misclassified (it has ``steps`` tries to be lucky), which
overstates success, while a white-box attack whose gradient is one draw's is misled, which
overstates robustness. Averaging the gradient and judging on ``k`` fresh draws removes both.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from robustbench_lite.results import wilson_interval

DEFAULT_DRAWS = 20     # draws per forward pass of the EoT model (AutoAttack's version='rand': eot_iter=20)
DEFAULT_VERDICT_DRAWS = 100  # fresh draws of the verdict at each returned point


class EoTModel(nn.Module):
    """``model`` whose forward pass is the mean of ``draws`` forward passes (each with its own
    randomness, one after the other: a model that draws once per batch still draws per pass).
    Gradients are those of the mean logits; memory grows with ``draws`` (every pass's graph is kept)."""

    def __init__(self, model: nn.Module | Callable[[Tensor], Tensor], draws: int = DEFAULT_DRAWS) -> None:
        super().__init__()
        if not (isinstance(draws, int) and draws >= 1):
            raise ValueError(f"EoT needs a positive number of draws, got {draws!r}")
        self.model = model
        self.draws = draws
        self.training = bool(getattr(model, "training", False))

    def forward(self, x: Tensor) -> Tensor:
        out = self.model(x)
        for _ in range(self.draws - 1):
            out = out + self.model(x)
        return out / self.draws


def correct_fraction(model: nn.Module | Callable[[Tensor], Tensor], x: Tensor, y: Tensor, *, draws: int,
                     batch_size: int = 256) -> Tensor:
    """Per row of ``x`` (N,C,H,W): the share of ``draws`` forward passes of ``model`` whose
    prediction is ``y``. (N,) float64 in [0,1]; a deterministic model gives 0 or 1."""
    hits = torch.zeros(len(x), dtype=torch.float64, device=x.device)
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            for _ in range(draws):
                hits[i:i + batch_size] += (model(xb).argmax(1) == yb).double()
    return hits / max(draws, 1)


def expected_accuracy(shares: Tensor | list[float]) -> dict[str, float | int | list[float] | None]:
    """The expected accuracy over the defense's randomness, in percent, of per-point shares of
    correct draws: ``accuracy`` = 100 * mean share, and ``interval`` its 95% interval over the
    sampling of the points: the Wilson score interval at ``n`` points, valid for a mean of values
    in [0,1] (their variance is at most that of a Bernoulli variable with the same mean), and
    never empty at 0% or 100%. ``n`` 0: accuracy and interval None."""
    s = torch.as_tensor(shares, dtype=torch.float64).flatten()
    n = len(s)
    if n == 0:
        return {"accuracy": None, "interval": None, "n": 0}
    total = min(float(s.sum()), float(n))
    ci = wilson_interval(total, n)  # type: ignore[arg-type]  (a real-valued count: see the docstring)
    acc = 100.0 * total / n
    return {"accuracy": round(acc, 2), "interval": [round(ci[0], 2), round(ci[1], 2)] if ci else None, "n": n}


def is_random(model: nn.Module | Callable[[Tensor], Tensor], x: Tensor, *, repeats: int = 5, tol: float = 1e-4) -> bool:
    """Whether ``repeats`` forward passes of the same inputs differ by more than ``tol`` in some logit
    (the model check ``deterministic_output``'s test, for a caller without the checks)."""
    with torch.no_grad():
        outs = [model(x) for _ in range(repeats)]
    return any(float((o - outs[0]).abs().max()) > tol for o in outs[1:]) or not all(
        math.isfinite(float(o.abs().max())) for o in outs)
