"""Sanity checks that flag gradient obfuscation and broken evaluations (docs/checks.md).

Each check is ``{"name", "passed", "detail"}``. Two families:

- :func:`model_checks` probe the model on a sample of clean inputs, as AutoAttack's own flags do
  (``pyautoattack.checks``, reimplemented so they return results instead of warnings):
  ``deterministic_output``, ``logits_not_probabilities``, ``static_forward``,
  ``nonzero_input_gradients``, ``finite_input_gradients``.
- :func:`breaks_verified` (every suite): no claimed break failed the attack front door's check.
- :func:`result_checks` read the per-example parts of a run: ``white_box_beats_black_box``,
  ``more_steps_not_weaker``, ``monotone_in_eps``, ``large_eps_breaks``, and the attack-path
  indicators ``attacks_no_silent_success``, ``attacks_gradients_available``,
  ``attacks_converged`` (flags each attack's own path gave, :mod:`evaluations.attack_paths`).
  The first two of the indicators of Pintor et al. (2022) named here are transfer failure and
  unconstrained-attack failure; every indicator check carries per-example ``count`` / ``n``; four
  more indicators are probes in :mod:`evaluations.indicators`.

A check with nothing to compare (e.g. no black-box attack in the suite) passes with a detail
saying so. Example::

    checks = model_checks(model, x[:100], y[:100]) + result_checks(parts, clean, suite)
"""
from __future__ import annotations

import math
import sys
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from robustbench_lite.results import binom_tail, worst_case

from .attack_paths import PATH_CHECKS, PATH_FLAGS
from .attacks import ATTACKS
from .losses import margin_loss
from .parts import keep_input_graph

Check = dict[str, Any]

MARGIN_POINTS = 2.0       # noise margin in accuracy points, plus one binomial standard error
LARGE_EPS_MAX_ACC = 2.0   # accuracy (%) a very large eps must drive the worst case below
DEFAULT_MAX_EPS = {"linf": 1.0}
MODEL_CHECKS = ("deterministic_output", "logits_not_probabilities", "static_forward", "nonzero_input_gradients",
                "finite_input_gradients")
PREDICTION_CHECKS = ("above_chance_level", "predictions_not_collapsed")
CHANCE_ALPHA = 0.01       # level of the exact one-sided binomial tests of above_chance_level
COLLAPSE_FRACTION = 0.5   # predictions collapsed: one class takes at least half the way from its label share to 100%


def _check(name: str, passed: bool, detail: str) -> Check:
    return {"name": name, "passed": bool(passed), "detail": detail}


def indicator_check(name: str, passed: bool, detail: str, *, count: int, n: int, indicator: str | None = None) -> Check:
    """A check with per-example counts: ``count`` points trip it out of ``n`` examined; ``indicator``
    names the attack-failure indicator (Pintor et al. 2022) it measures, if any."""
    out = {**_check(name, passed, detail), "count": int(count), "n": int(n)}
    if indicator:
        out["indicator"] = indicator
    return out


# -- model checks --------------------------------------------------------------------------------

