"""Attack-failure indicators (Pintor et al., "Indicators of Attack Failure", NeurIPS 2022), as checks.

Four indicators are probes on the model, measured on at most ``max_points`` clean-correct points
by one short PGD of our engine (:func:`evaluations.pgd.pgd`, margin loss, every step taken:
``early_stop=False``) whose path is recorded, plus a few noise draws:

- ``no_silent_success`` (silent success): a point was adversarial at some iterate of the path but
  the returned (last) iterate is not. Our evaluation PGD returns the breaking iterate, so this
  measures whether the model's loss surface throws an attack back out of adversarial regions
  (attacks that return the last or the best-loss iterate then under-report).
- ``gradients_available`` (unavailable gradients): before the point first became adversarial, the
  input gradient of the attack loss was exactly zero or non-finite at some iterate (Pintor's zero
  gradients along the path; ``nonzero_input_gradients`` only looks at the clean point).
- ``predictions_stable`` (unstable predictions): the prediction changes under uniform random noise
  of ``NOISE_FRACTION * eps`` in the threat's norm (``NOISE_DRAWS`` draws).
- ``optimisation_converged`` (incomplete optimisation): on the points the probe leaves robust,
  the best loss so far still rose over the last ``WINDOW_FRACTION`` of the steps by more than
  ``LOSS_TOLERANCE`` of its whole rise along the path (Pintor's rule on the loss rescaled to
  [0,1]), and the same PGD with twice the steps breaks them (a still-creeping loss alone is
  common on honest robust models and says nothing; the rerun costs only those few points).

The other two indicators read the run's parts and live in :mod:`evaluations.checks`:
transfer failure is ``white_box_beats_black_box``, unconstrained-attack failure is
``large_eps_breaks``. Every indicator check carries ``count`` (points that trip it), ``n`` (points
examined) and ``indicator`` (Pintor's name). Thresholds and reasons: docs/checks.md. Example::

    with frozen(model):
        checks += indicator_checks(model, x, y, clean, threat, generator=make_generator(seed))
"""
from __future__ import annotations

import logging
import math
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

# the incomplete-optimisation rule (last WINDOW_FRACTION of the steps, LOSS_TOLERANCE of the rise) is
# the attack-path indicators' own
from .attack_paths import LOSS_TOLERANCE, WINDOW_FRACTION, unusable_gradients
from .checks import Check, indicator_check
from .losses import margin_loss, misclassified
from .norms import get_norm
from .parts import keep_input_graph
from .pgd import default_step_size, pgd

logger = logging.getLogger(__name__)

INDICATOR_CHECKS = ("no_silent_success", "gradients_available", "predictions_stable", "optimisation_converged")
PROBE_STEPS = 20            # the probe PGD's steps (step 2.5 eps / steps, Madry's rule)
NOISE_DRAWS = 10            # random draws of the stability probe
NOISE_FRACTION = 0.1        # noise radius of the stability probe, as a fraction of the threat's eps
SILENT_MAX_FRACTION = 0.02  # points allowed to trip each indicator: this fraction of those examined, at least
GRADIENT_MAX_FRACTION = 0.0  # one point (none for gradients: an honest model has none at all)
UNSTABLE_MAX_FRACTION = 0.05
INCOMPLETE_MAX_FRACTION = 0.10


