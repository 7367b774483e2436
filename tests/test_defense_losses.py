"""The recipes' loss terms against hand-computed values on tiny tensors (numpy / explicit formulas)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from robustbench_lite.defenses.losses import (act_attack_loss, act_losses, angular_distance, discriminator_loss, feature_loss,
                             mimicry_kl, noisy_replay_mask, nr_threshold, trades_kl)
from robustbench_lite.errors import BenchError

A = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
B = np.array([[0.3, 0.1, -0.2], [2.0, 0.0, 1.0]])
Y = np.array([1, 2])


def softmax(z: np.ndarray, t: float = 1.0) -> np.ndarray:
    e = np.exp(z / t - (z / t).max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def kl_rows(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return (p * (np.log(p) - np.log(q))).sum(1)


def ce_rows(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    return -np.log(softmax(z)[np.arange(len(y)), y])


def t(a: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


def test_trades_kl_value_and_natural_softmax_not_detached() -> None:
    adv, nat = t(A, True), t(B, True)
    got = trades_kl(adv, nat)
    want = kl_rows(softmax(B), softmax(A)).sum() / 2
    assert got.item() == pytest.approx(want, rel=1e-12)
    got.backward()
    assert nat.grad is not None and nat.grad.abs().sum() > 0  # the official loss lets gradients reach f(x)
    assert adv.grad is not None and adv.grad.abs().sum() > 0


@pytest.mark.parametrize("temp", [1.0, 4.0])
def test_mimicry_kl_temperature(temp: float) -> None:
    s, te = t(A, True), t(B, True)
    got = mimicry_kl(s, te, temp)
    want = temp ** 2 * kl_rows(softmax(B, temp), softmax(A, temp)).sum() / 2
    assert got.item() == pytest.approx(want, rel=1e-12)
    got.backward()
    assert te.grad is None  # the teacher's output is a detached target


def test_act_losses_match_equations() -> None:
    g, f, y = t(A, True), t(B, True), torch.tensor(Y)
    alpha, temp = 0.9, 4.0
    l_g, l_f = act_losses(g, f, y, alpha=alpha, temperature=temp)
    want_g = (1 - alpha) * ce_rows(A, Y).mean() + alpha * temp ** 2 * kl_rows(softmax(B, temp), softmax(A, temp)).mean()
    want_f = (1 - alpha) * ce_rows(B, Y).mean() + alpha * temp ** 2 * kl_rows(softmax(A, temp), softmax(B, temp)).mean()
    assert l_g.item() == pytest.approx(want_g, rel=1e-12)
    assert l_f.item() == pytest.approx(want_f, rel=1e-12)
    # each loss reaches only its own model's output
    (gg,) = torch.autograd.grad(l_g, [g], retain_graph=True)
    assert gg.abs().sum() > 0
    assert torch.autograd.grad(l_g, [f], allow_unused=True, retain_graph=True)[0] is None
    assert torch.autograd.grad(l_f, [g], allow_unused=True)[0] is None


@pytest.mark.parametrize("form", ["code", "paper"])
def test_act_attack_loss_per_example(form: str) -> None:
    alpha = 0.9
    fn = act_attack_loss(t(B), alpha=alpha, form=form)
    got = fn(t(A), torch.tensor(Y)).numpy()
    w = (1 - alpha) / 2 if form == "code" else (1 - alpha)
    want = w * ce_rows(A, Y) + alpha * kl_rows(softmax(B), softmax(A))  # no temperature in the attack
    np.testing.assert_allclose(got, want, rtol=1e-12)
    if form == "code":  # the per-example split sums to the code's (1-a) CE_mean + a KL_sum
        total = (1 - alpha) * ce_rows(A, Y).mean() + alpha * kl_rows(softmax(B), softmax(A)).sum()
        assert got.sum() == pytest.approx(total, rel=1e-12)
    with pytest.raises(BenchError):
        act_attack_loss(t(B), alpha=alpha, form="other")


def test_angular_distance_closed_forms() -> None:
    u = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [2.0, 3.0]])
    v = torch.tensor([[-3.0, 0.0], [0.0, 2.0], [1.0, 0.0], [4.0, 6.0]])
    got = angular_distance(u, v)
    want = [0.0, 1.0, 1 - 1 / math.sqrt(2), 0.0]  # |u.v|: opposite vectors are at distance 0
    assert got.tolist() == pytest.approx(want, abs=1e-6)
    # flattens feature maps (N, C, H, W)
    fm = torch.randn(3, 2, 2, 2, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(angular_distance(fm, fm).numpy(), 0.0, atol=1e-6)


def test_noisy_replay_switch() -> None:
    assert nr_threshold(60.0) == pytest.approx(0.5)
    assert nr_threshold(30.0) == pytest.approx(1 - math.sqrt(3) / 2)
    d = torch.tensor([0.0, 0.1, 0.134, 0.2, 1.0])
    tau = nr_threshold(30.0)  # 0.1339746
    assert noisy_replay_mask(d, tau).tolist() == [False, False, True, True, True]
    assert noisy_replay_mask(torch.tensor([tau]), tau).tolist() == [False]  # strictly greater


def sp(x: np.ndarray) -> np.ndarray:
    return np.log1p(np.exp(x))


def test_gan_losses() -> None:
    dc = np.array([0.5, -1.0, 2.0])
    da = np.array([-0.3, 1.5, 0.0])
    c, a = t(dc), t(da)
    assert discriminator_loss(c, a, "dcgan").item() == pytest.approx(sp(-dc).mean() + sp(da).mean(), rel=1e-12)
    assert feature_loss(a, "dcgan").item() == pytest.approx(sp(-da).mean(), rel=1e-12)
    assert discriminator_loss(c, a, "wgan").item() == pytest.approx(da.mean() - dc.mean(), rel=1e-12)
    assert feature_loss(a, "wgan").item() == pytest.approx(-da.mean(), rel=1e-12)
    with pytest.raises(BenchError):
        feature_loss(a, "lsgan")


def test_angular_distance_zero_map_has_finite_gradient() -> None:
    # an all-zero (post-ReLU) feature map must not give NaN gradients (the ARREST NaN on MNIST-5k)
    u = torch.zeros(2, 3, requires_grad=True)
    v = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    d = angular_distance(u, v)
    assert d.tolist() == [1.0, 1.0]
    d.sum().backward()
    assert torch.isfinite(u.grad).all()
