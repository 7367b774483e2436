"""Attack base classes and registry (the Foolbox 3 shape: a subclass writes only ``run``; the
base class is the front door that owns batching, eps lists and per-block seeds).
The model is an argument of ``run`` and of the call, never of the constructor.

The front door::

    pgd = create_attack("pgd", steps=20)
    outs = pgd(model, x, y, eps=[0.1, 0.2, 0.3], batch_size=128, seed=0)   # one AttackOutput per eps

runs ``run`` on the points in pieces, and every random draw is keyed by (seed, stream, example
position) only: ``--batch-size``, shards, ranks and the device's default batch change speed and
memory, never a number.

- A row-keyed attack (``row_keyed = True``: all of ours whose per-point result depends only on
  the point, e.g. PGD, FGSM, MIM, APGD-CE/DLR/T, the transfer attack) runs on chunks of
  ``batch_size`` rows and gets a :class:`~evaluations.draws.RowGenerator`: one generator per row,
  seeded by (seed, stream, position), so a point draws the same whatever shares its batch.
- Any other attack (``row_keyed = False``, the default, and a user's own attack: A3's online
  discarding, margin_topk's ``more_targets``, pyautoattack's AutoAttack and Square, foolbox's
  attacks, whose per-point result depends on the batch by design) runs on canonical blocks of
  :data:`CANONICAL_BLOCK` positions (``positions // CANONICAL_BLOCK``, whatever ``batch_size``
  is) with one ``torch.Generator`` seeded by (seed, stream, block start).

A block's points are the ones of it that the call attacks, so a shard, a resumed run or another
rank given the same points reproduces them. In a sweep a
point broken at a smaller eps is not attacked again at a larger one (a perturbation inside the
smaller ball is inside the larger one).

Two kinds:
- fixed-epsilon (``minimum_norm = False``): ``run(model, x, y, eps=..., generator=...)`` returns
  an :class:`AttackOutput` whose ``success`` says where ``x_adv`` is misclassified inside the ball.
- minimum-norm (``minimum_norm = True``): ``run(model, x, y, generator=...)`` also returns
  ``norms`` (N,), the size of the smallest adversarial found (``inf`` where none was found); the
  accuracy at every eps of a sweep follows from one run: robust at eps iff ``norms > eps``.
"""
from __future__ import annotations

import dataclasses
import logging
import functools
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterator, Sequence, overload

import torch
from torch import Tensor, nn

from robustbench_lite.errors import BenchError, is_number
from robustbench_lite.progress import progress_bar, where as progress_where
from robustbench_lite.registry import Registry
from robustbench_lite.utils import make_generator

from ..draws import RowGenerator, stream_seed

# The canonical block: attacks that are not row-keyed run on blocks of this many example positions
# (aligned on multiples of it) whatever --batch-size is, so their numbers never depend on it. It is
# part of every run's fingerprint (evaluations.evaluate.make_fingerprint); changing it changes those
# attacks' numbers (docs/evaluation.md, "Batch size and reproducibility").
CANONICAL_BLOCK = 128


