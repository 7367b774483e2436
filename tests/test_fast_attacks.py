"""The fast suite's stages: margin_topk (Minimum-Margin), a3 (adaptive restarts with discarding),
targeted losses through the PGD engine, and the suite's ordering against AutoAttack."""
from __future__ import annotations

import pytest
import torch

from robustbench_lite.errors import BenchError
from robustbench_lite.evaluations.attacks import create_attack
from robustbench_lite.evaluations.losses import margin_targeted_loss
from robustbench_lite.evaluations.pgd import pgd
from robustbench_lite.utils import make_generator

from eval_helpers import Counting, linear_problem


def _targeted_linf_distances(model, x, y):
    """Exact Linf distance to the y-vs-t boundary of a linear model for every class t (inf at y)."""
    w = model[1].weight.detach()
    with torch.no_grad():
        z = model(x)
    d = (z.gather(1, y[:, None]) - z) / (w[y][:, None, :] - w[None]).abs().sum(2).clamp_min(1e-12)
    d[torch.arange(len(y)), y] = float("inf")
    return d, z


def test_margin_topk_breaks_exactly_the_points_whose_nearest_boundary_is_a_top_k_class():
    """On a linear model the targeted margin optimum is closed form: with eps between every point's
    nearest top-k boundary (x1.1) and every other boundary, top-k breaks exactly those points."""
    model, x, y = linear_problem(n=48, seed=2)
    d, z = _targeted_linf_distances(model, x, y)
    k = 2
    ranks = z.argsort(1, descending=True)[:, 1:k + 1]
    near_topk = d.gather(1, ranks).min(1).values
    eps = float(near_topk.median())
    want = near_topk * 1.1 < eps
    out = create_attack("margin_topk", k=k, steps=40).run(model, x, y, eps=eps, generator=make_generator(0))
    assert bool(out.success[want].all())
    # nothing breaks where every boundary (top-k or not) is farther than eps
    assert not bool(out.success[d.min(1).values > eps].any())
    with torch.no_grad():
        assert bool((model(out.x_adv).argmax(1)[out.success] != y[out.success]).all())
    assert float((out.x_adv - x).abs().max()) <= eps + 1e-6


