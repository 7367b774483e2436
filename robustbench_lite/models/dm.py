"""DeepMind's WideResNet and PreActResNet (Gowal et al. 2020 "Uncovering the limits of adversarial
training"; Rebuffi et al. 2021 "Fixing data augmentation") in their key layout, as RobustBench ships
them (``model_zoo/architectures/dm_wide_resnet.py``, ``dm_rn.py``; deepmind-research
``adversarial_robustness/pytorch/model_zoo.py``).

Differences from the TRADES WideResNet: Swish/SiLU activations (``activation="relu"`` for ReLU),
TensorFlow 'SAME' padding of the strided 3x3 convs (pad right/bottom only), and the dataset's
mean/std inside the model (a :class:`~.normalize.Normalization`, not in the state_dict: CIFAR-100's
when ``num_classes == 100``, else CIFAR-10's; ``bench eval --normalize`` replaces them). Keys::

    dm_wide_resnet:   init_conv.weight, layer.<g>.block.<i>.{batchnorm_0, conv_0, batchnorm_1, conv_1, shortcut},
                      batchnorm.*, logits.{weight,bias}
    dm_preact_resnet: conv_2d.weight, layer_<g>.<i>.{batchnorm_0, conv_2d_1, batchnorm_1, conv_2d_2, shortcut},
                      batchnorm.*, logits.{weight,bias}

Registered: ``dm_wrn_28_10``, ``dm_wrn_70_16``, ``dm_wide_resnet`` (any depth/width,
read off a plain state_dict), ``dm_preact_resnet18``, ``dm_preact_resnet34``, ``dm_preact_resnet``.
Example::

    m = create_model("dm_wide_resnet", num_classes=10, depth=10, width=1)
"""
from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from .base import BenchModel
from .normalize import DATASET_STATS, Normalization
from .registry import register_model

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"swish": F.silu, "silu": F.silu, "relu": F.relu}


def _activation(name: str) -> Callable[[Tensor], Tensor]:
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(_ACTIVATIONS)}, got {name!r}.")
    return _ACTIVATIONS[name]


def _same_pad(x: Tensor, stride: int) -> Tensor:
    """TensorFlow 'SAME' for a 3x3 kernel: (1,1,1,1) at stride 1, (0,1,0,1) at stride 2."""
    if stride == 1:
        return F.pad(x, (1, 1, 1, 1))
    if stride == 2:
        return F.pad(x, (0, 1, 0, 1))
    raise ValueError(f"unsupported stride {stride}.")


class _Block(nn.Module):
    """WideResNet block; where the width changes the shortcut (1x1) reads the activated input."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, act: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.act, self.stride = act, stride
        self.batchnorm_0 = nn.BatchNorm2d(in_planes)
        self.conv_0 = nn.Conv2d(in_planes, out_planes, 3, stride, 0, bias=False)
        self.batchnorm_1 = nn.BatchNorm2d(out_planes)
        self.conv_1 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False) if in_planes != out_planes else None

    def forward(self, x: Tensor) -> Tensor:
        o = self.act(self.batchnorm_0(x))
        out = self.conv_1(self.act(self.batchnorm_1(self.conv_0(_same_pad(o, self.stride)))))
        return out + (x if self.shortcut is None else self.shortcut(o))


class _BlockGroup(nn.Module):
    def __init__(self, n: int, in_planes: int, out_planes: int, stride: int, act: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.block = nn.Sequential(*[_Block(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, act)
                                     for i in range(n)])

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


class _PreActBlock(nn.Module):
    """Pre-activation block; its shortcut is a 3x3 conv on the raw input (SAME-padded)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, act: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.act, self.stride = act, stride
        self.batchnorm_0 = nn.BatchNorm2d(in_planes)
        self.conv_2d_1 = nn.Conv2d(in_planes, out_planes, 3, stride, 0, bias=False)
        self.batchnorm_1 = nn.BatchNorm2d(out_planes)
        self.conv_2d_2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.shortcut = (nn.Conv2d(in_planes, out_planes, 3, stride, 0, bias=False)
                         if stride != 1 or in_planes != out_planes else None)

    def forward(self, x: Tensor) -> Tensor:
        out = self.act(self.batchnorm_0(x))
        sc = x if self.shortcut is None else self.shortcut(_same_pad(x, self.stride))
        out = self.conv_2d_1(_same_pad(out, self.stride))
        return self.conv_2d_2(self.act(self.batchnorm_1(out))) + sc


