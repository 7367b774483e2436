"""DistributedDataParallel for the trainer: ``torchrun --nproc_per_node N -m robustbench_lite train ...``.

Every rank holds the same networks, the same data and the same ``torch.Generator`` (same seed), so
every rank draws the single-process run's permutation and augmentation of the global batch; rank
``r`` of ``W`` then keeps rows ``r, r + W, r + 2W, ...`` of it (a strided split, no padding and no
duplicates: a last partial batch is split unevenly, as a single process takes it whole).

What makes the DDP run the single-process run, with ``W`` times less work per rank:

- **Gradients**: the members that train are wrapped in :class:`DistributedDataParallel`; its
  all-reduce weights each rank by its share of the global batch (:func:`_weighted_allreduce`), so the
  averaged gradient of per-rank mean losses is the gradient of the global batch's mean loss, also
  for an uneven last batch. A recipe sees a :class:`Replica` per member: forward passes that train
  (train mode, gradients on) go through the DDP wrapper; everything else (the inner maximisation in
  eval mode with input gradients only, ``no_grad`` passes, frozen teachers) runs on the module
  itself, so no gradient hook fires outside the loss's backward.
- **Random draws** of a batch's shape (PGD and APGD random starts, ARREST's replay noise, dropout
  masks) are drawn for the global batch on every rank, each rank keeping its rows: attacks run on
  the global batch's shape through :class:`RowsOf` (the model computes this rank's rows only; the
  other rows have zero logits and zero gradients and are dropped after), and dropout layers are
  wrapped in :class:`GlobalBatch`.
- **Logs** (per-batch means) are averaged with the same weights, so every rank sees the global
  batch's numbers and a NaN stops every rank at the same step.

BatchNorm: without ``--sync-bn`` each rank normalises by its own rows' statistics (DDP's usual
behaviour; running statistics are rank 0's, broadcast at every forward); ``--sync-bn``
(:class:`torch.nn.SyncBatchNorm`, CUDA only) uses the global batch's.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

from robustbench_lite.errors import BenchError

logger = logging.getLogger(__name__)


@dataclass
class Shard:
    """This rank's rows of the current global batch; the trainer calls :meth:`split` per step.

    ``rows`` (on the training device): indices into the global batch of ``n`` rows."""

    rank: int
    size: int
    rows: Tensor | None = None
    n: int = 0

    def split(self, n: int, device: torch.device) -> Tensor:
        """Rows ``rank, rank + size, ...`` of a global batch of ``n`` rows (every rank gets at least one:
        :func:`check_batch` ensures it)."""
        self.n = n
        self.rows = torch.arange(self.rank, n, self.size, device=device)
        return self.rows

    @property
    def weight(self) -> float:
        """This rank's share of the global batch (``1/size`` when the batch divides evenly)."""
        return len(self._rows) / self.n

    @property
    def _rows(self) -> Tensor:
        if self.rows is None:
            raise RuntimeError("Shard.split was not called for this batch")
        return self.rows

    def pad(self, t: Tensor, fill: float = 0.0) -> Tensor:
        """``t`` (this rank's rows) placed in a global-batch-shaped tensor filled with ``fill``."""
        rows = self._rows
        if t.shape[0] != len(rows):
            raise RuntimeError(f"expected this rank's {len(rows)} rows, got a batch of {t.shape[0]}")
        out = t.new_full((self.n, *t.shape[1:]), fill)
        return out.index_copy(0, rows, t)

    def take(self, t: Tensor) -> Tensor:
        """This rank's rows of a global-batch-shaped tensor."""
        return t[self._rows.to(t.device)]


def pad(shard: Shard | None, t: Tensor, fill: float = 0.0) -> Tensor:
    """:meth:`Shard.pad`, or ``t`` itself in a single process."""
    return t if shard is None else shard.pad(t, fill)


