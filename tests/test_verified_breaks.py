"""The attack front door verifies every claimed break (evaluations.breaks, Attack._verified): a
claim outside the box or the ball, or not misclassified on a fresh eval-mode forward pass, counts as
not broken and in ``unverified``; the references here are numpy distances and the model's own
predictions computed in the test."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from robustbench_lite.evaluations.attacks import AttackOutput, create_attack
from robustbench_lite.evaluations.attacks.base import Attack
from robustbench_lite.evaluations.breaks import (NORM_MISMATCH, NOT_MISCLASSIFIED, OUT_OF_BALL, OUT_OF_BOX,
                                                 check_breaks, distances)
from robustbench_lite.evaluations.checks import breaks_verified
from robustbench_lite.evaluations.parts import Part

from eval_helpers import linear_min_norms, linear_problem

EPS = 0.05


@dataclass(frozen=True, kw_only=True)
class ClaimsAll(Attack):
    """Lies: claims success on every point; returns ``mode``: the clean input, a point outside the
    ball (misclassified), outside the box, or PGD's honest output."""

    mode: str = "clean"

    def run(self, model, x, y, *, eps, generator):  # type: ignore[override]
        if self.mode == "clean":
            x_adv = x.clone()
        elif self.mode == "far":  # a big step against the true class: misclassified, far outside the ball
            w = model[1].weight.detach()
            direction = (w[(y + 1) % w.shape[0]] - w[y]).view_as(x).sign()
            x_adv = (x + 0.45 * direction).clamp(0, 1)
        elif self.mode == "box":
            x_adv = x.clone()
            x_adv[:, 0, 0, 0] = 1.5
        else:
            x_adv = create_attack("pgd", steps=10)(model, x, y, eps=eps, progress=False).x_adv
        return AttackOutput(x_adv, torch.ones(len(x), dtype=torch.bool))


@dataclass(frozen=True, kw_only=True)
class ShrinksNorms(Attack):
    """A minimum-norm attack that returns honest adversarials but reports half their norm."""

    minimum_norm = True
    kind = "minimum-norm"
    factor: float = 0.5

    def run(self, model, x, y, *, eps, generator):  # type: ignore[override]
        out = create_attack("deepfool_linf")(model, x, y, progress=False)
        norms = torch.where(out.success, distances(out.x_adv, x, "linf").float() * self.factor,
                            torch.full_like(out.norms.float(), float("inf")))
        return AttackOutput(out.x_adv, out.success, norms)


def _truth(model: nn.Module, x: Tensor, y: Tensor, x_adv: Tensor, eps: float) -> np.ndarray:
    """Independent reference: numpy Linf distance, box, and the model's prediction."""
    d = np.abs(x_adv.numpy().astype(np.float64) - x.numpy().astype(np.float64)).reshape(len(x), -1).max(1)
    box = (x_adv.numpy().reshape(len(x), -1).min(1) >= 0) & (x_adv.numpy().reshape(len(x), -1).max(1) <= 1)
    with torch.no_grad():
        wrong = (model(x_adv).argmax(1) != y).numpy()
    return (d <= eps + 1e-6) & box & wrong


@pytest.mark.parametrize("mode", ["clean", "far", "box"])
def test_lying_attack_is_corrected(temporary_attacks, mode: str) -> None:
    temporary_attacks("test_claims_all", ClaimsAll)
    model, x, y = linear_problem(n=12)
    out = create_attack("test_claims_all", mode=mode)(model, x, y, eps=EPS, batch_size=5, progress=False)
    assert not out.success.any()  # every claim is false: robust accuracy is the clean one (100%)
    assert out.unverified == 12
    if mode == "far":  # the far points are misclassified: only the ball rejects them
        with torch.no_grad():
            assert (model(out.x_adv).argmax(1) != y).any()


def test_lying_attack_keeps_its_true_breaks(temporary_attacks) -> None:
    temporary_attacks("test_claims_all", ClaimsAll)
    model, x, y = linear_problem(n=16)
    eps = 1.4 * float(linear_min_norms(model, x, y)[1].median())  # PGD-10 breaks most points here, not all
    out = create_attack("test_claims_all", mode="pgd")(model, x, y, eps=eps, batch_size=16, progress=False)
    truth = _truth(model, x, y, out.x_adv, eps)
    assert 0 < truth.sum() < 16, "the reference problem should have some robust and some broken points"
    assert out.success.numpy().tolist() == truth.tolist()
    assert out.unverified == 16 - int(truth.sum())


def test_sweep_and_check_count_unverified(temporary_attacks) -> None:
    temporary_attacks("test_claims_all", ClaimsAll)
    model, x, y = linear_problem(n=6)
    outs = create_attack("test_claims_all", mode="clean")(model, x, y, eps=[EPS, 2 * EPS], batch_size=4, progress=False)
    assert [o.unverified for o in outs] == [6, 6] and not any(o.success.any() for o in outs)
    part = Part("test@linf:0.05", "test_claims_all", "test", "linf", EPS, [True] * 6, [True] * 6, None, 0.0, 0, 0,
                unverified=outs[0].unverified)
    check = breaks_verified([part])
    assert check["passed"] is False and check["count"] == 6 and "test@linf:0.05: 6 claimed breaks" in check["detail"]
    honest = Part("pgd@linf:0.05", "pgd", "pgd", "linf", EPS, [True] * 6, [True] * 6, None, 0.0, 0, 0)
    assert breaks_verified([honest])["passed"] is True