def model_checks(model: nn.Module | Callable[[Tensor], Tensor], x: Tensor, y: Tensor, *, repeats: int = 5) -> list[Check]:
    """AutoAttack-style flags on a clean sample ``x`` (N,C,H,W) in [0,1], labels ``y`` (N,).
    The model should be frozen and in eval mode (the runner's :func:`frozen`)."""
    out: list[Check] = []
    with torch.no_grad():
        outs = [model(x) for _ in range(repeats)]
    diff = max((o - outs[0]).abs().max().item() for o in outs)
    preds_same = all(bool((o.argmax(1) == outs[0].argmax(1)).all()) for o in outs)
    out.append(_check("deterministic_output", diff <= 1e-4 and preds_same,
                      f"max |logit difference| over {repeats} forward passes of the same {len(x)} inputs: {diff:.2e} "
                      "(a randomized defense needs an EOT evaluation, AutoAttack version='rand')"))
    o = outs[0]
    is_prob = bool(o.max() < 1 + 1e-5 and o.min() > -1e-5 and ((o.sum(-1) - 1).abs() < 1e-5).all())
    out.append(_check("logits_not_probabilities", not is_prob,
                      "the outputs look like probabilities (in [0,1], summing to 1): attacks need logits"
                      if is_prob else "outputs are not a probability distribution (logits, as attacks expect)"))
    calls = _count_grad_calls(model, x)
    out.append(_check("static_forward", calls == 0,
                      f"the forward pass calls autograd {calls} time(s): a dynamic defense (AutoAttack's check_dynamic)"
                      if calls else "the forward pass makes no autograd calls"))
    xg = x.detach().clone().requires_grad_(True)
    grad = torch.autograd.grad(margin_loss(keep_input_graph(model(xg), xg), y).sum(), xg, allow_unused=True)[0]
    if grad is None:
        grad = torch.zeros_like(x)
    flat = grad.flatten(1)
    nonfinite = int((~torch.isfinite(flat)).any(1).sum())
    zero = int((flat.abs().sum(1) == 0).sum())
    out.append(indicator_check("nonzero_input_gradients", zero == 0,
                               f"{zero} of {len(x)} points have an exactly zero input gradient of the logit margin "
                               "(gradient masking: gradient attacks cannot move them)", count=zero, n=len(x)))
    out.append(indicator_check("finite_input_gradients", nonfinite == 0,
                               f"{nonfinite} of {len(x)} points have NaN or inf input gradients", count=nonfinite, n=len(x)))
    return out


def prediction_checks(predictions: Sequence[int] | None, labels: Sequence[int], num_classes: int | None) -> list[Check]:
    """Flags of a model no leaderboard should rank, from its clean predictions on every evaluated point.

    - ``above_chance_level``: a statistical decision on ``k`` correct of ``n`` points against chance
      ``p0 = max(1/K, largest label share)`` (what a classifier blind to the input reaches), by exact
      one-sided binomial tests at level ``CHANCE_ALPHA`` (:func:`chance_decision`): passes when the
      data show the accuracy above chance; fails when they show it below ``p1``, halfway from chance
      to 100% (at chance level, not clearly above it); passes when they cannot say (too few points:
      3 of 3 correct is no evidence either way and never fails).
    - ``predictions_not_collapsed``: no class takes ``COLLAPSE_FRACTION`` of the way from its share
      of the labels to all predictions (a constant-class model takes all the way).
    Nothing is checked without predictions (a run made before they were kept)."""
    n = len(labels)
    if predictions is None or n == 0 or len(predictions) != n:
        return []
    counts_y: dict[int, int] = {}
    counts_p: dict[int, int] = {}
    for t, p in zip(labels, predictions):
        counts_y[int(t)] = counts_y.get(int(t), 0) + 1
        counts_p[int(p)] = counts_p.get(int(p), 0) + 1
    k = max(int(num_classes or 0), len(counts_y), 2)
    chance = max(1.0 / k, max(counts_y.values()) / n)
    correct = sum(1 for t, p in zip(labels, predictions) if int(t) == int(p))
    acc = correct / n
    above, detail = chance_decision(correct, n, chance)
    top, top_n = max(counts_p.items(), key=lambda kv: (kv[1], -kv[0]))
    share, label_share = top_n / n, counts_y.get(top, 0) / n
    limit = label_share + COLLAPSE_FRACTION * (1 - label_share)
    return [
        _check("above_chance_level", above,
               f"clean accuracy {100 * acc:.1f}% ({correct} of {n} points) vs chance {100 * chance:.1f}%: {detail}"
               + ("" if above else "; its robust accuracy means nothing")),
        _check("predictions_not_collapsed", share < limit,
               f"class {top} takes {100 * share:.1f}% of the {n} clean predictions (its share of the labels: "
               f"{100 * label_share:.1f}%; collapsed at >= {100 * limit:.1f}%)"
               + ("" if share < limit else ": the predictions collapse to one class")),
    ]


