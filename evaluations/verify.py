"""``bench verify RUN_DIR``: check a finished evaluation without attacking.

From ``result.json`` alone it rebuilds the model (the checkpoint at its recorded path, or
``--model``, whose sha256 must match; arch, normalisation, member as recorded) and the data (the
dataset split or data file, the recorded example indices and labels), then confirms

1. the clean predictions: clean_correct of ``per_example.csv`` on a fresh forward pass;
2. that ``adversarials.npz`` holds exactly the broken points of every threat (norm, eps) of the run
   (clean-correct and not robust in the worst case of ``per_example.csv``), each at its recorded
   test-set index and label;
3. every stored adversarial: inside the [0, 1] box, inside the threat's ball, misclassified by a
   fresh forward pass in evaluation mode (:mod:`evaluations.breaks`).

It returns a :class:`Verdict`: "verified N of N breaks", or the first point that fails and why.
Works on merged, sharded and torchrun runs (their files have the same layout). Example::

    v = verify_run("runs/demo/eval-quick")
    v.ok, v.message
"""
from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustbench_lite.errors import BenchError
from robustbench_lite.results import EPS_TOL, same_eps
from robustbench_lite.utils import set_channels_last, sha256_file

from .adversarials import FILE
from .attacks.base import attack_key
from .breaks import check_breaks

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    breaks: int       # breaks the run counts (over every threat)
    verified: int     # of them confirmed before the first failure (all of them when ok)
    message: str


@dataclass(frozen=True)
class Run:
    """A finished evaluation folder read back: its record, the checkpoint file and the options."""

    path: Path
    record: dict[str, Any]
    checkpoint: Path
    options: dict[str, Any]


def read_run(run_dir: str | Path, model: str | Path | None = None) -> Run:
    """The record of ``run_dir`` and its checkpoint (``model`` in place of the recorded path),
    whose sha256 must be the recorded one."""
    path = Path(run_dir)
    if path.is_file():
        raise BenchError(f"{path} is a file: give the folder of a finished `bench eval` run (the one holding result.json).")
    f = path / "result.json"
    if not f.is_file():
        raise BenchError(f"{path} has no result.json: give the folder of a finished `bench eval` run.")
    try:
        rec = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BenchError(f"{f} cannot be read as JSON ({e}).") from None
    options = (rec.get("provenance") or {}).get("options")
    if not isinstance(options, dict):
        raise BenchError(f"{f} records no evaluation options (it was made before provenance was recorded); "
                         "evaluate it again to verify or reproduce it.")
    ck = rec.get("checkpoint") or {}
    ckpt = Path(model) if model else Path(str(ck.get("path") or ""))
    if not ck.get("path") and not model:
        raise BenchError(f"{f} records no checkpoint path: pass --model CKPT.")
    if not ckpt.is_file():
        raise BenchError(f"the checkpoint {ckpt} does not exist: pass --model CKPT with the evaluated file.")
    if ck.get("sha256") and sha256_file(ckpt) != ck["sha256"]:
        raise BenchError(f"{ckpt} is not the evaluated checkpoint (its sha256 differs from the one in {f}).")
    return Run(path, rec, ckpt, options)


def load_model_and_data(run: Run, device: torch.device) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """The run's model (eval mode, on ``device``) and its evaluated points and labels, in order."""
    from robustbench_lite.checkpoint import load_checkpoint
    from robustbench_lite.data import get_dataset, load_test_data

    rec, opt = run.record, run.options
    ck = rec["checkpoint"]
    ckpt = load_checkpoint(run.checkpoint, arch=opt.get("arch"), dataset=opt.get("dataset"), member=opt.get("member"),
                           normalize=opt.get("normalize"), threat=opt.get("threat"))
    if (ckpt.arch, ckpt.normalize, ckpt.dataset) != (ck.get("arch"), ck.get("normalize"), ck.get("dataset")):
        raise BenchError(f"{run.checkpoint} builds {ckpt.arch} on {ckpt.dataset} (normalisation {ckpt.normalize}), "
                         f"the run evaluated {ck.get('arch')} on {ck.get('dataset')} (normalisation {ck.get('normalize')}).")
    data_file = (rec.get("data_file") or {}).get("path") or opt.get("data_file")
    data = load_test_data(get_dataset(ckpt.dataset), opt.get("data_dir"), data_file)
    want_sha = (rec.get("data_file") or {}).get("sha256")
    if want_sha and getattr(data, "sha256", None) != want_sha:
        raise BenchError(f"the data file {data_file} is not the evaluated one (its sha256 differs).")
    idx = torch.tensor([int(i) for i in rec["indices"]], dtype=torch.long)
    if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= len(data.targets)):
        raise BenchError(f"the run's example indices go up to {int(idx.max())} but the data has {len(data.targets)} examples.")
    x, y = data.batch(idx)
    if y.tolist() != [int(v) for v in rec["labels"]]:
        first = next(j for j, (a, b) in enumerate(zip(y.tolist(), rec["labels"])) if a != b)
        raise BenchError(f"the data's label of example {int(idx[first])} is {int(y[first])}, the run recorded "
                         f"{rec['labels'][first]}: another data set.")
    model = ckpt.model.to(device).eval()
    set_channels_last(model, rec.get("memory_format") == "channels_last")  # the layout it was evaluated in
    return model, x.to(device), y.to(device)


