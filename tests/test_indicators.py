"""Attack-failure indicators (Pintor et al. 2022): each trips on a model built to trip it and stays
quiet on a healthy one. The probe models are two-class linear models on 1x28x28 inputs with a
closed-form margin (``h = w.x + b``; points placed at a chosen ``h``), so no number depends on
training or BLAS; the transfer and unconstrained indicators are read from hand-made parts."""
from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from robustbench_lite.evaluations.checks import result_checks
from robustbench_lite.evaluations.indicators import INDICATOR_CHECKS, indicator_checks
from robustbench_lite.evaluations.parts import Part
from robustbench_lite.threat import ThreatModel
from robustbench_lite.utils import frozen, make_generator

from eval_helpers import Rounding

EPS = 0.1
THREAT = ThreatModel("linf", EPS)


class TwoClass(nn.Module):
    """Logits ``(0, h)`` with ``h = w.x + b``: class 0 while ``h < 0``. ``w`` is +-0.04 per pixel, so
    a Linf step ``s`` raises ``h`` by ``s * ||w||_1 = 31.36 s`` (the box never binds here)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(0.04 * (2 * torch.randint(0, 2, (784,), generator=g).float() - 1))
        self.b = nn.Parameter(-0.5 * self.w.detach().sum())  # h(0.5) = 0

    def h(self, x: Tensor) -> Tensor:
        return x.flatten(1) @ self.w + self.b

    def logits(self, h: Tensor) -> Tensor:
        return torch.stack([torch.zeros_like(h), h], 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.logits(self.h(x))

    def points(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """Inputs with exactly these margins ``h`` (negative: class 0), and their labels."""
        w = self.w.detach()
        x = 0.5 + h[:, None] * w.sign() / w.abs().sum()
        return x.view(-1, 1, 28, 28), torch.zeros(len(h), dtype=torch.long)


class SilentReset(TwoClass):
    """Forward: ``h`` while ``h < 0.5``, then -10 (back to the true class); backward: ``w`` always
    (straight-through). PGD climbs ``h`` through the adversarial band (0, 0.5) and ends above it,
    where the prediction is correct again: every point is a silent success."""

    def forward(self, x: Tensor) -> Tensor:
        h = self.h(x)
        shown = torch.where(h < 0.5, h, torch.full_like(h, -10.0))
        return self.logits(h + (shown - h).detach())


class Jittery(TwoClass):
    """Deterministic, but ``h`` gets ``5 sin(100 sum(x))``: noise of eps/10 flips the prediction."""

    def forward(self, x: Tensor) -> Tensor:
        return self.logits(self.h(x) + 5 * torch.sin(100 * x.flatten(1).sum(1)))


class Noisy(TwoClass):
    """A randomised forward pass: logits plus N(0, 3^2) noise."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) + 3 * torch.randn(len(x), 2)


def _run(model: nn.Module, h: Tensor, **kw: object) -> dict[str, dict]:
    x, y = TwoClass().points(h)
    with frozen(model):
        checks = indicator_checks(model, x, y, None, THREAT, generator=make_generator(0), **kw)  # type: ignore[arg-type]
    assert [c["name"] for c in checks] == list(INDICATOR_CHECKS)
    for c in checks:
        assert {"name", "passed", "detail", "count", "n", "indicator"} <= set(c) and 0 <= c["count"] <= c["n"]
    return {c["name"]: c for c in checks}


def _failed(res: dict[str, dict]) -> set[str]:
    return {k for k, c in res.items() if not c["passed"]}


def test_healthy_linear_model_passes_every_indicator():
    # default probe: PGD-20, step 2.5 eps / 20 raises h by 0.39 per step, 3.14 in all: points above
    # h = -3.1 break, the others end robust on a loss that stopped rising at the ball's edge
    res = _run(TwoClass(), torch.linspace(-6, -1, 20))
    assert _failed(res) == set()
    assert 0 < res["optimisation_converged"]["n"] < 20 and res["optimisation_converged"]["count"] == 0


def test_silent_success_straight_through_reset():
    res = _run(SilentReset(), torch.linspace(-2.5, -1, 12))
    assert _failed(res) == {"no_silent_success"}
    assert res["no_silent_success"]["count"] == 12


def test_unavailable_gradients_rounding_layer():
    res = _run(Rounding(TwoClass()), torch.linspace(-2.5, -1, 12))
    assert "gradients_available" in _failed(res)
    assert res["gradients_available"]["count"] == 12


