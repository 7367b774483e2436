"""Attack-failure indicators measured on every attack's own path (Pintor et al., NeurIPS 2022).

:class:`PathRecorder` wraps the model for one attack on one block of points. The attack does not
know it is watched: every forward row the attack sends is matched to the attacked point it is a
perturbation of (the nearest clean point, then an exact in-ball and in-box test), so it works the
same for our engine, pyautoattack, foolbox and advertorch. Per attacked point it records:

- ``silent_success``: a row inside the point's threat ball (and the [0,1] box) was misclassified,
  yet the attack returned the point as robust (it visited an adversarial and did not keep it);
- ``no_gradient``: the input gradient of a row was all zero or non-finite before the point was
  first misclassified (the attack's loss or the model gave it nothing to follow). Points the attack
  never took a gradient at (black-box attacks) are not examined;
- ``still_improving``: the point was left robust and its best margin (``max_{i!=y} z_i - z_y``)
  over the rows visited so far still rose, in the last ``WINDOW_FRACTION`` of its visits, by more
  than ``LOSS_TOLERANCE`` of its whole rise along the path (Pintor's incomplete optimisation, on
  the margin of what the attack visited, whatever loss it optimised).

The runner stores the flags per example in each part (``Part.indicators``) and the counts in
``summary.csv``; :func:`evaluations.checks.result_checks` judges them on the points the suite
leaves robust (``attacks_no_silent_success``, ``attacks_gradients_available``, ``attacks_converged``).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor, nn

from .losses import margin_loss, misclassified
from .norms import get_norm

PATH_FLAGS = ("silent_success", "no_gradient", "still_improving")
# Pintor's incomplete-optimisation rule, shared with the probe (evaluations.indicators)
WINDOW_FRACTION = 0.1   # the "last steps" of incomplete optimisation (at least 2 visits)
LOSS_TOLERANCE = 0.05   # ... and the share of the whole rise of the best margin they may still add
BALL_SLACK = 1e-4       # relative slack of the in-ball test (float rounding of x + eps)
BOX_SLACK = 1e-6
# the checks over the flags (evaluations.checks): name, Pintor's indicator, the share of the points
# left robust allowed to trip it (at least one point; 0: none), and what a counted point is
PATH_CHECKS = (
    ("attacks_no_silent_success", "silent success", 0.02,
     "had an adversarial visited by an attack at the threat that the attack did not return"),
    ("attacks_gradients_available", "unavailable gradients", 0.0,
     "had an all-zero or non-finite input gradient in every white-box attack that took one there"),
    ("attacks_converged", "incomplete optimisation", 0.10,
     f"were still gaining margin (over {LOSS_TOLERANCE:.0%} of its rise in the last {WINDOW_FRACTION:.0%} of "
     "the visits) at the end of every white-box attack that ran on them"),
)


class PathRecorder(nn.Module):
    """The model, watched for one attack on the points ``x`` (labels ``y``) at ``norm`` / ``eps``.
    Pass it to the attack instead of the model, then call :meth:`flags` with the attack's success."""

    def __init__(self, model: nn.Module | Callable[[Tensor], Tensor], x: Tensor, y: Tensor, *, norm: str,
                 eps: float) -> None:
        super().__init__()
        self.model = model
        self.training = bool(getattr(model, "training", False))  # the watched model's mode, not nn.Module's default
        self.x0 = x.detach().flatten(1)
        self.y = y
        self.norm = get_norm(norm)
        self.eps = float(eps)
        n = len(x)
        self.visited_adv = torch.zeros(n, dtype=torch.bool, device=x.device)
        self.bad_grad = torch.zeros(n, dtype=torch.bool, device=x.device)
        self.grad_seen = torch.zeros(n, dtype=torch.bool, device=x.device)
        self._last: Tensor | None = None  # the previous call's assignment (see _assign)
        self._idx: list[Tensor] = []     # per forward: the attacked point of each in-ball row
        self._margin: list[Tensor] = []  # ... and that row's margin

    def _inside(self, flat: Tensor, idx: Tensor) -> Tensor:
        """Per row: whether it lies in the ball of point ``idx`` (the box is tested on adversarial rows only)."""
        return self.norm.norm(flat - self.x0[idx]) <= self.eps * (1 + BALL_SLACK) + BOX_SLACK

    def _assign(self, flat: Tensor) -> tuple[Tensor, Tensor]:
        """Per row: its attacked point, and whether the row lies in that point's ball.
        Attacks send the same rows call after call (all points, or the same survivors until one
        breaks), so the previous call's rows (or all points in order) are tried first; any row not in
        its guessed ball sends the call to the nearest clean point (L2) of every row."""
        n, b = len(self.x0), len(flat)
        guess = self._last if self._last is not None and len(self._last) == b else None
        if guess is None and b == n:
            guess = torch.arange(n, device=flat.device)
        if guess is not None:
            inside = self._inside(flat, guess)
            if bool(inside.all()):
                return guess, inside
        idx = torch.cdist(flat.float(), self.x0.float()).argmin(1)
        self._last = idx
        return idx, self._inside(flat, idx)

    def forward(self, x: Tensor) -> Tensor:
        out = self.model(x)
        if len(x) == 0 or len(self.x0) == 0:
            return out
        with torch.no_grad():
            flat = x.detach().flatten(1)
            idx, inside = self._assign(flat)
            logits, yy = out.detach().float(), self.y[idx]
            margin = margin_loss(logits, yy)
            before = inside & ~self.visited_adv[idx]  # rows of points not yet misclassified
            adv = inside & misclassified(logits, yy)
            if bool(adv.any()):  # a valid adversarial also lies in the [0,1] box
                adv &= (flat.amin(1) >= -BOX_SLACK) & (flat.amax(1) <= 1 + BOX_SLACK)
                self.visited_adv[idx[adv]] = True
            self._idx.append(idx[inside])
            self._margin.append(margin[inside])
        if x.requires_grad and bool(inside.any()):
            x.register_hook(self._grad_hook(idx[inside], before[inside], inside))
        return out

    def _grad_hook(self, idx: Tensor, before: Tensor, inside: Tensor) -> Callable[[Tensor], None]:
        def hook(grad: Tensor) -> None:
            bad = unusable_gradients(grad.detach()[inside])
            self.grad_seen[idx] = True
            self.bad_grad[idx[bad & before]] = True

        return hook

    def flags(self, success: Tensor) -> dict[str, Tensor]:
        """Per attacked point, the three flags (see the module docstring), given the attack's verdict."""
        robust = ~success.to(self.visited_adv.device)
        improving = torch.zeros_like(robust)
        if self._idx and bool(robust.any()):
            idx, margin = torch.cat(self._idx), torch.cat(self._margin)
            order = torch.argsort(idx, stable=True)
            counts = torch.bincount(idx, minlength=len(robust)).tolist()
            traces = torch.split(margin[order], counts)
            for i in robust.nonzero().flatten().tolist():
                improving[i] = still_improving(traces[i])
        return {"silent_success": self.visited_adv & robust, "no_gradient": self.bad_grad,
                "still_improving": improving, "gradient_examined": self.grad_seen}


