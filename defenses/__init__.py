"""Training recipes and the one trainer loop. Imports the core and ``evaluations`` (one PGD).

Attributes load lazily (PEP 562): ``from robustbench_lite.defenses import cli`` (what ``bench --help`` does) imports
no torch. The first access to any public name (``from robustbench_lite.defenses import build_config, train``,
``defenses.DEFENSES``) imports the recipes, which registers natural, madry, trades, act, afd and
arrest. Code that imports a submodule directly and then looks a recipe up by name calls
:func:`load_recipes` first.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .base import DEFENSES, AttackConfig, Recipe, TrainConfig, register_defense
    from .presets import build_config, check_config
    from .trainer import train

_LAZY = {
    "DEFENSES": "base", "AttackConfig": "base", "Recipe": "base", "TrainConfig": "base", "register_defense": "base",
    "build_config": "presets", "check_config": "presets", "train": "trainer",
}
RECIPE_MODULES = ("standard", "act", "afd", "arrest", "trades")  # each registers its recipes on import


def load_recipes() -> None:
    """Import every built-in recipe module, so that ``DEFENSES`` knows them all (idempotent)."""
    for name in RECIPE_MODULES:
        importlib.import_module(f".{name}", __name__)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        load_recipes()
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DEFENSES", "AttackConfig", "Recipe", "TrainConfig", "register_defense", "build_config", "check_config", "train",
           "load_recipes"]
