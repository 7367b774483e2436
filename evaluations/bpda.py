"""Backward Pass Differentiable Approximation (BPDA; Athalye, Carlini & Wagner, ICML 2018).

A preprocessing defense ``f(g(x))`` whose ``g`` (quantisation, JPEG-like compression, a denoiser
outside autograd) has a zero, missing or non-finite gradient masks every gradient attack. BPDA
keeps the forward pass (and so every verdict) on the true model and replaces ``g`` on the backward
pass by a differentiable approximation: the identity when ``g(x) ~ x``, or a user's function.

- :func:`find_boundary` finds where the gradient dies: the first submodule, in forward order,
  whose input receives a usable input gradient while the model's input does not (forward pre-hooks
  record the order and the inputs; an input cut from the graph is re-attached so its gradient is
  measured). It returns ``None`` when no submodule's input has a usable gradient either.
- :class:`BPDAModel` is the model with the boundary's input ``u = g(x)`` replaced, on the backward
  pass only, by ``approx(x)`` (the identity by default): ``u' = approx(x) + (u - approx(x)).detach()``.
  The identity needs the boundary's input to have the shape of the model's input.

Example::

    name = find_boundary(model, x, y)             # e.g. "net" for Sequential(Quantise(), net)
    adv = create_attack("pgd")(BPDAModel(model, name), x, y, eps=0.3)
    robust = predict(model, adv.x_adv, 128) == y  # the verdict on the true model
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from robustbench_lite.errors import BenchError

from .attack_paths import unusable_gradients
from .losses import margin_loss
from .parts import keep_input_graph

Approx = Callable[[Tensor], Tensor]


def _first_tensor(args: tuple) -> int | None:
    for i, a in enumerate(args):
        if isinstance(a, Tensor) and a.is_floating_point():
            return i
    return None


def find_boundary(model: nn.Module, x: Tensor, y: Tensor) -> str | None:
    """The dotted name of the first submodule (forward order) whose input gets a usable gradient of
    the margin loss on the rows where the model's input gets none; None when the model's input
    gradient is usable everywhere, or when no submodule's is usable on those rows."""
    seen: list[tuple[str, Tensor]] = []
    names = {m: n for n, m in model.named_modules() if n}
    handles = []

    def pre_hook(mod: nn.Module, args: tuple) -> tuple | None:
        i = _first_tensor(args)
        if i is None or mod not in names or any(n == names[mod] for n, _ in seen):
            return None
        t = args[i]
        if not t.requires_grad:  # cut from the graph (numpy, .detach()): measure its gradient all the same
            t = t.detach().requires_grad_(True)
        seen.append((names[mod], t))
        return (*args[:i], t, *args[i + 1:])

    for m in names:
        handles.append(m.register_forward_pre_hook(pre_hook))
    try:
        xg = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            out = keep_input_graph(model(xg), xg)
            inputs = [xg] + [t for _, t in seen]
            grads = torch.autograd.grad(margin_loss(out, y).sum(), inputs, allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    g0 = torch.zeros_like(x) if grads[0] is None else grads[0]
    dead = unusable_gradients(g0)
    if not bool(dead.any()):
        return None
    for (name, t), g in zip(seen, grads[1:]):
        if g is None or len(g) != len(x):
            continue
        if bool((~unusable_gradients(g) & dead).any()):
            return name
    return None


class BPDAModel(nn.Module):
    """``model`` whose submodule ``boundary`` sees, on the backward pass only, ``approx(x)`` in place
    of its true input (identity when ``approx`` is None): the forward values are the true model's."""

    def __init__(self, model: nn.Module, boundary: str, approx: Approx | None = None) -> None:
        super().__init__()
        self.model = model
        self.boundary = boundary
        self.approx = approx
        self.training = bool(getattr(model, "training", False))
        self.target = boundary_module(model, boundary)
        self._x: Tensor | None = None
        self._used = False

    def _pre_hook(self, _mod: nn.Module, args: tuple) -> tuple | None:
        i = _first_tensor(args)
        if i is None or self._x is None or self._used:
            return None
        self._used = True  # only the first call in a forward pass (a module may be called again later)
        u, x = args[i], self._x
        a = x if self.approx is None else self.approx(x)
        if a.shape != u.shape:
            raise BenchError(f"BPDA at {self.boundary!r}: its input has shape {tuple(u.shape)} but the "
                             f"{'model input' if self.approx is None else 'approximation'} has {tuple(a.shape)}; "
                             f"give a differentiable approximation with --bpda {self.boundary}=file.py:function.")
        a = a.to(u.dtype)
        return (*args[:i], a + (u.detach() - a.detach()), *args[i + 1:])

    def forward(self, x: Tensor) -> Tensor:
        if not x.requires_grad:
            return self.model(x)
        self._x, self._used = x, False
        h = self.target.register_forward_pre_hook(self._pre_hook)
        try:
            return self.model(x)
        finally:
            h.remove()
            self._x = None


def boundary_module(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` (dotted), or a one-sentence error naming a few that exist."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        known = [n for n, _ in model.named_modules() if n][:12]
        raise BenchError(f"--bpda: the model has no submodule {name!r}; some that it has: "
                         f"{', '.join(known) or '(none: the model has no submodules)'}.") from None


def parse_bpda(text: str) -> tuple[str, str | None]:
    """``MODULE`` or ``MODULE=file.py:function`` -> (module name, approximation spec or None)."""
    name, _, approx = str(text).partition("=")
    name, approx = name.strip(), approx.strip()
    if not name:
        raise BenchError(f"--bpda {text!r} must name a submodule, e.g. --bpda net or --bpda net=approx.py:smooth.")
    if _ and ":" not in approx:
        raise BenchError(f"--bpda {text!r}: the approximation must look like file.py:function or module:function.")
    return name, approx or None


def load_approx(spec: str) -> Approx:
    """A user's differentiable approximation ``file.py:function`` / ``module:function`` (loading it is
    the user's explicit choice, as with ``--arch file.py:callable``)."""
    from robustbench_lite.models.registry import load_callable

    try:
        return load_callable(spec)  # type: ignore[return-value]
    except BenchError as e:
        raise BenchError(str(e).replace("--arch", "--bpda")) from None
