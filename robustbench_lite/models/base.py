"""The one feature interface every registered model provides.

A :class:`BenchModel` splits its forward pass in three parts::

    fmap   = model.forward_features(x)   # (N, C, H, W): the last feature map BEFORE global pooling
    z      = model.pool(fmap)             # (N, D): the penultimate vector the final linear layer reads
    logits = model.head(z)                # (N, num_classes)

``model.features(x)`` returns all three at once as :class:`Features`. ARREST's representation
distillation reads ``pre_pool`` (flattened); AFD's feature extractor and the model analyses read
``pooled``. For a CNN without global pooling (``small_cnn``) ``pool`` is its fully connected trunk
up to the last linear layer, so ``pooled`` is still "the penultimate features".
"""
from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn


class Features(NamedTuple):
    pre_pool: Tensor
    pooled: Tensor
    logits: Tensor


class BenchModel(nn.Module):
    """Base class: subclasses implement ``forward_features``, ``pool`` and ``head``."""

    num_classes: int

    def forward_features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def pool(self, fmap: Tensor) -> Tensor:
        return nn.functional.adaptive_avg_pool2d(fmap, 1).flatten(1)

    def head(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def features(self, x: Tensor) -> Features:
        fmap = self.forward_features(x)
        z = self.pool(fmap)
        return Features(fmap, z, self.head(z))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.forward_features(x)))


class ExternalModel(BenchModel):
    """Wraps a user's ``nn.Module`` given by ``--arch module:callable``; it exposes logits only."""

    def __init__(self, net: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.net = net
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def features(self, x: Tensor) -> Features:
        from ..errors import BenchError

        raise BenchError("this model came from --arch module:callable and exposes no features; register it as a BenchModel.")
