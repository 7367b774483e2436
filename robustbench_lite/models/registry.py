"""Model registry: ``@register_model(name)`` and :func:`create_model`."""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping

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


def kwargs_from_state_dict(name: str, state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor arguments a registered model reads off a plain state_dict in its layout (optional parts
    such as ``sub_block1``, or depth and width for the generic factories); ``{}`` when it reads none.
    A factory offers this as its ``kwargs_from_state_dict`` attribute."""
    fn = getattr(MODELS.get(name), "kwargs_from_state_dict", None)
    return dict(fn(state_dict)) if fn is not None else {}


def _import_file(path: Path) -> ModuleType:
    """Import a user's ``file.py`` as a module, registered in ``sys.modules`` (dataclasses, typing and pickle
    need that) and with its folder importable while it runs (``from layers import Block`` beside it)."""
    path = path.resolve()
    name = path.stem
    old = sys.modules.get(name)
    if old is not None and getattr(old, "__file__", None) != str(path):  # never shadow another module
        name = f"_bench_arch_{path.stem}_{abs(hash(str(path))):x}"
    s = importlib.util.spec_from_file_location(name, path)
    if s is None or s.loader is None:
        raise BenchError(f"--arch file {path} cannot be imported as Python.")
    module = importlib.util.module_from_spec(s)
    sys.modules[name] = module
    sys.path.insert(0, str(path.parent))
    try:
        s.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(path.parent))
    return module


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
            module = _import_file(path)
        else:
            module = importlib.import_module(mod_s)
    except ImportError as e:
        raise BenchError(f"cannot import {mod_s!r} for --arch: {e}.") from None
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise BenchError(f"{mod_s!r} has no callable {attr!r} for --arch.")
    return fn


def build_external(spec: str, *, num_classes: int) -> nn.Module:
    """``torchvision:<name>`` / ``timm:<name>`` (see :mod:`.hub`), or the user's module from
    ``module:callable`` / ``file.py:callable`` (called with ``num_classes``
    when it takes it). A plain ``nn.Module`` is wrapped in :class:`ExternalModel`, whose state_dict
    keys are the module's own (no prefix), so the user's saved weights load as they are."""
    from .base import BenchModel, ExternalModel
    from .hub import build_library_model, is_library_spec

    if is_library_spec(spec):
        return build_library_model(spec, num_classes=num_classes)
    fn = load_callable(spec)
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # some builtins and C callables have no signature
        params = {}  # type: ignore[assignment]
    net = fn(num_classes=num_classes) if "num_classes" in params else fn()
    if not isinstance(net, nn.Module):
        raise BenchError(f"--arch {spec} returned {type(net).__name__}, not a torch nn.Module.")
    return net if isinstance(net, BenchModel) else ExternalModel(net, num_classes)
