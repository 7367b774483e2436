"""Small shared helpers: seeding, devices, library versions, hashing, atomic writes, output paths.

torch is imported inside the functions that need it, so the CLI can check its output paths (and
``reports`` write files) without loading torch.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

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
    import torch

    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


# -- output paths -----------------------------------------------------------------------------------

def check_output_path(path: str | os.PathLike[str], *, kind: str = "folder", flag: str = "--out",
                      files: Iterable[str] = (), example: str = "results.csv") -> Path:
    """Check, before any long work, that ``path`` can be written as an output ``kind`` ("folder" or
    "file"); returns it as a :class:`~pathlib.Path`. Creates nothing. ``example`` is the file name
    the message suggests when a file output names a folder.

    A :class:`BenchError` naming ``flag`` when the path is empty, a folder output is an existing file,
    a file output is an existing folder, an output file listed in ``files`` (inside the folder) is a
    folder, a part of the path is a regular file or a broken link, or the folder to write in (the path
    itself, or its nearest existing ancestor) is not writable.

    Example::

        out = check_output_path(args.out, files=("result.json",))   # eval, train, report ...
        check_output_path(args.out, kind="file")                    # export's CSV
    """
    from .errors import BenchError

    if kind not in ("folder", "file"):
        raise ValueError(f"kind must be 'folder' or 'file', got {kind!r}")
    if not str(path).strip():
        raise BenchError(f"{flag} is empty; give a {kind} path.")
    p = Path(path)
    try:
        if os.path.islink(p) and not p.exists():
            raise BenchError(f"{flag} {p} is a broken symbolic link; remove it or choose another {kind}.")
        if kind == "folder" and p.exists() and not p.is_dir():
            raise BenchError(f"{flag} {p} is an existing file, not a folder; choose a folder for the outputs.")
        if kind == "file" and p.is_dir():
            raise BenchError(f"{flag} {p} is a folder; give a file name, e.g. {p / example}.")
        if kind == "folder" and p.is_dir():
            for name in files:
                if (p / name).is_dir():
                    raise BenchError(f"{flag} {p} holds a folder {name} where an output file of that name goes; "
                                     f"move it or choose another {flag}.")
        if p.exists() and not os.access(p, os.W_OK):
            raise BenchError(f"{flag} {p} is not writable; choose another {kind} or fix its permissions.")
        folder = p if kind == "folder" else p.parent
        while not folder.exists():  # the nearest existing folder is where the new ones are created
            if os.path.islink(folder):
                raise BenchError(f"{flag} {p} lies under {folder}, a broken symbolic link.")
            folder = folder.parent
        if not folder.is_dir():
            raise BenchError(f"{flag} {p} lies under {folder}, which is a file, not a folder.")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise BenchError(f"{flag} {p} cannot be written: no permission to write in {folder}.")
    except OSError as e:  # e.g. a parent without search permission
        raise BenchError(f"{flag} {p} cannot be used: {e.strerror or e}.") from None
    return p


# errno values that mean the user's machine or paths, not a bug: reported as one sentence by the CLI
USER_ERRNOS = frozenset(getattr(errno, n) for n in (
    "EACCES", "EPERM", "EROFS", "ENOSPC", "EDQUOT", "EISDIR", "ENOTDIR", "EEXIST", "ENOENT", "ENAMETOOLONG",
    "ELOOP", "EMLINK", "EFBIG", "EXDEV", "ENOTEMPTY", "EBUSY", "ETXTBSY") if hasattr(errno, n))


def describe_os_error(e: OSError) -> str | None:
    """One sentence for an OSError caused by the user's paths or disk (permission denied, no space,
    a file where a folder should be, ...); None for anything else (a bug keeps its traceback)."""
    name = e.filename2 if e.filename2 is not None else e.filename
    if e.errno not in USER_ERRNOS or (name is None and e.errno not in (errno.ENOSPC, getattr(errno, "EDQUOT", -1))):
        return None
    reason = (e.strerror or str(e)).rstrip(".")
    reason = reason[:1].lower() + reason[1:]
    if name is None:
        return f"could not write the outputs: {reason}."
    return f"could not use {os.fsdecode(name)}: {reason}."
