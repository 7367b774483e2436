"""Random draws keyed by example position, so an attack's numbers never depend on the batch.

Every random draw of our attacks goes through :func:`rand`, :func:`randn`, :func:`randint` or
:func:`exponential` with a ``generator`` that is either

- a :class:`RowGenerator`: one ``torch.Generator`` per row, seeded by (seed, stream, the row's
  position in the whole evaluation). Row ``i`` of a draw of shape ``(n, *rest)`` is drawn from row
  ``i``'s own generator, so what a point draws depends on its position and on how many draws it
  made before, never on which other points share its batch, the batch size, the shard or the rank;
  :func:`rows` narrows it to a subset of rows (the same generator objects, so their streams go on);
- a plain ``torch.Generator`` (or ``None``): one stream for the whole draw, as ``torch.rand`` does
  (training, the tests' direct ``run`` calls, and attacks that run on canonical blocks).

Draws are made on the CPU and moved to the device, so the same positions give the same numbers
on every device. The cost: one small draw per row instead of one per batch (benchmarks/bench_draws.py
measures it against the attack's gradient passes).

Example::

    g = RowGenerator.keyed(seed=0, stream="pgd@linf:0.03", positions=torch.tensor([5, 6, 7]))
    start = rand((3, 3, 32, 32), g, x.device)    # row 0 is position 5's first draw
    later = rand((2, 3, 32, 32), rows(g, torch.tensor([0, 2])), x.device)  # positions 5 and 7 only
"""
from __future__ import annotations

import hashlib
from typing import Callable, Sequence

import torch
from torch import Tensor

Draw = Callable[[tuple[int, ...], torch.Generator], Tensor]


def stream_seed(seed: int, stream: str, key: str | int) -> int:
    """A 63-bit seed for (seed, stream, key): blake2b of ``"seed:stream:key"``."""
    digest = hashlib.blake2b(f"{seed}:{stream}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class RowGenerator:
    """One CPU ``torch.Generator`` per row; draws of shape ``(n, ...)`` take row ``i`` from
    generator ``i``. Build one with :meth:`keyed`; narrow it with :func:`rows`."""

    def __init__(self, generators: Sequence[torch.Generator]) -> None:
        self.generators = list(generators)

    @classmethod
    def keyed(cls, seed: int, stream: str, positions: Tensor | Sequence[int]) -> "RowGenerator":
        """A generator per position, seeded by (seed, stream, position) only."""
        pos = positions.tolist() if isinstance(positions, Tensor) else list(positions)
        gens = []
        for p in pos:
            g = torch.Generator()
            g.manual_seed(stream_seed(seed, stream, f"row{int(p)}"))
            gens.append(g)
        return cls(gens)

    def __len__(self) -> int:
        return len(self.generators)

    def subset(self, idx: Tensor | Sequence[int]) -> "RowGenerator":
        ids = idx.tolist() if isinstance(idx, Tensor) else list(idx)
        if ids and isinstance(ids[0], bool):  # a boolean mask
            ids = [i for i, keep in enumerate(ids) if keep]
        return RowGenerator([self.generators[i] for i in ids])

    @property
    def device(self) -> torch.device:  # the draws' device (then moved to the data's)
        return torch.device("cpu")

    def draw(self, shape: Sequence[int], one: Draw) -> Tensor:
        shape = tuple(int(s) for s in shape)
        if not shape or shape[0] != len(self.generators):
            raise ValueError(f"a draw of shape {shape} from generators for {len(self.generators)} rows")
        if not self.generators:
            return one(shape, torch.Generator())
        return torch.stack([one(shape[1:], g) for g in self.generators])


AnyGenerator = RowGenerator | torch.Generator | None


def rows(generator: AnyGenerator, idx: Tensor) -> AnyGenerator:
    """``generator`` for the rows ``idx`` of the current batch (a plain generator is shared as is)."""
    return generator.subset(idx) if isinstance(generator, RowGenerator) else generator


def _dev(generator: AnyGenerator) -> torch.device | str:
    return generator.device if generator is not None else "cpu"


def _draw(shape: Sequence[int], generator: AnyGenerator, device: torch.device | str | None, one: Draw) -> Tensor:
    if isinstance(generator, RowGenerator):
        out = generator.draw(shape, one)
    else:
        out = one(tuple(shape), generator)  # type: ignore[arg-type]
    return out if device is None else out.to(device)


def rand(shape: Sequence[int], generator: AnyGenerator, device: torch.device | str | None = None) -> Tensor:
    """Uniform in [0, 1), float32."""
    return _draw(shape, generator, device, lambda s, g: torch.rand(s, generator=g, device=_dev(g)))


def randn(shape: Sequence[int], generator: AnyGenerator, device: torch.device | str | None = None) -> Tensor:
    """Standard normal, float32."""
    return _draw(shape, generator, device, lambda s, g: torch.randn(s, generator=g, device=_dev(g)))


def randint(low: int, high: int, shape: Sequence[int], generator: AnyGenerator,
            device: torch.device | str | None = None) -> Tensor:
    """Integers in [low, high)."""
    return _draw(shape, generator, device, lambda s, g: torch.randint(low, high, s, generator=g, device=_dev(g)))


def exponential(shape: Sequence[int], generator: AnyGenerator, device: torch.device | str | None = None) -> Tensor:
    """Exponential with rate 1, float32."""
    return _draw(shape, generator, device, lambda s, g: torch.empty(s, device=_dev(g)).exponential_(generator=g))
