"""What makes a claimed break a break: the one test the attack front door and ``bench verify`` share.

A point ``x`` (label ``y``) is broken by ``x_adv`` at threat (norm, eps) when

- ``x_adv`` lies in the [0, 1] box (to ``BOX_TOL``),
- ``||x_adv - x||`` (computed in float64 from the float32 points) is at most
  ``eps * (1 + BALL_RTOL) + BALL_ATOL * s``, where ``s`` is the norm of an all-ones vector of the
  input's size (1 for linf, ``sqrt(d)`` for l2, ``d`` for l1): a float32 rounding allowance of
  ``BALL_ATOL`` per coordinate, summed under the norm,
- and a fresh forward pass of the model in evaluation mode (no gradients) misclassifies it.

A minimum-norm attack's adversarial must also have the norm it reports (the same tolerance both
ways), so that "robust at eps iff its norm > eps" reads off a checked number.

Example::

    ok, why = check_breaks(model, x, x_adv, y, norm="linf", eps=8 / 255)
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

BALL_RTOL = 1e-6   # relative slack on the radius
BALL_ATOL = 1e-6   # per-coordinate slack (float32 rounding of x + delta), summed under the norm
BOX_TOL = 1e-6     # slack of the [0, 1] box
_P = {"linf": math.inf, "l2": 2.0, "l1": 1.0}

# why a claimed break is not one (the first that applies, in this order)
OUT_OF_BOX, OUT_OF_BALL, NORM_MISMATCH, NOT_MISCLASSIFIED = (
    "outside the [0, 1] box", "outside the threat ball", "its norm is not the reported one", "not misclassified")


def distances(x_adv: Tensor, x: Tensor, norm: str) -> Tensor:
    """Per row, ``||x_adv - x||`` in ``norm`` (linf, l2, l1), in float64."""
    if norm not in _P:
        raise ValueError(f"unknown norm {norm!r}; use one of {', '.join(_P)}")
    d = (x_adv.detach().double() - x.detach().double()).flatten(1)
    if d.shape[1] == 0:
        return torch.zeros(len(d), dtype=torch.float64, device=d.device)
    return torch.linalg.vector_norm(d, ord=_P[norm], dim=1)


def tolerance(norm: str, size: int) -> float:
    """The absolute slack for inputs of ``size`` coordinates: ``BALL_ATOL`` summed under the norm."""
    return BALL_ATOL * {"linf": 1.0, "l2": math.sqrt(size), "l1": float(size)}[norm]


def in_ball(dist: Tensor, eps: float, norm: str, size: int) -> Tensor:
    return dist <= eps * (1 + BALL_RTOL) + tolerance(norm, size)


def in_box(x_adv: Tensor) -> Tensor:
    flat = x_adv.detach().flatten(1)
    if flat.shape[1] == 0:
        return torch.ones(len(flat), dtype=torch.bool, device=flat.device)
    return (flat.amin(1) >= -BOX_TOL) & (flat.amax(1) <= 1 + BOX_TOL) & torch.isfinite(flat).all(1)


def predictions(model: nn.Module | Callable[[Tensor], Tensor], x: Tensor, batch_size: int = 256) -> Tensor:
    """The predicted class per row from a fresh pass in evaluation mode (every module's own mode
    restored after), without gradients."""
    modules = list(model.modules()) if isinstance(model, nn.Module) else []
    modes = [(m, m.training) for m in modules]
    for m, _ in modes:
        m.training = False
    try:
        with torch.no_grad():
            out = [model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)]
    finally:
        for m, was in modes:
            m.training = was
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=x.device)


def check_breaks(model: nn.Module | Callable[[Tensor], Tensor], x: Tensor, x_adv: Tensor, y: Tensor, *, norm: str,
                 eps: float | None = None, norms: Tensor | None = None,
                 batch_size: int = 256) -> tuple[Tensor, list[str | None]]:
    """Per row: whether ``x_adv`` breaks ``x`` (see the module docstring) and, where not, why.

    ``eps`` None: no radius to test (a minimum-norm run); ``norms`` (N,): the reported norms to
    match. The forward pass is over the rows that pass the geometric tests only."""
    n = len(x)
    size = int(x[0].numel()) if n else 0
    x_adv = x_adv.to(x.device, x.dtype) if x_adv.dtype.is_floating_point else x_adv.to(x.device).float()
    why: list[str | None] = [None] * n
    ok = in_box(x_adv)
    for i in (~ok).nonzero().flatten().tolist():
        why[i] = OUT_OF_BOX
    dist = distances(x_adv, x, norm)
    if eps is not None:
        bad = ok & ~in_ball(dist, float(eps), norm, size)
        for i in bad.nonzero().flatten().tolist():
            why[i] = OUT_OF_BALL
        ok &= ~bad
    if norms is not None:
        reported = norms.to(dist.device, torch.float64)
        slack = BALL_RTOL * reported.abs() + tolerance(norm, size)
        bad = ok & ~(torch.isfinite(reported) & ((dist - reported).abs() <= slack))
        for i in bad.nonzero().flatten().tolist():
            why[i] = NORM_MISMATCH
        ok &= ~bad
    idx = ok.nonzero().flatten()
    if len(idx):
        pred = predictions(model, x_adv[idx], batch_size).to(y.device)
        wrong = pred != y[idx.to(y.device)]
        for i in idx[~wrong.to(idx.device)].tolist():
            why[i] = NOT_MISCLASSIFIED
        ok[idx] = wrong.to(ok.device)
    return ok, why
