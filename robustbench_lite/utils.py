"""Small shared helpers: seeding, devices, library versions, hashing, atomic writes, output paths.

torch is imported inside the functions that need it, so the CLI can check its output paths (and
``reports`` write files) without loading torch.
"""
from __future__ import annotations

import contextlib
import os
import platform
from importlib import metadata
from typing import TYPE_CHECKING, Any, Iterator

from .files import (atomic_write_bytes, atomic_write_json, atomic_write_text, check_output_path,  # noqa: F401
                    describe_os_error, sha256_file)

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

_TRACKED = ("robustbench-lite", "torch", "torchvision", "numpy", "pyautoattack", "foolbox", "advertorch")


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _TRACKED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def resolve_device(name: str | None) -> torch.device:
    import torch

    from .errors import BenchError

    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise BenchError("--device cuda was asked for but no CUDA device is available here.")
    try:
        return torch.device(name)
    except RuntimeError:
        raise BenchError(f"unknown device {name!r}; use cpu, cuda or cuda:N.") from None


def default_batch_size(device: torch.device) -> int:
    """Attack batch size when the user gives none: 128 on a CPU, 256 on an accelerator.

    On the CPU smaller batches stay in cache: pyautoattack's APGD, foolbox's DDN and C&W run
    1.13-1.25x faster per example at 128 than at 256, our PGD the same, ResNet-18 gradients 1.1x
    (benchmarks/bench_batch.py). Recorded in result.json, since it fixes the random draws per block."""
    return 128 if device.type == "cpu" else 256


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def has_conv2d(model: nn.Module) -> bool:
    from torch import nn

    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def set_channels_last(model: nn.Module, enabled: bool = True) -> bool:
    """Store the model's 4-d weights channels_last (NHWC convolutions) when ``enabled`` and it has a
    Conv2d; otherwise contiguous (NCHW). Returns whether channels_last is now in effect.

    On the 2-core CPU the small MNIST CNN's input-gradient pass is 1.1-1.6x, its forward pass
    1.6-2.2x and its training step 1.1-1.4x faster channels_last (run to run); ResNet-18 is about unchanged
    (``benchmarks/bench_layout.py`` prints the ratios). On GPUs it is the layout cuDNN prefers.
    Only the layout changes; the numbers agree to float rounding.
    """
    import torch

    on = bool(enabled) and has_conv2d(model)
    model.to(memory_format=torch.channels_last if on else torch.contiguous_format)
    return on


@contextlib.contextmanager
def frozen(model: nn.Module, *, eval_mode: bool = True) -> Iterator[nn.Module]:
    """Parameters ``requires_grad=False`` (and eval mode) inside; both restored on exit, each
    module's mode as it was (``model.train(flag)`` would force a wrapper's mode onto the model it wraps).

    Attacks differentiate only with respect to the input, so freezing halves their cost and
    guarantees no weight gradient accumulates.
    """
    flags = [p.requires_grad for p in model.parameters()]
    modes = [(m, m.training) for m in model.modules()]  # each module's own mode: a wrapper's may differ from its model's
    for p in model.parameters():
        p.requires_grad_(False)
    if eval_mode:
        model.eval()
    try:
        yield model
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
        for m, was_training in modes:
            m.training = was_training


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    import torch

    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


# -- output paths -----------------------------------------------------------------------------------