class _Tap(torch.autograd.Function):
    """Identity whose backward hands the input gradient to ``sink`` (the path recorder)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, sink: Callable[[Tensor], None]) -> Tensor:  # type: ignore[override]
        ctx.sink = sink
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        ctx.sink(grad.detach())
        return grad, None


class _PathRecorder(nn.Module):
    """Wraps the model for the probe: per PGD step, whether each row's input gradient was unusable
    (all zero, or any NaN/inf)."""

    def __init__(self, model: nn.Module | Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.model = model
        self.bad_grad: list[Tensor] = []

    def _sink(self, grad: Tensor) -> None:
        self.bad_grad.append(unusable_gradients(grad))

    def forward(self, x: Tensor) -> Tensor:
        if x.requires_grad:
            x = _Tap.apply(x, self._sink)
        return keep_input_graph(self.model(x), x)


def probe_path(model: nn.Module | Callable[[Tensor], Tensor], x: Tensor, y: Tensor, *, norm: str, eps: float,
               steps: int = PROBE_STEPS, step_size: float | None = None,
               generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """One PGD (margin loss, uniform start, all ``steps`` taken) on clean-correct ``x``; per row:
    ``silent`` (adversarial at some iterate, not at the returned one), ``bad_grad`` (zero or
    non-finite input gradient at an iterate before the first adversarial one), ``incomplete``
    (robust at the end and the best loss still rising in the last steps) and ``robust``."""
    losses: list[Tensor] = []
    advs: list[Tensor] = []

    def loss(logits: Tensor, yy: Tensor) -> Tensor:
        advs.append(misclassified(logits.detach(), yy))
        value = margin_loss(logits, yy)
        losses.append(value.detach())
        return value

    rec = _PathRecorder(model)
    step = step_size if step_size is not None else float(default_step_size(eps, steps))
    res = pgd(rec, x, y, norm=norm, eps=eps, steps=steps, step_size=step, loss=loss, random_start="uniform",
              early_stop=False, return_success=True, generator=generator)
    with torch.no_grad():
        final = model(res.x_adv)
    losses.append(margin_loss(final, y))
    robust = ~res.success  # type: ignore[operator]
    adv = torch.stack(advs)                                  # (steps, N): iterates 0 .. steps-1
    before = ~(adv.cumsum(0) > 0)                            # not yet adversarial at that iterate
    bad = torch.stack(rec.bad_grad) if rec.bad_grad else torch.zeros_like(adv)
    path = torch.stack(losses).float()                       # (steps + 1, N)
    best = path.cummax(0).values
    w = min(steps, max(2, math.ceil(WINDOW_FRACTION * steps)))
    rise = best[-1] - path.min(0).values
    late = best[-1] - best[-1 - w]
    finite = torch.isfinite(rise) & torch.isfinite(late)
    incomplete = robust & finite & (rise > 0) & (late > LOSS_TOLERANCE * rise)
    return {"silent": adv.any(0) & robust, "bad_grad": (bad & before).any(0), "incomplete": incomplete,
            "robust": robust}


def _confirm(model: nn.Module | Callable[[Tensor], Tensor], x: Tensor, y: Tensor, rising: Tensor, *, norm: str,
             eps: float, steps: int, step_size: float | None, generator: torch.Generator | None) -> Tensor:
    """Per row: still ``rising`` at the end of the probe and broken by the same PGD (same step,
    early exit) given twice the steps: the first budget was too small for it."""
    out = torch.zeros_like(rising)
    if rising.any():
        step = step_size if step_size is not None else float(default_step_size(eps, steps))
        res = pgd(model, x[rising], y[rising], norm=norm, eps=eps, steps=2 * steps, step_size=step, loss=margin_loss,
                  generator=generator)
        out[rising] = res.success  # type: ignore[index]
    return out


def unstable_points(model: nn.Module | Callable[[Tensor], Tensor], x: Tensor, y: Tensor, *, norm: str, radius: float,
                    draws: int = NOISE_DRAWS, generator: torch.Generator | None = None) -> Tensor:
    """Per row: whether any of ``draws`` uniform random perturbations of size ``radius`` in
    ``norm`` (clipped to [0,1]) changes the prediction away from ``y``."""
    nrm = get_norm(norm)
    flips = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    with torch.no_grad():
        for _ in range(draws):
            noisy = (x + nrm.random_init(x.shape, radius, generator, x.device)).clamp(0, 1)
            flips |= misclassified(model(noisy), y)
    return flips


def indicator_checks(model: nn.Module | Callable[[Tensor], Tensor], x: Tensor, y: Tensor,
                     clean_correct: Sequence[bool] | None, threat: Any, *, generator: torch.Generator | None,
                     max_points: int = 100, batch_size: int | None = None, steps: int = PROBE_STEPS,
                     step_size: float | None = None) -> list[Check]:
    """Indicators 1-4 on the first ``max_points`` clean-correct points of ``x`` (N,C,H,W) in
    [0,1] with labels ``y``. ``clean_correct``: per point of ``x`` (None: computed here).
    ``threat``: anything with ``norm`` and ``eps`` (:class:`robustbench_lite.threat.ThreatModel`).
    Run it on a frozen model in eval mode (:func:`robustbench_lite.utils.frozen`); the probes use
    ``generator`` only, so a seed gives the same checks. Cost per probed point: one PGD of
    ``steps`` steps, ``NOISE_DRAWS`` + 1 forward passes, and a PGD of ``2 * steps`` steps (early
    exit) on the few points whose loss is still rising."""
    if clean_correct is None:
        with torch.no_grad():
            clean_correct = (model(x).argmax(1) == y).tolist()
    idx = [i for i, c in enumerate(clean_correct) if c][:max_points]
    if not idx:
        return [indicator_check(name, True, "no clean-correct point to probe", count=0, n=0)
                for name in INDICATOR_CHECKS]
    norm, eps = threat.norm, float(threat.eps)
    sel = torch.tensor(idx, device=x.device)
    xs, ys = x[sel], y[sel]
    bs = batch_size or len(idx)
    keys = ("silent", "bad_grad", "incomplete", "confirmed", "robust", "unstable")
    flags: dict[str, list[Tensor]] = {k: [] for k in keys}
    for start in range(0, len(idx), bs):
        xb, yb = xs[start:start + bs], ys[start:start + bs]
        got = probe_path(model, xb, yb, norm=norm, eps=eps, steps=steps, step_size=step_size, generator=generator)
        got["unstable"] = unstable_points(model, xb, yb, norm=norm, radius=NOISE_FRACTION * eps, generator=generator)
        got["confirmed"] = _confirm(model, xb, yb, got["incomplete"], norm=norm, eps=eps, steps=steps,
                                    step_size=step_size, generator=generator)
        for k in keys:
            flags[k].append(got[k].cpu())
    f = {k: torch.cat(v) for k, v in flags.items()}
    n, n_robust = len(idx), int(f["robust"].sum())
    probe = f"PGD-{steps} probe (margin loss, {norm} eps {eps:g}, every step taken)"
    return [
        _verdict("no_silent_success", f["silent"], n, SILENT_MAX_FRACTION,
                 f"clean-correct points were adversarial at some iterate of a {probe} but not at the returned one",
                 "the loss surface throws the attack back out of adversarial regions: attacks that return their "
                 "last or best-loss iterate under-report"),
        _verdict("gradients_available", f["bad_grad"], n, GRADIENT_MAX_FRACTION,
                 f"clean-correct points had an all-zero or non-finite input gradient of the margin loss at an "
                 f"iterate of a {probe} before they first became adversarial",
                 "gradient masking: gradient attacks stall on these points"),
        _verdict("predictions_stable", f["unstable"], n, UNSTABLE_MAX_FRACTION,
                 f"clean-correct points change prediction under {NOISE_DRAWS} uniform random {norm} perturbations "
                 f"of size {NOISE_FRACTION * eps:g} (eps/{1 / NOISE_FRACTION:g})",
                 "randomised or unstable predictions: attacks need EOT, and one draw's verdict is noise"),
        _verdict("optimisation_converged", f["confirmed"], n_robust, INCOMPLETE_MAX_FRACTION,
                 f"points a {probe} left robust still gained more than {LOSS_TOLERANCE:.0%} of their loss rise in "
                 f"the last {WINDOW_FRACTION:.0%} of the steps ({int(f['incomplete'].sum())} of them) and break "
                 f"under the same PGD with {2 * steps} steps",
                 "the loss is still improving where the budget ends: more steps break more points"),
    ]


_INDICATOR_NAMES = {"no_silent_success": "silent success", "gradients_available": "unavailable gradients",
                    "predictions_stable": "unstable predictions", "optimisation_converged": "incomplete optimisation"}


def _verdict(name: str, hits: Tensor, n: int, max_fraction: float, what: str, why: str) -> Check:
    count = int(hits.sum())
    limit = max(1, math.floor(max_fraction * n)) if max_fraction > 0 else 0
    passed = count <= limit
    rule = f"{max_fraction:.0%} of {n}, at least 1" if max_fraction > 0 else "none allowed"
    detail = f"{count} of {n} {what} (fails above {limit}: {rule})"
    if not passed:
        detail += f": {why}"
        logger.debug("indicator %s tripped on %d of %d points", name, count, n)
    return indicator_check(name, passed, detail, count=count, n=n, indicator=_INDICATOR_NAMES[name])
