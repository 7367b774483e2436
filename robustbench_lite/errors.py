"""The one exception type for a user's mistake.

The CLI turns a :class:`BenchError` into one sentence on stderr and exit code 2; anything else is a
bug and keeps its traceback.
"""
from __future__ import annotations

import math
from typing import Any


class BenchError(ValueError):
    """A user's mistake (bad file, unknown name, bad value), stated in one clear sentence."""


def is_number(value: Any) -> bool:
    """An int or a float, not a bool (TOML and JSON give ``true`` as a bool, which Python counts as an int)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def require_number(name: str, value: Any, *, integer: bool = False, minimum: float = 0.0, strict: bool = False) -> None:
    """``value`` is a finite number (an integer where ``integer``) >= ``minimum`` (> if ``strict``),
    else a :class:`BenchError` naming ``name``."""
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if (not is_number(value) or not ok_type or not math.isfinite(value) or value < minimum
            or (strict and value == minimum)):
        kind = "an integer" if integer else "a number"
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise BenchError(f"{name} must be {kind} {bound}, got {value!r}.")
