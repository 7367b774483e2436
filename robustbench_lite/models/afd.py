"""The AFD classifier: a registered backbone with L2-normalised penultimate features.

Adversarial Feature Desensitization (Bashivan et al., NeurIPS 2021; BashivanLab/afd): the feature
extractor E is a backbone up to its penultimate vector followed by ``F.normalize`` (unit L2 norm);
the task classifier Dc is the backbone's own last linear layer reading those unit features::

    fmap   = backbone.forward_features(x)               # (N, C, H, W)
    z      = normalize(backbone.pool(fmap))             # (N, D), ||z||_2 = 1  (E)
    logits = backbone.head(z)                           # (N, num_classes)  (Dc)

Registered as ``afd_net`` so a checkpoint trained with ``--defense afd`` is rebuilt by the model
registry alone (``bench eval`` needs nothing from ``defenses/``). Example::

    net = create_model("afd_net", num_classes=10, in_channels=1, backbone="small_cnn")
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import BenchModel
from .registry import create_model, register_model


@register_model("afd_net")
class AFDNet(BenchModel):
    """E (backbone trunk + L2 normalisation) and Dc (the backbone's last linear layer) as one model."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, backbone: str = "resnet18",
                 **backbone_kwargs: Any) -> None:
        super().__init__()
        if backbone == "afd_net":
            raise ValueError("afd_net cannot wrap itself; pick a backbone such as small_cnn or resnet18.")
        self.num_classes = num_classes
        self.net = create_model(backbone, num_classes=num_classes, in_channels=in_channels, **backbone_kwargs)
        if not isinstance(self.net, BenchModel):
            raise ValueError(f"backbone {backbone!r} is not a BenchModel with a feature interface.")

    def forward_features(self, x: Tensor) -> Tensor:
        return self.net.forward_features(x)

    def pool(self, fmap: Tensor) -> Tensor:
        return F.normalize(self.net.pool(fmap), p=2, dim=1)

    def head(self, z: Tensor) -> Tensor:
        return self.net.head(z)

    def split_parameters(self, input_shape: tuple[int, ...]) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(feature-extractor parameters, classifier parameters): a parameter belongs to E when the
        normalised features depend on it (one probe pass in eval mode on zeros of ``input_shape``)."""
        params = [p for p in self.parameters()]
        was = self.training
        self.eval()
        try:
            x = torch.zeros(2, *input_shape, device=params[0].device)
            z = self.pool(self.forward_features(x))
            grads = torch.autograd.grad(z.sum(), params, allow_unused=True)
        finally:
            self.train(was)
        feat = [p for p, g in zip(params, grads) if g is not None]
        ids = {id(p) for p in feat}
        return feat, [p for p in params if id(p) not in ids]