class _DMBase(BenchModel):
    """Input padding and normalisation, then the trunk; BN + activation before pooling."""

    def __init__(self, num_classes: int, in_channels: int, activation: str, mean: Sequence[float] | None,
                 std: Sequence[float] | None, padding: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.act = _activation(activation)
        d_mean, d_std = DATASET_STATS["cifar100" if num_classes == 100 else "cifar10"]
        if in_channels != 3 and mean is None:
            d_mean, d_std = (0.5,), (0.5,)
        self.normalize = Normalization(d_mean if mean is None else mean, d_std if std is None else std)
        self.padding = padding

    def _input(self, x: Tensor) -> Tensor:
        if self.padding > 0:
            x = F.pad(x, (self.padding,) * 4)
        return self.normalize(x)

    def head(self, z: Tensor) -> Tensor:
        return self.logits(z)


class DMWideResNet(_DMBase):
    """DeepMind WideResNet-depth-width (depth 6n+4)."""

    def __init__(self, num_classes: int = 10, depth: int = 28, width: int = 10, in_channels: int = 3, *,
                 activation: str = "swish", mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 padding: int = 0) -> None:
        super().__init__(num_classes, in_channels, activation, mean, std, padding)
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n+4 with n >= 1, got {depth}.")
        n = (depth - 4) // 6
        ch = [16, 16 * width, 32 * width, 64 * width]
        self.init_conv = nn.Conv2d(in_channels, ch[0], 3, 1, 1, bias=False)
        self.layer = nn.Sequential(_BlockGroup(n, ch[0], ch[1], 1, self.act), _BlockGroup(n, ch[1], ch[2], 2, self.act),
                                   _BlockGroup(n, ch[2], ch[3], 2, self.act))
        self.batchnorm = nn.BatchNorm2d(ch[3])
        self.logits = nn.Linear(ch[3], num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.act(self.batchnorm(self.layer(self.init_conv(self._input(x)))))


class DMPreActResNet(_DMBase):
    """DeepMind PreActResNet-18 / -34 (widths 64-512)."""

    def __init__(self, num_classes: int = 10, depth: int = 18, in_channels: int = 3, *, activation: str = "swish",
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None, padding: int = 0) -> None:
        super().__init__(num_classes, in_channels, activation, mean, std, padding)
        blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}.get(depth)
        if blocks is None:
            raise ValueError(f"DeepMind PreActResNet depth must be 18 or 34, got {depth}.")
        self.conv_2d = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        widths, in_planes = (64, 128, 256, 512), 64
        for g, (w, n) in enumerate(zip(widths, blocks)):
            layers = [_PreActBlock(in_planes if i == 0 else w, w, (1 if g == 0 else 2) if i == 0 else 1, self.act)
                      for i in range(n)]
            setattr(self, f"layer_{g}", nn.Sequential(*layers))
            in_planes = w
        self.batchnorm = nn.BatchNorm2d(512)
        self.logits = nn.Linear(512, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        out = self.conv_2d(self._input(x))
        out = self.layer_3(self.layer_2(self.layer_1(self.layer_0(out))))
        return self.act(self.batchnorm(out))


def _wrn_shape(sd: Mapping[str, Any]) -> dict[str, Any]:
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"layer\.0\.block\.(\d+)\.", k))}
    w = sd.get("layer.0.block.0.conv_0.weight")
    if not blocks or w is None or not hasattr(w, "shape"):
        return {}
    return {"depth": 6 * len(blocks) + 4, "width": max(1, int(w.shape[0]) // 16)}


def _preact_depth(sd: Mapping[str, Any]) -> dict[str, Any]:
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"layer_2\.(\d+)\.", k))}
    return {"depth": 34} if len(blocks) == 6 else {"depth": 18} if blocks else {}


def _register_wrn(name: str, depth: int, width: int) -> None:
    def factory(num_classes: int = 10, in_channels: int = 3, **kw: Any) -> BenchModel:
        return DMWideResNet(num_classes, depth, width, in_channels, **kw)

    factory.__doc__ = f"DeepMind WideResNet-{depth}-{width} (Swish, normalisation inside)."
    register_model(name)(factory)


for _d, _w in ((28, 10), (70, 16)):
    _register_wrn(f"dm_wrn_{_d}_{_w}", _d, _w)


@register_model("dm_wide_resnet")
def dm_wide_resnet(num_classes: int = 10, in_channels: int = 3, *, depth: int = 28, width: int = 10,
                   **kw: Any) -> BenchModel:
    """Any DeepMind WideResNet; from a plain state_dict depth and width come from its shapes."""
    return DMWideResNet(num_classes, depth, width, in_channels, **kw)


@register_model("dm_preact_resnet18")
def dm_preact_resnet18(num_classes: int = 10, in_channels: int = 3, **kw: Any) -> BenchModel:
    return DMPreActResNet(num_classes, 18, in_channels, **kw)


@register_model("dm_preact_resnet34")
def dm_preact_resnet34(num_classes: int = 10, in_channels: int = 3, **kw: Any) -> BenchModel:
    return DMPreActResNet(num_classes, 34, in_channels, **kw)


@register_model("dm_preact_resnet")
def dm_preact_resnet(num_classes: int = 10, in_channels: int = 3, *, depth: int = 18, **kw: Any) -> BenchModel:
    """DeepMind PreActResNet of depth 18 or 34; from a plain state_dict the depth comes from its keys."""
    return DMPreActResNet(num_classes, depth, in_channels, **kw)


dm_wide_resnet.kwargs_from_state_dict = _wrn_shape  # type: ignore[attr-defined]
dm_preact_resnet.kwargs_from_state_dict = _preact_depth  # type: ignore[attr-defined]
