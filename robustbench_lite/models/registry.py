"""Model registry: ``@register_model(name)`` and :func:`create_model`."""
from __future__ import annotations

import importlib
import importlib.util
import inspect
from pathlib import Path
from typing import Any, Callable

from torch import nn

from ..errors import BenchError
from ..registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    return MODELS.register(name)


def create_model(name: str, *, num_classes: int, in_channels: int = 3, **kwargs: Any) -> nn.Module:
    """Build a registered model. Example: ``create_model("resnet18", num_classes=10)``."""
    factory = MODELS.get(name)
    try:
        return factory(num_classes=num_classes, in_channels=in_channels, **kwargs)
    except TypeError as e:
        raise BenchError(f"model {name!r} does not take these arguments ({e}).") from None


def load_callable(spec: str) -> Callable[..., nn.Module]:
    """Resolve ``package.module:callable`` or ``path/to/file.py:callable`` (command line only)."""
    if ":" not in spec:
        raise BenchError(f"--arch {spec!r} is neither a registered model ({', '.join(MODELS.names())}) nor module:callable.")
    mod_s, attr = spec.rsplit(":", 1)
    try:
        if mod_s.endswith(".py"):
            path = Path(mod_s)
            if not path.is_file():
                raise BenchError(f"--arch file {path} does not exist.")
            s = importlib.util.spec_from_file_location(path.stem, path)
            assert s is not None and s.loader is not None
            module = importlib.util.module_from_spec(s)
            s.loader.exec_module(module)
        else:
            module = importlib.import_module(mod_s)
    except ImportError as e:
        raise BenchError(f"cannot import {mod_s!r} for --arch: {e}.") from None
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise BenchError(f"{mod_s!r} has no callable {attr!r} for --arch.")
    return fn


def build_external(spec: str, *, num_classes: int) -> nn.Module:
    from .base import BenchModel, ExternalModel

    fn = load_callable(spec)
    params = inspect.signature(fn).parameters
    net = fn(num_classes=num_classes) if "num_classes" in params else fn()
    if not isinstance(net, nn.Module):
        raise BenchError(f"--arch {spec} returned {type(net).__name__}, not a torch nn.Module.")
    return net if isinstance(net, BenchModel) else ExternalModel(net, num_classes)
