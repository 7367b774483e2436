"""Attack-failure indicators on every attack's own path (evaluations.attack_paths): the recorder
matches the rows an attack sends to the points it attacks, flags silent success, unavailable
gradients and incomplete optimisation per point, and the checks judge them on the points the suite
leaves robust. Models: the closed-form two-class linear models of test_indicators.py."""
from __future__ import annotations

import torch
from torch import nn

from robustbench_lite.evaluations.attack_paths import PathRecorder, still_improving
from robustbench_lite.evaluations.checks import result_checks
from robustbench_lite.evaluations.parts import Part
from robustbench_lite.evaluations.pgd import pgd
from robustbench_lite.utils import frozen, make_generator

from eval_helpers import Rounding
from test_indicators import EPS, SilentReset, TwoClass


def _points(model: TwoClass, hs: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Points at margins ``hs``, each moved by its own pattern orthogonal to ``w`` (same margin) so
    that their eps-balls are far apart, as images' are."""
    x, y = model.points(torch.tensor(hs))
    w = model.w.detach()
    r = 0.3 * (2 * torch.rand(len(hs), 784, generator=torch.Generator().manual_seed(1)) - 1)
    r -= (r @ w)[:, None] * w / (w @ w)
    return (x + r.view_as(x)).clamp(0, 1), y


def _run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kw) -> dict[str, torch.Tensor]:
    kw = {"steps": 20, "step_size": EPS / 4, "random_start": "none", **kw}
    with frozen(model):
        rec = PathRecorder(model, x, y, norm="linf", eps=EPS)
        res = pgd(rec, x, y, norm="linf", eps=EPS, loss="margin", return_success=True,
                  generator=make_generator(0), **kw)
        return {"success": res.success, **rec.flags(res.success)}  # type: ignore[arg-type]


def test_healthy_model_trips_nothing():
    model = TwoClass()
    x, y = _points(model, [-1.0, -2.0, -5.0, -6.0])  # the first two break (PGD raises h by 3.136), the others cannot
    got = _run(model, x, y)
    assert got["success"].tolist() == [True, True, False, False]
    for k in ("silent_success", "no_gradient", "still_improving"):
        assert not got[k].any(), k
    assert got["gradient_examined"].all()


def test_silent_success_when_the_attack_returns_its_last_iterate():
    model = SilentReset()
    x, y = _points(model, [-1.0, -1.5, -6.0])
    got = _run(model, x, y, early_stop=False, step_size=EPS / 10)  # every step taken: it climbs through the adversarial band and out
    assert got["success"].tolist() == [False, False, False]
    assert got["silent_success"].tolist() == [True, True, False]
    early = _run(model, x, y, step_size=EPS / 10)  # our engine keeps the breaking iterate: no silent success
    assert early["success"].tolist() == [True, True, False] and not early["silent_success"].any()


def test_unavailable_gradients_rounding_layer():
    model = Rounding(TwoClass())
    x, y = _points(model.model, [-1.0, -6.0])
    got = _run(model, x, y)
    assert got["no_gradient"].all() and got["gradient_examined"].all()


def test_incomplete_optimisation_too_few_steps():
    model = TwoClass()
    x, y = _points(model, [-6.0, -7.0])
    short = _run(model, x, y, steps=3, step_size=EPS / 10)  # still climbing when the budget ends
    assert short["still_improving"].all()
    assert not _run(model, x, y, steps=40)["still_improving"].any()  # at the corner of the ball long before the end


def test_rows_are_matched_to_their_points_in_any_order_and_subset():
    model = TwoClass()
    x, y = _points(model, [-6.0, -0.5, -6.5, -0.2])
    with frozen(model):
        rec = PathRecorder(model, x, y, norm="linf", eps=EPS)
        w = model.w.detach().sign().view(1, 1, 28, 28)
        rec(x[[3, 1]] + EPS * w)                 # points 3 and 1 pushed to the corner: adversarial
        rec(x[[2]] + 2 * EPS * w)                # outside point 2's ball: not a visit of it
        rec(torch.cat([x[[0]], x[[2]] - EPS * w]))  # inside, the wrong way: not adversarial
    flags = rec.flags(torch.zeros(4, dtype=torch.bool))  # the attack claims nothing broke
    assert flags["silent_success"].tolist() == [False, True, False, True]


def test_still_improving_rule():
    assert still_improving(torch.linspace(0, 1, 100))
    assert not still_improving(torch.cat([torch.linspace(0, 1, 50), torch.ones(50)]))
    assert not still_improving(torch.ones(30))  # no rise at all
    assert not still_improving(torch.tensor([0.0, 1.0]))  # too short to have a window


# -- the checks over the parts' flags -------------------------------------------------------------

