"""Lp norms as strategy objects: random start, steepest-ascent step, projection.

PGD is written once (:mod:`evaluations.pgd`) against this interface for Linf, L2 and L1.
All tensors are (N, ...) perturbations; ``eps`` is a float or an (N,) tensor.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from robustbench_lite.errors import BenchError

from . import draws
from .draws import AnyGenerator


def _view(v: Tensor | float, like: Tensor) -> Tensor:
    if isinstance(v, Tensor) and v.ndim == 1:
        return v.view(-1, *([1] * (like.ndim - 1))).to(like)
    return torch.as_tensor(v, dtype=like.dtype, device=like.device)


def _flat_norm(x: Tensor, p: float) -> Tensor:
    return x.flatten(1).norm(p=p, dim=1)


class Norm:
    name: str = ""
    p: float = 0.0

    def norm(self, delta: Tensor) -> Tensor:
        return _flat_norm(delta, self.p)

    def random_init(self, shape: torch.Size, eps: Tensor | float, generator: AnyGenerator,
                    device: torch.device) -> Tensor:
        """A random start in the ball, (N, ...); a :class:`~evaluations.draws.RowGenerator` draws
        row ``i`` from row ``i``'s own stream."""
        raise NotImplementedError

    def step(self, grad: Tensor, step_size: Tensor | float, x_adv: Tensor) -> Tensor:
        raise NotImplementedError

    def project(self, delta: Tensor, eps: Tensor | float) -> Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class LinfNorm(Norm):
    name: str = "linf"
    p: float = float("inf")

    def random_init(self, shape, eps, generator, device):  # type: ignore[override]
        u = draws.rand(shape, generator, device)
        return (2 * u - 1) * _view(eps, u)

    def step(self, grad, step_size, x_adv):  # type: ignore[override]
        return grad.sign() * _view(step_size, grad)

    def project(self, delta, eps):  # type: ignore[override]
        e = _view(eps, delta)
        return torch.maximum(torch.minimum(delta, e), -e)


@dataclass(frozen=True)
class L2Norm(Norm):
    name: str = "l2"
    p: float = 2.0

    def random_init(self, shape, eps, generator, device):  # type: ignore[override]
        d = draws.randn(shape, generator, device)
        n = shape[0]
        dim = d[0].numel()
        r = draws.rand((n,), generator, device) ** (1.0 / dim)
        d = d / _flat_norm(d, 2).clamp_min(1e-12).view(-1, *([1] * (d.ndim - 1)))
        return d * _view(r, d) * _view(eps, d)

    def step(self, grad, step_size, x_adv):  # type: ignore[override]
        n = _flat_norm(grad, 2).clamp_min(1e-12)
        return grad / _view(n, grad) * _view(step_size, grad)

    def project(self, delta, eps):  # type: ignore[override]
        n = _flat_norm(delta, 2)
        factor = torch.clamp(_view(eps, n) / n.clamp_min(1e-12), max=1.0)
        return delta * _view(factor, delta)


def project_l1_ball(delta: Tensor, eps: Tensor | float) -> Tensor:
    """Exact Euclidean projection of each row onto the L1 ball (Duchi et al. 2008)."""
    shape = delta.shape
    v = delta.flatten(1)
    e = _view(eps, v[:, 0]).expand(v.shape[0]).reshape(-1) if isinstance(eps, Tensor) else torch.full((v.shape[0],), float(eps), device=v.device, dtype=v.dtype)
    outside = v.abs().sum(1) > e
    if not outside.any():
        return delta
    a = v[outside].abs()
    mu = a.sort(dim=1, descending=True).values
    cums = mu.cumsum(1)
    j = torch.arange(1, a.shape[1] + 1, device=a.device, dtype=a.dtype)
    cond = mu - (cums - e[outside, None]) / j > 0
    rho = cond.float().cumsum(1).argmax(1)  # last index where cond holds
    theta = (cums.gather(1, rho[:, None]) - e[outside, None]) / (rho[:, None] + 1).to(a.dtype)
    out = v.clone()
    out[outside] = v[outside].sign() * (a - theta).clamp_min(0)
    return out.view(shape)


@dataclass(frozen=True)
class L1Norm(Norm):
    """Sparse L1 steepest ascent (Tramer & Boneh 2019, SLIDE): move the top ``1-q`` fraction of
    coordinates by gradient magnitude (skipping those pinned at the [0,1] box boundary)."""

    name: str = "l1"
    p: float = 1.0
    q: float = 0.99

    def random_init(self, shape, eps, generator, device):  # type: ignore[override]
        e = draws.exponential(shape, generator)
        s = draws.randint(0, 2, shape, generator) * 2 - 1
        d = (e * s).to(device)
        dim = d[0].numel()
        r = draws.rand((shape[0],), generator, device) ** (1.0 / dim)
        d = d / _flat_norm(d, 1).clamp_min(1e-12).view(-1, *([1] * (d.ndim - 1)))
        return d * _view(r, d) * _view(eps, d)

    def step(self, grad, step_size, x_adv):  # type: ignore[override]
        g = grad.clone()
        g[((x_adv <= 0) & (g < 0)) | ((x_adv >= 1) & (g > 0))] = 0
        flat = g.flatten(1).abs()
        k = max(1, int(round((1 - self.q) * flat.shape[1])))
        thresh = flat.topk(k, dim=1).values[:, -1:]
        mask = (flat >= thresh) & (flat > 0)
        e = g.flatten(1).sign() * mask
        e = e / e.abs().sum(1, keepdim=True).clamp_min(1)
        return e.view_as(grad) * _view(step_size, grad)

    def project(self, delta, eps):  # type: ignore[override]
        return project_l1_ball(delta, eps)


NORMS: dict[str, Norm] = {"linf": LinfNorm(), "l2": L2Norm(), "l1": L1Norm()}


def get_norm(name: str | Norm) -> Norm:
    if isinstance(name, Norm):
        return name
    try:
        return NORMS[name]
    except KeyError:
        raise BenchError(f"unknown norm {name!r}; known: {', '.join(NORMS)}.") from None
