"""Training recipes and the one trainer loop. Imports the core and ``evaluations`` (one PGD)."""
from .base import DEFENSES, AttackConfig, Recipe, TrainConfig, register_defense
from . import standard  # noqa: F401  (registers natural, madry)
from . import act, afd, arrest, trades  # noqa: F401  (register act, afd, arrest, trades)
from .presets import build_config
from .trainer import train

__all__ = ["DEFENSES", "AttackConfig", "Recipe", "TrainConfig", "register_defense", "build_config", "train"]
