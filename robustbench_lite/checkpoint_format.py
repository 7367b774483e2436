"""The checkpoint format's marker and version, and the check that every field
:func:`robustbench_lite.checkpoint.load_checkpoint` reads has its type (one sentence naming the field
otherwise). Split from ``checkpoint.py``, which loads what this module has checked."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from torch import Tensor

from .errors import BenchError

FORMAT = "robustbench_lite/checkpoint"
FORMAT_VERSION = 1


def _is_int(v: Any, minimum: int = 1) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= minimum


def bad(path: Path, what: str) -> BenchError:
    return BenchError(f"{path} is a damaged robustbench_lite checkpoint: {what}.")


def check_format(obj: Mapping[str, Any], path: Path) -> None:
    """Every field :func:`load_checkpoint` reads has its type, else one sentence naming the field."""
    version = obj.get("format_version", 0)
    if not _is_int(version, 0):
        raise bad(path, f"format_version is {version!r}, not an integer")
    if version > FORMAT_VERSION:
        raise BenchError(f"{path} was written by a newer robustbench_lite (format {version}); upgrade.")
    members = obj.get("members")
    if members is None:
        raise bad(path, "it has no 'members' (the networks' state_dicts)")
    if not isinstance(members, Mapping):
        raise bad(path, f"'members' is a {type(members).__name__}, not a dict of state_dicts")
    if not members:
        raise bad(path, "'members' is empty")
    for name, sd in members.items():
        if not isinstance(name, str) or not isinstance(sd, Mapping) or not all(
                isinstance(k, str) and isinstance(v, Tensor) for k, v in sd.items()):
            raise bad(path, f"member {name!r} is not a state_dict (a dict of tensors)")
    if not isinstance(obj.get("default_member", "model"), str):
        raise bad(path, f"default_member is {obj['default_member']!r}, not a name")
    arch = obj.get("arch")
    if not isinstance(arch, str) or not arch:
        raise bad(path, "it has no 'arch'" if arch is None else f"'arch' is {arch!r}, not a model name")
    kwargs = obj.get("arch_kwargs", {})
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise bad(path, f"'arch_kwargs' is {kwargs!r}, not a dict of keyword arguments")
    if not isinstance(obj.get("dataset"), str):
        raise bad(path, "it has no 'dataset'" if "dataset" not in obj else f"'dataset' is {obj['dataset']!r}, not a name")
    for key in ("num_classes", "input_shape"):
        if key not in obj:
            raise bad(path, f"it has no {key!r}")
    if not _is_int(obj["num_classes"]):
        raise bad(path, f"'num_classes' is {obj['num_classes']!r}, not a positive integer")
    shape = obj["input_shape"]
    if not isinstance(shape, (list, tuple)) or not shape or not all(_is_int(d) for d in shape):
        raise bad(path, f"'input_shape' is {shape!r}, not a list of positive integers like [3, 32, 32]")
    if obj.get("threat") is not None and not isinstance(obj["threat"], Mapping):
        raise bad(path, f"'threat' is {obj['threat']!r}, not a dict with norm and eps")
    for key, kind, name in (("defense", str, "a name"), ("defense_config", Mapping, "a dict"), ("history", list, "a list")):
        if key in obj and not isinstance(obj[key], kind):
            raise bad(path, f"{key!r} is {type(obj[key]).__name__}, not {name}")
    if not all(isinstance(row, Mapping) for row in obj.get("history", [])):
        raise bad(path, "'history' holds rows that are not dicts")