def chance_decision(correct: int, n: int, chance: float, alpha: float = CHANCE_ALPHA) -> tuple[bool, str]:
    """Whether ``correct`` of ``n`` points leaves a model above chance, and why, by two exact
    one-sided binomial tests at level ``alpha``:

    - above chance: P(X >= correct | chance) <= alpha rejects "accuracy <= chance": passes;
    - at chance level: P(X <= correct | p1) <= alpha rejects "accuracy >= p1", ``p1`` halfway from
      chance to 100%: the model is not clearly above chance: fails;
    - otherwise the data cannot say (too few points): passes, and says so.

    Example: 3 of 3 correct with 10 classes passes (P = 0.001); 10 of 100 correct fails."""
    if chance >= 1.0:
        return True, "every point has the same label, so chance is 100% and nothing can be tested"
    p_above = binom_tail(correct, n, chance, upper=True)
    if p_above <= alpha:
        return True, f"above chance (exact one-sided binomial test: p = {p_above:.2g} <= {alpha:g})"
    p1 = chance + (1.0 - chance) / 2
    p_near = binom_tail(correct, n, p1, upper=False)
    if p_near <= alpha:
        return False, (f"at chance level: not above chance (p = {p_above:.2g} > {alpha:g}) and below {100 * p1:.1f}%, "
                       f"halfway to 100% (p = {p_near:.2g} <= {alpha:g})")
    return True, (f"too few points to tell (p = {p_above:.2g} against chance, {p_near:.2g} against {100 * p1:.1f}%, "
                  f"neither <= {alpha:g}): passed, not shown")


_GRAD_FUNCS = ("grad", "backward", "_make_grads")


def _count_grad_calls(model: Callable[[Tensor], Tensor], x: Tensor) -> int:
    """How often a forward pass calls autograd (pyautoattack.checks.check_dynamic's trace)."""
    count = 0

    def trace(frame: Any, event: str, _arg: Any) -> None:
        nonlocal count
        if event == "call" and frame.f_code.co_name in _GRAD_FUNCS:
            count += 1

    old = sys.getprofile()
    sys.setprofile(trace)
    try:
        with torch.no_grad():
            model(x)
    finally:
        sys.setprofile(old)
    return count


# -- result checks -------------------------------------------------------------------------------

def _se_points(p: float, n: int) -> float:
    return 100.0 * math.sqrt(max(p * (1 - p), 0.0) / max(n, 1))


def _is_white_box(attack: str) -> bool:
    try:
        return bool(ATTACKS.get(attack).white_box)
    except Exception:  # noqa: BLE001  (an attack unknown here, e.g. from a merged record)
        return True


def result_checks(parts: Sequence[Any], clean: Sequence[bool], *, max_eps: dict[str, float] | None = None) -> list[Check]:
    """Checks over the per-example parts (:class:`evaluations.parts.Part`) of one run."""
    clean_t = torch.tensor(list(clean), dtype=torch.bool)
    return [_black_box(parts, clean_t), _more_steps(parts), _monotone(parts),
            _large_eps(parts, clean_t, {**DEFAULT_MAX_EPS, **(max_eps or {})}), *_attack_paths(parts, clean)]


