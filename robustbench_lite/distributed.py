"""torch.distributed under ``torchrun``: the process group, this process's device, and the store.

``torchrun --nproc_per_node N -m robustbench_lite eval|train|transfer|analyze ...`` sets
``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and ``MASTER_ADDR``/``MASTER_PORT`` (or a c10d rendezvous
for several nodes); :func:`setup` joins the group once per process: NCCL where the device is a
CUDA GPU (one per ``LOCAL_RANK``), gloo on the CPU. Without torchrun (``WORLD_SIZE`` unset or 1)
nothing is initialised and every helper answers for a world of one, so callers need no branch.
"""
from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    """True inside a ``torchrun`` launch of more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def world() -> World:
    """This process's place: from the initialised group, else from torchrun's environment (torch is
    not imported outside torchrun, so the torch-free commands stay torch-free)."""
    if not launched():
        return World()
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return World(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                 int(os.environ.get("LOCAL_RANK", "0")))


def device_for(requested: str | None) -> Any:
    """The device of this process: ``cuda:LOCAL_RANK`` under torchrun when CUDA is used (asked
    for, or available and nothing asked), else what :func:`robustbench_lite.utils.resolve_device` says."""
    import torch

    from .utils import resolve_device

    dev = resolve_device(requested)
    if dev.type == "cuda" and launched() and (requested in (None, "auto", "cuda")):
        dev = torch.device("cuda", world().local_rank % max(1, torch.cuda.device_count()))
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return dev


def setup(device: Any, timeout_s: float = 1800.0) -> World:
    """Join the process group once (a no-op outside torchrun). ``timeout_s`` bounds every
    collective and store wait: a rank that dies surfaces as an error, not as a hang."""
    import torch.distributed as dist

    if not launched():
        return World()
    if not dist.is_initialized():
        backend = "nccl" if getattr(device, "type", "cpu") == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
        logger.info("rank %d of %d joined (%s)", dist.get_rank(), dist.get_world_size(), backend)
    return world()


def store() -> Any:
    """The group's key-value store (torchrun's TCPStore), for shared counters (``add``) and flags."""
    import torch.distributed.distributed_c10d as c10d

    return c10d._get_default_store()


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` outside torchrun)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def teardown() -> None:
    import sys

    if "torch.distributed" not in sys.modules:  # nothing was set up (and a torch-free command stays torch-free)
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
