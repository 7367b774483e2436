"""Our APGD (evaluations.pgd.apgd, attacks apgd_ce / apgd_dlr / apgd_t) against pyautoattack's
APGD-CE / APGD-T on the same model, points and random starts, and against closed forms."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from robustbench_lite.evaluations.attacks import create_attack
from robustbench_lite.evaluations.attacks.apgd import apgd_targeted
from robustbench_lite.evaluations.losses import dlr_targeted_loss, margin_targeted_loss
from robustbench_lite.evaluations.pgd import apgd, apgd_checkpoints
from robustbench_lite.utils import frozen, make_generator

from eval_helpers import Counting, linear_problem


def _aa_start(x: torch.Tensor, eps: float) -> torch.Tensor:
    """pyautoattack's Linf start from the global RNG: x + eps * t / ||t||_inf, t ~ U[-1,1]."""
    t = 2 * torch.rand(x.shape).to(x.device) - 1
    return (x + eps * torch.ones_like(x) * (t / (t.abs().flatten(1).max(1)[0].view(-1, 1, 1, 1) + 1e-12))).clamp(0, 1)


def _points(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], n: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = batch
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    return x[ok][:n], y[ok][:n]


def _broken(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x_adv).argmax(1) != y


def test_checkpoints_follow_the_paper():
    """p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06) (Croce & Hein 2020, Sec. 3.2)."""
    p = [0.0, 0.22]
    while p[-1] + max(p[-1] - p[-2] - 0.03, 0.06) <= 1 + 1e-9:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    assert apgd_checkpoints(100) == [round(100 * v) for v in p[1:]]
    assert apgd_checkpoints(1) == [1] and apgd_checkpoints(20)[0] == 4


def test_targeted_losses_match_their_closed_forms():
    from pyautoattack.autopgd_base import APGDAttack_targeted

    g = torch.Generator().manual_seed(0)
    z, y, t = torch.randn(16, 10, generator=g), torch.randint(0, 10, (16,), generator=g), torch.randint(0, 10, (16,), generator=g)
    ref = APGDAttack_targeted(nn.Identity(), eps=0.1)
    ref.y_target = t
    assert torch.allclose(dlr_targeted_loss(z, y, t), ref.dlr_loss_targeted(z, y))
    assert torch.equal(margin_targeted_loss(z, y, t), z[torch.arange(16), t] - z[torch.arange(16), y])


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_apgd_breaks_all_above_and_none_below_every_margin(norm):
    """A binary linear model (where the CE ascent direction is the optimal one): every point breaks
    when eps is 1.2x the largest exact distance to the boundary (box ignored; it does not bind here),
    none when eps is 0.9x the smallest."""
    model, x, y = linear_problem(n=24, seed=1, classes=2)
    w = model[1].weight.detach()
    with torch.no_grad():
        z = model(x)
    dual = {"linf": 1, "l2": 2, "l1": float("inf")}[norm]
    marg = z.gather(1, y[:, None]) - z
    dist = marg / (w[y][:, None, :] - w[None]).norm(p=dual, dim=2).clamp_min(1e-12)
    dist[torch.arange(len(y)), y] = float("inf")
    d = dist.min(1).values
    hi = apgd(model, x, y, norm=norm, eps=float(d.max()) * 1.2, steps=100 if norm == "l1" else 50, generator=make_generator(0))
    assert hi.success.all()
    lo = apgd(model, x, y, norm=norm, eps=float(d.min()) * 0.9, steps=30, restarts=2, generator=make_generator(0))
    assert not lo.success.any()
    assert torch.equal(_broken(model, lo.x_adv, y), lo.success)


def test_early_exit_costs_only_the_iterations_a_point_needs(eval_model, eval_batch):
    """Forward rows = sum over points of (iterations until broken + 1): counted against an
    independent run that records the first adversarial iterate (per-row computations only)."""
    x, y = _points(eval_model, eval_batch, 16)
    m = Counting(eval_model)
    with frozen(eval_model):
        res = apgd(m, x, y, norm="linf", eps=0.2, steps=40, generator=make_generator(1))
    assert res.success.any() and torch.equal(_broken(eval_model, res.x_adv, y), res.success)
    assert m.rows < 41 * len(x) * 0.9  # broken points left early
    assert float((res.x_adv - x).abs().max()) <= 0.2 + 1e-6


