"""``evaluate``: a checkpoint + a suite -> per-example results, summary.csv, result.json.

Output folder layout (column names documented in the README):
- ``parts/``            one JSON per finished (attack, eps): per-example ground truth (resume reads it)
- ``per_example.csv``   one row per example: clean_correct and robust[...] per (attack, eps)
- ``summary.csv``       one row per (attack, eps); clean accuracy is the row ``clean``
- ``sweeps.csv``        accuracy per eps and normalised AUC per (attack, norm) with several eps
- ``result.json``       everything above aggregated, with provenance
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from robustbench_lite.checkpoint import Checkpoint, load_checkpoint
from robustbench_lite.data import class_balanced_indices, get_dataset
from robustbench_lite.errors import BenchError
from robustbench_lite.threat import ThreatModel
from robustbench_lite.utils import atomic_write_json, atomic_write_text, library_versions, resolve_device, sha256_file

from .metrics import mean_median, normalized_auc
from .runner import Part, RunContext, run_tasks, write_per_example
from .suite import Suite, load_suite

logger = logging.getLogger(__name__)

SUMMARY_COLUMNS = ["attack", "norm", "eps", "n", "accuracy", "worst_case", "mean_min_norm", "median_min_norm",
                   "seconds", "forwards", "backwards"]


@dataclass(frozen=True)
class EvalOptions:
    suite: str | Path = "quick"
    n_examples: int | None = None
    batch_size: int = 256
    device: str | None = None
    seed: int = 0
    threat: str | None = None
    resume: bool = False
    all_points: bool = False
    data_dir: str | None = None
    member: str | None = None
    arch: str | None = None
    dataset: str | None = None


def evaluate(model_path: str | Path, out_dir: str | Path, options: EvalOptions = EvalOptions()) -> dict[str, Any]:
    """Evaluate a checkpoint with a suite; returns the result record (also written to ``out_dir``).

    Example::

        rec = evaluate("runs/demo/madry/checkpoint.pt", "runs/demo/madry/eval", EvalOptions(suite="quick"))
        rec["robust_accuracy"]
    """
    suite = load_suite(options.suite)
    ckpt = load_checkpoint(model_path, arch=options.arch, dataset=options.dataset, member=options.member)
    return evaluate_loaded(ckpt, suite, out_dir, options, checkpoint_path=Path(model_path))


def _threat_for(ckpt: Checkpoint, options: EvalOptions) -> ThreatModel:
    spec = get_dataset(ckpt.dataset)
    if options.threat:
        return ThreatModel.parse(options.threat)
    if ckpt.threat is not None:
        return ckpt.threat
    return spec.threat("linf")


def evaluate_loaded(ckpt: Checkpoint, suite: Suite, out_dir: str | Path, options: EvalOptions,
                    checkpoint_path: Path | None = None) -> dict[str, Any]:
    out = Path(out_dir)
    device = resolve_device(options.device)
    spec = get_dataset(ckpt.dataset)
    threat = _threat_for(ckpt, options)
    data = spec.load("test", options.data_dir)
    idx = class_balanced_indices(data.targets, options.n_examples)
    x, y = data.batch(idx)
    if x.min() < 0 or x.max() > 1 or not torch.isfinite(x).all():
        raise BenchError(f"the {ckpt.dataset} inputs are outside [0,1]; normalisation belongs inside the model.")
    if int(y.max()) >= ckpt.num_classes:
        raise BenchError(f"{ckpt.dataset} has labels up to {int(y.max())} but the model has {ckpt.num_classes} classes.")
    model = ckpt.model.to(device).eval()
    x, y = x.to(device), y.to(device)
    with torch.no_grad():
        probe = model(x[: min(len(x), 8)])
    if probe.shape[-1] != ckpt.num_classes:
        raise BenchError(f"the model gives {probe.shape[-1]} logits, the checkpoint says {ckpt.num_classes} classes.")
    if not torch.isfinite(probe).all():
        raise BenchError("the model's logits contain NaN or inf on clean inputs; it cannot be evaluated.")
    sha = sha256_file(checkpoint_path) if checkpoint_path else None
    fingerprint = {"suite": suite.hash, "seed": options.seed, "n": len(idx), "checkpoint": sha, "member": ckpt.member,
                   "threat": threat.to_dict(), "cascade": not options.all_points and suite.cascade}
    ctx = RunContext(suite, threat, options.seed, options.batch_size, out, fingerprint, resume=options.resume,
                     cascade=False if options.all_points else None,
                     standard_eps={k: ThreatModel.parse(f"{k}:{v}").eps for k, v in spec.eps.items()})
    out.mkdir(parents=True, exist_ok=True)
    clean, parts = run_tasks(model, x, y, ctx)
    record = build_record(clean, parts, threat)
    record.update({
        "format": "robustbench_lite/result", "format_version": 1,
        "checkpoint": {"path": str(checkpoint_path) if checkpoint_path else None, "sha256": sha, "arch": ckpt.arch,
                       "dataset": ckpt.dataset, "defense": ckpt.defense, "defense_config": ckpt.defense_config,
                       "member": ckpt.member, "num_classes": ckpt.num_classes,
                       "seed": ckpt.defense_config.get("seed") if isinstance(ckpt.defense_config, dict) else None},
        "suite": {"name": suite.name, "hash": suite.hash, "cascade": fingerprint["cascade"]},
        "threat": threat.to_dict(), "seed": options.seed, "n": len(idx), "indices": [int(i) for i in idx],
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "versions": library_versions(),
        "device": str(device),
    })
    write_per_example(out / "per_example.csv", [int(i) for i in idx], y.tolist(), clean, parts)
    atomic_write_text(out / "summary.csv", summary_csv(record))
    atomic_write_text(out / "sweeps.csv", sweeps_csv(record))
    atomic_write_json(out / "result.json", record)
    return record


def _pct(mask: torch.Tensor) -> float:
    return round(100.0 * mask.float().mean().item(), 2) if len(mask) else 0.0


def build_record(clean: list[bool], parts: list[Part], threat: ThreatModel) -> dict[str, Any]:
    """Aggregate per-example parts into rows; the worst case per threat is recomputed from them."""
    clean_t = torch.tensor(clean, dtype=torch.bool)
    n = len(clean)
    rows: list[dict[str, Any]] = [{
        "attack": "clean", "norm": threat.norm, "eps": 0.0, "n": n, "accuracy": _pct(clean_t), "worst_case": _pct(clean_t),
        "mean_min_norm": None, "median_min_norm": None, "seconds": 0.0, "forwards": n, "backwards": 0}]
    broken: dict[str, list[tuple[float, torch.Tensor]]] = {}
    for p in parts:
        r = torch.tensor(p.robust, dtype=torch.bool)
        broken.setdefault(p.norm, []).append((p.eps, clean_t & ~r))
        worst = clean_t.clone()
        for e, b in broken[p.norm]:
            if e <= p.eps + 1e-12:
                worst &= ~b
        mean, med = mean_median([v for v, c in zip(p.norms, clean) if c]) if p.norms is not None else (None, None)
        rows.append({"attack": p.label, "norm": p.norm, "eps": p.eps, "n": n, "accuracy": _pct(r), "worst_case": _pct(worst),
                     "mean_min_norm": mean, "median_min_norm": med, "seconds": round(p.seconds, 3),
                     "forwards": p.forwards, "backwards": p.backwards})
    at_threat = clean_t.clone()
    for e, b in broken.get(threat.norm, []):
        if e <= threat.eps + 1e-12:
            at_threat &= ~b
    sweeps = []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows[1:]:
        groups.setdefault((row["attack"], row["norm"]), []).append(row)
    for (label, norm), rs in groups.items():
        if len({r["eps"] for r in rs}) < 2:
            continue
        auc = normalized_auc([r["eps"] for r in rs], [r["accuracy"] / 100 for r in rs])
        sweeps += [{"attack": label, "norm": norm, "eps": r["eps"], "accuracy": r["accuracy"], "auc": round(auc, 4)} for r in rs]
    return {"clean_accuracy": _pct(clean_t), "robust_accuracy": _pct(at_threat), "attacks": rows[1:], "summary": rows,
            "sweeps": sweeps, "checks": []}


def _csv(rows: list[dict[str, Any]], cols: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})
    return buf.getvalue()


def summary_csv(record: dict[str, Any]) -> str:
    return _csv(record["summary"], SUMMARY_COLUMNS)


def sweeps_csv(record: dict[str, Any]) -> str:
    return _csv(record["sweeps"], ["attack", "norm", "eps", "accuracy", "auc"])