def rand_like_batch(shard: Shard | None, x: Tensor, generator: torch.Generator) -> Tensor:
    """``torch.rand(x.shape)`` from ``generator``, drawn for the global batch (this rank's rows kept),
    so a DDP run draws the single-process run's numbers."""
    gdev = generator.device
    if shard is None:
        return torch.rand(x.shape, generator=generator, device=gdev).to(x.device)
    return shard.take(torch.rand((shard.n, *x.shape[1:]), generator=generator, device=gdev)).to(x.device)


class RowsOf:
    """``model`` restricted to this rank's rows of a global-batch-shaped input ``z`` (N, ...): only
    those rows pass through the model; the others get zero logits (and zero input gradients). Attacks
    are row-wise, so running one on the global batch's shape through this draws the single-process
    random start while computing only this rank's rows."""

    def __init__(self, model: Callable[[Tensor], Tensor], shard: Shard) -> None:
        self.model, self.shard = model, shard

    def __call__(self, z: Tensor) -> Tensor:
        rows = self.shard._rows
        if z.shape[0] != self.shard.n:
            raise RuntimeError(f"RowsOf expects the global batch of {self.shard.n} rows, got {z.shape[0]}")
        out = self.model(z[rows])
        return out.new_zeros((z.shape[0], *out.shape[1:])).index_copy(0, rows, out)


def on_global_batch(shard: Shard | None, model: Any, x: Tensor, y: Tensor,
                    attack: Callable[[Any, Tensor, Tensor], Tensor]) -> Tensor:
    """``attack(model, x, y)`` (row-wise, returns x_adv) as the single process runs it: in a DDP run on
    the global batch's shape through :class:`RowsOf`, returning this rank's rows."""
    if shard is None:
        return attack(model, x, y)
    return shard.take(attack(RowsOf(model, shard), shard.pad(x), shard.pad(y)))


class GlobalBatch(nn.Module):
    """A dropout layer (any module that draws a batch-shaped mask from the global RNG) run on the
    global batch's shape in train mode, so each rank draws the single-process mask and keeps its rows.
    Holds no state: the member's state_dict keys are unchanged."""

    def __init__(self, inner: nn.Module, shard: Shard) -> None:
        super().__init__()
        self.inner = inner
        self.shard = shard

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return self.inner(x)
        return self.shard.take(self.inner(self.shard.pad(x)))


def wrap_dropout_(module: nn.Module, shard: Shard) -> int:
    """Replace every dropout layer of ``module`` by :class:`GlobalBatch` (in place); returns how many."""
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.modules.dropout._DropoutNd):
            setattr(module, name, GlobalBatch(child, shard))
            count += 1
        elif not isinstance(child, GlobalBatch):
            count += wrap_dropout_(child, shard)
    return count


class _Entry(nn.Module):
    """What DDP wraps: ``forward(x)`` or another method of the model (``features``) by name, so a
    recipe's training pass through ``model.features(x)`` is a DDP forward too."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args: Any, method: str = "forward") -> Any:
        return self.module(*args) if method == "forward" else getattr(self.module, method)(*args)


class Replica:
    """A member as a recipe sees it under DDP. Calls that train (the module in train mode, gradients
    enabled, some parameter requiring them) go through the DDP wrapper; all others (attacks in eval
    mode, ``no_grad`` passes, ``frozen``) run on the module, so DDP's reducer sees exactly the passes
    whose backward updates the weights. Anything else (``train()``, ``eval()``, ``parameters()``,
    ``training``) is the module's."""

    def __init__(self, module: nn.Module, ddp: nn.Module) -> None:
        self.module, self.ddp = module, ddp

    def _trains(self) -> bool:
        return (self.module.training and torch.is_grad_enabled()
                and any(p.requires_grad for p in self.module.parameters()))

    def __call__(self, *args: Any) -> Any:
        return self.ddp(*args) if self._trains() else self.module(*args)

    def features(self, x: Tensor) -> Any:
        return self.ddp(x, method="features") if self._trains() else self.module.features(x)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.module, name)


def unwrap(m: Any) -> nn.Module:
    """The module behind a :class:`Replica` (a plain module as it is)."""
    return m.module if isinstance(m, Replica) else m


