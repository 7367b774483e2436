"""Compatibility shims for third-party attack libraries.

advertorch 0.2.3 imports ``zero_gradients`` from ``torch.autograd.gradcheck``, which torch removed
in 1.9. :func:`import_advertorch` installs a faithful replacement (zero and detach the ``.grad`` of
a tensor or of every tensor in an iterable) before importing advertorch, so the library loads on
current torch. Use it wherever advertorch is imported::

    from robustbench_lite.evaluations._compat import import_advertorch
    advertorch = import_advertorch()
    from advertorch.attacks import LinfPGDAttack
"""
from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

import torch


def zero_gradients(x: Any) -> None:
    """What ``torch.autograd.gradcheck.zero_gradients`` did before torch 1.9."""
    if isinstance(x, torch.Tensor):
        if x.grad is not None:
            x.grad.detach_()
            x.grad.zero_()
    elif isinstance(x, Iterable):
        for elem in x:
            zero_gradients(elem)


def import_advertorch() -> ModuleType:
    import importlib

    # ``import torch.autograd.gradcheck as gc`` would bind the gradcheck *function*
    gc = importlib.import_module("torch.autograd.gradcheck")
    if not hasattr(gc, "zero_gradients"):
        gc.zero_gradients = zero_gradients  # type: ignore[attr-defined]
    import advertorch
    import advertorch.attacks  # noqa: F401

    return advertorch