def breaks_verified(parts: Sequence[Any]) -> Check:
    """Every break an attack claimed held when the attack front door checked it (in the box, in the
    ball, misclassified by a fresh forward pass: :mod:`evaluations.breaks`). A claim that did not is
    counted as not broken; any such claim fails this check, since the attack (or a model whose
    forward pass is random) misreports. Run for every suite."""
    counts = [(p.key, int(getattr(p, "unverified", 0) or 0)) for p in parts]  # count: the claims that failed
    bad = [(k, c) for k, c in counts if c]
    total = sum(c for _, c in bad)
    if bad:
        return indicator_check("breaks_verified", False, "; ".join(f"{k}: {c} claimed break{'s' * (c != 1)} did not hold"
                               for k, c in bad) + " (counted as not broken): the attack's own success flag is not "
                               "to be trusted, or the model's prediction changes between passes", count=total,
                               n=total)
    return {**_check("breaks_verified", True, f"every claimed break of the {len(counts)} attack runs held on a fresh "
                     "forward pass, in the ball and in the [0, 1] box"), "count": 0}


def _worst_white_box(parts: Sequence[Any], clean: Tensor, norm: str, eps: float) -> Tensor:
    white = [p for p in parts if _is_white_box(p.attack)]
    return torch.tensor(worst_case(clean.tolist(), white, norm, eps), dtype=torch.bool)


def _black_box(parts: Sequence[Any], clean: Tensor) -> Check:
    """Transfer failure (Pintor et al. 2022): per black-box part, the points it broke that the
    white-box worst case at its norm and eps leaves robust. Fails when, for some part, they exceed
    ``MARGIN_POINTS`` plus a standard error of its attacked points (a per-example count is at least
    the accuracy gap, so this is no weaker than comparing the two accuracies)."""
    name, indicator = "white_box_beats_black_box", "transfer failure"
    bb = [p for p in parts if not _is_white_box(p.attack)]
    if not bb:
        return indicator_check(name, True, "no black-box attack in the suite: nothing to compare", count=0, n=0,
                               indicator=indicator)
    fails, notes, total, examined = [], [], 0, 0
    for p in bb:
        att = torch.tensor(p.attacked, dtype=torch.bool)
        n = int(att.sum())
        if n == 0:
            continue
        bb_robust = torch.tensor(p.robust, dtype=torch.bool)[att]
        wb_robust = _worst_white_box(parts, clean, p.norm, p.eps)[att]
        only_bb = int((wb_robust & ~bb_robust).sum())
        total, examined = total + only_bb, examined + n
        bb_acc, wb_acc = bb_robust.float().mean().item(), wb_robust.float().mean().item()
        margin = MARGIN_POINTS + _se_points(bb_acc, n)
        note = (f"{p.key}: black-box {100 * bb_acc:.1f}% vs white-box worst case {100 * wb_acc:.1f}% on the same {n} "
                f"points; {only_bb} broken by it alone")
        notes.append(note)
        if 100 * only_bb / n > margin:
            fails.append(f"{note} (more than {margin:.1f}% of them)")
    if fails:
        return indicator_check(name, False, "; ".join(fails) + ": the white-box attacks fail where a black-box one "
                               "succeeds (gradient obfuscation suspected)", count=total, n=examined, indicator=indicator)
    return indicator_check(name, True, "; ".join(notes) or "no point was attacked black-box", count=total, n=examined,
                           indicator=indicator)


def _signature(p: Any) -> tuple[Any, ...]:
    """Runs of one attack that differ only in their budget: same registry name, norm, eps and loss."""
    c = p.config or {}
    return (p.attack, p.norm, round(p.eps, 9), c.get("loss", "ce"))


