"""One versioned checkpoint format, loaded safely.

A checkpoint is a plain dict (every value a tensor, number, string, list or dict) so that
``torch.load(..., weights_only=True)`` reads it and nothing inside it can run::

    {"format": "robustbench_lite/checkpoint", "format_version": 1,
     "arch": "small_cnn", "arch_kwargs": {...}, "dataset": "mnist5k", "num_classes": 10,
     "input_shape": [1, 28, 28], "threat": {"norm": "linf", "eps": 0.3},
     "defense": "madry", "defense_config": {...}, "history": [{epoch metrics}, ...],
     "versions": {...}, "members": {"model": state_dict, ...}, "default_member": "model",
     "train_state": {optimizers, epoch, rng} or absent}

``members`` holds one state_dict per network (ACT stores ``model`` = robust G and ``natural`` = F).
A plain ``state_dict`` from another project is accepted with ``--arch`` and ``--dataset``; a
``module.`` prefix (DataParallel) is stripped. An arch name stored in a checkpoint is resolved only
through the model registry, never imported.
"""
from __future__ import annotations

import logging
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from .data import get_dataset
from .errors import BenchError
from .models import MODELS, build_external, create_model
from .threat import ThreatModel
from .utils import atomic_torch_save, library_versions

logger = logging.getLogger(__name__)

