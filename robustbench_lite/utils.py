"""Small shared helpers: seeding, devices, library versions, hashing, atomic writes."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

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


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def has_conv2d(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def set_channels_last(model: nn.Module, enabled: bool = True) -> bool:
    """Store the model's 4-d weights channels_last (NHWC convolutions) when ``enabled`` and it has a
    Conv2d; otherwise contiguous (NCHW). Returns whether channels_last is now in effect.

    On the 2-core CPU the small MNIST CNN's input-gradient pass is 1.1-1.6x, its forward pass
    1.6-2.2x and its training step 1.1-1.4x faster channels_last (run to run); ResNet-18 is about unchanged
    (``benchmarks/bench_layout.py`` prints the ratios). On GPUs it is the layout cuDNN prefers.
    Only the layout changes; the numbers agree to float rounding.
    """
    on = bool(enabled) and has_conv2d(model)
    model.to(memory_format=torch.channels_last if on else torch.contiguous_format)
    return on


@contextlib.contextmanager
def frozen(model: nn.Module, *, eval_mode: bool = True) -> Iterator[nn.Module]:
    """Parameters ``requires_grad=False`` (and eval mode) inside; both restored on exit.

    Attacks differentiate only with respect to the input, so freezing halves their cost and
    guarantees no weight gradient accumulates.
    """
    flags = [p.requires_grad for p in model.parameters()]
    was_training = model.training
    for p in model.parameters():
        p.requires_grad_(False)
    if eval_mode:
        model.eval()
    try:
        yield model
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
        model.train(was_training)


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g
