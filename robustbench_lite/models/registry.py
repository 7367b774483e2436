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
        raise BenchError(f"{flag} file {path} cannot be imported as Python.")
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


def load_callable(spec: str, *, flag: str = "--arch",
                  wanted: str = "a class or function that builds a model") -> Callable[..., Any]:
    """Resolve ``package.module:callable`` or ``path/to/file.py:callable`` (command line only).
    ``flag`` names where the reference came from and ``wanted`` what it must be, in the errors (a
    suite's own attack: ``flag="suite attack"``)."""
    if ":" not in spec:
        raise BenchError(f"{flag} {spec!r} is neither a registered model ({', '.join(MODELS.names())}) nor module:callable.")
    mod_s, attr = spec.rsplit(":", 1)
    if not mod_s.strip() or not attr.strip():
        raise BenchError(f"{flag} {spec!r} must name a module and a callable, e.g. mypackage.nets:WideNet or nets.py:build.")
    try:
        if mod_s.endswith(".py"):
            path = Path(mod_s)
            if not path.is_file():
                raise BenchError(f"{flag} file {path} {'is a folder' if path.is_dir() else 'does not exist'}.")
            module = _import_file(path)
        else:
            module = importlib.import_module(mod_s)
    except BenchError:
        raise
    except ImportError as e:
        raise BenchError(f"cannot import {mod_s!r} for {flag}: {e}.") from None
    except SyntaxError as e:
        raise BenchError(f"{flag} {mod_s} has a syntax error at line {e.lineno}: {e.msg}.") from None
    except Exception as e:  # the user's module failed while it was imported
        raise BenchError(f"importing {mod_s!r} for {flag} failed: {_reason(e)}.") from None
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        kind = type(fn).__name__
        what = "nothing" if fn is None else f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind}"
        raise BenchError(f"{flag} {spec}: {attr!r} in {mod_s!r} is {what}, not {wanted}.")
    return fn


def _reason(e: BaseException) -> str:
    """``TypeError: needs 2 arguments`` on one line, without a trailing period."""
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {first}".rstrip(".") if first else type(e).__name__


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
    takes = "num_classes" in params
    if isinstance(fn, type) and not issubclass(fn, nn.Module):
        raise BenchError(f"--arch {spec}: {fn.__name__} is a class but not a torch nn.Module.")
    try:
        net = fn(num_classes=num_classes) if takes else fn()
    except Exception as e:  # e.g. torch.nn:Linear, a class that needs constructor arguments
        call = f"{spec.rsplit(':', 1)[1]}({'num_classes=' + str(num_classes) if takes else ''})"
        raise BenchError(f"--arch {spec} could not build a model: {call} raised {_reason(e)} (--arch calls it with "
                         "num_classes= when it takes that argument, else with no arguments; wrap it in a function "
                         "that builds your model).") from None
    if not isinstance(net, nn.Module):
        raise BenchError(f"--arch {spec} returned {type(net).__name__}, not a torch nn.Module.")
    return net if isinstance(net, BenchModel) else ExternalModel(net, num_classes)
