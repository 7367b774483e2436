"""Model registry, the shared feature interface (:mod:`.base`) and in-model normalisation (:mod:`.normalize`).

Built-in architectures use the field's key layouts, so published state_dicts load without remapping:
:mod:`.resnet` (CIFAR ResNet-18/34/50, RobustBench's PreActResNet-18), :mod:`.wide_resnet`
(TRADES/RobustBench WideResNet), :mod:`.dm` (DeepMind WideResNet/PreActResNet), :mod:`.hub`
(``torchvision:<name>``, ``timm:<name>``, ``resnet50``), :mod:`.cnn` (``small_cnn``, ``linear``) and
:mod:`.afd` (``afd_net``).
"""
from .base import BenchModel, ExternalModel, Features
from .registry import MODELS, build_external, create_model, kwargs_from_state_dict, load_callable, register_model
from .normalize import Normalization, NormalizedModel, apply_normalize, parse_normalize
from . import afd, cnn, dm, hub, resnet, wide_resnet  # noqa: F401  (registers the built-in models)

__all__ = ["BenchModel", "ExternalModel", "Features", "MODELS", "create_model", "register_model", "build_external",
           "load_callable", "kwargs_from_state_dict", "Normalization", "NormalizedModel", "apply_normalize",
           "parse_normalize"]
