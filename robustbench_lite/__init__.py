"""robustbench_lite: train adversarial defenses, evaluate any checkpoint with a complete attack
suite, compare against a leaderboard and published baselines.

Public API::

    from robustbench_lite import evaluate, train, load_checkpoint
"""
from __future__ import annotations

from typing import Any

from .checkpoint import Checkpoint, load_checkpoint
from .errors import BenchError
from .threat import ThreatModel

__version__ = "0.1.0"


def evaluate(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """See :func:`evaluations.evaluate.evaluate` (imported lazily: the core imports nothing else at load)."""
    from evaluations.evaluate import evaluate as _evaluate

    return _evaluate(*args, **kwargs)


def train(*args: Any, **kwargs: Any) -> Any:
    """See :func:`defenses.trainer.train`."""
    from defenses.trainer import train as _train

    return _train(*args, **kwargs)


__all__ = ["evaluate", "train", "load_checkpoint", "Checkpoint", "ThreatModel", "BenchError", "__version__"]