def _more_steps(parts: Sequence[Any]) -> Check:
    """Any iterative attack run twice at one threat (its config has ``steps``): more steps x
    restarts must not leave clearly more points robust."""
    pgds = [p for p in parts if p.eps > 0 and (p.config or {}).get("steps")]
    fails, compared = [], 0
    for a in pgds:
        for b in pgds:
            sa, sb = a.config["steps"] * a.config.get("restarts", 1), b.config["steps"] * b.config.get("restarts", 1)
            if a is b or _signature(a) != _signature(b) or sb <= sa:
                continue
            common = torch.tensor(a.attacked, dtype=torch.bool) & torch.tensor(b.attacked, dtype=torch.bool)
            n = int(common.sum())
            if n == 0:
                continue
            compared += 1
            acc_a = torch.tensor(a.robust)[common].float().mean().item()
            acc_b = torch.tensor(b.robust)[common].float().mean().item()
            margin = MARGIN_POINTS + _se_points(acc_a, n)
            if 100 * (acc_b - acc_a) > margin:
                fails.append(f"{b.key} ({sb} steps x restarts) {100 * acc_b:.1f}% > {a.key} ({sa}) {100 * acc_a:.1f}% "
                             f"on {n} common points")
    if fails:
        return _check("more_steps_not_weaker", False, "; ".join(fails) + ": more steps of the same attack should never help the model")
    return _check("more_steps_not_weaker", True, f"{compared} pair(s) of one attack with more steps compared; none clearly weaker"
                  if compared else "no attack run twice at the same threat with different steps")


def _monotone(parts: Sequence[Any]) -> Check:
    groups: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for p in parts:
        groups.setdefault((p.label, p.norm), []).append((p.eps, sum(p.robust) / max(len(p.robust), 1)))
    fails, sweeps = [], 0
    for (label, norm), pts in groups.items():
        if len(pts) < 2:
            continue
        sweeps += 1
        pts.sort()
        for (e0, a0), (e1, a1) in zip(pts, pts[1:]):
            if a1 > a0 + 1e-12:
                fails.append(f"{label} ({norm}): {100 * a1:.1f}% at eps {e1:g} > {100 * a0:.1f}% at eps {e0:g}")
    if fails:
        return _check("monotone_in_eps", False, "; ".join(fails))
    return _check("monotone_in_eps", True, f"{sweeps} sweep(s), accuracy non-increasing in eps")


def _large_eps(parts: Sequence[Any], clean: Tensor, max_eps: dict[str, float]) -> Check:
    """Unconstrained-attack failure (Pintor et al. 2022): points left robust by the worst case at an
    eps >= ``max_eps`` of its norm, or by every unbounded minimum-norm attack run on them (norm inf:
    no adversarial of any size found; ``min_linf`` searches up to the whole box). Fails when they are
    more than ``LARGE_EPS_MAX_ACC`` % of the evaluated points."""
    name, indicator = "large_eps_breaks", "unconstrained attack failure"
    n_all = max(len(clean), 1)
    unbroken = torch.zeros(len(clean), dtype=torch.bool)
    notes, fails = [], []
    for norm, big in max_eps.items():
        at = [p for p in parts if p.norm == norm and p.eps >= big - 1e-12]
        if not at:
            continue
        e = max(p.eps for p in at)
        robust = torch.tensor(worst_case(clean.tolist(), parts, norm, e), dtype=torch.bool)
        unbroken |= robust
        acc = 100 * int(robust.sum()) / n_all
        note = f"worst case at {norm} eps {e:g}: {acc:.1f}% ({int(robust.sum())} points)"
        notes.append(note)
        if acc > LARGE_EPS_MAX_ACC:
            fails.append(note)
    mn = [p for p in parts if p.norms is not None]
    if mn:
        tried = torch.zeros(len(clean), dtype=torch.bool)
        found = torch.zeros(len(clean), dtype=torch.bool)
        for p in mn:
            att = torch.tensor(p.attacked, dtype=torch.bool) & clean
            tried |= att
            found |= att & torch.tensor([math.isfinite(v) for v in p.norms], dtype=torch.bool)
        none = tried & ~found
        unbroken |= none
        acc = 100 * int(none.sum()) / n_all
        note = (f"{int(none.sum())} of {int(tried.sum())} clean-correct points without an adversarial of any size from "
                f"the minimum-norm attacks ({', '.join(sorted({p.attack for p in mn}))}): {acc:.1f}%")
        notes.append(note)
        if acc > LARGE_EPS_MAX_ACC:
            fails.append(note)
    count, n = int(unbroken.sum()), int(clean.sum())
    if fails:
        return indicator_check(name, False, "; ".join(fails) + f" (should be <= {LARGE_EPS_MAX_ACC:g}% of the evaluated "
                               "points: unbounded attacks cannot use an unlimited budget)", count=count, n=n,
                               indicator=indicator)
    if not notes:
        return indicator_check(name, True, f"no attack at eps >= {max_eps} and no minimum-norm attack: nothing to "
                               "check", count=0, n=0, indicator=indicator)
    return indicator_check(name, True, "; ".join(notes), count=count, n=n, indicator=indicator)


