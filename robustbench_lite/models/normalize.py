"""Input normalisation inside the model, so attacks work in [0,1] pixel space.

Every input of a model is a float tensor in [0,1] (NCHW), and ``eps`` is measured there. A network
trained on normalised inputs ``(x - mean) / std`` gets that step inside the model:

- :class:`Normalization` is the step itself; its ``mean``/``std`` are non-persistent buffers, so a
  model holding one has the same state_dict keys as without it (checkpoints keep their layout).
  DeepMind's WideResNets (``models/dm.py``) and the torchvision/timm wrappers (``models/hub.py``)
  hold one.
- :func:`apply_normalize` gives any model a normalisation: it sets the values of the model's own
  :class:`Normalization` when it has exactly one, else wraps the model in :class:`NormalizedModel`,
  whose state_dict is the wrapped model's (no ``net.`` prefix). ``bench eval --normalize`` calls it.
- :func:`parse_normalize` reads ``--normalize``: ``MEAN,STD`` (one value each for grey images),
  ``M1,M2,M3,S1,S2,S3`` (three means then three stds), or a dataset name (``cifar10``,
  ``cifar100``, ``imagenet``, ``mnist``).

Example::

    mean, std = parse_normalize("cifar10", channels=3)
    model = apply_normalize(create_model("wrn_28_10", num_classes=10), mean, std)
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from ..errors import BenchError
from .base import BenchModel, Features, hide_inner_prefix

# (mean, std) per channel as the field's code uses them (RobustBench, DeepMind, torchvision)
DATASET_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "mnist": ((0.1307,), (0.3081,)),
}


class Normalization(nn.Module):
    """``(x - mean) / std`` per channel; x: (N, C, H, W) in [0,1]. The buffers are not in the state_dict."""

    mean: Tensor
    std: Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(1, len(mean), 1, 1), persistent=False)
        self.register_buffer("std", torch.ones(1, len(std), 1, 1), persistent=False)
        self.set(mean, std)

    def set(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Replace the values in place (device and dtype kept); a single value applies to every channel."""
        _check(mean, std)
        with torch.no_grad():
            m = torch.as_tensor([float(v) for v in mean], dtype=self.mean.dtype, device=self.mean.device)
            s = torch.as_tensor([float(v) for v in std], dtype=self.std.dtype, device=self.std.device)
            self.mean = m.view(1, -1, 1, 1).clone()
            self.std = s.view(1, -1, 1, 1).clone()

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class NormalizedModel(BenchModel):
    """``net(normalize(x))``: any model given a normalisation step in front. Its state_dict is ``net``'s
    own (the wrapper adds no key and no prefix); features are ``net``'s features of the normalised input."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.net = net
        self.num_classes = int(getattr(net, "num_classes", 0))
        self.normalize = Normalization(mean, std)
        hide_inner_prefix(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.normalize(x))

    def features(self, x: Tensor) -> Features:
        if not isinstance(self.net, BenchModel):
            raise BenchError(f"the normalised model {type(self.net).__name__} exposes no features; register it as a BenchModel.")
        return self.net.features(self.normalize(x))

    def forward_features(self, x: Tensor) -> Tensor:
        return self.net.forward_features(self.normalize(x))  # type: ignore[operator]

    def pool(self, fmap: Tensor) -> Tensor:
        return self.net.pool(fmap)  # type: ignore[operator]

    def head(self, z: Tensor) -> Tensor:
        return self.net.head(z)  # type: ignore[operator]


def _check(mean: Sequence[float], std: Sequence[float]) -> None:
    if len(mean) != len(std) or not len(mean):
        raise BenchError(f"a normalisation needs as many stds as means, got {len(mean)} means and {len(std)} stds.")
    if not all(math.isfinite(float(v)) for v in (*mean, *std)):
        raise BenchError("every normalisation mean and std must be a finite number.")
    if any(float(s) <= 0 for s in std):
        raise BenchError(f"every normalisation std must be positive, got {list(std)}.")


def parse_normalize(text: str, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``--normalize`` text -> (means, stds), one per channel of ``channels`` (or one for all)."""
    t = str(text).strip().lower()
    if t in DATASET_STATS:
        mean, std = DATASET_STATS[t]
    else:
        parts = [p.strip() for p in t.split(",")]
        try:
            vals = [float(p) for p in parts]
        except ValueError:
            raise BenchError(f"--normalize {text!r} is neither MEAN,STD numbers (such as 0.5,0.5, or three means then three "
                             f"stds) nor a dataset name ({', '.join(DATASET_STATS)}).") from None
        if len(vals) % 2 or len(vals) // 2 not in (1, channels):
            raise BenchError(f"--normalize {text!r} has {len(vals)} values; give 2 (one mean, one std) or {2 * channels} "
                             f"({channels} means then {channels} stds).")
        mean, std = tuple(vals[:len(vals) // 2]), tuple(vals[len(vals) // 2:])
    if len(mean) not in (1, channels):
        raise BenchError(f"--normalize {text!r} is for {len(mean)}-channel images, these have {channels}.")
    _check(mean, std)
    return mean, std


def apply_normalize(model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> nn.Module:
    """The model with this normalisation: its own :class:`Normalization` set to it when it has exactly
    one (so a DeepMind WRN or a torchvision model is not normalised twice), else wrapped in
    :class:`NormalizedModel`. The state_dict keys stay the same either way."""
    own = [m for m in model.modules() if isinstance(m, Normalization)]
    if len(own) == 1:
        own[0].set(mean, std)
        return model
    return NormalizedModel(model, mean, std)


def applied_normalization(model: nn.Module) -> dict[str, list[float]] | None:
    """The input normalisation a model applies, as recorded in result.json: ``{"mean": [...], "std": [...]}``
    of its outermost :class:`Normalization` (the one :func:`apply_normalize` sets), or None when it has none."""
    for m in model.modules():
        if isinstance(m, Normalization):
            return {"mean": [round(float(v), 6) for v in m.mean.flatten()], "std": [round(float(v), 6) for v in m.std.flatten()]}
    return None
