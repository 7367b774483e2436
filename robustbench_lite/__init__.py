"""robustbench_lite: train adversarial defenses, evaluate any checkpoint with a complete attack
suite, compare against a leaderboard and published baselines.

Public API::

    from robustbench_lite import evaluate, train, load_checkpoint

Attributes load lazily (PEP 562), so ``import robustbench_lite.errors`` (as ``reports`` does)
does not import torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from .checkpoint import Checkpoint, load_checkpoint
    from .errors import BenchError
    from .threat import ThreatModel

_LAZY = {
    "Checkpoint": ("checkpoint", "Checkpoint"),
    "load_checkpoint": ("checkpoint", "load_checkpoint"),
    "BenchError": ("errors", "BenchError"),
    "ThreatModel": ("threat", "ThreatModel"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'robustbench_lite' has no attribute {name!r}")


def evaluate(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """See :func:`evaluations.evaluate.evaluate` (imported lazily: the core imports nothing else at load)."""
    from robustbench_lite.evaluations.evaluate import evaluate as _evaluate

    return _evaluate(*args, **kwargs)


def train(*args: Any, **kwargs: Any) -> Any:
    """See :func:`defenses.trainer.train`."""
    from robustbench_lite.defenses.trainer import train as _train

    return _train(*args, **kwargs)


__all__ = ["evaluate", "train", "load_checkpoint", "Checkpoint", "ThreatModel", "BenchError", "__version__"]