FORMAT = "robustbench_lite/checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """A loaded model plus the metadata stored beside it."""

    model: nn.Module
    arch: str
    arch_kwargs: dict[str, Any]
    dataset: str
    num_classes: int
    input_shape: tuple[int, ...]
    threat: ThreatModel | None
    defense: str
    defense_config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    member: str = "model"
    raw: dict[str, Any] = field(default_factory=dict)


def make_checkpoint(*, arch: str, arch_kwargs: Mapping[str, Any], dataset: str, num_classes: int,
                    input_shape: tuple[int, ...], threat: ThreatModel | None, defense: str,
                    defense_config: Mapping[str, Any], history: list[dict[str, Any]],
                    members: Mapping[str, nn.Module], default_member: str = "model",
                    train_state: Mapping[str, Any] | None = None) -> dict[str, Any]:
    ckpt: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "arch_kwargs": dict(arch_kwargs),
        "dataset": dataset,
        "num_classes": int(num_classes),
        "input_shape": list(input_shape),
        "threat": threat.to_dict() if threat else None,
        "defense": defense,
        "defense_config": dict(defense_config),
        "history": list(history),
        "versions": library_versions(),
        "members": {k: {n: t.detach().cpu() for n, t in m.state_dict().items()} for k, m in members.items()},
        "default_member": default_member,
    }
    if train_state is not None:
        ckpt["train_state"] = dict(train_state)
    return ckpt


def save_checkpoint(path: str | Path, ckpt: Mapping[str, Any]) -> None:
    """Write atomically: a crash mid-save leaves the previous file intact."""
    atomic_torch_save(dict(ckpt), path)


def read_checkpoint_dict(path: str | Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with every failure turned into one sentence."""
    path = Path(path)
    if not path.exists():
        raise BenchError(f"checkpoint {path} does not exist.")
    if path.is_dir():
        raise BenchError(f"checkpoint {path} is a folder, not a file.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "unsupported global" not in str(e).lower():  # bytes that are no pickle (a text or image file)
            raise BenchError(f"cannot read {path}: the file is truncated or not a PyTorch checkpoint.") from e
        raise BenchError(
            f"refused to load {path}: it needs arbitrary unpickling (e.g. a pickled model object), which could run code; "
            "re-save it as a state_dict."
        ) from e
    except Exception as e:  # torch raises many types for a damaged file (RuntimeError, EOFError, KeyError, ...)
        raise BenchError(f"cannot read {path}: the file is truncated or not a PyTorch checkpoint.") from e
    if not isinstance(obj, dict):
        raise BenchError(f"{path} holds a {type(obj).__name__}, not a checkpoint or state_dict.")
    return obj


def _strip_prefix(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module."):]: v for k, v in sd.items()}
    return dict(sd)


def _plain_state_dict(obj: Mapping[str, Any]) -> dict[str, Tensor] | None:
    """A state_dict, or one nested under a conventional key ('state_dict', 'model', 'net')."""
    if obj and all(isinstance(v, Tensor) for v in obj.values()):
        return dict(obj)
    for key in ("state_dict", "model_state_dict", "model", "net"):
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner and all(isinstance(v, Tensor) for v in inner.values()):
            return dict(inner)
    return None


def _load_into(model: nn.Module, sd: Mapping[str, Tensor], arch: str, path: Path) -> None:
    sd = _strip_prefix(sd)
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        # an external nn.Module wrapped in ExternalModel stores its keys under "net."
        if all(k.startswith("net.") for k in own) and not any(k.startswith("net.") for k in sd):
            return _load_into(model, {f"net.{k}": v for k, v in sd.items()}, arch, path)
        raise BenchError(
            f"the weights in {path} do not fit arch {arch!r}: {len(missing)} missing keys (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})."
        )
    bad = [k for k in own if own[k].shape != sd[k].shape]
    if bad:
        k = bad[0]
        raise BenchError(
            f"the weights in {path} do not fit arch {arch!r}: {k} has shape {tuple(sd[k].shape)}, "
            f"the model expects {tuple(own[k].shape)} (wrong architecture or class count?)."
        )
    model.load_state_dict(sd, strict=True)


def _build(arch: str, kwargs: Mapping[str, Any], num_classes: int, in_channels: int, from_cli: bool) -> nn.Module:
    if arch in MODELS:
        return create_model(arch, num_classes=num_classes, in_channels=in_channels, **kwargs)
    if from_cli and ":" in arch:
        return build_external(arch, num_classes=num_classes)
    raise BenchError(f"unknown model {arch!r}; known: {', '.join(MODELS.names())} (or --arch module:callable).")


def load_checkpoint(path: str | Path, *, arch: str | None = None, dataset: str | None = None,
                    member: str | None = None, num_classes: int | None = None) -> Checkpoint:
    """Load a robustbench_lite checkpoint, or a plain state_dict when ``arch`` and ``dataset`` are given.

    ``arch`` may name a registered model or (command line only) ``module:callable`` / ``file.py:callable``;
    it overrides the stored arch. ``member`` picks a network of a multi-model checkpoint (ACT: ``natural``).
    """
    path = Path(path)
    obj = read_checkpoint_dict(path)
    if obj.get("format") == FORMAT:
        if int(obj.get("format_version", 0)) > FORMAT_VERSION:
            raise BenchError(f"{path} was written by a newer robustbench_lite (format {obj['format_version']}); upgrade.")
        members = obj["members"]
        member = member or obj.get("default_member", "model")
        if member not in members:
            raise BenchError(f"{path} has no member {member!r}; it holds {', '.join(members)}.")
        ds_name = obj["dataset"]
        if dataset is not None and dataset != ds_name:
            spec = get_dataset(dataset)
            if spec.num_classes != obj["num_classes"]:
                raise BenchError(
                    f"{path} was trained on {ds_name} with {obj['num_classes']} classes; {dataset} has {spec.num_classes}."
                )
            ds_name = dataset
        stored_arch = obj["arch"]
        use_arch = arch or stored_arch
        kwargs = obj.get("arch_kwargs", {}) if use_arch == stored_arch else {}
        shape = tuple(obj["input_shape"])
        model = _build(use_arch, kwargs, obj["num_classes"], shape[0], from_cli=arch is not None)
        _load_into(model, members[member], use_arch, path)
        threat = ThreatModel.from_dict(obj["threat"]) if obj.get("threat") else None
        return Checkpoint(model.eval(), use_arch, dict(kwargs), ds_name, obj["num_classes"], shape, threat,
                          obj.get("defense", "unknown"), obj.get("defense_config", {}), obj.get("history", []), member, obj)

    sd = _plain_state_dict(obj)
    if sd is None:
        raise BenchError(f"{path} is neither a robustbench_lite checkpoint nor a state_dict.")
    if arch is None or dataset is None:
        raise BenchError(f"{path} is a plain state_dict: pass --arch and --dataset so it can be built.")
    spec = get_dataset(dataset)
    n_cls = num_classes or spec.num_classes
    model = _build(arch, {}, n_cls, spec.input_shape[0], from_cli=True)
    _load_into(model, sd, arch, path)
    out_features = None
    with torch.no_grad():
        out_features = model.eval()(torch.zeros(1, *spec.input_shape)).shape[-1]
    if out_features != spec.num_classes:
        raise BenchError(f"{path} gives {out_features} logits but {dataset} has {spec.num_classes} classes.")
    return Checkpoint(model, arch, {}, dataset, n_cls, spec.input_shape, None, "unknown", raw={})