def _compare_ce(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, loss: str):
    from pyautoattack.autopgd_base import APGDAttack

    m = Counting(model)
    ref = APGDAttack(m, n_iter=steps, norm="Linf", eps=eps, seed=0, loss=loss, n_restarts=1, device=x.device)
    x_ref = ref.perturb(x, y)
    ref_rows = m.rows
    torch.manual_seed(0)
    init = _aa_start(x, eps)
    m.rows = 0
    ours = apgd(m, x, y, norm="linf", eps=eps, steps=steps, loss=loss, x_init=init)
    return _broken(model, x_ref, y), ours, ref_rows, m.rows


def _compare_t(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, targets: int):
    from pyautoattack.autopgd_base import APGDAttack_targeted

    m = Counting(model)
    ref = APGDAttack_targeted(m, n_iter=steps, norm="Linf", eps=eps, seed=0, n_restarts=1, n_target_classes=targets,
                              device=x.device)
    x_ref = ref.perturb(x, y)
    ref_rows = m.rows
    torch.manual_seed(0)  # pyautoattack's per-target starts: one draw of the remaining rows' shape per target
    m.rows = 0
    ours = apgd_targeted(m, x, y, norm="linf", eps=eps, steps=steps, n_targets=targets,
                         start=lambda xr, er: _aa_start(xr, eps))
    return _broken(model, x_ref, y), ours, ref_rows, m.rows


def _assert_as_strong_and_cheaper(ref_broken, ours, ref_rows, our_rows, model, y, slack=0):
    assert torch.equal(_broken(model, ours.x_adv, y), ours.success)
    missed = int((ref_broken & ~ours.success).sum())
    assert missed <= slack, f"pyautoattack broke {missed} points ours left robust"
    assert int(ours.success.sum()) >= int(ref_broken.sum()) - slack
    if ours.success.any():
        assert our_rows < ref_rows


@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_apgd_matches_pyautoattack_apgd_per_example(eval_model, eval_batch, loss):
    """Same points, same starts: every point pyautoattack's APGD breaks, ours breaks, with fewer
    forward passes (a broken point leaves the batch; pyautoattack runs it to the last iteration)."""
    x, y = _points(eval_model, eval_batch, 16)
    with frozen(eval_model):
        ref_broken, ours, ref_rows, our_rows = _compare_ce(eval_model, x, y, eps=0.12, steps=30, loss=loss)
    assert 0 < int(ref_broken.sum()) < len(y)  # a comparison with something to find and something left
    _assert_as_strong_and_cheaper(ref_broken, ours, ref_rows, our_rows, eval_model, y)


def test_apgd_t_matches_pyautoattack_apgd_t_per_example(eval_model, eval_batch):
    x, y = _points(eval_model, eval_batch, 12)
    with frozen(eval_model):
        ref_broken, ours, ref_rows, our_rows = _compare_t(eval_model, x, y, eps=0.12, steps=20, targets=3)
    assert 0 < int(ref_broken.sum()) < len(y)
    _assert_as_strong_and_cheaper(ref_broken, ours, ref_rows, our_rows, eval_model, y)


@pytest.mark.slow
def test_apgd_full_budget_matches_pyautoattack(eval_model, eval_batch):
    """AutoAttack's budget (100 iterations; APGD-T on 9 targets) on all 32 points."""
    x, y = _points(eval_model, eval_batch, 32)
    with frozen(eval_model):
        for loss in ("ce", "dlr"):
            ref_broken, ours, ref_rows, our_rows = _compare_ce(eval_model, x, y, eps=0.12, steps=100, loss=loss)
            _assert_as_strong_and_cheaper(ref_broken, ours, ref_rows, our_rows, eval_model, y)
        ref_broken, ours, ref_rows, our_rows = _compare_t(eval_model, x, y, eps=0.12, steps=100, targets=9)
        _assert_as_strong_and_cheaper(ref_broken, ours, ref_rows, our_rows, eval_model, y)


def test_attack_options_are_checked():
    from robustbench_lite.errors import BenchError

    for name, opts in (("apgd_ce", {"rho": 1.5}), ("apgd_ce", {"momentum": 0.0}), ("apgd_t", {"n_target_classes": 0}),
                       ("apgd_ce", {"steps": 0}), ("apgd_dlr", {"loss": "kl"})):
        with pytest.raises(BenchError):
            create_attack(name, **opts)
    assert create_attack("apgd_dlr").loss == "dlr" and create_attack("apgd_t").n_target_classes == 9