def test_unstable_predictions_deterministic_and_randomised():
    for model in (Jittery(), Noisy()):
        res = _run(model, torch.linspace(-3, -1, 16))
        assert not res["predictions_stable"]["passed"], res["predictions_stable"]["detail"]
        assert res["predictions_stable"]["count"] >= 2


def test_incomplete_optimisation_too_few_steps():
    # 10 steps of 1/(10 * 31.36): h rises linearly, by 0.92 in all (1.0 less what the ball clips from
    # the uniform start's pixels near its edge); twice the steps: 1.68; random start: +-0.07
    h = torch.linspace(-1.45, -1.15, 12)
    step = 1.0 / (10 * 31.36)
    res = _run(TwoClass(), h, steps=10, step_size=step)
    assert _failed(res) == {"optimisation_converged"}
    assert res["optimisation_converged"]["count"] == res["optimisation_converged"]["n"] == 12
    ok = _run(TwoClass(), h, steps=40, step_size=step)  # 40 such steps break them all
    assert _failed(ok) == set() and ok["optimisation_converged"]["n"] == 0


def test_max_points_and_clean_correct():
    model = TwoClass()
    x, y = model.points(torch.linspace(-3, -1, 10))
    y[:4] = 1  # misclassified: never probed
    with frozen(model):
        res = indicator_checks(model, x, y, [bool(v) for v in y == 0], THREAT, generator=make_generator(0), max_points=5)
        empty = indicator_checks(model, x[:4], y[:4], None, THREAT, generator=make_generator(0))
    assert {c["n"] for c in res if c["name"] != "optimisation_converged"} == {5}
    assert all(c["passed"] and c["n"] == 0 for c in empty)


def test_natural_small_cnn_passes(eval_model, eval_batch):
    x, y = eval_batch
    with frozen(eval_model):
        checks = indicator_checks(eval_model, x, y, None, ThreatModel("linf", 0.3), generator=make_generator(0))
    assert all(c["passed"] for c in checks), [c["detail"] for c in checks if not c["passed"]]


# -- the two indicators read from the parts (evaluations.checks) ---------------------------------

def _part(label: str, attack: str, eps: float, robust: list[bool], norms: list[float] | None = None) -> Part:
    return Part(f"{label}@linf:{eps}", attack, label, "linf", eps, robust, [True] * len(robust), norms, 0.0, 0, 0,
                {"steps": 20, "restarts": 1, "loss": "ce"} if attack == "pgd" else {})


def _by_name(parts: list[Part], n: int) -> dict[str, dict]:
    return {c["name"]: c for c in result_checks(parts, [True] * n)}


def test_transfer_failure_counts_points_only_the_black_box_breaks():
    n = 100
    pgd = [i >= 50 for i in range(n)]                  # PGD breaks 0..49
    same_acc = [not (10 <= i < 60) for i in range(n)]  # Square breaks 10..59: equal accuracy, 10 points PGD missed
    res = _by_name([_part("pgd20", "pgd", 0.3, pgd), _part("square", "square", 0.3, same_acc)], n)
    c = res["white_box_beats_black_box"]
    assert not c["passed"] and c["count"] == 10 and c["n"] == n and c["indicator"] == "transfer failure"
    near = [not (2 <= i < 52) for i in range(n)]       # 2 such points: within the margin
    assert _by_name([_part("pgd20", "pgd", 0.3, pgd), _part("square", "square", 0.3, near)], n)[
        "white_box_beats_black_box"]["count"] == 2
    assert _by_name([_part("pgd20", "pgd", 0.3, pgd), _part("square", "square", 0.3, near)], n)[
        "white_box_beats_black_box"]["passed"]


@pytest.mark.parametrize("unbroken, passed", [(0, True), (2, True), (5, False)])
def test_unconstrained_failure_large_eps_and_minimum_norm(unbroken: int, passed: bool):
    n = 100
    norms = [math.inf if i < unbroken else 0.2 for i in range(n)]
    robust = [i < unbroken for i in range(n)]
    res = _by_name([_part("pgd20", "pgd", 0.3, [True] * n), _part("min_linf", "min_linf", 0.3, robust, norms)], n)
    c = res["large_eps_breaks"]
    assert (c["passed"], c["count"], c["n"], c["indicator"]) == (passed, unbroken, n, "unconstrained attack failure")
    big = _by_name([_part("big", "pgd", 1.0, robust)], n)["large_eps_breaks"]
    assert (big["passed"], big["count"]) == (passed, unbroken)
