"""Black-box transfer between checkpoints (ACT Table 3 convention).

For every surrogate S and target T: PGD-``steps`` examples are crafted on S (CE, uniform random
start, step ``2.5 * eps / steps``, every step taken) for the same class-balanced test examples,
and the success rate is the percentage of T's clean-correct points that T misclassifies on them.
Lower means more robust. ``transfer.csv`` is the matrix: one row per surrogate, one column per
target; ``transfer.json`` holds the long rows ``{surrogate, target, norm, eps, n, success_rate}``.

Example::

    rows = transfer_matrix(["a.pt", "b.pt"], ["c.pt"], "runs/transfer", n_examples=500)
"""
from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any

import torch

from robustbench_lite import distributed
from robustbench_lite.checkpoint import load_checkpoint
from robustbench_lite.data import class_balanced_indices, get_dataset
from robustbench_lite.errors import BenchError, require_number
from robustbench_lite.threat import ThreatModel
from robustbench_lite.utils import atomic_write_json, atomic_write_text, check_output_path, default_batch_size, frozen

from .attacks import create_attack, predict

logger = logging.getLogger(__name__)

OUT_FILES = ("transfer.csv", "transfer.json")


def transfer_matrix(surrogates: list[str], targets: list[str], out_dir: str | Path, *, n_examples: int | None = None,
                    threat: str | None = None, steps: int = 20, seed: int = 0, batch_size: int | None = None,
                    device: str | None = None, data_dir: str | None = None) -> list[dict[str, Any]]:
    """Success rates (%) of every surrogate's PGD examples on every target; writes the outputs.

    ``out_dir`` is checked before any work; a ``threat`` whose ball covers the [0,1] input box (or
    has eps 0) is a :class:`BenchError` (:meth:`ThreatModel.check_box`); one that reaches the box's
    centre from every input is logged and kept in ``transfer.json`` under ``notes``."""
    if not surrogates or not targets:
        raise BenchError("give at least one surrogate and one target checkpoint.")
    out = check_output_path(out_dir, kind="folder", files=OUT_FILES)
    dev = distributed.device_for(device)  # cuda:LOCAL_RANK under torchrun
    world = distributed.setup(dev)
    batch_size = default_batch_size(dev) if batch_size is None else batch_size
    require_number("the batch size", batch_size, integer=True, minimum=1)
    require_number("the number of PGD steps", steps, integer=True, minimum=1)
    tgts = {t: load_checkpoint(t) for t in targets}
    datasets = {c.dataset for c in tgts.values()}
    if len(datasets) != 1:
        raise BenchError(f"the targets come from different datasets ({', '.join(sorted(datasets))}); transfer needs one.")
    dataset = datasets.pop()
    spec = get_dataset(dataset)
    tm = ThreatModel.parse(threat) if threat is not None else spec.threat("linf")  # "" is an error, not the default
    notes = []
    if threat is not None:
        remark = tm.check_box(spec.input_shape)
        if remark:
            logger.warning("%s", remark)
            notes.append(remark)
    data = spec.load("test", data_dir)
    idx = class_balanced_indices(data.targets, n_examples)
    x, y = data.batch(idx)
    x, y = x.to(dev), y.to(dev)
    correct = {}
    for t, c in tgts.items():
        c.model.to(dev).eval()
        with frozen(c.model):
            correct[t] = predict(c.model, x, batch_size) == y
    rows: list[dict[str, Any]] = []
    # under torchrun rank r crafts the blocks b with b % world == r (every block costs the same: all
    # steps are taken), every draw keyed by position as in one process; the verdicts are gathered on every rank
    pos = torch.arange(len(x), device=dev)
    mine = pos[torch.div(pos, batch_size, rounding_mode="floor") % world.size == world.rank]
    for s in surrogates:
        sc = load_checkpoint(s)
        if sc.dataset != dataset:
            raise BenchError(f"surrogate {s} is a {sc.dataset} model; the targets are {dataset} models.")
        # the transfer attack's front door crafts on the surrogate (row-keyed: draws keyed by position);
        # its own success flag (judged on the surrogate here) is not used: every target judges x_adv
        craft = create_attack("transfer", surrogate=str(s), norm=tm.norm, steps=steps)
        with frozen(sc.model):
            x_adv = craft(sc.model.to(dev).eval(), x[mine], y[mine], eps=tm.eps, batch_size=batch_size, seed=seed,
                          positions=mine, stream="transfer").x_adv
        verdicts = {}
        for t, c in tgts.items():
            with frozen(c.model):
                verdicts[t] = (predict(c.model, x_adv, batch_size) != y[mine]).tolist()
        gathered = distributed.gather_objects((mine.tolist(), verdicts))
        for t in tgts:
            wrong = torch.zeros(len(x), dtype=torch.bool, device=dev)
            for where, v in gathered:
                wrong[torch.tensor(where, dtype=torch.long, device=dev)] = torch.tensor(v[t], dtype=torch.bool, device=dev)
            ok = correct[t]
            n = int(ok.sum())
            rate = round(100.0 * float((wrong & ok).sum()) / n, 2) if n else None
            rows.append({"surrogate": s, "target": t, "norm": tm.norm, "eps": tm.eps, "n": n, "success_rate": rate})
            logger.info("transfer %s -> %s: %s%% of %d", s, t, rate, n)
    if world.main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "transfer.csv", matrix_csv(rows, surrogates, targets))
        atomic_write_json(out / "transfer.json", {"format": "robustbench_lite/transfer", "steps": steps, "seed": seed,
                                                  "batch_size": batch_size,
                                                  "n_examples": len(idx), "dataset": dataset, "threat": tm.to_dict(),
                                                  "rows": rows, **({"notes": notes} if notes else {}),
                                                  **({"world_size": world.size} if world.distributed else {})})
    distributed.barrier()
    return rows


def matrix_csv(rows: list[dict[str, Any]], surrogates: list[str], targets: list[str]) -> str:
    """``surrogate`` column, then one column per target path: success rate in %."""
    cell = {(r["surrogate"], r["target"]): r["success_rate"] for r in rows}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["surrogate", *targets])
    for s in surrogates:
        w.writerow([s, *("" if cell.get((s, t)) is None else cell[(s, t)] for t in targets)])
    return buf.getvalue()
