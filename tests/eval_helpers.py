"""Plain helpers of the evaluation tests, imported normally (the fixtures are in conftest.py).

- ``Counting``: wraps a model and counts the example-rows through its forward passes.
- ``Rounding``: wraps a model, quantising its input with torch.round (zero input gradient).
- ``linear_problem``: a random linear classifier and inputs near the middle of the box (closed forms).
- ``linear_min_norms``: the closed-form smallest L2 and Linf perturbations of that problem.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


class Counting(nn.Module):
    """Counts example-rows through forward passes (``rows``): the tests' own cost measure,
    independent of the runner's CountingModel."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.rows = model, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += len(x)
        return self.model(x)


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


@dataclass
class HandPart:
    """A hand-made per-example part (the shape of evaluations.parts.Part) for the worst-case rule's tests."""

    attack: str
    label: str
    norm: str
    eps: float
    robust: list[bool]
    attacked: list[bool]
    norms: list[float] | None = None
    seconds: float = 0.0
    forwards: int = 0
    backwards: int = 0
    config: dict = field(default_factory=dict)


def run_cli(capsys: Any, *argv: Any) -> tuple[int, str, str]:
    """``bench argv...`` in this process: (exit code, stdout, stderr)."""
    from robustbench_lite.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_clear_error(code: int, err: str, *needles: str, strict: bool = True) -> str:
    """Exit 2, no traceback, exactly one error line (``bench: error:``; ``strict=False``: any
    ``error:`` line, argparse's ``bench eval: error:`` included) holding every needle; returns it."""
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines()
             if (line.startswith("bench: error:") if strict else "error:" in line)]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]
