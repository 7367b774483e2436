"""The adversarial examples of a run, kept so that anyone can check its breaks (``bench verify``).

Three levels, each a plain ``.npz`` (``np.load(path)`` works with ``allow_pickle=False``):

- per block of an (attack, eps): ``parts/blocks/<task>/<block>.npz`` beside the block's json, with
  ``position`` (M,) int64 (the points' places in the whole evaluation) and ``x_adv`` (M, C, H, W)
  float32, the points the attack broke there (a minimum-norm run: every point it found one for);
- per (attack, eps): ``parts/<part>.npz``, the blocks joined (``bench merge`` joins the shards');
- per evaluation: ``adversarials.npz`` (:func:`write_evaluation`, layout in docs/evaluation.md): for
  every threat (norm, eps) of the suite, each point broken there (clean-correct, not robust in the
  worst case) and the adversarial that broke it. Rule: the first attack in suite order at the
  smallest radius <= eps that broke it (a perturbation inside a smaller ball is inside the larger).

Disk cost: 4 bytes per input coordinate per distinct adversarial (MNIST 28x28: 3 KB per break;
CIFAR-10: 12 KB), about twice that while the run's block and part files are kept beside it.
"""
from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from robustbench_lite.files import atomic_write_bytes
from robustbench_lite.results import EPS_TOL

logger = logging.getLogger(__name__)

FILE = "adversarials.npz"
RULE = "first attack in suite order at the smallest radius <= eps that broke the point"


def save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` written atomically (a temporary file renamed into place)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def save_breaks(path: Path, position: np.ndarray, x_adv: np.ndarray) -> None:
    """A block's or a part's breaks: positions (M,) and their adversarials (M, ...) as float32."""
    save(path, {"position": np.asarray(position, dtype=np.int64),
                "x_adv": np.ascontiguousarray(np.asarray(x_adv, dtype=np.float32))})


def load_breaks(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return f["position"], f["x_adv"]


def join(paths: Sequence[Path], out: Path, shape: tuple[int, ...] | None = None) -> None:
    """The breaks of several files (blocks, shards) as one file at ``out``, in position order."""
    pos, adv = [], []
    for p in paths:
        a, b = load_breaks(p)
        pos.append(a)
        adv.append(b)
    if not pos or sum(len(a) for a in pos) == 0:
        empty_shape = next((b.shape[1:] for b in adv if b.ndim > 1), shape or ())
        save_breaks(out, np.zeros(0, np.int64), np.zeros((0, *empty_shape), np.float32))
        return
    position, x_adv = np.concatenate(pos), np.concatenate([b for b in adv if len(b)])
    order = np.argsort(position, kind="stable")
    save_breaks(out, position[order], x_adv[order])


def write_evaluation(out: Path, parts_dir: Path, clean: Sequence[bool], parts: Sequence[Any], *,
                     indices: Sequence[int], labels: Sequence[int], offset: int = 0) -> dict[str, Any] | None:
    """``adversarials.npz`` of an evaluation from its parts' files (see the module docstring).

    ``parts``: the record's parts in suite order (:class:`evaluations.parts.Part`); ``indices`` and
    ``labels``: per evaluated example (a shard's own); ``offset``: the position of the first.
    Returns the record's ``adversarials`` entry, or None (with a warning) when a part has no file
    (made by an older version, or with ``--no-adversarials``)."""
    missing = [p.key for p in parts if not p.adversarials or not (parts_dir / p.adversarials).is_file()]
    if missing:
        logger.warning("no adversarials.npz: the parts %s have no saved adversarials", ", ".join(missing[:3]))
        return None
    stored: dict[str, dict[int, int]] = {}   # file -> position -> row
    arrays: dict[str, np.ndarray] = {}
    for p in parts:
        if p.adversarials not in stored:
            pos, adv = load_breaks(parts_dir / p.adversarials)
            stored[p.adversarials] = {int(v): r for r, v in enumerate(pos.tolist())}
            arrays[p.adversarials] = adv
    threats = sorted({(p.norm, float(p.eps)) for p in parts}, key=lambda t: (t[0], t[1]))
    order = list(range(len(parts)))
    rows: dict[tuple[str, int], int] = {}    # (file, row) -> row of x_adv in the output
    x_rows: list[np.ndarray] = []
    cols: dict[str, list[Any]] = {k: [] for k in ("threat", "position", "index", "label", "adversarial",
                                                  "attack_label", "attack", "attack_eps")}
    n = len(clean)
    for t, (norm, eps) in enumerate(threats):
        cands = sorted((i for i in order if parts[i].norm == norm and parts[i].eps <= eps + EPS_TOL),
                       key=lambda i: (parts[i].eps, i))
        for j in range(n):
            if not clean[j] or all(parts[i].robust[j] for i in cands):
                continue
            src = next((i for i in cands if not parts[i].robust[j] and offset + j in stored[parts[i].adversarials]), None)
            if src is None:
                raise RuntimeError(f"point {offset + j} is broken at {norm}:{eps:g} but no part kept its adversarial")
            p = parts[src]
            key = (p.adversarials, stored[p.adversarials][offset + j])
            if key not in rows:
                rows[key] = len(x_rows)
                x_rows.append(arrays[key[0]][key[1]])
            for k, v in (("threat", t), ("position", offset + j), ("index", indices[j]), ("label", labels[j]),
                         ("adversarial", rows[key]), ("attack_label", p.label), ("attack", p.attack),
                         ("attack_eps", p.eps)):
                cols[k].append(v)
    shape = next((a.shape[1:] for a in arrays.values() if a.ndim > 1), ())
    data = {
        "threat_norm": np.array([t[0] for t in threats], dtype="U4"),
        "threat_eps": np.array([t[1] for t in threats], dtype=np.float64),
        "threat": np.array(cols["threat"], dtype=np.int64),
        "position": np.array(cols["position"], dtype=np.int64),
        "index": np.array(cols["index"], dtype=np.int64),
        "label": np.array(cols["label"], dtype=np.int64),
        "adversarial": np.array(cols["adversarial"], dtype=np.int64),
        "attack_label": np.array(cols["attack_label"], dtype=str if cols["attack_label"] else "U1"),
        "attack": np.array(cols["attack"], dtype=str if cols["attack"] else "U1"),
        "attack_eps": np.array(cols["attack_eps"], dtype=np.float64),
        "x_adv": np.stack(x_rows).astype(np.float32) if x_rows else np.zeros((0, *shape), np.float32),
        "rule": np.array(RULE),
    }
    path = out / FILE
    save(path, data)
    return {"file": FILE, "breaks": len(cols["position"]), "adversarials": len(x_rows), "bytes": path.stat().st_size,
            "rule": RULE}


def join_part_files(shard_parts: Sequence[Path], npz: str | None, out_parts: Path) -> str | None:
    """``bench merge``: the adversarials file ``npz`` (a part's ``adversarials``) of every shard's
    parts folder joined into ``out_parts``; returns its name, or None when a shard lacks it."""
    if not npz:
        return None
    files = [d / npz for d in shard_parts]
    if not all(f.is_file() for f in files):
        return None
    join(files, out_parts / npz)
    return npz
