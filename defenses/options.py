"""The valid values of every recipe option, declared beside the defaults and checked before training.

A recipe declares ``option_defaults`` (the type of each option is its default's) and ``option_rules``
(the range or the allowed values); :func:`check_options` refuses, in one sentence naming the option
and its valid range, an unknown option, a value of the wrong type, NaN/inf, or a value outside its
range, so ``--option beta=-6`` (TRADES) or ``alpha=5`` (ACT) is refused up front instead of training
for minutes and then diverging.

Example::

    option_rules = {"alpha": Range(0, 1), "temperature": Range(0, None, open_low=True),
                    "attack_form": Choice("code", "paper")}
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from robustbench_lite.errors import BenchError, is_number


@dataclass(frozen=True)
class Range:
    """A number in [low, high] (an end of None is unbounded; ``open_low``/``open_high`` exclude the end);
    ``also`` lists special values accepted besides the range (e.g. -1 meaning "the default")."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    also: tuple[float, ...] = ()
    meaning: str = ""  # what an ``also`` value means, for the message

    def error(self, value: Any) -> str | None:
        if not is_number(value) or not math.isfinite(value):
            return None  # the type check speaks first
        if value in self.also:
            return None
        ok = ((self.low is None or (value > self.low if self.open_low else value >= self.low))
              and (self.high is None or (value < self.high if self.open_high else value <= self.high)))
        return None if ok else self.describe()

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            text = f"in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}{')' if self.open_high else ']'}"
        elif self.low is not None:
            text = f"{'>' if self.open_low else '>='} {self.low:g}"
        elif self.high is not None:
            text = f"{'<' if self.open_high else '<='} {self.high:g}"
        else:
            text = "a finite number"
        if self.also:
            text += f" (or {', '.join(f'{a:g}' for a in self.also)}{': ' + self.meaning if self.meaning else ''})"
        return text


@dataclass(frozen=True)
class Choice:
    """One of the listed strings."""

    values: tuple[str, ...]

    def __init__(self, *values: str) -> None:
        object.__setattr__(self, "values", tuple(values))

    def error(self, value: Any) -> str | None:
        return None if value in self.values else self.describe()

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


Rule = Range | Choice


def type_error(value: Any, default: Any) -> str | None:
    """What a recipe option must be when ``value`` lacks its default's type, else None. An integer
    is a number; numbers are finite; a default of None takes anything."""
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(default, (int, float)):
        integer = isinstance(default, int)
        ok = is_number(value) and math.isfinite(value) and (isinstance(value, int) or not integer)
        return None if ok else "an integer" if integer else "a number"
    if isinstance(default, str):
        return None if isinstance(value, str) else "a string"
    return None


def check_options(defense: str, options: Mapping[str, Any], defaults: Mapping[str, Any],
                  rules: Mapping[str, Rule]) -> None:
    """Refuse (one sentence) an unknown option, a wrong type or a value outside its rule."""
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        valid = ", ".join(sorted(defaults)) or "none"
        raise BenchError(f"defense {defense!r} has no option {', '.join(unknown)}; valid: {valid}.")
    for k, v in options.items():
        kind = type_error(v, defaults[k])
        if kind:
            raise BenchError(f"defense {defense!r}: option {k} must be {kind}, got {v!r}.")
        rule = rules.get(k)
        bad = rule.error(v) if rule is not None else None
        if bad:
            raise BenchError(f"defense {defense!r}: option {k} must be {bad}, got {v!r}.")
