"""Threat models: a norm and a radius, parsed from strings such as ``8/255``, ``0.3``, ``l2:0.5``."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from .errors import BenchError

NORMS = ("linf", "l2", "l1")
_ALIASES = {"linf": "linf", "inf": "linf", "l_inf": "linf", "li": "linf", "l2": "l2", "l1": "l1"}


def parse_eps(text: str | float | int) -> float:
    """Parse ``0.3``, ``8/255``, ``2e-3`` into a non-negative finite float."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        s = str(text).strip()
        if not re.fullmatch(r"[0-9.eE+\-]+(/[0-9.eE+\-]+)?", s):
            raise BenchError(f"cannot read {text!r} as an epsilon; write e.g. 0.3 or 8/255.")
        try:
            if "/" in s:
                num, den = s.split("/")
                value = float(Fraction(num)) / float(Fraction(den))
            else:
                value = float(s)
        except (ValueError, ZeroDivisionError):
            raise BenchError(f"cannot read {text!r} as an epsilon; write e.g. 0.3 or 8/255.") from None
    if not math.isfinite(value) or value < 0:
        raise BenchError(f"epsilon must be a finite number >= 0, got {text!r}.")
    return value


@dataclass(frozen=True)
class ThreatModel:
    """An Lp ball of radius ``eps`` around inputs in [0,1].

    Example::

        >>> ThreatModel.parse("linf:8/255")
        ThreatModel(norm='linf', eps=0.03137254901960784)
    """

    norm: str
    eps: float

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise BenchError(f"unknown norm {self.norm!r}; known: {', '.join(NORMS)}.")
        if not math.isfinite(self.eps) or self.eps < 0:
            raise BenchError(f"epsilon must be a finite number >= 0, got {self.eps!r}.")

    @classmethod
    def parse(cls, text: str, default_norm: str = "linf") -> "ThreatModel":
        """``norm:eps`` or just ``eps`` (then ``default_norm``)."""
        s = str(text).strip().lower()
        if ":" in s:
            norm_s, eps_s = s.split(":", 1)
            norm = _ALIASES.get(norm_s.strip())
            if norm is None:
                raise BenchError(f"unknown norm {norm_s!r} in {text!r}; known: {', '.join(NORMS)}.")
        else:
            norm, eps_s = default_norm, s
        return cls(norm, parse_eps(eps_s))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ThreatModel":
        try:
            return cls(_ALIASES.get(str(d["norm"]).lower(), str(d["norm"])), parse_eps(d["eps"]))
        except KeyError as e:
            raise BenchError(f"a threat model needs 'norm' and 'eps', missing {e}.") from None

    def to_dict(self) -> dict[str, Any]:
        return {"norm": self.norm, "eps": self.eps}

    def __str__(self) -> str:
        frac = Fraction(self.eps).limit_denominator(255)
        if frac.denominator == 255 and abs(float(frac) - self.eps) < 1e-12 and self.eps > 0:
            return f"{self.norm}:{frac.numerator}/255"
        return f"{self.norm}:{self.eps:g}"
