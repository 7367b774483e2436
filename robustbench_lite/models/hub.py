"""torchvision and timm models by name, never with downloaded weights, with their normalisation inside.

``--arch torchvision:<name>`` builds ``torchvision.models.get_model(name, weights=None)`` and
``--arch timm:<name>`` builds ``timm.create_model(name, pretrained=False)``; the weights come from
``--model``. Both libraries' ImageNet models are trained on ``(x - mean) / std`` inputs, so the
model is a :class:`LibraryModel`: a :class:`~.normalize.Normalization` (ImageNet mean/std for
torchvision, the model's ``pretrained_cfg`` mean/std for timm) in front of the library's network.
Its state_dict is the library's own (``conv1.weight``, ``fc.weight``, ...: no wrapper prefix, no
normalisation buffers), so a torchvision or timm state_dict loads as it is.

Features: timm models give ``forward_features`` / ``forward_head(pre_logits=True)`` /
``get_classifier()``; torchvision ResNets (and ResNeXt, Wide ResNet) give their ``layer4`` map and
``fc``; other torchvision models expose logits only. ``resnet50`` is ``torchvision:resnet50``
registered under a name. Example::

    m = build_library_model("torchvision:resnet18", num_classes=10)
    m.load_state_dict(torchvision.models.resnet18(num_classes=10).state_dict())
"""
from __future__ import annotations

import importlib
from typing import Any

from torch import Tensor, nn

from ..errors import BenchError
from .base import BenchModel, Features, hide_inner_prefix
from .normalize import DATASET_STATS, Normalization
from .registry import register_model

LIBRARIES = ("torchvision", "timm")


def is_library_spec(arch: str) -> bool:
    """``torchvision:<name>`` or ``timm:<name>``."""
    lib, sep, name = str(arch).partition(":")
    return bool(sep) and lib in LIBRARIES and bool(name)


class LibraryModel(BenchModel):
    """A torchvision/timm network ``net`` behind its normalisation; the state_dict is ``net``'s own."""

    def __init__(self, net: nn.Module, num_classes: int, mean: Any, std: Any, library: str) -> None:
        super().__init__()
        self.net = net
        self.num_classes = num_classes
        self.library = library
        self.normalize = Normalization(mean, std)
        hide_inner_prefix(self)

    def _has_features(self) -> bool:
        n = self.net
        if self.library == "timm":
            return all(hasattr(n, a) for a in ("forward_features", "forward_head", "get_classifier"))
        return all(hasattr(n, a) for a in ("conv1", "bn1", "maxpool", "layer4", "avgpool", "fc"))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.normalize(x))

    def features(self, x: Tensor) -> Features:
        if not self._has_features():
            raise BenchError(f"{self.library} model {type(self.net).__name__} exposes logits only, no features.")
        return super().features(x)

    def forward_features(self, x: Tensor) -> Tensor:
        n: Any = self.net
        x = self.normalize(x)
        if self.library == "timm":
            return n.forward_features(x)
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        return n.layer4(n.layer3(n.layer2(n.layer1(x))))

    def pool(self, fmap: Tensor) -> Tensor:
        n: Any = self.net
        if self.library == "timm":
            return n.forward_head(fmap, pre_logits=True)
        return n.avgpool(fmap).flatten(1)

    def head(self, z: Tensor) -> Tensor:
        n: Any = self.net
        return n.get_classifier()(z) if self.library == "timm" else n.fc(z)


def build_library_model(spec: str, *, num_classes: int, in_channels: int = 3) -> LibraryModel:
    """``torchvision:<name>`` / ``timm:<name>`` with random weights and ``num_classes`` outputs."""
    lib, _, name = spec.partition(":")
    if lib not in LIBRARIES or not name:
        raise BenchError(f"--arch {spec!r} is not torchvision:<name> or timm:<name>.")
    try:
        module = importlib.import_module(lib)
    except ImportError:
        raise BenchError(f"--arch {spec} needs {lib}, which is not installed (pip install {lib}).") from None
    if lib == "torchvision":
        known = set(module.models.list_models())
        if name not in known:
            raise BenchError(f"torchvision has no model {name!r} (see torchvision.models.list_models()).")
        net = module.models.get_model(name, weights=None, num_classes=num_classes)
        mean, std = DATASET_STATS["imagenet"]
    else:
        if not module.is_model(name):
            raise BenchError(f"timm has no model {name!r} (see timm.list_models()).")
        net = module.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels)
        cfg = getattr(net, "pretrained_cfg", None) or getattr(net, "default_cfg", None) or {}
        mean, std = cfg.get("mean", DATASET_STATS["imagenet"][0]), cfg.get("std", DATASET_STATS["imagenet"][1])
    if in_channels != len(mean):
        mean, std = (sum(mean) / len(mean),), (sum(std) / len(std),)
    return LibraryModel(net, num_classes, tuple(mean), tuple(std), lib)


@register_model("resnet50")
def resnet50(num_classes: int = 1000, in_channels: int = 3) -> BenchModel:
    """torchvision's ImageNet ResNet-50 with the ImageNet mean/std inside; torchvision's own keys."""
    return build_library_model("torchvision:resnet50", num_classes=num_classes, in_channels=in_channels)
