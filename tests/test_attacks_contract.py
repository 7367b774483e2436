"""Contract tests over EVERY registered attack: shape, dtype, range, eps ball, minimum-norm
norms, model untouched, determinism, and that the attack actually breaks a natural model."""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass

import pytest
import torch

from robustbench_lite.errors import BenchError
from robustbench_lite.evaluations.attacks import ATTACKS, Attack, create_attack
from robustbench_lite.evaluations.norms import get_norm
from robustbench_lite.utils import make_generator


EPS = {"linf": 0.3, "l2": 2.0, "l1": 10.0}
FAST = {"autoattack": {"version": "custom", "attacks": ("apgd-ce",)}, "square": {"n_queries": 1000},
        "ddn": {"steps": 30}, "min_linf": {"steps": 10, "search_steps": 4},
        "deepfool_linf": {"steps": 20}, "deepfool_l2": {"steps": 20}, "mim": {"steps": 5}, "pgd": {"steps": 10},
        "apgd_ce": {"steps": 20}, "apgd_dlr": {"steps": 20}, "apgd_t": {"steps": 10, "n_target_classes": 3},
        "margin_topk": {"steps": 10, "k": 2}, "a3": {"restarts": 2, "steps": 10}}


def _cases() -> list:
    out = []
    for name in ATTACKS.names():
        cls = ATTACKS.get(name)
        for norm in cls.norms_supported:
            if norm == "l1" and name in ("autoattack",):
                continue  # pyautoattack's L1 standard version needs many restarts: out of the unit-test budget
            slow = name in ("autoattack", "autoattack_rand")  # pyautoattack's setup and FAB dominate: ~10-45 s per case on 2 cores
            out.append(pytest.param(name, norm, marks=pytest.mark.slow) if slow else (name, norm))
    return out


def _make(name: str, norm: str, surrogate: str):
    opts = dict(FAST.get(name, {}))
    if name == "transfer":
        opts["surrogate"] = surrogate
    return create_attack(name, norm=norm, **opts)


@pytest.mark.parametrize("name,norm", _cases())
def test_attack_contract(name, norm, eval_model, eval_batch, eval_natural_ckpt):
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


_CHECKED = "int, float, str, bool, a Literal or tuple[str, ...], optionally | None"


def _checked_hint(hint: object) -> bool:
    """A hint the option check of ``Attack.__post_init__`` enforces (a suite value of any other type
    would reach the attack unchecked)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) != 1:
            return False
        hint = args[0]
    return hint in (int, float, str, bool) or typing.get_origin(hint) is typing.Literal or hint == tuple[str, ...]


# Options a user must set (their default is a refused placeholder); the docstring must name them.
REQUIRED = {"transfer": {"surrogate": "surrogate.pt"}}


def _documentation_problems(cls: type, required: dict[str, object] | None = None) -> list[str]:
    """What keeps an attack class from documenting its defaults: its own hand-written docstring
    (``@dataclass`` writes the bare signature into a class without one) naming every ``required``
    option, every option with a type hint the option check enforces and a default, and those
    defaults (plus the required options) valid at every norm it supports."""
    problems = []
    required = required or {}
    doc = cls.__dict__.get("__doc__") or ""
    if doc.startswith(cls.__name__ + "(") or len(doc.strip()) < 40:
        problems.append("no docstring of its own (at least a sentence)")
    problems += [f"required option {k!r} not named in the docstring" for k in required if f"``{k}``" not in doc]
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            problems.append(f"option {f.name!r} has no default")
        if not _checked_hint(hints.get(f.name)):
            problems.append(f"option {f.name!r}: type hint {hints.get(f.name)!r} is not {_CHECKED}")
    if not cls.norms_supported:
        problems.append("no supported norm")
    if not problems:
        for norm in cls.norms_supported:
            try:
                get_norm(norm)
                cls(norm=norm, **required)
            except BenchError as e:
                problems.append(f"defaults invalid at {norm}: {e}")
    return problems


@pytest.mark.parametrize("name", ATTACKS.names())
def test_every_attack_has_documented_typed_defaults(name):
    assert _documentation_problems(ATTACKS.get(name), REQUIRED.get(name)) == []


@dataclass(frozen=True, kw_only=True)
class _Documented(Attack):
    """A well-formed attack for the test below: typed options with valid defaults."""

    steps: int = 10
    step_size: float | None = None
    loss: typing.Literal["ce", "margin"] = "ce"


@dataclass(frozen=True, kw_only=True)
class _Undocumented(Attack):
    steps: int = 10


@dataclass(frozen=True, kw_only=True)
class _NoDefault(_Documented):
    """An attack whose ``radius`` option has no default: ``create_attack`` without it fails."""

    radius: float


@dataclass(frozen=True, kw_only=True)
class _Untyped(_Documented):
    """An attack whose ``sizes`` option is a plain list: a suite can pass anything through it."""

    sizes: list = dataclasses.field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class _ZeroSteps(_Documented):
    """An attack whose default ``steps`` of 0 does nothing (the option check refuses it)."""

    steps: int = 0


def test_the_documentation_contract_catches_broken_attacks():
    """The check above can fail: each broken (unregistered) class is caught for its own reason."""
    assert _documentation_problems(_Documented) == []
    assert _documentation_problems(_Documented, {"steps": 3}) == ["required option 'steps' not named in the docstring"]
    assert _documentation_problems(_ZeroSteps, {"steps": 3}) == []  # a required option the user sets
    assert _documentation_problems(_Undocumented) == ["no docstring of its own (at least a sentence)"]
    assert _documentation_problems(_NoDefault) == ["option 'radius' has no default"]
    assert _documentation_problems(_Untyped) == [f"option 'sizes': type hint <class 'list'> is not {_CHECKED}"]
    zero = _documentation_problems(_ZeroSteps)
    assert [p.split(":")[0] for p in zero] == [f"defaults invalid at {n}" for n in ("linf", "l2", "l1")]
    assert all("option 'steps' must be a positive integer, got 0" in p for p in zero)
