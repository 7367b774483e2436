"""The one PGD engine, shared by training (Madry, TRADES, ACT, ARREST) and evaluation.

Projected gradient ascent (Madry et al. 2018) on a per-example loss, for any :class:`Norm`
(Linf / L2 / L1 strategy objects), with random start, restarts that keep the worst case per
example, a pluggable loss (CE, DLR, KL to a reference distribution, any callable), an optional
momentum step (MI-FGSM, Dong et al. 2018: MIM is this engine with ``momentum=decay``) and, for
evaluation, early stopping: an example that is already misclassified leaves the batch, so points
that break early cost far less than ``steps`` gradient passes, and the iterate that broke it is
what is returned.

:func:`apgd` is the same engine with Croce & Hein's (2020) step-size control (Auto-PGD): momentum
0.75, the step halved at checkpoints where the loss rarely rose or the best loss did not improve,
the iterate reset to the best point; targeted losses take per-row targets (``target=``).

Gradients are taken with ``torch.autograd.grad`` w.r.t. the input only, so no weight gradient
is computed or accumulated. The caller chooses the model's mode (evaluation attacks run inside
:func:`robustbench_lite.utils.frozen`).

Example::

    res = pgd(model, x, y, norm="linf", eps=0.3, steps=20, step_size=0.0375, generator=g)
    robust = ~res.success
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import Tensor, nn

from . import draws
from .draws import AnyGenerator
from .losses import LossFn, TargetedLossFn, get_loss, get_targeted_loss, misclassified
from .norms import Norm, get_norm

RandomStart = Literal["uniform", "normal", "none"]

DEFAULT_REL_STEP = 2.5  # Madry et al.'s rule: the step is 2.5 * eps / steps


def default_step_size(eps: float | Tensor, steps: int, rel_step_size: float | None = None) -> float | Tensor:
    """The PGD step: ``rel_step_size * eps``, by default ``2.5 / steps * eps`` (Madry et al.'s
    rule: ``steps`` steps cover 2.5 eps). The one place this default lives; the
    PGD attack, the transfer attack, min_linf, the training log's held-out PGD and the H-Delta-H
    analysis all take it from here. ``eps`` may be a float or an (N,) tensor."""
    rel = rel_step_size if rel_step_size is not None else DEFAULT_REL_STEP / max(1, steps)
    return rel * eps


@dataclass
class PGDResult:
    """``x_adv`` (N,C,H,W) in [0,1]; ``success`` (N,) bool where the returned point is adversarial
    (``None`` when the caller asked for no success check, as training does)."""

    x_adv: Tensor
    success: Tensor | None


def _per_example(v: Tensor | float, n: int, like: Tensor) -> Tensor:
    t = torch.as_tensor(v, dtype=like.dtype, device=like.device)
    return t.expand(n).clone() if t.ndim == 0 else t.to(like)


def pgd(
    model: nn.Module | Callable[[Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    *,
    norm: str | Norm,
    eps: float | Tensor,
    steps: int,
    step_size: float | Tensor,
    loss: str | LossFn = "ce",
    random_start: RandomStart = "uniform",
    init_std: float = 0.001,
    restarts: int = 1,
    early_stop: bool = True,
    return_success: bool = True,
    is_adversarial: Callable[[Tensor, Tensor], Tensor] = misclassified,
    generator: AnyGenerator = None,
    momentum: float | None = None,
    target: Tensor | None = None,
) -> PGDResult:
    """Run PGD. ``random_start``: "uniform" in the ball (Madry; the start is clamped to [0,1]),
    "normal" (TRADES/ACT: ``x + init_std * randn``, not clamped before the first step) or "none".

    With ``early_stop`` (evaluation) a row stops as soon as ``is_adversarial`` holds and later
    restarts run only on rows not yet broken; the loss must then be row-wise in (logits, y).
    Training passes ``early_stop=False, return_success=False``: every row takes every step and
    no extra forward pass is spent on a success check.

    ``momentum`` (a decay factor, MI-FGSM; ``None``: plain PGD): each row accumulates
    ``g <- momentum * g + grad / ||grad||_1`` (``g`` starts at zero on every restart) and steps
    along the norm's steepest-ascent direction of ``g`` instead of the gradient's.

    ``target`` (optional, (N, ...)): a per-row tensor (target classes, ODI logit directions) that
    is subset with the rows as they leave and passed as the loss's third argument,
    ``loss(logits, y, target)`` (:mod:`evaluations.losses`' targeted losses).
    """
    nrm = get_norm(norm)
    loss_fn = get_loss(loss) if target is None else get_targeted_loss(loss)  # type: ignore[arg-type]
    decay = float(momentum) if momentum is not None else 0.0
    n = x.shape[0]
    x = x.detach()
    eps_t = _per_example(eps, n, x)
    step_t = _per_example(step_size, n, x)
    out = x.clone()
    check = early_stop or return_success or restarts > 1
    success = torch.zeros(n, dtype=torch.bool, device=x.device)
    for r in range(max(1, restarts)):
        rows = (~success).nonzero().flatten()
        # draw the start for every row, so a row's start never depends on which others broke
        if random_start == "uniform":
            init = nrm.random_init(x.shape, eps_t, generator, x.device)
        elif random_start == "normal":
            init = init_std * draws.randn(x.shape, generator, x.device)
        elif random_start == "none":
            init = None
        else:
            raise ValueError(f"unknown random_start {random_start!r}")
        if len(rows) == 0:
            break
        xa, ya, ea, sa = x[rows], y[rows], eps_t[rows], step_t[rows]
        ta = target[rows] if target is not None else None
        cur = xa if init is None else xa + init[rows]
        if random_start == "uniform":
            cur = cur.clamp(0, 1)
        g = torch.zeros_like(cur) if momentum is not None else None
        for _ in range(steps):
            cur = cur.detach().requires_grad_(True)
            logits = model(cur)
            if early_stop:
                adv = is_adversarial(logits.detach(), ya)
                if adv.any():
                    hit = rows[adv]
                    out[hit] = cur.detach()[adv]
                    success[hit] = True
                    keep = ~adv
                    if not keep.any():
                        rows = rows[keep]
                        break
            lval = loss_fn(logits, ya) if ta is None else loss_fn(logits, ya, ta)  # type: ignore[call-arg]
            grad = torch.autograd.grad(lval.sum(), cur)[0]
            cur = cur.detach()
            if early_stop and adv.any():
                rows, xa, ya, ea, sa, cur, grad = rows[keep], xa[keep], ya[keep], ea[keep], sa[keep], cur[keep], grad[keep]
                if g is not None:
                    g = g[keep]
                if ta is not None:
                    ta = ta[keep]
            if g is not None:
                g = decay * g + grad / grad.abs().flatten(1).sum(1).clamp_min(1e-12).view(-1, *[1] * (grad.ndim - 1))
                grad = g
            cur = cur + nrm.step(grad, sa, cur)
            cur = (xa + nrm.project(cur - xa, ea)).clamp(0, 1)
        if len(rows) == 0:
            continue
        cur = cur.detach()
        if check:
            with torch.no_grad():
                adv = is_adversarial(model(cur), ya)
            success[rows[adv]] = True
            # a failed row keeps the first restart's end point; a success always overwrites
            write = adv if r > 0 else torch.ones_like(adv)
            out[rows[write]] = cur[write]
        else:
            out[rows] = cur
    return PGDResult(out, success if check else None)


# ------------------------------------------------------------------------------------------------
# Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of
# diverse parameter-free attacks"), written against the same Norm strategies, with early exit.

APGDStart = Literal["boundary", "uniform", "none"]


@dataclass
class APGDResult:
    """``x_adv``: the iterate that broke a row, else the highest-loss point found; ``success`` (N,)
    bool; ``loss`` (N,): the loss at ``x_adv`` (for failed rows the best loss reached, which
    A3-style attacks rank rows by)."""

    x_adv: Tensor
    success: Tensor
    loss: Tensor


def apgd_checkpoints(steps: int) -> list[int]:
    """The iterations (1-based counts of steps taken) after which APGD checks its step size:
    ``p_0 = 0``, ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)`` times ``steps``
    (in AutoAttack's integer form: first window ``int(0.22 n)``, shrinking by ``int(0.03 n)`` down to
    ``int(0.06 n)``, each at least 1)."""
    k, dec, kmin = max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    out, at = [], k
    while at <= steps:
        out.append(at)
        k = max(k - dec, kmin)
        at += k
    return out


def apgd_start(norm: str | Norm, x: Tensor, eps: Tensor, generator: AnyGenerator) -> Tensor:
    """APGD's random start, on the sphere of radius eps: ``x + eps * t / ||t||`` with ``t`` uniform
    in [-1,1] (Linf) or standard normal (L2); L1 draws uniformly in the ball. Clamped to [0,1]."""
    nrm = get_norm(norm)
    if nrm.name == "l1":
        return (x + nrm.random_init(x.shape, eps, generator, x.device)).clamp(0, 1)
    t = 2 * draws.rand(x.shape, generator, x.device) - 1 if nrm.name == "linf" else draws.randn(x.shape, generator, x.device)
    scale = nrm.norm(t).view(-1, *[1] * (x.ndim - 1)) + 1e-12
    return (x + eps.view(-1, *[1] * (x.ndim - 1)) * t / scale).clamp(0, 1)


def _apgd_once(model: nn.Module | Callable[[Tensor], Tensor], x: Tensor, y: Tensor, t: Tensor | None,
               start: Tensor, eps: Tensor, *, nrm: Norm, steps: int, loss_fn: Callable[..., Tensor], rho: float,
               momentum: float, is_adversarial: Callable[[Tensor, Tensor], Tensor]) -> APGDResult:
    """One APGD run from ``start``; a row leaves as soon as an iterate of it is adversarial."""
    n = len(x)
    out, success = start.clone(), torch.zeros(n, dtype=torch.bool, device=x.device)
    out_loss = torch.full((n,), float("-inf"), dtype=x.dtype, device=x.device)
    view = (-1, *[1] * (x.ndim - 1))
    alpha = 1.0 if nrm.name == "l1" else 2.0

    def forward(cur: Tensor, ya: Tensor, ta: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        cur = cur.detach().requires_grad_(True)
        logits = model(cur)
        lval = loss_fn(logits, ya) if ta is None else loss_fn(logits, ya, ta)
        return logits.detach(), lval.detach(), torch.autograd.grad(lval.sum(), cur)[0].detach()

    def proj(z: Tensor, xa: Tensor, ea: Tensor) -> Tensor:
        return (xa + nrm.project(z - xa, ea)).clamp(0, 1)

    # per-row state, subset together whenever rows leave
    st: dict[str, Tensor] = {"rows": torch.arange(n, device=x.device), "x": x, "y": y, "eps": eps,
                             "cur": start.detach()}
    if t is not None:
        st["t"] = t
    logits, lval, grad = forward(st["cur"], y, t)
    st.update(step=alpha * eps, grad=grad, x_old=st["cur"], x_best=st["cur"], g_best=grad, l_best=lval,
              l_prev=lval, n_up=torch.zeros(n, device=x.device), l_last=lval,
              reduced=torch.ones(n, dtype=torch.bool, device=x.device))
    checks = set(apgd_checkpoints(steps))
    last_check = 0

    def leave(st: dict[str, Tensor], logits: Tensor, lval: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """Rows whose current iterate is adversarial are recorded and leave the batch."""
        adv = is_adversarial(logits, st["y"])
        if not adv.any():
            return st, lval
        hit = st["rows"][adv]
        out[hit], out_loss[hit], success[hit] = st["cur"][adv], lval[adv], True
        keep = ~adv
        return {k: v[keep] for k, v in st.items()}, lval[keep]

    st, lval = leave(st, logits, lval)
    for i in range(steps):
        if len(st["rows"]) == 0:
            break
        cur, xa, ea = st["cur"], st["x"], st["eps"]
        a = momentum if i > 0 else 1.0
        z = proj(cur + nrm.step(st["grad"], st["step"], cur), xa, ea)
        new = proj(cur + a * (z - cur) + (1 - a) * (cur - st["x_old"]), xa, ea)
        st["x_old"] = cur
        logits, lval, grad = forward(new, st["y"], st.get("t"))
        st["cur"], st["grad"] = new, grad
        st, lval = leave(st, logits, lval)
        st["n_up"] = st["n_up"] + (lval > st["l_prev"]).to(st["n_up"].dtype)
        st["l_prev"] = lval
        better = lval > st["l_best"]
        st["x_best"] = torch.where(better.view(view), st["cur"], st["x_best"])
        st["g_best"] = torch.where(better.view(view), st["grad"], st["g_best"])
        st["l_best"] = torch.where(better, lval, st["l_best"])
        if i + 1 in checks:
            k = i + 1 - last_check
            last_check = i + 1
            # halve where the loss rose in at most rho of the window's steps, or where the step was
            # not halved at the previous checkpoint and the best loss has not improved since
            cut = (st["n_up"] <= k * rho) | (~st["reduced"] & (st["l_last"] >= st["l_best"]))
            st["reduced"], st["l_last"], st["n_up"] = cut, st["l_best"].clone(), torch.zeros_like(st["n_up"])
            if cut.any():
                st["step"] = torch.where(cut, st["step"] / 2, st["step"])
                st["cur"] = torch.where(cut.view(view), st["x_best"], st["cur"])
                st["grad"] = torch.where(cut.view(view), st["g_best"], st["grad"])
    rows = st["rows"]
    if len(rows):
        out[rows], out_loss[rows] = st["x_best"], st["l_best"]
    return APGDResult(out, success, out_loss)


def apgd(
    model: nn.Module | Callable[[Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    *,
    norm: str | Norm,
    eps: float | Tensor,
    steps: int = 100,
    loss: str | LossFn | TargetedLossFn = "ce",
    target: Tensor | None = None,
    restarts: int = 1,
    rho: float = 0.75,
    momentum: float = 0.75,
    random_start: APGDStart = "boundary",
    x_init: Tensor | None = None,
    is_adversarial: Callable[[Tensor, Tensor], Tensor] = misclassified,
    generator: AnyGenerator = None,
) -> APGDResult:
    """Auto-PGD with per-row early exit. Step ``2 eps`` (``eps`` for L1), momentum ``momentum`` (the
    first step plain), and at each checkpoint of :func:`apgd_checkpoints` the step of a row is
    halved, and the row restarted from its best point, where the loss rose in at most ``rho`` of the
    window's steps or the previous checkpoint did not halve and the best loss did not improve.

    ``loss``: "ce", "dlr" or a callable; with ``target`` (N,) the targeted "dlr" (APGD-T) or
    "margin" loss. ``restarts`` re-run only rows not yet broken, each from a fresh start
    (``random_start``: "boundary" is APGD's, see :func:`apgd_start`; "uniform" in the ball; "none");
    ``x_init`` replaces the first restart's start. A failed row returns its highest-loss point.

    Differences from AutoAttack's code: a broken row stops (pyautoattack runs every row for every
    iteration); the first window counts loss increases against the start's loss (the paper's rule);
    the L1 step is the engine's sparse step with the same halving rule (no adaptive sparsity).
    """
    nrm = get_norm(norm)
    loss_fn = get_loss(loss) if target is None else get_targeted_loss(loss)  # type: ignore[arg-type]
    n = x.shape[0]
    x = x.detach()
    eps_t = _per_example(eps, n, x)
    out, success = x.clone(), torch.zeros(n, dtype=torch.bool, device=x.device)
    best = torch.full((n,), float("-inf"), dtype=x.dtype, device=x.device)
    for r in range(max(1, restarts)):
        if r == 0 and x_init is not None:
            start = x_init.detach()
        elif random_start == "boundary":
            start = apgd_start(nrm, x, eps_t, generator)
        elif random_start == "uniform":
            start = (x + nrm.random_init(x.shape, eps_t, generator, x.device)).clamp(0, 1)
        elif random_start == "none":
            start = x
        else:
            raise ValueError(f"unknown random_start {random_start!r}")
        rows = (~success).nonzero().flatten()
        if len(rows) == 0:
            break
        res = _apgd_once(model, x[rows], y[rows], None if target is None else target[rows], start[rows], eps_t[rows],
                         nrm=nrm, steps=steps, loss_fn=loss_fn, rho=rho, momentum=momentum, is_adversarial=is_adversarial)
        write = res.success | (res.loss > best[rows])
        out[rows[write]], best[rows[write]] = res.x_adv[write], res.loss[write]
        success[rows[res.success]] = True
    return APGDResult(out, success, best)
