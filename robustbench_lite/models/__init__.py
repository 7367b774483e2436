"""Model registry and the shared feature interface (see :mod:`.base`)."""
from .base import BenchModel, ExternalModel, Features
from .registry import MODELS, build_external, create_model, load_callable, register_model
from . import afd, cnn, resnet  # noqa: F401  (registers the built-in models)

__all__ = ["BenchModel", "ExternalModel", "Features", "MODELS", "create_model", "register_model", "build_external", "load_callable"]
