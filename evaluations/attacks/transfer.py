"""Black-box transfer attack: PGD crafted on a surrogate checkpoint, evaluated on the target.

ACT (Table 3) convention: PGD-20 (CE, uniform random start, every row takes every step: no early
stop on the surrogate, so the examples are not left just across the surrogate's boundary), then
the target model classifies them. ``white_box = False``: the target's gradients are never used, so
the sanity checks compare it with the white-box worst case.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from robustbench_lite.errors import BenchError
from robustbench_lite.files import sha256_file
from robustbench_lite.utils import frozen

from ..pgd import default_step_size, pgd
from .base import Attack, AttackOutput, predict, register_attack

def load_surrogate(path: str, member: str | None, device: torch.device) -> nn.Module:
    """The surrogate's model in eval mode on ``device``. The attack runs once per block of
    examples, so the loaded model is reused: a small LRU cache keyed by the file's resolved path
    and sha256 (a checkpoint rewritten in place is loaded again), the member and the device. The
    sha256 is computed once per (path, mtime, size), not once per block."""
    if not Path(path).is_file():
        raise BenchError(f"surrogate checkpoint {path} does not exist.")
    resolved = Path(path).resolve()
    st = resolved.stat()
    return _load_surrogate(str(resolved), _sha256(str(resolved), st.st_mtime_ns, st.st_size), member, str(device), path)


@functools.lru_cache(maxsize=8)
def _sha256(resolved: str, _mtime_ns: int, _size: int) -> str:
    return sha256_file(resolved)


@functools.lru_cache(maxsize=2)
def _load_surrogate(resolved: str, sha256: str, member: str | None, device: str, path: str) -> nn.Module:
    """Cached on every argument (``path``, the name as given, is what load errors quote)."""
    from robustbench_lite.checkpoint import load_checkpoint

    return load_checkpoint(path, member=member).model.to(device).eval()


def transfer_examples(surrogate: nn.Module, x: Tensor, y: Tensor, *, norm: str, eps: float, steps: int,
                      rel_step_size: float | None, generator: torch.Generator) -> Tensor:
    """PGD-``steps`` examples crafted on ``surrogate`` (frozen, eval mode), all steps taken."""
    with frozen(surrogate):
        return pgd(surrogate, x, y, norm=norm, eps=eps, steps=steps,
                   step_size=default_step_size(eps, steps, rel_step_size), early_stop=False,
                   return_success=False, generator=generator).x_adv


@register_attack("transfer")
@dataclass(frozen=True, kw_only=True)
class Transfer(Attack):
    """Transfer from ``surrogate`` (a checkpoint path): PGD-``steps`` on the surrogate, step
    ``rel_step_size * eps`` (default 2.5/steps), judged on the target. Example:
    ``create_attack("transfer", surrogate="runs/natural/checkpoint.pt")``."""

    surrogate: str = ""
    member: str | None = None
    steps: int = 20
    rel_step_size: float | None = None
    white_box = False
    kind = "transfer"
    row_keyed = True  # every row takes every surrogate step from its own start

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.surrogate:
            raise BenchError("the transfer attack needs surrogate = <checkpoint path>.")

    def run(self, model: nn.Module, x: Tensor, y: Tensor, *, eps: float | None,
            generator: torch.Generator) -> AttackOutput:
        if eps is None:
            raise ValueError("transfer needs eps")
        sur = load_surrogate(self.surrogate, self.member, x.device)
        x_adv = transfer_examples(sur, x, y, norm=self.norm, eps=eps, steps=self.steps,
                                  rel_step_size=self.rel_step_size, generator=generator)
        return AttackOutput(x_adv, predict(model, x_adv, len(x_adv)) != y)