def test_minimum_norm_claims_must_match_their_norm(temporary_attacks) -> None:
    temporary_attacks("test_shrinks_norms", ShrinksNorms)
    model, x, y = linear_problem(n=8)
    honest = create_attack("test_shrinks_norms", factor=1.0)(model, x, y, batch_size=8, progress=False)
    assert honest.unverified == 0 and honest.success.all() and torch.isfinite(honest.norms).all()
    liar = create_attack("test_shrinks_norms", factor=0.5)(model, x, y, batch_size=8, progress=False)
    assert liar.unverified == 8 and not liar.success.any() and torch.isinf(liar.norms).all()
    # read at a radius: a norm that was not verified breaks nothing
    assert not create_attack("test_shrinks_norms", factor=0.5)(model, x, y, eps=1.0, progress=False).success.any()


class Flipping(nn.Module):
    """A model whose prediction alternates between passes: the odd passes shift every logit toward
    the class after the true one (a stand-in for a randomised defence whose verdicts do not repeat)."""

    def __init__(self, model: nn.Module, y: Tensor) -> None:
        super().__init__()
        self.model, self.y, self.calls = model, y, 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        z = self.model(x)
        if self.calls % 2 == 1:
            z = z + 100.0 * nn.functional.one_hot((self.y[: len(x)] + 1) % z.shape[1], z.shape[1])
        return z


@dataclass(frozen=True, kw_only=True)
class OnePass(Attack):
    """Returns the clean input, claiming success where one forward pass misclassified it."""

    def run(self, model, x, y, *, eps, generator):  # type: ignore[override]
        with torch.no_grad():
            return AttackOutput(x.clone(), model(x).argmax(1) != y)


def test_randomised_model_claims_are_counted_unverified(temporary_attacks) -> None:
    temporary_attacks("test_one_pass", OnePass)
    base, x, y = linear_problem(n=8)
    model = Flipping(base, y)
    out = create_attack("test_one_pass")(model, x, y, eps=EPS, batch_size=8, progress=False)
    assert out.unverified == 8 and not out.success.any()

    class Noisy(nn.Module):  # logits plus noise as large as their spread: verdicts change between passes
        def __init__(self) -> None:
            super().__init__()
            self.g = torch.Generator().manual_seed(0)

        def forward(self, t: Tensor) -> Tensor:
            z = base(t)
            return z + 3 * z.std() * torch.randn(z.shape, generator=self.g)

    base2, x2, y2 = linear_problem(n=64, seed=1)
    base = base2
    out = create_attack("test_one_pass")(Noisy(), x2, y2, eps=EPS, batch_size=64, progress=False)
    assert out.unverified > 0
    assert out.unverified + int(out.success.sum()) > int(out.success.sum())


def test_verification_restores_the_model_mode(temporary_attacks) -> None:
    temporary_attacks("test_claims_all", ClaimsAll)
    model, x, y = linear_problem(n=4)
    seen = []
    model.register_forward_pre_hook(lambda m, a: seen.append(m.training))
    model.train()
    create_attack("test_claims_all", mode="pgd")(model, x, y, eps=EPS, progress=False)
    assert model.training is True and seen[-1] is False  # the verifying pass ran in eval mode


@pytest.mark.parametrize("name,norm", [("pgd", "linf"), ("pgd", "l2"), ("fgsm", "linf"), ("deepfool_linf", "linf"),
                                       ("deepfool_l2", "l2"), ("apgd_ce", "linf"), ("ddn", "l2")])
def test_honest_attacks_have_no_unverified_claims(name: str, norm: str) -> None:
    model, x, y = linear_problem(n=16)
    eps = EPS if norm == "linf" else 1.0
    opts = {"norm": norm} if name in ("pgd", "apgd_ce") else {}
    out = create_attack(name, **opts)(model, x, y, eps=eps, batch_size=8, progress=False)
    assert out.unverified == 0 and out.success.any()


def test_check_breaks_names_each_failure() -> None:
    model, x, y = linear_problem(n=4)
    adv = x.clone()
    adv[0, 0, 0, 0] = -0.5
    adv[1] = (x[1] + 0.2).clamp(0, 1)
    ok, why = check_breaks(model, x, adv, y, norm="linf", eps=EPS, norms=torch.tensor([0.0, 0.2, 0.3, 0.0]))
    assert ok.tolist() == [False] * 4
    assert why == [OUT_OF_BOX, OUT_OF_BALL, NORM_MISMATCH, NOT_MISCLASSIFIED]
    # the float32 rounding of x + eps is inside the stated tolerance; a step of 1e-4 beyond is not
    assert check_breaks(model, x[2:3], (x[2:3] + EPS).float(), y[2:3], norm="linf", eps=EPS)[1] != [OUT_OF_BALL]
    assert check_breaks(model, x[2:3], x[2:3] + EPS + 1e-4, y[2:3], norm="linf", eps=EPS)[1] == [OUT_OF_BALL]


@pytest.mark.parametrize("target", ["missing", "file", "empty_folder"])
def test_verify_and_reproduce_refuse_what_is_not_a_run_in_one_line(tmp_path, capsys, target) -> None:
    from robustbench_lite.cli import main

    path = tmp_path / target
    if target == "file":
        path.write_text("{}")
    elif target == "empty_folder":
        path.mkdir()
    for argv in (["verify", str(path)], ["reproduce", str(path), "--out", str(tmp_path / "new")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("bench: error:") and "result.json" in err[0], err
    assert not (tmp_path / "new").exists()