def test_margin_topk_more_targets_reach_beyond_the_top_k_on_the_kept_points_only():
    """``more_targets`` adds the ranks after the top k, only on the ``more_keep`` share of the
    still-robust points with the highest loss: on a linear model, top-1 + 8 more targets (all kept)
    breaks every point with some boundary within eps (x1.1), and with ``more_keep`` 0.2 the
    further targets cost at most a fifth of the still-robust rows each."""
    model, x, y = linear_problem(n=40, seed=6)
    d, _ = _targeted_linf_distances(model, x, y)
    eps = float(d.min(1).values.median())
    reachable = d.min(1).values * 1.1 < eps

    def run(**kw):  # type: ignore[no-untyped-def]
        m = Counting(model)
        out = create_attack("margin_topk", k=1, steps=40, **kw).run(m, x, y, eps=eps, generator=make_generator(0))
        return out.success, m.rows

    top1, _ = run()
    every, _ = run(more_targets=8, more_keep=1.0)
    assert every[reachable].all() and every.sum() >= top1.sum()
    assert not every[d.min(1).values > eps].any()
    few, rows_few = run(more_targets=8, more_keep=0.2)
    left = int((~top1).sum())
    # the clean pass and top-1 (start check + 40 steps + final check per row), then per further
    # target at most ceil(0.2 x the points still robust) rows
    assert rows_few <= 40 + 40 * 42 + 8 * (-(-left // 5)) * 42
    assert few.sum() >= top1.sum()


def test_targeted_loss_through_the_engine_follows_leaving_rows():
    """pgd(target=...) subsets the per-row tensor with the rows that leave: a row 'breaks' when it
    reaches its own target class t (passed as the label, with the true class as ``target``), and
    every row of a linear model gets there (eps far beyond every boundary), at different steps."""
    model, x, y = linear_problem(n=20, seed=3)
    with torch.no_grad():
        t = model(x).argsort(1, descending=True)[:, 3]  # the 4th class of each row
    res = pgd(model, x, t, norm="linf", eps=0.3, steps=40, step_size=0.02,
              loss=lambda z, tt, yy: margin_targeted_loss(z, yy, tt), target=y,
              is_adversarial=lambda z, tt: z.argmax(1) == tt, generator=make_generator(0))
    assert res.success is not None and res.success.all()
    with torch.no_grad():
        assert torch.equal(model(res.x_adv).argmax(1), t)


def test_a3_breaks_above_and_none_below_every_margin():
    model, x, y = linear_problem(n=24, seed=4)
    d, _ = _targeted_linf_distances(model, x, y)
    nearest = d.min(1).values
    hi = create_attack("a3", restarts=2, steps=30).run(model, x, y, eps=float(nearest.max()) * 1.2, generator=make_generator(0))
    assert hi.success.all()
    lo = create_attack("a3", restarts=3, steps=10).run(model, x, y, eps=float(nearest.min()) * 0.9, generator=make_generator(0))
    assert not lo.success.any()


def test_a3_discarding_schedule_and_cost():
    a = create_attack("a3", restarts=6, full_restarts=2, keep=0.5, min_keep=0.2)
    assert [a.fraction(r) for r in range(6)] == [1.0, 1.0, 0.5, 0.25, 0.2, 0.2]
    # discarding attacks fewer rows: count forward rows on points that never break (eps tiny)
    model, x, y = linear_problem(n=30, seed=5)

    costs = []
    for keep in (1.0, 0.3):
        m = Counting(model)
        out = create_attack("a3", restarts=4, steps=5, odi_steps=2, full_restarts=1, keep=keep).run(
            m, x, y, eps=1e-4, generator=make_generator(0))
        assert not out.success.any()
        costs.append(m.rows)
    # without discarding: 1 clean pass + restart 0 (6 passes) + 3 x (2 ODI + 1 check + 6 APGD) per point
    assert costs[0] == 30 * (1 + 6 + 3 * 9)
    assert costs[1] < costs[0] * 0.6


@pytest.mark.parametrize("name,opts", [("a3", {"keep": 0.0}), ("a3", {"min_keep": 1.5}), ("a3", {"odi_steps": -1}),
                                       ("margin_topk", {"k": 0}), ("margin_topk", {"loss": "ce"}), ("a3", {"restarts": 0}),
                                       ("margin_topk", {"more_targets": -1}), ("margin_topk", {"more_keep": 0.0})])
def test_bad_options_are_refused(name, opts):
    with pytest.raises(BenchError):
        create_attack(name, **opts)


@pytest.mark.slow
def test_fast_suite_is_no_weaker_than_autoattack(eval_natural_ckpt, tmp_path):
    """On the tests' natural model at a radius where some points resist: fast's robust accuracy is at
    most AutoAttack's + 0.5 points (one point in 32 is 3.1 points: so no point more), with fewer passes."""
    from robustbench_lite.evaluations.evaluate import EvalOptions, evaluate

    aa_suite = tmp_path / "aa.toml"
    aa_suite.write_text('name = "aa"\n[[attacks]]\nname = "autoattack"\nversion = "standard"\n')
    recs = {}
    for name, suite in (("fast", "fast"), ("aa", aa_suite)):
        recs[name] = evaluate(eval_natural_ckpt, tmp_path / name,
                              EvalOptions(suite=suite, n_examples=32, threat="linf:0.1", check_examples=16))
    assert recs["fast"]["robust_accuracy"] <= recs["aa"]["robust_accuracy"] + 0.5

    def passes(rec):
        return sum(r["forwards"] + r["backwards"] for r in rec["summary"] if r["attack"] != "clean")

    assert passes(recs["fast"]) < passes(recs["aa"])


def test_fast_suite_flags_a_gradient_masked_model(eval_natural_ckpt, tmp_path):
    """``--suite fast`` on the natural model behind a rounding layer (zero input gradients): every
    white-box stage fails, Square breaks what they left, the attack-path and transfer indicators fail,
    and the leaderboard marks the row unreliable; the same model without the layer passes them all."""
    import dataclasses

    from robustbench_lite.checkpoint import load_checkpoint
    from robustbench_lite.evaluations.evaluate import EvalOptions, evaluate_loaded
    from robustbench_lite.evaluations.suite import load_suite
    from robustbench_lite.reports.leaderboard import leaderboard_entries

    from eval_helpers import Rounding

    ckpt = load_checkpoint(eval_natural_ckpt)
    suite = load_suite("fast")
    assert suite.checks
    opts = EvalOptions(n_examples=16, check_examples=16, seed=0)
    honest = evaluate_loaded(ckpt, suite, tmp_path / "honest", opts, checkpoint_path=eval_natural_ckpt)
    masked = evaluate_loaded(dataclasses.replace(ckpt, model=Rounding(ckpt.model)), suite, tmp_path / "masked", opts,
                             checkpoint_path=eval_natural_ckpt)
    ok = {c["name"]: c for c in honest["checks"]}
    assert all(c["passed"] for c in ok.values()), [c["detail"] for c in ok.values() if not c["passed"]]
    bad = {c["name"]: c for c in masked["checks"]}
    assert not bad["attacks_gradients_available"]["passed"] and bad["attacks_gradients_available"]["count"] > 0
    assert not bad["white_box_beats_black_box"]["passed"]
    rows = {r["label"]: r for r in masked["summary"]}
    assert rows["apgd_ce"]["no_gradient"] == rows["apgd_ce"]["attacked"]  # every point it ran on
    assert rows["square"]["no_gradient"] is None  # a black-box attack takes no gradient
    masked["checkpoint"] = {**masked["checkpoint"], "sha256": "1" * 64, "defense": "masked"}
    entries = {e.defense: e for e in leaderboard_entries([honest, masked])}
    assert entries["masked"].unreliable and not entries["natural"].unreliable