def _part(label: str, attack: str, robust: list[bool], flags: dict[str, list[bool]] | None) -> Part:
    return Part(f"{label}@linf:0.3", attack, label, "linf", 0.3, robust, [True] * len(robust), None, 0.0, 0, 0,
                {}, indicators=flags)


def _flags(n: int, **on: list[int]) -> dict[str, list[bool]]:
    keys = ("silent_success", "no_gradient", "still_improving")
    out = {k: [i in on.get(k, []) for i in range(n)] for k in keys}
    out["gradient_examined"] = [True] * n
    return out


def _checks(parts: list[Part], n: int) -> dict[str, dict]:
    return {c["name"]: c for c in result_checks(parts, [True] * n)}


def test_checks_judge_flags_on_points_left_robust():
    n = 100
    robust = [i >= 50 for i in range(n)]
    # silent successes on 10 points the other attack broke anyway: the verdict stands
    ok = _checks([_part("a", "apgd_ce", [True] * n, _flags(n, silent_success=list(range(10)))),
                  _part("b", "apgd_t", robust, _flags(n))], n)
    c = ok["attacks_no_silent_success"]
    assert c["passed"] and c["count"] == 0 and c["n"] == 50 and c["indicator"] == "silent success"
    bad = _checks([_part("a", "apgd_ce", robust, _flags(n, silent_success=list(range(50, 60))))], n)
    assert not bad["attacks_no_silent_success"]["passed"] and bad["attacks_no_silent_success"]["count"] == 10


def test_gradient_and_convergence_checks_need_every_white_box_attack():
    n = 20
    robust = [True] * n
    one = _checks([_part("ce", "apgd_ce", robust, _flags(n, no_gradient=[0, 1], still_improving=list(range(n)))),
                   _part("t", "apgd_t", robust, _flags(n))], n)
    assert one["attacks_gradients_available"]["passed"] and one["attacks_converged"]["passed"]
    both = _checks([_part("ce", "apgd_ce", robust, _flags(n, no_gradient=[0, 1], still_improving=list(range(n)))),
                    _part("t", "apgd_t", robust, _flags(n, no_gradient=[1], still_improving=list(range(5))))], n)
    g, c = both["attacks_gradients_available"], both["attacks_converged"]
    assert (g["passed"], g["count"]) == (False, 1)
    assert (c["passed"], c["count"]) == (False, 5)  # above 10% of 20
    # a black-box attack takes no gradient: it neither trips nor clears the gradient indicator
    sq = _flags(n)
    sq["gradient_examined"] = [False] * n
    bb = _checks([_part("ce", "apgd_ce", robust, _flags(n, no_gradient=[3])), _part("sq", "square", robust, sq)], n)
    assert bb["attacks_gradients_available"]["count"] == 1


def test_no_watched_attack_passes_with_nothing_to_judge():
    res = _checks([_part("a", "apgd_ce", [True] * 4, None)], 4)
    assert all(res[k]["passed"] and res[k]["n"] == 0
               for k in ("attacks_no_silent_success", "attacks_gradients_available", "attacks_converged"))


def test_watching_never_switches_the_model_to_training_mode():
    """A wrapper is built in training mode by default; ``frozen(wrapper, eval_mode=False)`` (how the
    pyautoattack stages run) used to hand that mode to the model on exit, switching dropout on for
    every later block. The recorder takes the model's mode, and ``frozen`` restores each module's own."""
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(784, 10)).eval()
    x, y = torch.rand(4, 1, 28, 28), torch.zeros(4, dtype=torch.long)
    rec = PathRecorder(model, x, y, norm="linf", eps=EPS)
    assert not rec.training
    wrapper = nn.Sequential(model)  # in training mode, around a model in eval mode
    with frozen(wrapper, eval_mode=False):
        pass
    assert wrapper.training and not any(m.training for m in model.modules())
    with frozen(model):
        pass
    assert not model.training


def test_a_cut_graph_reads_as_zero_gradients_not_an_error():
    """A defense that detaches its input (or leaves autograd through numpy) gave an autograd error
    in the model checks and in every gradient attack; it is gradient masking and must be reported
    as such: zero input gradients, attacks that run, and the indicators that say so."""
    from robustbench_lite.evaluations.checks import model_checks
    from robustbench_lite.evaluations.parts import CountingModel

    class Cut(TwoClass):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x.detach())

    model = Cut()
    x, y = _points(model, [-1.0, -6.0])
    with frozen(model):
        checks = {c["name"]: c for c in model_checks(model, x, y)}
        got = _run(CountingModel(model), x, y)
    assert not checks["nonzero_input_gradients"]["passed"] and checks["nonzero_input_gradients"]["count"] == 2
    assert got["no_gradient"].all() and not got["success"].any()
