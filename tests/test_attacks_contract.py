"""Contract tests over EVERY registered attack: shape, dtype, range, eps ball, minimum-norm
norms, model untouched, determinism, and that the attack actually breaks a natural model."""
from __future__ import annotations

import pytest
import torch

from evaluations.attacks import ATTACKS, create_attack
from evaluations.norms import get_norm
from robustbench_lite.utils import make_generator

from eval_fixtures import eval_batch, eval_model, eval_natural_ckpt  # noqa: F401

EPS = {"linf": 0.3, "l2": 2.0, "l1": 10.0}
FAST = {"autoattack": {"version": "custom", "attacks": ("apgd-ce",)}, "square": {"n_queries": 1000},
        "ddn": {"steps": 30}, "min_linf": {"steps": 10, "search_steps": 4},
        "deepfool_linf": {"steps": 20}, "deepfool_l2": {"steps": 20}, "mim": {"steps": 5}, "pgd": {"steps": 10}}


def _cases() -> list:
    out = []
    for name in ATTACKS.names():
        cls = ATTACKS.get(name)
        for norm in cls.norms_supported:
            if norm == "l1" and name in ("autoattack",):
                continue  # pyautoattack's L1 standard version needs many restarts: out of the unit-test budget
            slow = name in ("autoattack",)  # pyautoattack's setup and FAB dominate: ~10-45 s per case on 2 cores
            out.append(pytest.param(name, norm, marks=pytest.mark.slow) if slow else (name, norm))
    return out


def _make(name: str, norm: str, surrogate: str):
    opts = dict(FAST.get(name, {}))
    if name == "transfer":
        opts["surrogate"] = surrogate
    return create_attack(name, norm=norm, **opts)


@pytest.mark.parametrize("name,norm", _cases())
def test_attack_contract(name, norm, eval_model, eval_batch, eval_natural_ckpt):  # noqa: F811
    model = eval_model
    x, y = eval_batch
    x, y = x[:12], y[:12]
    with torch.no_grad():
        keep = model(x).argmax(1) == y
    x, y = x[keep], y[keep]
    attack = _make(name, norm, str(eval_natural_ckpt))
    params = [p.detach().clone() for p in model.parameters()]
    flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    eps = None if attack.minimum_norm else EPS[norm]
    out = attack.run(model, x, y, eps=eps, generator=make_generator(0))
    # shape, dtype, range
    assert out.x_adv.shape == x.shape and out.x_adv.dtype == x.dtype
    assert out.success.shape == (len(x),) and out.success.dtype == torch.bool
    assert out.x_adv.min() >= 0 and out.x_adv.max() <= 1
    # success means misclassified
    with torch.no_grad():
        pred = model(out.x_adv).argmax(1)
    assert bool((pred[out.success] != y[out.success]).all())
    dist = get_norm(norm).norm(out.x_adv - x)
    if attack.minimum_norm:
        assert out.norms is not None and out.norms.shape == (len(x),)
        assert torch.allclose(out.norms[out.success].float(), dist[out.success], rtol=1e-4, atol=1e-5)
        assert torch.isinf(out.norms[~out.success]).all()
    else:
        assert bool((dist <= EPS[norm] * (1 + 1e-4) + 1e-5).all()), f"outside the {norm} ball: {dist.max()}"
    # model untouched
    assert not model.training
    assert [p.requires_grad for p in model.parameters()] == flags
    for p, q in zip(model.parameters(), params):
        assert torch.equal(p, q) and p.grad is None
    # it does something: it breaks a natural model at the standard radius (an attack that returns x fails)
    assert out.success.float().mean() >= 0.25, f"{name} broke only {out.success.float().mean():.0%}"
    # deterministic with the same generator seed
    again = attack.run(model, x, y, eps=eps, generator=make_generator(0))
    assert torch.equal(again.x_adv, out.x_adv) and torch.equal(again.success, out.success)


def test_every_attack_has_documented_defaults():
    for name in ATTACKS.names():
        cls = ATTACKS.get(name)
        assert cls.__doc__ and len(cls.__doc__) > 40, name
