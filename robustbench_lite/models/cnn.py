"""Small CNNs for MNIST-shaped inputs."""
from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from .base import BenchModel
from .registry import register_model


@register_model("small_cnn")
class SmallCNN(BenchModel):
    """The TRADES SmallCNN (Zhang et al. 2019, yaodongyu/TRADES models/small_cnn.py) for 28x28 inputs.

    4 conv layers (32,32,64,64) with two max-pools, then FC 200-200-classes with dropout 0.5.
    ``pre_pool`` is the (N,64,4,4) conv map; ``pooled`` the 200-d input of the last layer.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, drop: float = 0.5) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.feature_extractor = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(in_channels, 32, 3)), ("relu1", nn.ReLU()),
            ("conv2", nn.Conv2d(32, 32, 3)), ("relu2", nn.ReLU()),
            ("maxpool1", nn.MaxPool2d(2, 2)),
            ("conv3", nn.Conv2d(32, 64, 3)), ("relu3", nn.ReLU()),
            ("conv4", nn.Conv2d(64, 64, 3)), ("relu4", nn.ReLU()),
            ("maxpool2", nn.MaxPool2d(2, 2)),
        ]))
        self.trunk = nn.Sequential(OrderedDict([
            ("fc1", nn.Linear(64 * 4 * 4, 200)), ("relu1", nn.ReLU()), ("drop", nn.Dropout(drop)),
            ("fc2", nn.Linear(200, 200)), ("relu2", nn.ReLU()),
        ]))
        self.fc3 = nn.Linear(200, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.fc3.weight)
        nn.init.zeros_(self.fc3.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.feature_extractor(x)

    def pool(self, fmap: Tensor) -> Tensor:
        return self.trunk(fmap.flatten(1))

    def head(self, z: Tensor) -> Tensor:
        return self.fc3(z)


@register_model("linear")
class LinearModel(BenchModel):
    """A linear classifier on the flattened input (closed-form references in the tests)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, in_features: int = 784) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.fc = nn.Linear(in_features, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        return x.flatten(1)[:, :, None, None]

    def pool(self, fmap: Tensor) -> Tensor:
        return fmap.flatten(1)

    def head(self, z: Tensor) -> Tensor:
        return self.fc(z)
