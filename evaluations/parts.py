"""Per-example results on disk: a :class:`Part` per (attack, eps) and per block, written
atomically with the run's fingerprint and reused on ``--resume`` only when the fingerprint matches;
and :class:`CountingModel`, which counts the passes an attack costs."""
from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from torch import Tensor, nn

from robustbench_lite.utils import atomic_write_json

logger = logging.getLogger(__name__)


def keep_input_graph(out: Tensor, x: Tensor) -> Tensor:
    """``out``, differentiable in ``x`` when ``x`` requires grad but the model cut the graph
    (``x.detach()``, numpy, a non-differentiable layer): its input gradient is then exactly zero
    instead of an autograd error, so the attacks run and the gradient indicators report the masking."""
    if x.requires_grad and not out.requires_grad:
        return out + 0 * x.flatten(1)[:, :1].to(out.dtype)
    return out


class CountingModel(nn.Module):
    """Counts example-rows through forward and backward passes (the attack cost measure); a cut
    input graph reads as a zero gradient (:func:`keep_input_graph`)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.forwards = 0
        self.backwards = 0

    def _count_backward(self, n: int) -> Callable[[Tensor], None]:
        def hook(_grad: Tensor) -> None:
            self.backwards += n

        return hook

    def forward(self, x: Tensor) -> Tensor:
        out = keep_input_graph(self.model(x), x)
        self.forwards += x.shape[0]
        if out.requires_grad:
            out.register_hook(self._count_backward(x.shape[0]))
        return out


@dataclass
class Part:
    """One finished (attack, eps): per-example results over the evaluated examples."""

    key: str
    attack: str
    label: str
    norm: str
    eps: float
    robust: list[bool]            # clean-correct and not broken by this attack
    attacked: list[bool]          # the attack was run on this point
    norms: list[float] | None     # minimum-norm attacks: smallest adversarial norm (inf: none found)
    seconds: float
    forwards: int
    backwards: int
    config: dict[str, Any] = field(default_factory=dict)
    predictions: list[int] | None = None  # the clean part: the model's predicted class per example
    notes: list[str] = field(default_factory=list)  # e.g. a block halved on out-of-memory (attack front door)
    # attack-failure indicators on the attack's own path, per example (evaluations.attack_paths.PATH_FLAGS
    # and "gradient_examined"); None: not measured (minimum-norm runs, parts written before they were)
    indicators: dict[str, list[bool]] | None = None
    unverified: int = 0  # claimed breaks the attack front door's check rejected (evaluations.breaks)
    adversarials: str | None = None  # the .npz beside this part holding its breaks (evaluations.adversarials)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if self.norms is not None:
            d["norms"] = [None if v == float("inf") else v for v in self.norms]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Part":
        if d.get("norms") is not None:
            d = {**d, "norms": [float("inf") if v is None else v for v in d["norms"]]}
        return cls(**d)


def join_flags(flags: list[dict[str, list[bool]] | None], sizes: list[int]) -> dict[str, list[bool]] | None:
    """Per-example indicator flags of consecutive pieces (blocks, shards) of ``sizes`` examples as
    one part's (a piece without them: all False); None when no piece has them."""
    keys = sorted({k for f in flags if f for k in f})
    if not keys:
        return None
    return {k: [v for f, n in zip(flags, sizes) for v in ((f or {}).get(k) or [False] * n)] for k in keys}


def reuse(path: Path, fingerprint: dict[str, Any], resume: bool, quiet: bool = False) -> Part | None:
    """The part at ``path`` when resuming and it was made with this ``fingerprint``, else None (and why)."""
    if not (resume and path.is_file()):
        return None
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    old = d.get("fingerprint")
    if old != fingerprint:
        old = old if isinstance(old, dict) else {}
        keys = [k for k in fingerprint if old.get(k) != fingerprint[k]]
        diff = ", ".join(f"another {k}" if k in ("suite", "checkpoint", "threat", "member") else
                         f"{k} {old.get(k)} (now {fingerprint[k]})" for k in keys)
        logger.warning("not reusing %s: it was made with %s", path.name, diff or "another fingerprint")
        return None
    if not quiet:
        logger.info("resume: reusing %s", path.name)
    return Part.from_json(d["part"])


def write(path: Path, part: Part, fingerprint: dict[str, Any]) -> None:
    atomic_write_json(path, {"fingerprint": fingerprint, "part": part.to_json()})
