"""Shared fixtures of the evaluation tests (import the fixtures you use into the test module).

- ``eval_natural_ckpt``: small_cnn naturally trained 2 epochs on MNIST-5k (conftest's ``mnist_natural_ckpt``).
- ``eval_batch``: 32 class-balanced MNIST-5k test examples (x in [0,1], y).
- ``linear_problem``: a random linear classifier and inputs near the middle of the box (closed forms).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from robustbench_lite.checkpoint import load_checkpoint
from robustbench_lite.data import class_balanced_indices, get_dataset


@pytest.fixture(scope="session")
def eval_natural_ckpt(mnist_natural_ckpt: Path) -> Path:
    """The 2-epoch natural MNIST-5k model (1 epoch left a model at chance level with predictions
    collapsed onto one class on some CPUs, which the prediction checks rightly flag)."""
    return mnist_natural_ckpt


@pytest.fixture(scope="session")
def eval_model(eval_natural_ckpt: Path) -> nn.Module:
    return load_checkpoint(eval_natural_ckpt).model.eval()


@pytest.fixture(scope="session")
def eval_batch() -> tuple[torch.Tensor, torch.Tensor]:
    d = get_dataset("mnist5k").load("test")
    return d.batch(class_balanced_indices(d.targets, 32))


class Rounding(nn.Module):
    """Quantises the input to 1/255 with torch.round: the forward pass is the wrapped model's on
    MNIST (already 8-bit), the input gradient is exactly zero (gradient masking)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(torch.round(x * 255) / 255)


def linear_problem(n: int = 12, seed: int = 0, classes: int = 10) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A linear model on 1x28x28 inputs in the middle of the box and its own labels."""
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, classes)).eval()
    with torch.no_grad():
        model[1].weight.copy_(0.05 * torch.randn(classes, 784, generator=g))
        model[1].bias.zero_()
    x = 0.5 + 0.05 * (2 * torch.rand(n, 1, 28, 28, generator=g) - 1)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def linear_min_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Closed-form smallest L2 and Linf perturbations to the nearest decision boundary (box ignored),
    and the largest per-pixel change either optimum makes (the box does not bind when it is < 0.45)."""
    w = model[1].weight.detach()
    with torch.no_grad():
        z = model(x)
    l2, linf, pixel = [], [], 0.0
    for i in range(len(x)):
        m = z[i, y[i]] - z[i]  # margins to every class
        d = w - w[y[i]]
        keep = torch.arange(len(w)) != y[i]
        r2 = m[keep] / d[keep].norm(dim=1)
        k = int(r2.argmin())
        l2.append(r2[k])
        pixel = max(pixel, float(r2[k] * d[keep][k].abs().max() / d[keep][k].norm()))
        linf.append((m[keep] / d[keep].abs().sum(dim=1)).min())
        pixel = max(pixel, float(linf[-1]))
    return torch.stack(l2), torch.stack(linf), pixel
