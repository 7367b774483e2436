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
A plain ``state_dict`` from another project is accepted with ``--arch`` and ``--dataset``. Its keys
are used as stored when they fit; otherwise a prefix every key shares is stripped if that makes them
fit (``module.`` from DataParallel, ``_orig_mod.`` from torch.compile, ``net.`` from older wrapped
``--arch module:callable`` checkpoints). A model given by ``--arch module:callable`` keeps its own
keys (:class:`~robustbench_lite.models.ExternalModel` adds no prefix), so a user's model whose own
attribute is ``net`` or ``module`` loads too. An arch name stored in a checkpoint is resolved only
through the model registry, never imported. A file with the format marker whose fields are missing
or ill-typed is a :class:`BenchError` naming the field.
"""
from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from .data import get_dataset
from .checkpoint_format import FORMAT, FORMAT_VERSION, bad as _bad, check_format as _check_format
from .errors import BenchError
from .models import MODELS, apply_normalize, build_external, create_model, kwargs_from_state_dict, parse_normalize
from .models.normalize import applied_normalization
from .models.hub import build_library_model, is_library_spec
from .threat import ThreatModel
from .utils import atomic_torch_save, library_versions
from .zoo import ZooModel, is_robustbench_spec, resolve, source_commit

logger = logging.getLogger(__name__)

__all__ = ["FORMAT", "FORMAT_VERSION", "Checkpoint", "load_checkpoint", "make_checkpoint", "read_checkpoint_dict",
           "save_checkpoint"]


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
    normalize: dict[str, list[float]] | None = None  # the input normalisation inside the model ({"mean", "std"})
    robustbench: dict[str, str] | None = None  # --arch robustbench:<name>: the leaderboard entry it was built as


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


# prefixes other code adds around a model's keys: DataParallel/DDP, torch.compile, the ExternalModel
# wrapper of robustbench_lite before its state_dict became the user's own, and RobustBench's wrappers
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "net.", "model.")

# the last name of a key that holds an input normalisation, and which half of it
_NORM_NAMES = {"mean": "mean", "mu": "mean", "std": "std", "sigma": "std"}


def _norm_kind(key: str) -> str | None:
    return _NORM_NAMES.get(key.rsplit(".", 1)[-1])


def _key_candidates(sd: Mapping[str, Tensor]) -> list[dict[str, Tensor]]:
    """``sd`` as stored first, then with a wrapper's prefix (shared by every key but the normalisation
    buffers, e.g. RobustBench's ``normalize.mean`` beside ``model.*``) stripped, up to two deep.

    The stored keys always come first: a user's model whose own top-level attribute is ``module`` or
    ``net`` has every key under that prefix, and must not lose it."""
    out = [dict(sd)]
    for depth in range(2):
        for cand in list(out):
            body = [k for k in cand if not _norm_kind(k)] or list(cand)
            for p in _WRAPPER_PREFIXES:
                if body and all(k.startswith(p) for k in body):
                    stripped = {k[len(p):] if k.startswith(p) else k: v for k, v in cand.items()}
                    if len(stripped) == len(cand) and all(stripped.keys() != c.keys() for c in out):
                        out.append(stripped)
    return out


def _plain_state_dict(obj: Mapping[str, Any]) -> dict[str, Tensor] | None:
    """A state_dict, or one nested under a conventional key ('state_dict', 'model', 'net')."""
    if obj and all(isinstance(v, Tensor) for v in obj.values()):
        return dict(obj)
    for key in ("state_dict", "model_state_dict", "model", "net"):
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner and all(isinstance(v, Tensor) for v in inner.values()):
            return dict(inner)
    return None


def _normalisation_fits(model: nn.Module, extra: Mapping[str, Tensor], arch: str, path: Path) -> None:
    """Normalisation buffers stored in the file but not in the model's state_dict must equal the
    normalisation the model applies (its non-persistent ``mean``/``std`` buffers), else one sentence."""
    applied: dict[str, list[Tensor]] = {"mean": [], "std": []}
    for name, buf in model.named_buffers():
        kind = _norm_kind(name)
        if kind:
            applied[kind].append(buf.detach().flatten().float().cpu())
    for k, v in extra.items():
        kind = _norm_kind(k) or "mean"
        got = v.detach().flatten().float().cpu()
        vals = [round(float(t), 4) for t in got[:6]]
        if not applied[kind]:
            raise BenchError(f"{path} stores an input normalisation ({k} = {vals}) that arch {arch!r} does not apply; "
                             "pass --normalize with the file's means and stds.")
        if not any(a.numel() in (1, got.numel()) and got.numel() in (1, a.numel())
                   and torch.allclose(a, got, atol=1e-4) for a in applied[kind]):
            have = [round(float(t), 4) for t in applied[kind][0][:6]]
            raise BenchError(f"{path} stores the input normalisation {k} = {vals} but the model applies {have}; "
                             "pass --normalize with the file's means and stds.")


def _load_into(model: nn.Module, sd: Mapping[str, Tensor], arch: str, path: Path) -> None:
    """Strict, except (RobustBench's rule) for input-normalisation buffers: the model's own ``mu``/``sigma``/
    ``mean``/``std`` buffers may be missing from the file (they keep their values), and ones the file
    stores beyond the model's state_dict must equal the normalisation the model applies."""
    own = model.state_dict()
    cands = _key_candidates(sd)
    fits = [c for c in cands if c.keys() == own.keys()]
    fits += [c for c in cands if c not in fits and all(_norm_kind(k) for k in c.keys() ^ own.keys())]
    if not fits:
        best = min(cands, key=lambda c: len(c.keys() ^ own.keys()))
        missing = [k for k in own if k not in best]
        unexpected = [k for k in best if k not in own]
        raise BenchError(
            f"the weights in {path} do not fit arch {arch!r}: {len(missing)} missing keys (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})."
        )
    sd = fits[0]
    bad = [k for k in own if k in sd and (not isinstance(sd[k], Tensor) or own[k].shape != sd[k].shape)]
    if bad:
        k = bad[0]
        got = f"shape {tuple(sd[k].shape)}" if isinstance(sd[k], Tensor) else f"a {type(sd[k]).__name__}"
        raise BenchError(
            f"the weights in {path} do not fit arch {arch!r}: {k} has {got}, "
            f"the model expects {tuple(own[k].shape)} (wrong architecture or class count?)."
        )
    extra = {k: v for k, v in sd.items() if k not in own}
    missing = [k for k in own if k not in sd]
    if extra:
        _normalisation_fits(model, extra, arch, path)
    if missing:
        logger.info("%s has no %s; the model keeps its own normalisation values", path, ", ".join(missing))
    if not extra and not missing:
        model.load_state_dict(sd, strict=True)
        return
    result = model.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
    if sorted(result.missing_keys) != sorted(missing) or result.unexpected_keys:  # pragma: no cover - a hook's bug
        raise BenchError(f"the weights in {path} do not fit arch {arch!r}: {result}.")


def _inferred_kwargs(arch: str, sd: Mapping[str, Tensor]) -> dict[str, Any]:
    """What a registered arch reads off a plain state_dict (first prefix candidate it recognises)."""
    if arch not in MODELS:
        return {}
    for cand in _key_candidates(sd):
        kwargs = kwargs_from_state_dict(arch, cand)
        if kwargs:
            return kwargs
    return {}


def _build(arch: str, kwargs: Mapping[str, Any], num_classes: int, in_channels: int, from_cli: bool) -> nn.Module:
    if arch in MODELS:
        return create_model(arch, num_classes=num_classes, in_channels=in_channels, **kwargs)
    if is_library_spec(arch):  # imports only torchvision or timm, never a name from the file
        return build_library_model(arch, num_classes=num_classes, in_channels=in_channels)
    if from_cli and ":" in arch:
        return build_external(arch, num_classes=num_classes)
    raise BenchError(f"unknown model {arch!r}; known: {', '.join(MODELS.names())} (or --arch module:callable).")


def _normalized(model: nn.Module, normalize: str | None, channels: int) -> nn.Module:
    """``model`` with ``--normalize`` applied (see :func:`~robustbench_lite.models.apply_normalize`)."""
    if normalize is None:
        return model
    mean, std = parse_normalize(normalize, channels)
    return apply_normalize(model, mean, std)


def load_checkpoint(path: str | Path, *, arch: str | None = None, dataset: str | None = None,
                    member: str | None = None, num_classes: int | None = None,
                    normalize: str | None = None, threat: str | None = None) -> Checkpoint:
    """Load a robustbench_lite checkpoint, or a plain state_dict when ``arch`` and ``dataset`` are given.

    ``arch`` may name a registered model, ``torchvision:<name>`` / ``timm:<name>``, or (command line only)
    ``module:callable`` / ``file.py:callable``; it overrides the stored arch. A plain state_dict is found
    at the top level or under ``state_dict`` / ``model_state_dict`` / ``model`` / ``net``, with ``module.``
    / ``model.`` (and ``_orig_mod.``, ``net.``) prefixes stripped, and a registered arch reads its optional
    parts (and, for ``wide_resnet`` / ``dm_wide_resnet``, depth and width) off its keys.
    ``member`` picks a network of a multi-model checkpoint (ACT: ``natural``). ``normalize``
    (``--normalize``: ``MEAN,STD``, per-channel lists, or a dataset name) puts that input normalisation
    inside the model; the state_dict keys are unchanged.
    ``arch="robustbench:<name>"`` builds a RobustBench zoo file as that leaderboard entry's constructor does
    (:func:`robustbench_lite.zoo.resolve`: arch, arguments, normalisation; ``dataset`` and the checkpoint's
    threat default from the entry, ``threat`` only chooses among leaderboards sharing the name).
    A checkpoint with the format marker whose fields are missing or ill-typed is a :class:`BenchError`.
    """
    path = Path(path)
    zm = resolve(arch, dataset, threat) if arch is not None and is_robustbench_spec(arch) else None
    if zm is not None:
        arch, dataset = zm.arch, zm.entry.dataset
        normalize = zm.normalize if normalize is None else normalize  # an explicit --normalize wins
    obj = read_checkpoint_dict(path)
    if obj.get("format") == FORMAT:
        if zm is not None:
            raise BenchError(f"{path} is a robustbench_lite checkpoint with its own arch; --arch robustbench:<name> "
                             "is for RobustBench's zoo files (plain state_dicts).")
        _check_format(obj, path)
        members = obj["members"]
        if member is None:
            member = obj.get("default_member", "model")
            if member not in members:
                raise _bad(path, f"its default member {member!r} is missing (it holds {', '.join(members)})")
        if member not in members:
            raise BenchError(f"{path} has no member {member!r}; it holds {', '.join(members)}.")
        ds_name, n_cls = obj["dataset"], obj["num_classes"]
        if dataset is not None and dataset != ds_name:
            spec = get_dataset(dataset)
            if spec.num_classes != n_cls:
                raise BenchError(f"{path} was trained on {ds_name} with {n_cls} classes; {dataset} has {spec.num_classes}.")
            ds_name = dataset
        stored_arch = obj["arch"]
        use_arch = arch or stored_arch
        kwargs = dict(obj.get("arch_kwargs", {})) if use_arch == stored_arch else _inferred_kwargs(use_arch, members[member])
        shape = tuple(obj["input_shape"])
        if kwargs and use_arch in MODELS:
            try:
                model = create_model(use_arch, num_classes=n_cls, in_channels=shape[0], **kwargs)
            except Exception as e:  # a stored value the architecture rejects (TypeError, ValueError, ...)
                reason = str(e).rstrip(".") if isinstance(e, BenchError) else f"{type(e).__name__}: {e}"
                raise _bad(path, f"arch {use_arch!r} rejects its arch_kwargs {kwargs!r} ({reason})") from None
        else:
            model = _build(use_arch, kwargs, n_cls, shape[0], from_cli=arch is not None)
        model = _normalized(model, normalize, shape[0])
        _load_into(model, members[member], use_arch, path)
        try:
            threat = ThreatModel.from_dict(obj["threat"]) if obj.get("threat") else None
        except Exception as e:
            reason = str(e).rstrip(".") if isinstance(e, BenchError) else f"{type(e).__name__}: {e}"
            raise _bad(path, f"its threat {obj['threat']!r} is not a threat model ({reason})") from None
        return Checkpoint(model.eval(), use_arch, kwargs, ds_name, n_cls, shape, threat,
                          obj.get("defense", "unknown"), dict(obj.get("defense_config", {})), list(obj.get("history", [])),
                          member, obj, normalize=applied_normalization(model))

    sd = _plain_state_dict(obj)
    if sd is None:
        raise BenchError(f"{path} is neither a robustbench_lite checkpoint nor a state_dict.")
    if arch is None or dataset is None:
        raise BenchError(f"{path} is a plain state_dict: pass --arch and --dataset so it can be built.")
    if member is not None:  # recorded as "model" otherwise: the user would believe another network was evaluated
        raise BenchError(f"{path} is a plain state_dict holding one network; --member {member!r} picks a network of a "
                         "multi-network checkpoint of ours: leave it out.")
    spec = get_dataset(dataset)
    n_cls = num_classes or spec.num_classes
    kwargs = _inferred_kwargs(arch, sd)
    if zm is not None:  # the entry's constructor decides; the file only whether it kept the unused sub_block1
        kwargs = {**kwargs, **zm.arch_kwargs, **{k: v for k, v in kwargs.items() if k == "sub_block1"}}
    model = _normalized(_build(arch, kwargs, n_cls, spec.input_shape[0], from_cli=True), normalize, spec.input_shape[0])
    _load_into(model, sd, arch, path)
    try:
        with torch.no_grad():
            out_features = model.eval()(torch.zeros(1, *spec.input_shape)).shape[-1]
    except RuntimeError as e:  # e.g. a model for 32x32 inputs given 28x28 images
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BenchError(f"arch {arch!r} cannot run on {dataset} inputs of shape {tuple(spec.input_shape)} ({first}).") from None
    if out_features != spec.num_classes:
        raise BenchError(f"{path} gives {out_features} logits but {dataset} has {spec.num_classes} classes.")
    return Checkpoint(model, arch, kwargs, dataset, n_cls, spec.input_shape, zm.entry.threat_model if zm else None,
                      "unknown", raw={}, normalize=applied_normalization(model), robustbench=_entry_record(zm))


def _entry_record(zm: ZooModel | None) -> dict[str, str] | None:
    """What result.json says about a ``robustbench:`` model: the entry, its leaderboard and the table's commit."""
    if zm is None:
        return None
    return {"name": zm.entry.name, "dataset": zm.entry.dataset, "threat": zm.entry.threat,
            "architecture": zm.entry.architecture, "model_zoo": zm.model_zoo, "commit": source_commit()}
