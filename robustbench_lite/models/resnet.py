"""CIFAR ResNets and WideResNets, and torchvision's ImageNet ResNet-50.

- ``resnet18``: the standard CIFAR ResNet-18 (kuangliu/pytorch-cifar) with a 3x3 stride-1 stem,
  widths 64/128/256/512, as ACT, AFD and TRADES use it. ``widths=(16,32,48,64)`` with
  ``in_channels=1`` is AFD's small MNIST ResNet-18.
- ``preact_resnet18``: He et al. 2016 pre-activation ResNet-18 (CIFAR stem).
- ``wrn_28_10`` / ``wrn_34_10``: the TRADES WideResNet (Zagoruyko & Komodakis 2016).
- ``resnet50``: torchvision's ImageNet ResNet-50 with the ImageNet mean/std inside the model.
"""
from __future__ import annotations

from typing import Sequence

import torch
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
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class PreActBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        sc = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + sc


class _CifarResNet(BenchModel):
    def __init__(self, block: type[nn.Module], num_blocks: Sequence[int], num_classes: int, in_channels: int,
                 widths: Sequence[int], preact: bool) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.preact = preact
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0] if not preact else widths[-1])
        layers, in_planes = [], widths[0]
        for i, (w, n) in enumerate(zip(widths, num_blocks)):
            strides = [1 if i == 0 else 2] + [1] * (n - 1)
            blocks = []
            for s in strides:
                blocks.append(block(in_planes, w, s))
                in_planes = w
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.linear = nn.Linear(widths[-1], num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        out = self.conv1(x)
        if not self.preact:
            out = F.relu(self.bn1(out))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        if self.preact:
            out = F.relu(self.bn1(out))
        return out

    def head(self, z: Tensor) -> Tensor:
        return self.linear(z)


@register_model("resnet18")
def resnet18(num_classes: int = 10, in_channels: int = 3, widths: Sequence[int] = (64, 128, 256, 512)) -> BenchModel:
    return _CifarResNet(BasicBlock, (2, 2, 2, 2), num_classes, in_channels, tuple(widths), preact=False)


@register_model("preact_resnet18")
def preact_resnet18(num_classes: int = 10, in_channels: int = 3, widths: Sequence[int] = (64, 128, 256, 512)) -> BenchModel:
    return _CifarResNet(PreActBlock, (2, 2, 2, 2), num_classes, in_channels, tuple(widths), preact=True)


class _WideBlock(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.equal = in_planes == out_planes
        self.shortcut = None if self.equal else nn.Conv2d(in_planes, out_planes, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        o = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(o))))
        return out + (x if self.shortcut is None else self.shortcut(o))


class WideResNet(BenchModel):
    """TRADES-style WideResNet-depth-widen (yaodongyu/TRADES models/wideresnet.py), no dropout."""

    def __init__(self, depth: int = 34, widen_factor: int = 10, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError("WideResNet depth must be 6n+4")
        n = (depth - 4) // 6
        ch = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_channels, ch[0], 3, 1, 1, bias=False)

        def group(i: int, o: int, s: int) -> nn.Sequential:
            return nn.Sequential(*[_WideBlock(i if k == 0 else o, o, s if k == 0 else 1) for k in range(n)])

        self.block1, self.block2, self.block3 = group(ch[0], ch[1], 1), group(ch[1], ch[2], 2), group(ch[2], ch[3], 2)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.fc = nn.Linear(ch[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        return F.relu(self.bn1(out))

    def head(self, z: Tensor) -> Tensor:
        return self.fc(z)


@register_model("wrn_28_10")
def wrn_28_10(num_classes: int = 10, in_channels: int = 3) -> BenchModel:
    return WideResNet(28, 10, num_classes, in_channels)


@register_model("wrn_34_10")
def wrn_34_10(num_classes: int = 10, in_channels: int = 3) -> BenchModel:
    return WideResNet(34, 10, num_classes, in_channels)


class ImageNetResNet50(BenchModel):
    """torchvision ResNet-50; ImageNet mean/std normalisation happens inside (inputs stay in [0,1])."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3) -> None:
        super().__init__()
        import torchvision

        self.num_classes = num_classes
        self.net = torchvision.models.resnet50(weights=None, num_classes=num_classes)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward_features(self, x: Tensor) -> Tensor:
        n = self.net
        x = (x - self.mean) / self.std
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        return n.layer4(n.layer3(n.layer2(n.layer1(x))))

    def head(self, z: Tensor) -> Tensor:
        return self.net.fc(z)


@register_model("resnet50")
def resnet50(num_classes: int = 1000, in_channels: int = 3) -> BenchModel:
    return ImageNetResNet50(num_classes, in_channels)
