"""Threat models: a norm and a radius, parsed from strings such as ``8/255``, ``0.3``, ``l2:0.5``."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Sequence

from .errors import BenchError

NORMS = ("linf", "l2", "l1")
NORM_ALIASES = {"linf": "linf", "inf": "linf", "l_inf": "linf", "li": "linf", "l2": "l2", "l1": "l1"}
_ALIASES = NORM_ALIASES


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
    def parse(cls, text: str, default_norm: str = "linf", *, what: str = "the threat") -> "ThreatModel":
        """``norm:eps`` or just ``eps`` (then ``default_norm``). An empty or blank text, an empty norm
        or eps (``linf:``, ``:0.3``), or more than one ``:`` is a :class:`BenchError`, never the default."""
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            text = str(text)
        if not isinstance(text, str) or not text.strip():
            raise BenchError(f"{what} {text!r} is empty; write e.g. linf:8/255, l2:0.5 or 0.3.")
        s = text.strip().lower()
        if s.count(":") > 1:
            raise BenchError(f"cannot read {what} {text!r}: write norm:eps, e.g. linf:8/255 or l2:0.5.")
        if ":" in s:
            norm_s, eps_s = s.split(":", 1)
            if not eps_s.strip():
                raise BenchError(f"{what} {text!r} has no radius; write e.g. {norm_s.strip() or 'linf'}:8/255.")
            norm = _ALIASES.get(norm_s.strip())
            if norm is None:
                raise BenchError(f"unknown norm {norm_s!r} in {what} {text!r}; known: {', '.join(NORMS)}.")
        else:
            norm, eps_s = default_norm, s
        try:
            eps = parse_eps(eps_s)
        except BenchError as e:
            raise BenchError(f"{what} {text!r}: {e}") from None
        return cls(norm, eps)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ThreatModel":
        try:
            return cls(_ALIASES.get(str(d["norm"]).lower(), str(d["norm"])), parse_eps(d["eps"]))
        except KeyError as e:
            raise BenchError(f"a threat model needs 'norm' and 'eps', missing {e}.") from None

    def box_diameter(self, input_shape: Sequence[int] | None = None) -> float | None:
        """The largest distance between two inputs in [0,1]^D in this norm: 1 (Linf), sqrt(D) (L2),
        D (L1); None for L2/L1 when the input shape is unknown."""
        if self.norm == "linf":
            return 1.0
        if not input_shape:
            return None
        d = math.prod(int(s) for s in input_shape)
        return math.sqrt(d) if self.norm == "l2" else float(d)

    def check_box(self, input_shape: Sequence[int] | None = None, *, what: str = "--threat") -> str | None:
        """Check that this threat is a meaningful ball for inputs in [0,1] of ``input_shape`` (C, H, W).

        A :class:`BenchError` when eps is 0 (no perturbation at all: robust accuracy would be clean
        accuracy) or when the ball covers the whole [0,1] box (eps >= its diameter: 1 for Linf,
        sqrt(D) for L2, D for L1), so every input can become every other one. Returns a note when the
        ball reaches the box's centre from every input (eps >= half the diameter): every input can
        then be turned into the same grey image, so no model is robust beyond its most frequent
        class; otherwise None. L2/L1 radii are only checked against a known ``input_shape``.

        Example::

            >>> ThreatModel.parse("linf:5").check_box((1, 28, 28))
            Traceback (most recent call last):
            BenchError: --threat linf:5 is a ball that covers the [0,1] box ...
        """
        if self.eps == 0:
            raise BenchError(f"{what} {self} allows no perturbation (eps 0), so robust accuracy would be clean "
                             "accuracy; give a radius > 0.")
        diameter = self.box_diameter(input_shape)
        if diameter is None:
            return None
        shape = "x".join(str(int(s)) for s in input_shape) if input_shape else ""
        where = f"the [0,1] box of {shape} inputs" if self.norm != "linf" else "the [0,1] box"
        if self.eps >= diameter:
            raise BenchError(f"{what} {self} is a ball that covers {where} (its {self.norm} diameter is "
                             f"{diameter:.4g}): every input can become any other, so no model can be robust; "
                             "give a smaller radius.")
        if self.eps >= diameter / 2:
            return (f"{what} {self} reaches the grey centre of {where} from every input (eps >= {diameter / 2:.4g}), "
                    "so no model can be robust beyond its most frequent class.")
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"norm": self.norm, "eps": self.eps}

    def __str__(self) -> str:
        return format_threat(self.norm, self.eps)


def parse_threat(text: str) -> tuple[str, float]:
    """``"linf:8/255"`` -> ``("linf", 0.0313...)``; a bare eps means Linf."""
    t = ThreatModel.parse(text)
    return t.norm, t.eps


def format_eps(eps: float) -> str:
    """``0.0313725...`` -> ``"8/255"`` (also ``5/255``, not its reduced ``1/51``); a value whose
    short decimal form is exact (``0.2``, ``1``) in that form; others in short decimal form."""
    short = f"{eps:g}"
    if float(short) == eps:
        return short
    k = round(eps * 255)
    if k > 0 and abs(k / 255 - eps) < 1e-12:
        return f"{k}/255"
    return short


def format_threat(norm: str, eps: float | None) -> str:
    """``("linf", 8/255)`` -> ``"linf:8/255"``; the norm alone when eps is None."""
    return norm if eps is None else f"{norm}:{format_eps(eps)}"
