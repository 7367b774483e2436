"""The TRADES / RobustBench WideResNet (Zagoruyko & Komodakis 2016; Zhang et al. 2019) in its own key layout.

The module tree follows ``wide_resnet.py`` of yaodongyu/TRADES and RobustBench
(``robustbench/model_zoo/architectures/wide_resnet.py``), so their state_dicts load as they are::

    conv1.weight
    block1.layer.0.bn1.* / conv1.weight / bn2.* / conv2.weight / convShortcut.weight (first block only)
    sub_block1.layer.*   (sub_block1=True: an unused copy of block1 kept by Carmon et al. 2019's files)
    block2.layer.*, block3.layer.*
    bn1.*, fc.weight, fc.bias (no bias with bias_last=False)

Depth is 6n+4 (n blocks per group), widths 16, 16k, 32k, 64k. Registered names: ``wrn_28_10``,
``wrn_34_10``, ``wrn_34_20``, ``wrn_70_16`` and ``wide_resnet`` (any ``depth`` / ``widen_factor``; from a
plain state_dict both are read off its shapes). ``pre_pool`` is the (N, 64k, 8, 8) map after the last
BN+ReLU on 32x32 inputs; ``pooled`` its global average. Example::

    m = create_model("wide_resnet", num_classes=10, depth=16, widen_factor=2)
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import torch.nn.functional as F
from torch import Tensor, nn

from .base import BenchModel
from .registry import register_model


class WideBasicBlock(nn.Module):
    """Pre-activation block; the shortcut of a block that changes width reads the activated input."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.drop_rate = drop_rate
        self.equal_in_out = in_planes == out_planes
        self.convShortcut = None if self.equal_in_out else nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        o = F.relu(self.bn1(x))
        out = F.relu(self.bn2(self.conv1(o)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        out = self.conv2(out)
        return out + (x if self.convShortcut is None else self.convShortcut(o))


class NetworkBlock(nn.Module):
    """``n`` blocks as ``self.layer`` (a Sequential): keys ``layer.<i>.*``."""

    def __init__(self, n: int, in_planes: int, out_planes: int, stride: int, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.layer = nn.Sequential(*[WideBasicBlock(in_planes if i == 0 else out_planes, out_planes,
                                                    stride if i == 0 else 1, drop_rate) for i in range(n)])

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)


class WideResNet(BenchModel):
    """WideResNet-depth-widen_factor in the TRADES/RobustBench layout (inputs in [0,1], no normalisation)."""

    def __init__(self, depth: int = 34, widen_factor: int = 10, num_classes: int = 10, in_channels: int = 3, *,
                 sub_block1: bool = False, drop_rate: float = 0.0, bias_last: bool = True) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 34, ...), got {depth}.")
        if widen_factor < 1:
            raise ValueError(f"WideResNet widen_factor must be a positive integer, got {widen_factor}.")
        n = (depth - 4) // 6
        ch = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_channels, ch[0], 3, 1, 1, bias=False)
        self.block1 = NetworkBlock(n, ch[0], ch[1], 1, drop_rate)
        if sub_block1:  # never run: present so the state_dicts of Carmon et al. 2019 and kin load strictly
            self.sub_block1 = NetworkBlock(n, ch[0], ch[1], 1, drop_rate)
        self.block2 = NetworkBlock(n, ch[1], ch[2], 2, drop_rate)
        self.block3 = NetworkBlock(n, ch[2], ch[3], 2, drop_rate)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.fc = nn.Linear(ch[3], num_classes, bias=bias_last)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        return F.relu(self.bn1(out))

    def head(self, z: Tensor) -> Tensor:
        return self.fc(z)


def _optional_parts(sd: Mapping[str, Any]) -> dict[str, Any]:
    """``sub_block1`` and ``bias_last`` as a state_dict in this layout has them ({} when not in this layout)."""
    keys = set(sd)
    if "block1.layer.0.conv1.weight" not in keys:
        return {}
    return {"sub_block1": any(k.startswith("sub_block1.") for k in keys), "bias_last": "fc.bias" in keys}


def _depth_and_width(sd: Mapping[str, Any]) -> dict[str, Any]:
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"block1\.layer\.(\d+)\.", k))}
    w = sd.get("block1.layer.0.conv1.weight")
    if not blocks or w is None or not hasattr(w, "shape"):
        return {}
    return {"depth": 6 * len(blocks) + 4, "widen_factor": max(1, int(w.shape[0]) // 16)}


def _fixed(depth: int, width: int) -> Any:
    def factory(num_classes: int = 10, in_channels: int = 3, *, sub_block1: bool = False, drop_rate: float = 0.0,
                bias_last: bool = True) -> BenchModel:
        return WideResNet(depth, width, num_classes, in_channels, sub_block1=sub_block1, drop_rate=drop_rate,
                          bias_last=bias_last)

    factory.__doc__ = f"WideResNet-{depth}-{width} (TRADES/RobustBench layout)."
    factory.kwargs_from_state_dict = _optional_parts  # type: ignore[attr-defined]
    return factory


for _d, _w in ((28, 10), (34, 10), (34, 20), (70, 16)):
    register_model(f"wrn_{_d}_{_w}")(_fixed(_d, _w))


@register_model("wide_resnet")
def wide_resnet(num_classes: int = 10, in_channels: int = 3, *, depth: int = 28, widen_factor: int = 10,
                sub_block1: bool = False, drop_rate: float = 0.0, bias_last: bool = True) -> BenchModel:
    """Any WideResNet-depth-widen_factor; from a plain state_dict, depth and width come from its shapes."""
    return WideResNet(depth, widen_factor, num_classes, in_channels, sub_block1=sub_block1, drop_rate=drop_rate,
                      bias_last=bias_last)


def _all_parts(sd: Mapping[str, Any]) -> dict[str, Any]:
    shape = _depth_and_width(sd)
    return {**shape, **_optional_parts(sd)} if shape else {}


wide_resnet.kwargs_from_state_dict = _all_parts  # type: ignore[attr-defined]