def scheduling_block(batch_size: int, attacks: Sequence["Attack"]) -> int:
    """The runner's unit of work (resume, shards, torchrun ranks) for a suite of ``attacks``:
    ``batch_size`` positions when every attack is row-keyed (any split gives the same draws), else
    whole canonical blocks, at least ``batch_size`` positions, so that no canonical block is ever
    split between two units (two shards, two ranks)."""
    if all(a.row_keyed for a in attacks):
        return int(batch_size)
    return CANONICAL_BLOCK * max(1, -(-int(batch_size) // CANONICAL_BLOCK))


@dataclass
class AttackOutput:
    x_adv: Tensor
    success: Tensor  # (N,) bool: misclassified and (for fixed-eps attacks) inside the ball
    norms: Tensor | None = None  # (N,) float, minimum-norm attacks only; inf where failed
    notes: tuple[str, ...] = ()  # what the front door had to do (e.g. halve a block on out-of-memory)
    unverified: int = 0  # claimed breaks the front door's fresh check rejected (counted as not broken)


@dataclass(frozen=True, kw_only=True)
class Attack:
    """Base of every registered attack. Subclasses are frozen dataclasses with keyword-only,
    documented hyperparameters; ``norm`` is the threat norm the attack works in."""

    norm: str = "linf"

    name: ClassVar[str] = ""
    minimum_norm: ClassVar[bool] = False
    white_box: ClassVar[bool] = True      # uses gradients (for the obfuscation checks)
    kind: ClassVar[str] = "white-box"     # the result row's kind: white-box, black-box, minimum-norm, transfer
    norms_supported: ClassVar[tuple[str, ...]] = ("linf", "l2", "l1")
    # a point's result depends only on the point and its own draws (no computation mixes rows):
    # the front door may run it in any chunks, with a RowGenerator; else canonical blocks
    row_keyed: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.norm not in self.norms_supported:
            raise BenchError(f"attack {self.name!r} supports norms {', '.join(self.norms_supported)}, not {self.norm!r}.")
        _check_options(self)

    def run(self, model: nn.Module, x: Tensor, y: Tensor, *, eps: float | None,
            generator: torch.Generator) -> AttackOutput:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        return {"name": self.name, **dataclasses.asdict(self)}

    @overload
    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, *, eps: float | None = None, batch_size: int = 128,
                 seed: int = 0, positions: Tensor | None = None, stream: str | None = None, progress: bool = True) -> AttackOutput: ...

    @overload
    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, *, eps: Sequence[float], batch_size: int = 128,
                 seed: int = 0, positions: Tensor | None = None, stream: str | None = None, progress: bool = True) -> list[AttackOutput]: ...

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, *, eps: float | Sequence[float] | None = None,
                 batch_size: int = 128, seed: int = 0, positions: Tensor | None = None,
                 stream: str | None = None, progress: bool = True) -> AttackOutput | list[AttackOutput]:
        """The front door: ``run`` on every point, in blocks, at one eps or a list of them.

        ``positions`` (N,) are the points' places in the whole evaluation (default ``0..N-1``): every
        random draw is keyed by (``seed``, ``stream``, position), so the result for a point does not
        depend on ``batch_size`` (a row-keyed attack runs on chunks of ``batch_size`` rows; any other
        on the canonical blocks ``positions // CANONICAL_BLOCK``), nor on which shard or rank runs
        it. ``stream`` names the random stream (default
        ``name@norm:eps``; the suite runner passes its entry's label). A minimum-norm attack runs
        once whatever ``eps`` is; with an eps list its outputs say ``success`` where the smallest
        adversarial found is within each eps. ``progress=False``: no progress bar (the suite
        runner keeps its own over the blocks it runs)."""
        if isinstance(eps, Sequence):
            return self._sweep(model, x, y, list(eps), batch_size, seed, positions, stream, progress)
        if self.minimum_norm:
            out = self._blocks(model, x, y, None, batch_size, seed, positions, stream or attack_key(self.name, self.norm, eps),
                               progress)
            return out if eps is None else _within(out, eps)
        if eps is None:
            raise BenchError(f"attack {self.name!r} needs an eps.")
        return self._blocks(model, x, y, eps, batch_size, seed, positions, stream or attack_key(self.name, self.norm, eps),
                            progress)

    def _sweep(self, model: nn.Module, x: Tensor, y: Tensor, eps: list[float], batch_size: int, seed: int,
               positions: Tensor | None, stream: str | None, progress: bool) -> list[AttackOutput]:
        if self.minimum_norm:
            out = self._blocks(model, x, y, None, batch_size, seed, positions,
                               stream or attack_key(self.name, self.norm, max(eps, default=0.0)), progress)
            return [_within(out, e) for e in eps]
        pos = torch.arange(len(x), device=x.device) if positions is None else positions
        outs: dict[float, AttackOutput] = {}
        x_adv, broken = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for e in sorted(set(eps)):  # smallest first: a point broken inside a smaller ball stays broken, with that adversarial
            todo = (~broken).nonzero().flatten()
            out = self._blocks(model, x[todo], y[todo], e, batch_size, seed, pos[todo], stream or attack_key(self.name, self.norm, e),
                               progress)
            x_adv, broken = x_adv.clone(), broken.clone()
            x_adv[todo], broken[todo] = out.x_adv, out.success
            outs[e] = AttackOutput(x_adv, broken, notes=out.notes, unverified=out.unverified)
        return [outs[e] for e in eps]  # in the order asked

    def _blocks(self, model: nn.Module, x: Tensor, y: Tensor, eps: float | None, batch_size: int, seed: int,
                positions: Tensor | None, stream: str, progress: bool = True) -> AttackOutput:
        """``run`` per piece, draws keyed by position: chunks of ``batch_size`` rows with a generator
        per row seeded by (seed, stream, position) for a row-keyed attack; else the canonical blocks
        ``positions // CANONICAL_BLOCK``, each with a generator seeded by (seed, stream, block start)."""
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise BenchError(f"the batch size must be a positive integer, got {batch_size!r}.")
        n = len(x)
        pos = torch.arange(n, device=x.device) if positions is None else positions.to(x.device)
        if len(pos) != n:
            raise ValueError(f"{len(pos)} positions for {n} points")
        x_adv, success = x.clone(), torch.zeros(n, dtype=torch.bool, device=x.device)
        norms = torch.full((n,), float("inf"), dtype=torch.float64, device=x.device) if self.minimum_norm else None
        held = done = unverified = 0
        notes: list[str] = []
        with progress_bar(total=n, desc=stream, unit="ex", enabled=progress) as bar:
            for b, sel, gens in self._pieces(pos, batch_size, seed, stream):
                with progress_where(f"{stream} block {b}"):
                    out = self._run_fitting(model, x[sel], y[sel], eps, gens, notes, f"{stream} block {b}")
                if torch.isnan(out.x_adv).any():
                    raise RuntimeError(f"attack {self.name} returned NaN inputs")
                out = self._verified(model, x[sel], y[sel], eps, out)
                ok, unverified = out.success.to(torch.bool), unverified + out.unverified
                x_adv[sel], success[sel] = out.x_adv, ok
                if norms is not None and out.norms is not None:
                    norms[sel] = torch.where(ok, out.norms.double(), torch.full_like(norms[sel], float("inf")))
                done, held = done + len(sel), held + int((~ok).sum())
                bar.update(len(sel))
                bar.set_postfix_str(f"robust {100 * held / max(done, 1):.1f}% of {done} attacked")
        return AttackOutput(x_adv, success, norms, tuple(notes), unverified)

    def _verified(self, model: nn.Module, x: Tensor, y: Tensor, eps: float | None, out: AttackOutput) -> AttackOutput:
        """``out`` with every claimed break checked where it is counted (:mod:`evaluations.breaks`):
        in the [0, 1] box, in the ball of ``eps`` (a minimum-norm attack: at the norm it reports),
        misclassified by a fresh forward pass in evaluation mode. A claim that fails counts as not
        broken (a minimum-norm one as not found) and in ``unverified``. Costs one forward pass over
        the claimed breaks only."""
        from ..breaks import check_breaks

        claimed = out.success.to(torch.bool).to(x.device)
        if self.minimum_norm:
            if out.norms is None:
                raise RuntimeError(f"minimum-norm attack {self.name} returned no norms")
            claimed &= torch.isfinite(out.norms.to(x.device))
        idx = claimed.nonzero().flatten()
        if not len(idx):
            return dataclasses.replace(out, success=claimed, unverified=0)
        ok, why = check_breaks(model, x[idx], out.x_adv[idx], y[idx], norm=self.norm, eps=eps,
                               norms=out.norms[idx.to(out.norms.device)] if self.minimum_norm else None,  # type: ignore[index]
                               batch_size=max(1, len(idx)))
        bad = idx[~ok.to(idx.device)]
        if len(bad):
            logger.warning("attack %s: %d of its %d claimed breaks do not hold (%s) and count as not broken",
                           self.name, len(bad), len(idx), next(w for w in why if w))
        success = claimed.clone()
        success[bad] = False
        norms = out.norms
        if norms is not None:
            norms = torch.where(success.to(norms.device), norms, torch.full_like(norms, float("inf")))
        return dataclasses.replace(out, success=success, norms=norms, unverified=len(bad))

    def _pieces(self, pos: Tensor, batch_size: int, seed: int,
                 stream: str) -> Iterator[tuple[int, Tensor, Callable[[slice], Any]]]:
        """(piece number, its rows, generator maker): ``gens(rows)`` gives the generator for a slice
        of the piece's rows (fresh per-row generators for a row-keyed attack; the block's one else)."""
        if self.row_keyed:
            for i in range(0, len(pos), batch_size):
                sel = torch.arange(i, min(i + batch_size, len(pos)), device=pos.device)
                yield i // batch_size, sel, lambda r, p=pos[sel]: RowGenerator.keyed(seed, stream, p[r])
            return
        block = torch.div(pos, CANONICAL_BLOCK, rounding_mode="floor")
        for b in torch.unique(block).tolist():
            gen = make_generator(stream_seed(seed, stream, f"block{b * CANONICAL_BLOCK}"))
            yield b, (block == b).nonzero().flatten(), lambda r, g=gen: g

    def _run_fitting(self, model: nn.Module, x: Tensor, y: Tensor, eps: float | None, gens: Callable[[slice], Any],
                     notes: list[str], where: str, rows: slice | None = None) -> AttackOutput:
        """``run``; on a (CUDA) out-of-memory error the piece runs in two halves, one after the
        other (halving again as needed), and a note says so. A row-keyed attack's halves draw what
        the whole piece would (fresh per-row generators): nothing changes. Any other attack's halves
        share the block's generator: the draws then differ from an undivided block's, so such a run
        is reproducible only on the same memory."""
        rows = slice(0, len(x)) if rows is None else rows
        try:
            return self.run(model, x, y, eps=eps, generator=gens(rows))
        except torch.OutOfMemoryError:
            if len(x) < 2:
                raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        half = len(x) // 2
        notes.append(f"{where}: out of memory at {len(x)} points, run in halves of {half} and {len(x) - half}"
                     + ("; row-keyed draws: the results are an undivided run's" if self.row_keyed
                        else "; the block's draws differ from an undivided block's"))
        logger.warning("%s", notes[-1])
        a = self._run_fitting(model, x[:half], y[:half], eps, gens, notes, where, slice(rows.start, rows.start + half))
        b = self._run_fitting(model, x[half:], y[half:], eps, gens, notes, where, slice(rows.start + half, rows.stop))
        return AttackOutput(torch.cat([a.x_adv, b.x_adv]), torch.cat([a.success, b.success]),
                            None if a.norms is None or b.norms is None else torch.cat([a.norms, b.norms]))