def unusable_gradients(grad: Tensor) -> Tensor:
    """Per row of an input gradient: all zero, or any NaN / inf (Pintor's unavailable gradients)."""
    flat = grad.flatten(1)
    return (~torch.isfinite(flat)).any(1) | (flat == 0).all(1)


def still_improving(trace: Tensor) -> bool:
    """Whether the running best of ``trace`` rose, over its last ``WINDOW_FRACTION`` (at least two
    values), by more than ``LOSS_TOLERANCE`` of its whole rise above the trace's minimum."""
    n = len(trace)
    w = max(2, math.ceil(WINDOW_FRACTION * n))
    if n <= w:
        return False
    best = trace.cummax(0).values
    rise = float(best[-1] - trace.min())
    late = float(best[-1] - best[-1 - w])
    return math.isfinite(rise) and math.isfinite(late) and rise > 0 and late > LOSS_TOLERANCE * rise


def flag_counts(flags: dict[str, Any] | None) -> dict[str, int | None]:
    """Summary counts of a part's per-example flags (None: not measured for this attack)."""
    if not flags:
        return {k: None for k in PATH_FLAGS}
    out: dict[str, int | None] = {k: sum(bool(v) for v in flags.get(k, [])) for k in PATH_FLAGS}
    if not any(flags.get("gradient_examined", [])):
        out["no_gradient"] = None  # a black-box attack: no gradient taken
    return out