def _weighted_allreduce(shard, bucket):  # type: ignore[no-untyped-def]  # DDP checks the hook's annotations
    """DDP comm hook: sum over ranks of ``share * gradient`` (DDP's default divides by the world size,
    which is the same for an even split and wrong for an uneven last batch). ``bucket``: a
    ``dist.GradBucket``; returns a ``torch.futures.Future`` of the reduced buffer."""
    import torch.distributed as dist

    t = bucket.buffer()
    t.mul_(shard.weight)
    fut = dist.all_reduce(t, async_op=True).get_future()  # type: ignore[union-attr]
    return fut.then(lambda f: f.value()[0])


def allreduce_grads_(params: list[nn.Parameter], shard: Shard) -> None:
    """The same weighted all-reduce on ``.grad`` set by hand (AFD's paper update order takes
    ``torch.autograd.grad``, which DDP's hooks do not see). ``None`` gradients stay ``None``
    (the graph is the same on every rank)."""
    import torch.distributed as dist

    for p in params:
        if p.grad is not None:
            p.grad.mul_(shard.weight)
            dist.all_reduce(p.grad)


def check_batch(batch_size: int, n: int, size: int) -> None:
    """One sentence when the global batch cannot be split over ``size`` ranks."""
    if batch_size % size:
        raise BenchError(f"the batch size {batch_size} does not divide over {size} processes; choose a --batch-size "
                         f"that is a multiple of {size}.")
    last = n % batch_size
    if 0 < last < size:
        raise BenchError(f"the last batch of each epoch holds {last} example(s) ({n} training examples, batch {batch_size}), "
                         f"fewer than the {size} processes; choose another --batch-size.")


def has_batchnorm(members: dict[str, nn.Module]) -> bool:
    return any(isinstance(mod, nn.modules.batchnorm._BatchNorm) for m in members.values() for mod in m.modules())


def prepare(members: dict[str, nn.Module], shard: Shard, device: torch.device, *, sync_bn: bool,
            find_unused: bool) -> dict[str, Any]:
    """Wrap the training members for DDP; returns what the recipe's ``train_step`` gets: a
    :class:`Replica` per member with trainable parameters, the others (ARREST's frozen teacher) as
    they are. Dropout layers are wrapped in :class:`GlobalBatch`; with ``sync_bn`` BatchNorm layers
    become :class:`torch.nn.SyncBatchNorm` (same parameters and state_dict keys). Call before the
    optimizers are built (SyncBatchNorm conversion keeps the parameter objects, so after works too)."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    if sync_bn and device.type != "cuda":
        raise BenchError("--sync-bn needs CUDA devices (torch's SyncBatchNorm runs on GPUs only); drop it on the CPU.")
    out: dict[str, Any] = {}
    for name, m in members.items():
        if not any(p.requires_grad for p in m.parameters()):
            out[name] = m  # a frozen teacher: no gradients, nothing to synchronise
            continue
        wrap_dropout_(m, shard)
        if sync_bn:
            inner = torch.nn.SyncBatchNorm.convert_sync_batchnorm(m)
            if inner is not m:  # the member itself was a BatchNorm layer
                raise BenchError(f"--sync-bn cannot convert member {name!r} that is itself a BatchNorm layer.")
        ddp = DDP(_Entry(m), device_ids=[device.index] if device.type == "cuda" else None,
                  find_unused_parameters=find_unused)
        ddp.register_comm_hook(shard, _weighted_allreduce)
        out[name] = Replica(m, ddp)
    return out


def reduce_logs(logs: dict[str, float], shard: Shard, device: torch.device) -> dict[str, float]:
    """Per-batch means of every rank, weighted by the ranks' shares: the global batch's means. Values
    that are no numbers stay this rank's."""
    import torch.distributed as dist

    keys = [k for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not keys:
        return logs
    t = torch.tensor([float(logs[k]) * shard.weight for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {**logs, **dict(zip(keys, t.tolist()))}