def attack_key(name: str, norm: str, eps: float | None) -> str:
    """``name@norm:eps``: an attack's random stream and a suite task's name (``pgd@linf:0.3``)."""
    return f"{name}@{norm}:{eps:.6g}" if eps is not None else f"{name}@{norm}"


def _within(out: AttackOutput, eps: float) -> AttackOutput:
    """A minimum-norm output read at one radius: adversarial there iff found within ``eps``."""
    assert out.norms is not None
    return AttackOutput(out.x_adv, out.success & (out.norms <= eps), out.norms, out.notes, out.unverified)


# Ranges of the options our attacks share by name (a user's own attack is only type-checked):
# counts are >= 1, step sizes and radii > 0; for these floats 0 is a real setting.
_COUNTS = frozenset({"steps", "restarts", "n_queries", "binary_search_steps", "search_steps", "candidates", "batch_size"})
_POSITIVE = frozenset({"stepsize", "step_size", "rel_step_size", "initial_const", "init_epsilon", "gamma", "eps_max"})
_NON_NEGATIVE = frozenset({"confidence", "overshoot", "decay"})


@functools.cache
def _hints(cls: type[Attack]) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _check_options(attack: Attack) -> None:
    """Every option has its declared type, and the shared counts and step sizes their range: a typo
    in a suite such as ``steps = 0`` must not run an attack that does nothing and so report clean
    accuracy as robust accuracy."""
    hints = _hints(type(attack))
    for f in dataclasses.fields(attack):
        value, hint, name = getattr(attack, f.name), hints[f.name], f.name
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            args = typing.get_args(hint)
            if value is None and type(None) in args:
                continue
            hint = next(a for a in args if a is not type(None))
        where = f"attack {attack.name!r}: option {name!r}"
        if hint is int and (not isinstance(value, int) or isinstance(value, bool) or (name in _COUNTS and value < 1)):
            raise BenchError(f"{where} must be a {'positive ' if name in _COUNTS else ''}integer, got {value!r}.")
        if hint is float:
            if not is_number(value):
                raise BenchError(f"{where} must be a number, got {value!r}.")
            if name in _POSITIVE and not (math.isfinite(value) and value > 0):
                raise BenchError(f"{where} must be a positive number, got {value!r}.")
            if name in _NON_NEGATIVE and not (math.isfinite(value) and value >= 0):
                raise BenchError(f"{where} must be a non-negative number, got {value!r}.")
        if hint in (str, bool) and not isinstance(value, hint):
            raise BenchError(f"{where} must be a {'string' if hint is str else 'boolean (true or false)'}, got {value!r}.")
        if typing.get_origin(hint) is typing.Literal and value not in typing.get_args(hint):
            raise BenchError(f"{where} must be one of {', '.join(map(repr, typing.get_args(hint)))}, got {value!r}.")
        if hint == tuple[str, ...] and not (isinstance(value, tuple) and all(isinstance(v, str) for v in value)):
            raise BenchError(f"{where} must be a list of strings, got {list(value) if isinstance(value, tuple) else value!r}.")


ATTACKS: Registry[type[Attack]] = Registry("attack")
logger = logging.getLogger(__name__)


def register_attack(name: str) -> Callable[[type[Attack]], type[Attack]]:
    """``@register_attack("pgd")``: the attack class is registered and knows its name."""
    return ATTACKS.register(name, set_name=True)


def attack_fields(cls: type[Attack]) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def create_attack(name: str, **kwargs: Any) -> Attack:
    """Build a registered attack; unknown options are a clear error listing the valid ones."""
    cls = ATTACKS.get(name)
    valid = attack_fields(cls)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise BenchError(f"attack {name!r} has no option {', '.join(unknown)}; valid: {', '.join(valid)}.")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise BenchError(f"bad options for attack {name!r}: {e}.") from None


def predict(model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    """The predicted class of every row, ``batch_size`` rows per forward pass (no gradients)."""
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)]) if len(x) else torch.zeros(0, dtype=torch.long, device=x.device)
