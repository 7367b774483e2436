"""What a re-run needs to know about how a result was made: ``result.json``'s ``provenance``.

Recorded: the command line (``sys.argv``), the library versions (torch, torchvision, numpy,
pyautoattack, foolbox, advertorch), the project's version and git commit (``git rev-parse HEAD``
of the package folder when it is a checkout, else None), the device, the compute dtype and
autocast state, torch's thread counts, the deterministic settings (``torch.are_deterministic_algorithms_enabled``,
cuDNN's ``deterministic`` / ``benchmark`` / ``enabled``, TF32) and the evaluation's options
(``EvalOptions``: arch, dataset, normalisation, data folder or file, ...). ``bench
reproduce`` reads it back; nothing in it changes a number.
"""
from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from robustbench_lite.utils import library_versions


@functools.cache
def git_commit() -> str | None:
    """``git rev-parse HEAD`` of the folder the package is installed from, when it is a git checkout."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        res = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    text = res.stdout.strip()
    return text if res.returncode == 0 and len(text) == 40 else None


def provenance(device: torch.device | str, *, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``provenance`` entry of a result record (see the module docstring)."""
    versions = library_versions()
    dev = torch.device(device)
    cuda = dev.type == "cuda" and torch.cuda.is_available()
    return {
        "argv": list(sys.argv),
        "project": {"version": versions.get("robustbench-lite"), "commit": git_commit()},
        "versions": {k: v for k, v in versions.items() if k != "robustbench-lite"},
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if cuda else None,
        "dtype": str(torch.get_default_dtype()).replace("torch.", ""),
        "autocast": _autocast(dev.type),
        "threads": {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()},
        "deterministic": {
            "algorithms": bool(torch.are_deterministic_algorithms_enabled()),
            "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "cudnn_enabled": bool(torch.backends.cudnn.enabled),
            "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
            "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
        },
        "options": dict(options or {}),  # evaluate's EvalOptions as given (batch size resolved): bench reproduce
    }


def _autocast(device_type: str) -> bool:
    try:
        return bool(torch.is_autocast_enabled(device_type))
    except TypeError:  # an older torch: no device argument (the CUDA state)
        return bool(torch.is_autocast_enabled())
