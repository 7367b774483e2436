"""Presets are data: ``defenses/presets/<defense>.toml`` with one table per dataset.

Example (``madry.toml``)::

    [mnist5k]
    arch = "small_cnn"
    epochs = 8
    lr = 0.05
    attack = { norm = "linf", eps = "0.3", steps = 10, step_size = "0.04" }
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from robustbench_lite.errors import BenchError
from robustbench_lite.threat import parse_eps

from .base import AttackConfig, TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PRESETS_DIR = Path(__file__).parent / "presets"
_FIELDS = set(TrainConfig.__dataclass_fields__) - {"defense", "dataset", "attack"}


def preset_table(defense: str, preset: str) -> dict[str, Any]:
    f = PRESETS_DIR / f"{defense}.toml"
    if not f.is_file():
        raise BenchError(f"defense {defense!r} has no presets file ({f.name}).")
    tables = tomllib.loads(f.read_text())
    if preset not in tables:
        raise BenchError(f"defense {defense!r} has no preset {preset!r}; presets: {', '.join(tables)}.")
    return dict(tables[preset])


def build_config(defense: str, preset: str, overrides: dict[str, Any]) -> TrainConfig:
    """Preset table ``[preset]`` of ``<defense>.toml`` + overrides (None values ignored)."""
    from . import load_recipes
    from .base import DEFENSES

    load_recipes()
    DEFENSES.get(defense)  # an unknown defense is a clear error listing the known ones
    table = preset_table(defense, preset)
    dataset = table.pop("dataset", preset)
    attack = dict(table.pop("attack", {}))
    attack.update({k[len("attack_"):]: v for k, v in overrides.items() if k.startswith("attack_") and v is not None})
    for k in ("eps", "step_size"):
        if k in attack:
            attack[k] = parse_eps(attack[k])
    unknown = sorted(set(table) - _FIELDS)
    if unknown:
        raise BenchError(f"preset {defense}/{preset} has unknown key(s) {', '.join(unknown)}.")
    table.update({k: v for k, v in overrides.items() if v is not None and not k.startswith("attack_")})
    dataset = table.pop("dataset", dataset)
    for k in ("milestones",):
        if k in table:
            table[k] = tuple(table[k])
    if "lr_schedule" in table:
        table["lr_schedule"] = tuple((int(e), float(v)) for e, v in table["lr_schedule"])
    try:
        return TrainConfig(defense=defense, dataset=dataset, attack=AttackConfig(**attack), **table)
    except TypeError as e:
        raise BenchError(f"bad preset {defense}/{preset}: {e}.") from None


def check_config(cfg: TrainConfig) -> None:
    """Everything about ``cfg`` that can be refused before any data loads or any epoch trains: the
    dataset and architecture names, and the recipe's options and constraints (its constructor checks
    them: :func:`defenses.options.check_options`). One sentence, :class:`BenchError`."""
    from robustbench_lite.data import get_dataset
    from robustbench_lite.models import MODELS

    from . import load_recipes
    from .base import DEFENSES

    load_recipes()
    get_dataset(cfg.dataset)
    if cfg.arch not in MODELS:
        raise BenchError(f"unknown model {cfg.arch!r} for training; known: {', '.join(MODELS.names())} "
                         "(bench train builds registered architectures only).")
    DEFENSES.get(cfg.defense)(cfg)