def _attack_paths(parts: Sequence[Any], clean: Sequence[bool]) -> list[Check]:
    """The indicators each attack's own path gave (``Part.indicators``), judged on the points the
    suite leaves robust at each threat (norm, eps) of a bounded part, where a failed attack changes
    the verdict. A point counts for

    - silent success: some attack at the threat visited an adversarial of it and did not return it;
    - unavailable gradients: every white-box attack that took a gradient there had an all-zero or
      non-finite one before the point was misclassified;
    - incomplete optimisation: every white-box attack that left it robust at the threat was still
      improving its margin at the end of its budget.

    ``n`` is the points robust at the threats examined (a point counts once per threat)."""
    groups: dict[tuple[str, float], list[Any]] = {}
    for p in parts:
        if p.indicators and p.eps == p.eps and p.eps > 0:
            groups.setdefault((p.norm, round(p.eps, 9)), []).append(p)
    if not groups:
        return [indicator_check(name, True, "no attack path was watched (no bounded attack ran)", count=0, n=0,
                                indicator=indicator) for name, indicator, _, _ in PATH_CHECKS]
    hits = {name: 0 for name, *_ in PATH_CHECKS}
    per_attack: dict[str, list[str]] = {name: [] for name, *_ in PATH_CHECKS}
    n = 0
    for (norm, eps), ps in groups.items():
        final = torch.tensor(worst_case(clean, parts, norm, eps), dtype=torch.bool)
        n += int(final.sum())
        flag = {k: [torch.tensor(p.indicators.get(k, [False] * len(final)), dtype=torch.bool) for p in ps]
                for k in (*PATH_FLAGS, "gradient_examined")}
        white = [_is_white_box(p.attack) for p in ps]
        silent = torch.stack(flag["silent_success"]).any(0)
        graded = [e & w for e, w in zip(flag["gradient_examined"], white)]
        any_grad = torch.stack(graded).any(0)
        all_bad = torch.stack([b | ~g for b, g in zip(flag["no_gradient"], graded)]).all(0) & any_grad
        ran = [torch.tensor(p.attacked, dtype=torch.bool) & w for p, w in zip(ps, white)]
        any_ran = torch.stack(ran).any(0)
        all_improving = torch.stack([i | ~r for i, r in zip(flag["still_improving"], ran)]).all(0) & any_ran
        for name, got in zip(hits, (silent, all_bad, all_improving)):
            hits[name] += int((got & final).sum())
        for p, w in zip(ps, white):
            for name, key in zip(hits, PATH_FLAGS):  # PATH_CHECKS judge PATH_FLAGS, in that order
                c = sum(bool(v) for v in p.indicators.get(key, []))
                if c and (w or key == "silent_success"):
                    per_attack[name].append(f"{p.key} {c}")
    out = []
    for name, indicator, max_fraction, what in PATH_CHECKS:
        count = hits[name]
        limit = max(1, math.floor(max_fraction * n)) if max_fraction > 0 else 0
        detail = (f"{count} of {n} points left robust {what} (fails above {limit}); per attack, on all points it "
                  f"ran on: {', '.join(per_attack[name]) or 'none'}")
        out.append(indicator_check(name, count <= limit, detail, count=count, n=n, indicator=indicator))
    return out