def read_per_example(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not path.is_file():
        raise BenchError(f"{path} is missing: the run is not finished.")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def broken_at(rec: dict[str, Any], rows: list[dict[str, str]], norm: str, eps: float) -> list[bool]:
    """Per row of per_example.csv: clean-correct and not robust in the worst case at (norm, eps)."""
    keys = [attack_key(r.get("label", r["attack"]), r["norm"], float(r["eps"])) for r in rec["attacks"]
            if r["norm"] == norm and float(r["eps"]) <= eps + EPS_TOL]
    return [row["clean_correct"] == "1" and any(row[f"robust[{k}]"] == "0" for k in keys) for row in rows]


def verify_run(run_dir: str | Path, model: str | Path | None = None, *, device: str | None = None,
               batch_size: int | None = None) -> Verdict:
    """Check the run in ``run_dir`` (see the module docstring)."""
    from robustbench_lite.utils import resolve_device

    run = read_run(run_dir, model)
    rec = run.record
    adv_path = run.path / FILE
    if not adv_path.is_file():
        raise BenchError(f"{run.path} has no {FILE} (evaluated with --no-adversarials or by an older version): "
                         "nothing to verify the breaks with.")
    _, rows = read_per_example(run.path / "per_example.csv")
    if [int(r["index"]) for r in rows] != [int(i) for i in rec["indices"]]:
        raise BenchError(f"{run.path}/per_example.csv and result.json list different examples.")
    dev = resolve_device(device)
    bs = int(batch_size or rec.get("batch_size") or 128)
    net, x, y = load_model_and_data(run, dev)
    offset = int((rec.get("shard") or {}).get("start", 0))

    with torch.no_grad():
        pred = torch.cat([net(x[i:i + bs]).argmax(1) for i in range(0, len(x), bs)]) if len(x) else y[:0]
    for j, (p, row) in enumerate(zip((pred == y).tolist(), rows)):
        if int(p) != int(row["clean_correct"]):
            return Verdict(False, 0, 0, f"example {row['index']} (position {offset + j}): the model's clean prediction "
                           f"is {'correct' if p else 'wrong'}, per_example.csv says clean_correct={row['clean_correct']}.")

    try:
        f = np.load(adv_path, allow_pickle=False)
        a = {k: f[k] for k in ("threat_norm", "threat_eps", "threat", "position", "index", "adversarial", "x_adv")}
    except (OSError, ValueError, KeyError) as e:
        raise BenchError(f"{adv_path} is not an adversarials file of this version ({e}).") from None
    threats = sorted({(r["norm"], float(r["eps"])) for r in rec["attacks"]})
    stored = [(str(n), float(e)) for n, e in zip(a["threat_norm"].tolist(), a["threat_eps"].tolist())]
    total = sum(sum(broken_at(rec, rows, n, e)) for n, e in threats)
    done = 0
    for norm, eps in threats:
        where = f"{norm}:{eps:g}"
        want = broken_at(rec, rows, norm, eps)
        t = next((i for i, (n, e) in enumerate(stored) if n == norm and same_eps(e, eps)), None)
        sel = np.nonzero(a["threat"] == t)[0] if t is not None else np.zeros(0, np.int64)
        rows_of = a["position"][sel] - offset
        seen: set[int] = set()
        for k, r in zip(sel.tolist(), rows_of.tolist()):
            if not 0 <= r < len(rows) or not want[r] or r in seen:
                why = ("it is outside the run" if not 0 <= r < len(rows) else "it is stored twice" if r in seen
                       else "per_example.csv counts it as robust there")
                return Verdict(False, total, done, f"a stored adversarial at position {int(a['position'][k])} at {where}: {why}.")
            seen.add(r)
            if int(a["index"][k]) != int(rows[r]["index"]):
                return Verdict(False, total, done, f"example at position {offset + r} at {where}: stored with test index "
                               f"{int(a['index'][k])}, the run evaluated index {rows[r]['index']}.")
        missing = [j for j, w in enumerate(want) if w and j not in seen]
        if missing:
            j = missing[0]
            return Verdict(False, total, done, f"example {rows[j]['index']} (position {offset + j}) is broken at {where} "
                           f"but {FILE} holds no adversarial for it ({len(missing)} missing).")
        if not len(sel):
            continue
        order = np.argsort(rows_of, kind="stable")
        sel, rows_of = sel[order], rows_of[order]
        adv_rows = a["adversarial"][sel]
        if len(adv_rows) and (adv_rows.min() < 0 or adv_rows.max() >= len(a["x_adv"])):
            raise BenchError(f"{adv_path} is damaged: an adversarial row is out of range.")
        x_adv = torch.from_numpy(np.ascontiguousarray(a["x_adv"][adv_rows])).to(dev)
        r_t = torch.from_numpy(rows_of).to(dev)
        if x_adv.shape[1:] != x.shape[1:]:
            raise BenchError(f"{adv_path} holds inputs of shape {tuple(x_adv.shape[1:])}, the run's are {tuple(x.shape[1:])}.")
        ok, why = check_breaks(net, x[r_t], x_adv, y[r_t], norm=norm, eps=eps, batch_size=bs)
        if not bool(ok.all()):
            i = int((~ok).nonzero()[0])
            r = int(rows_of[i])
            return Verdict(False, total, done + i, f"example {rows[r]['index']} (position {offset + r}) at {where}: its "
                           f"stored adversarial is {why[i]}.")
        done += len(sel)
    return Verdict(True, total, done, f"verified {done} of {total} breaks")
