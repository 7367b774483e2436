"""CIFAR ResNets and PreActResNets in RobustBench's key layout (``model_zoo/architectures/resnet.py``,
itself kuangliu/pytorch-cifar), so their state_dicts load as they are.

- ``resnet18``, ``resnet34``, ``cifar_resnet50``: He et al. 2016 with a 3x3 stride-1 stem (as ACT, AFD
  and TRADES use it). Keys ``conv1``, ``bn1``, ``layer1.0.{conv,bn}{1,2[,3]}``,
  ``layerN.0.shortcut.{0,1}`` (1x1 conv + BN where the shape changes), ``linear``.
  ``widths=(16,32,48,64)`` with ``in_channels=1`` is AFD's small MNIST ResNet-18.
- ``preact_resnet18``: RobustBench's ``PreActResNet(PreActBlock, [2,2,2,2])`` (Wong et al. 2020):
  keys ``conv1``, ``layerN.M.{bn1,conv1,bn2,conv2}``, ``layerN.0.shortcut.0`` (1x1 conv), ``linear``;
  no BN before the classifier and the shortcut reads the block's raw input. ``bn_before_fc=True``
  adds ``bn`` (BN+ReLU before pooling) and, as in every RobustBench model that has it (Rice et al.
  2020), the shortcut reads the activated input; a plain state_dict holding ``bn.*`` selects it.

``resnet50`` (ImageNet, torchvision) lives in :mod:`.hub`. Example::

    m = create_model("preact_resnet18", num_classes=10)
    m.features(torch.rand(2, 3, 32, 32)).pooled.shape   # (2, 512)
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from .base import BenchModel
from .registry import register_model


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(in_planes, planes * self.expansion, stride, bn=True)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.shortcut = _shortcut(in_planes, planes * self.expansion, stride, bn=True)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


def _shortcut(in_planes: int, out_planes: int, stride: int, *, bn: bool) -> nn.Sequential:
    """Empty Sequential (identity) when the shape is kept, else 1x1 conv (+ BN): keys ``shortcut.0``, ``shortcut.1``."""
    if stride == 1 and in_planes == out_planes:
        return nn.Sequential()
    layers: list[nn.Module] = [nn.Conv2d(in_planes, out_planes, 1, stride, bias=False)]
    if bn:
        layers.append(nn.BatchNorm2d(out_planes))
    return nn.Sequential(*layers)


class PreActBlock(nn.Module):
    """Pre-activation basic block; ``out_shortcut`` makes the shortcut read relu(bn1(x)) instead of x."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, out_shortcut: bool = False) -> None:
        super().__init__()
        self.out_shortcut = out_shortcut
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        if stride != 1 or in_planes != planes:
            self.shortcut = _shortcut(in_planes, planes, stride, bn=False)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        sc = self.shortcut(out if self.out_shortcut else x) if hasattr(self, "shortcut") else x
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return out + sc


class CifarResNet(BenchModel):
    """ResNet with a CIFAR stem; ``pre_pool`` is the last stage's map, ``pooled`` its global average."""

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], num_blocks: Sequence[int], num_classes: int = 10,
                 in_channels: int = 3, widths: Sequence[int] = (64, 128, 256, 512)) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.layer1, self.layer2, self.layer3, self.layer4 = _stages(block, num_blocks, widths, {})
        self.linear = nn.Linear(widths[-1] * block.expansion, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(out))))

    def head(self, z: Tensor) -> Tensor:
        return self.linear(z)


class PreActResNet(BenchModel):
    """RobustBench's PreActResNet; ``bn_before_fc`` adds BN+ReLU (key ``bn``) before pooling."""

    def __init__(self, num_blocks: Sequence[int] = (2, 2, 2, 2), num_classes: int = 10, in_channels: int = 3,
                 widths: Sequence[int] = (64, 128, 256, 512), *, bn_before_fc: bool = False,
                 out_shortcut: bool = False) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.layer1, self.layer2, self.layer3, self.layer4 = _stages(PreActBlock, num_blocks, widths,
                                                                     {"out_shortcut": out_shortcut})
        self.bn = nn.BatchNorm2d(widths[-1]) if bn_before_fc else None
        self.linear = nn.Linear(widths[-1], num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        out = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        return F.relu(self.bn(out)) if self.bn is not None else out

    def head(self, z: Tensor) -> Tensor:
        return self.linear(z)


def _stages(block: Any, num_blocks: Sequence[int], widths: Sequence[int], extra: dict[str, Any]) -> list[nn.Sequential]:
    if len(widths) != 4 or len(num_blocks) != 4:
        raise ValueError(f"a CIFAR ResNet has 4 stages; got widths {tuple(widths)}.")
    stages, in_planes = [], widths[0]
    for i, (w, n) in enumerate(zip(widths, num_blocks)):
        blocks = []
        for s in [1 if i == 0 else 2] + [1] * (n - 1):
            blocks.append(block(in_planes, w, s, **extra))
            in_planes = w * block.expansion
        stages.append(nn.Sequential(*blocks))
    return stages


@register_model("resnet18")
def resnet18(num_classes: int = 10, in_channels: int = 3, widths: Sequence[int] = (64, 128, 256, 512)) -> BenchModel:
    return CifarResNet(BasicBlock, (2, 2, 2, 2), num_classes, in_channels, tuple(widths))


@register_model("resnet34")
def resnet34(num_classes: int = 10, in_channels: int = 3, widths: Sequence[int] = (64, 128, 256, 512)) -> BenchModel:
    return CifarResNet(BasicBlock, (3, 4, 6, 3), num_classes, in_channels, tuple(widths))


@register_model("cifar_resnet50")
def cifar_resnet50(num_classes: int = 10, in_channels: int = 3, widths: Sequence[int] = (64, 128, 256, 512)) -> BenchModel:
    return CifarResNet(Bottleneck, (3, 4, 6, 3), num_classes, in_channels, tuple(widths))


@register_model("preact_resnet18")
def preact_resnet18(num_classes: int = 10, in_channels: int = 3, widths: Sequence[int] = (64, 128, 256, 512), *,
                    bn_before_fc: bool = False, out_shortcut: bool | None = None) -> BenchModel:
    """``out_shortcut`` defaults to ``bn_before_fc`` (RobustBench pairs them: Wong 2020 neither, Rice 2020 both)."""
    return PreActResNet((2, 2, 2, 2), num_classes, in_channels, tuple(widths), bn_before_fc=bn_before_fc,
                        out_shortcut=bn_before_fc if out_shortcut is None else out_shortcut)


def _preact_parts(sd: Mapping[str, Any]) -> dict[str, Any]:
    if "conv1.weight" not in sd or "layer1.0.bn1.weight" not in sd:
        return {}  # not this layout (or under a prefix still to strip)
    return {"bn_before_fc": "bn.weight" in sd}


preact_resnet18.kwargs_from_state_dict = _preact_parts  # type: ignore[attr-defined]
