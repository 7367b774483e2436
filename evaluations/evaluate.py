"""``evaluate``: a checkpoint + a suite -> per-example results, summary.csv, result.json.

Output folder layout (column names documented in the README):
- ``parts/``            one JSON per finished (attack, eps): per-example ground truth (resume reads it)
- ``per_example.csv``   one row per example: clean_correct and robust[...] per (attack, eps)
- ``summary.csv``       one row per (attack, eps); clean accuracy is the row ``clean``
- ``sweeps.csv``        accuracy per eps and normalised AUC per (attack, norm) with several eps
- ``checks.json``       the sanity checks (suites with ``checks = true``): name, passed, detail
- ``adversarials.npz``  per threat, every broken point and the adversarial that broke it (``bench verify``)
- ``result.json``       everything above aggregated, with provenance

Sharding: ``EvalOptions(shard="i/k")`` evaluates the i-th (0-based) of k contiguous shards of the
examples into its own folder; shard boundaries fall on multiples of the scheduling block (whole
canonical blocks, ``attacks.base.scheduling_block``) and every random draw is keyed by example
position, so every number is the one an unsharded run makes, whatever the batch size. :func:`merge` joins
shard folders by example index into the outputs of the unsharded run.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from robustbench_lite import distributed, results
from robustbench_lite.checkpoint import Checkpoint, load_checkpoint
from robustbench_lite.data import class_balanced_indices, get_dataset, load_test_data
from robustbench_lite.errors import BenchError, require_number
from robustbench_lite.files import check_apart_from_inputs
from robustbench_lite.threat import ThreatModel
from robustbench_lite.utils import (atomic_write_json, default_batch_size, library_versions,
                                   frozen, make_generator, set_channels_last, sha256_file)

from .adaptive import AdaptOptions, adapt_evaluation, annotate, check_options as check_adapt_options
from .attack_paths import flag_counts
from .adversarials import join_part_files, write_evaluation
from .checks import MODEL_CHECKS, breaks_verified, model_checks, prediction_checks, result_checks
from .indicators import INDICATOR_CHECKS, indicator_checks
from .metrics import normalized_auc
from .outfolder import check_eval_folder, check_merge_folder
from .attacks.base import CANONICAL_BLOCK, attack_key, scheduling_block
from .parts import Part, join_flags
from .provenance import provenance
from .runner import RunContext, run_tasks
from .suite import Suite, check_suite_threat, load_suite

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class EvalOptions:
    suite: str | Path = "quick"
    n_examples: int | None = None
    batch_size: int | None = None  # None: default_batch_size(device), 128 on a CPU, 256 on a GPU
    device: str | None = None
    seed: int = 0
    threat: str | None = None
    resume: bool = False
    all_points: bool = False
    data_dir: str | None = None
    data_file: str | None = None  # a user's .npz (x, y) in place of the test split (data.load_data_file)
    member: str | None = None
    arch: str | None = None  # for a plain state_dict: a registry name, torchvision:/timm:, module:callable, robustbench:<entry>
    dataset: str | None = None
    normalize: str | None = None  # input normalisation put inside the model (checkpoint.load_checkpoint's normalize)
    shard: str | None = None  # "i/k": the i-th of k contiguous shards (0-based)
    check_examples: int = 100  # clean sample size of the model checks
    channels_last: bool = True  # NHWC weights for conv nets (faster on CPU and GPU; same numbers to rounding)
    adversarials: bool = True  # keep the adversarial example of every break (adversarials.npz; evaluations.adversarials)
    adapt: bool = True  # suites with checks: run the remedies the failed indicators name (evaluations.adaptive)
    eot: int | None = None  # EoT with this many draws whatever the checks say (--eot N)
    bpda: str | None = None  # BPDA at this submodule (--bpda MODULE[=file.py:function])


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/k"`` -> (i, k) with 0 <= i < k."""
    try:
        i_s, k_s = str(text).split("/")
        i, k = int(i_s), int(k_s)
    except ValueError:
        raise BenchError(f"--shard {text!r} must look like i/k, e.g. 0/4 (0-based).") from None
    if k < 1 or not 0 <= i < k:
        raise BenchError(f"--shard {text!r}: need 0 <= i < k.")
    return i, k


def shard_bounds(n: int, i: int, k: int, block: int) -> tuple[int, int]:
    """Contiguous positions [start, stop) of shard i of k over n examples, in whole blocks."""
    blocks = -(-n // block)
    b0, b1 = (blocks * i) // k, (blocks * (i + 1)) // k
    return min(n, b0 * block), min(n, b1 * block)


def evaluate(model_path: str | Path, out_dir: str | Path, options: EvalOptions = EvalOptions()) -> dict[str, Any]:
    """Evaluate a checkpoint with a suite; returns the result record (also written to ``out_dir``).

    Example::

        rec = evaluate("runs/demo/madry/checkpoint.pt", "runs/demo/madry/eval", EvalOptions(suite="quick"))
        rec["robust_accuracy"]
        evaluate("Carmon2019Unlabeled.pt", "runs/carmon", EvalOptions(arch="robustbench:Carmon2019Unlabeled"))
    """
    suite = load_suite(options.suite)
    ckpt = load_checkpoint(model_path, arch=options.arch, dataset=options.dataset, member=options.member,
                           normalize=options.normalize, threat=options.threat)
    return evaluate_loaded(ckpt, suite, out_dir, options, checkpoint_path=Path(model_path))


def _threat_for(ckpt: Checkpoint, options: EvalOptions) -> ThreatModel:
    spec = get_dataset(ckpt.dataset)
    if options.threat is not None:  # "" or blanks are an error (ThreatModel.parse), never the default
        threat = ThreatModel.parse(options.threat)
        note = threat.check_box(spec.input_shape)  # a ball covering the [0,1] box is an error
        if note:
            logger.warning("%s", note)
        return threat
    if ckpt.threat is not None and ckpt.threat.eps > 0:
        return ckpt.threat
    if ckpt.threat is not None:  # trained without an attack (--eps 0): radius 0 would report clean accuracy as robust
        norm = ckpt.threat.norm if ckpt.threat.norm in spec.eps else "linf"
        logger.info("the checkpoint's threat %s has radius 0 (trained without an attack); evaluating at %s, the "
                    "dataset's standard radius", ckpt.threat, spec.threat(norm))
        return spec.threat(norm)
    return spec.threat("linf")


def evaluate_loaded(ckpt: Checkpoint, suite: Suite, out_dir: str | Path, options: EvalOptions,
                    checkpoint_path: Path | None = None) -> dict[str, Any]:
    out = Path(out_dir)
    device = distributed.device_for(options.device)  # cuda:LOCAL_RANK under torchrun
    world = distributed.setup(device)  # a no-op without torchrun
    if options.batch_size is None:
        options = dataclasses.replace(options, batch_size=default_batch_size(device))
    require_number("the batch size", options.batch_size, integer=True, minimum=1)
    spec = get_dataset(ckpt.dataset)
    threat = _threat_for(ckpt, options)
    # before any work: a suite with no attack at the threat, or a radius outside the box, is refused
    check_suite_threat(suite, threat, spec.standard_eps(), spec.input_shape)
    data = load_test_data(spec, options.data_dir, options.data_file)
    idx = class_balanced_indices(data.targets, options.n_examples)
    n_total = len(idx)
    shard_info = None
    offset = 0
    if options.shard:
        si, sk = parse_shard(options.shard)
        block = scheduling_block(options.batch_size, [spec.attack for spec in suite.attacks])
        offset, stop = shard_bounds(n_total, si, sk, block)
        if stop <= offset:
            raise BenchError(f"shard {options.shard} of {n_total} examples in blocks of {block} is empty; use fewer shards.")
        idx = idx[offset:stop]
        shard_info = {"index": si, "count": sk, "start": offset, "stop": stop, "n_total": n_total}
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
    adapt_opts = AdaptOptions(adapt=options.adapt and suite.checks, eot=options.eot, bpda=options.bpda)
    check_adapt_options(model, adapt_opts)
    layout = _fast_layout(model, x[: min(len(x), 8)], y[: min(len(x), 8)], options.channels_last)
    sha = sha256_file(checkpoint_path) if checkpoint_path else None
    fingerprint = make_fingerprint(suite, options.seed, n_total, sha, ckpt.member, threat,
                                   not options.all_points and suite.cascade, options.batch_size, options.shard)
    if options.data_file:  # parts made on another file (or the dataset's own split) are not reused
        fingerprint["data_file"] = data.sha256  # type: ignore[union-attr]
    if ckpt.normalize is not None or ckpt.robustbench is not None:  # the same weights built another way are another model
        fingerprint["model"] = {"arch": ckpt.arch, "normalize": ckpt.normalize}
    check_eval_folder(out, fingerprint, resume=options.resume)  # never over another run's evaluation
    distributed.barrier()  # under torchrun every rank has looked at the folder before any rank writes in it
    ctx = RunContext(suite, threat, options.seed, options.batch_size, out, fingerprint, resume=options.resume,
                     cascade=False if options.all_points else None,
                     standard_eps=spec.standard_eps(), offset=offset, adversarials=options.adversarials)
    out.mkdir(parents=True, exist_ok=True)
    m = min(len(x), options.check_examples)
    with frozen(model):  # every suite: cheap, and a broken model must not reach the leaderboard unflagged
        checks = model_checks(model, x[:m], y[:m])
    _warn_failed(checks)
    clean, parts = run_tasks(model, x, y, ctx)
    record = build_record(clean, parts, threat)
    more = prediction_checks(ctx.predictions, y.tolist(), ckpt.num_classes)
    more.append(breaks_verified(parts))
    if suite.checks:
        if world.main:  # the attack-failure indicators: probes on at most 100 clean-correct points (docs/checks.md)
            with frozen(model):
                more += indicator_checks(model, x, y, clean, threat, generator=make_generator(options.seed),
                                         max_points=100, batch_size=options.batch_size)
        more += result_checks(parts, clean, max_eps=suite.extra.get("max_eps"))
    _warn_failed(more)
    adaptation = adapt_evaluation(model, x, y, clean, parts, checks + more, threat, ctx, adapt_opts, recheck=lambda ps:
                                  result_checks(ps, clean, max_eps=suite.extra.get("max_eps"))) if world.main else None
    if adaptation is not None:  # the remedies' parts join the worst case (docs/evaluation.md, "Adaptive evaluation")
        before, parts = record["robust_accuracy"], parts + adaptation.parts
        record = build_record(clean, parts, threat)
        annotate(record, adaptation, before)
    record["checks"] = checks + more
    record.update({
        "format": results.RESULT_FORMAT, "format_version": results.RESULT_FORMAT_VERSION,
        "checkpoint": {"path": str(checkpoint_path) if checkpoint_path else None, "sha256": sha, "arch": ckpt.arch,
                       "arch_kwargs": ckpt.arch_kwargs, "normalize": ckpt.normalize, "robustbench": ckpt.robustbench,
                       "dataset": ckpt.dataset, "defense": ckpt.defense, "defense_config": ckpt.defense_config,
                       "member": ckpt.member, "num_classes": ckpt.num_classes,
                       "seed": ckpt.defense_config.get("seed") if isinstance(ckpt.defense_config, dict) else None},
        "suite": {"name": suite.name, "hash": suite.hash, "cascade": fingerprint["cascade"], "text": suite.text},
        "threat": threat.to_dict(), "seed": options.seed, "n": len(idx), "indices": [int(i) for i in idx],
        "labels": [int(v) for v in y.tolist()], "batch_size": options.batch_size,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "versions": library_versions(),
        "device": str(device), "memory_format": layout,
    })
    if shard_info:
        record["shard"] = shard_info
    if options.data_file:
        record["data_file"] = {"path": str(options.data_file), "sha256": data.sha256}  # type: ignore[union-attr]
    notes = [n for p in parts for n in p.notes]
    if notes:  # e.g. blocks halved on out-of-memory: their random draws differ from undivided blocks'
        record["notes"] = sorted(set(notes))
    if world.distributed:  # the numbers do not depend on it: blocks are seeded by position, not by rank
        record["distributed"] = {"world_size": world.size, "ranks": ctx.ranks}
    record["provenance"] = provenance(device, options={k: str(v) if isinstance(v, Path) else v
                                                       for k, v in dataclasses.asdict(options).items()})
    if world.main:
        record["adversarials"] = write_evaluation(out, out / "parts", clean, parts, indices=record["indices"],
                                                  labels=record["labels"], offset=offset) if options.adversarials else None
        results.write_outputs(out, record, clean, parts)
    distributed.barrier()  # no rank leaves before the outputs are written
    return record


def _warn_failed(checks: list[dict[str, Any]]) -> None:
    for c in checks:
        if not c["passed"]:
            logger.warning("check %s failed: %s", c["name"], c["detail"])


def _fast_layout(model: torch.nn.Module, x: Tensor, y: Tensor, enabled: bool) -> str:
    """channels_last when enabled and the model takes it; a user's own architecture whose forward or
    backward cannot run in that layout (e.g. ``.view`` on a feature map) falls back to NCHW."""
    if not set_channels_last(model, enabled):
        return "contiguous"
    try:
        xr = x.clone().requires_grad_(True)
        torch.autograd.grad(torch.nn.functional.cross_entropy(model(xr), y), xr)
    except RuntimeError as e:
        logger.info("channels_last does not run with this model (%s); evaluating it contiguous", e)
        set_channels_last(model, False)
        return "contiguous"
    return "channels_last"


def make_fingerprint(suite: Suite, seed: int, n_total: int, sha: str | None, member: str | None, threat: ThreatModel,
                     cascade: bool, batch_size: int, shard: str | None) -> dict[str, Any]:
    """What must match for a finished part on disk to be reused (resume, merge)."""
    return {"suite": suite.hash, "seed": seed, "n": n_total, "checkpoint": sha, "member": member,
            "threat": threat.to_dict(), "cascade": cascade, "batch_size": batch_size, "shard": shard,
            "canonical_block": CANONICAL_BLOCK}


def attack_kinds(parts: list[Part]) -> dict[str, str]:
    """Registry name -> kind (white-box, black-box, minimum-norm, transfer) of the parts' attacks."""
    from .attacks import ATTACKS

    kinds = {}
    for p in parts:
        if p.attack not in kinds and p.attack in ATTACKS.names():
            kinds[p.attack] = ATTACKS.get(p.attack).kind
    return kinds


def build_record(clean: list[bool], parts: list[Part], threat: ThreatModel) -> dict[str, Any]:
    """Aggregate per-example parts into rows (:func:`robustbench_lite.results.summary_rows`)."""
    rows = results.summary_rows(clean, parts, kinds=attack_kinds(parts), norm=threat.norm, eps=threat.eps)
    for row, p in zip(rows[1:], parts):
        row.update(flag_counts(p.indicators))  # attack-failure indicators on the attack's own path
        if row["kind"] == results.TRANSFER:
            att = [a for a in p.attacked]
            broke = sum(1 for a, r in zip(att, p.robust) if a and not r)
            row["surrogate"] = (p.config or {}).get("surrogate")
            row["success_rate"] = round(100.0 * broke / sum(att), 2) if sum(att) else None
    robust, why = results.robust_at(clean, parts, threat.norm, threat.eps)
    sweeps = []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows[1:]:
        groups.setdefault((row["label"], row["norm"]), []).append(row)
    for (label, norm), rs in groups.items():
        if len({r["eps"] for r in rs}) < 2:
            continue
        # a radius whose own accuracy is no measurement (the attack skipped points there) has no AUC either
        accs = [r["accuracy"] for r in rs]
        auc = None if None in accs else round(normalized_auc([r["eps"] for r in rs], [a / 100 for a in accs]), 4)
        sweeps += [{"label": label, "attack": r["attack"], "norm": norm, "eps": r["eps"], "accuracy": r["accuracy"],
                    "exact": r["exact"], "auc": auc} for r in rs]
    record = {"clean_accuracy": results.pct(clean), "robust_accuracy": robust, "attacks": rows[1:],
              "summary": rows, "sweeps": sweeps, "checks": []}
    if robust is None:  # never the clean accuracy: no attack at the threat backs a number
        record["robust_accuracy_note"] = why
    return record


def _merged_fingerprint(part_file: Path) -> dict[str, Any]:
    """The fingerprint the merged parts carry: a shard's, with no shard (the unsharded run's)."""
    import json

    try:
        return {**json.loads(part_file.read_text())["fingerprint"], "shard": None}
    except (OSError, ValueError, KeyError, TypeError):
        raise BenchError(f"{part_file} is not a readable part (damaged); rerun that shard with --resume.") from None


def merge(shard_dirs: list[str | Path], out_dir: str | Path) -> dict[str, Any]:
    """Join the folders of ``bench eval --shard i/k`` runs by example index into ``out_dir``: the
    same parts, per_example.csv, summary.csv, sweeps.csv, checks.json and result.json as the
    unsharded run. Result checks are recomputed on the merged parts; the model checks are those
    of the first shard (an unsharded run samples its first examples, which the first shard holds)."""
    import json

    from .suite import parse_suite

    dirs = [Path(d) for d in shard_dirs]
    check_apart_from_inputs(out_dir, dirs, what="shard folder")  # never over (or inside) what it reads
    recs = []
    for d in dirs:
        f = d / "result.json"
        if not f.is_file():
            raise BenchError(f"{d} has no result.json: finish that shard before merging.")
        try:
            rec = json.loads(f.read_text())
        except (ValueError, UnicodeDecodeError):
            raise BenchError(f"{f} is not a readable result.json (damaged or not JSON); rerun that shard.") from None
        if not isinstance(rec, dict) or "shard" not in rec:
            raise BenchError(f"{d} is not a shard folder (it was not made with --shard).")
        recs.append((rec["shard"]["start"], d, rec))
    recs.sort(key=lambda t: t[0])
    first = recs[0][2]
    same = ("seed", "threat", "batch_size", "data_file")
    for _, d, rec in recs:
        if (rec["suite"]["hash"] != first["suite"]["hash"] or rec["checkpoint"]["sha256"] != first["checkpoint"]["sha256"]
                or rec["suite"]["cascade"] != first["suite"]["cascade"] or rec["shard"]["n_total"] != first["shard"]["n_total"]
                or any(rec.get(k) != first.get(k) for k in same)):
            raise BenchError(f"{d} was made with another checkpoint, suite, seed, threat, batch size or example set than "
                             f"{recs[0][1]} (shards on CPUs and GPUs default to different batch sizes: pass --batch-size).")
    n_total = first["shard"]["n_total"]
    pos = 0
    for start, d, rec in recs:
        if start != pos:
            raise BenchError(f"the shards do not cover the examples contiguously: {'missing' if start > pos else 'overlapping'} "
                             f"positions at {min(start, pos)} (shard folder {d}).")
        pos = rec["shard"]["stop"]
    if pos != n_total:
        raise BenchError(f"the shards cover {pos} of {n_total} examples: a shard is missing.")
    out = Path(out_dir)
    parts_out = out / "parts"
    names = sorted(p.name for p in (recs[0][1] / "parts").glob("*.json"))
    if names:
        check_merge_folder(out, _merged_fingerprint(recs[0][1] / "parts" / names[0]))
    parts_out.mkdir(parents=True, exist_ok=True)
    fingerprint = None
    by_key: dict[str, Part] = {}
    for name in names:
        merged: dict[str, Any] | None = None
        for _, d, _rec in recs:
            f = d / "parts" / name
            if not f.is_file():
                raise BenchError(f"{d} lacks the finished part {name}: finish that shard (--resume) before merging.")
            try:
                data = json.loads(f.read_text())
                part = data["part"]
            except (ValueError, KeyError, TypeError):
                raise BenchError(f"{f} is not a readable part (damaged); rerun that shard with --resume.") from None
            if merged is None:
                merged = dict(part)
                fingerprint = {**data["fingerprint"], "shard": None}
                continue
            for k in ("robust", "attacked"):
                merged[k] = merged[k] + part[k]
            for k in ("norms", "predictions"):
                if merged.get(k) is not None and part.get(k) is not None:
                    merged[k] = merged[k] + part[k]
                elif merged.get(k) is not None:
                    merged[k] = None  # a shard made before predictions were kept
            for k in ("seconds", "forwards", "backwards", "unverified"):
                merged[k] = merged.get(k, 0) + part.get(k, 0)
            merged["indicators"] = join_flags([merged.get("indicators"), part.get("indicators")],
                                              [len(merged["robust"]) - len(part["robust"]), len(part["robust"])])
        merged["adversarials"] = join_part_files([d / "parts" for _, d, _ in recs], merged.get("adversarials"), parts_out)
        atomic_write_json(parts_out / name, {"fingerprint": fingerprint, "part": merged})
        if not name.endswith("_minnorm.json"):  # a minimum-norm run itself; its radii have their own parts
            by_key[merged["key"]] = Part.from_json(merged)
    # the parts of the result, in its order: each row of the shards' result.json names one
    wanted = [attack_key(r.get("label", r["attack"]), r["norm"], r["eps"]) for r in first["attacks"]]
    missing = [k for k in ["clean", *wanted] if k not in by_key]
    if missing:
        raise BenchError(f"the shards have no finished part for {', '.join(missing[:3])}: they were made by an older "
                         "version; rerun each shard with --resume, then merge.")
    clean_part, parts = by_key["clean"], [by_key[k] for k in wanted]
    clean, labels = clean_part.robust, [v for _, _, rec in recs for v in rec["labels"]]
    suite = parse_suite(first["suite"]["text"], default_name=first["suite"]["name"])
    threat = ThreatModel.from_dict(first["threat"])
    record = build_record(clean, parts, threat)
    # the model checks and the indicators probe the model: kept from the first shard (same model, seed)
    record["checks"] = [c for c in first.get("checks", []) if c["name"] in MODEL_CHECKS + INDICATOR_CHECKS] + \
        prediction_checks(clean_part.predictions, labels, first["checkpoint"].get("num_classes")) + [breaks_verified(parts)]
    if suite.checks:
        record["checks"] += result_checks(parts, clean, max_eps=suite.extra.get("max_eps"))
    record.update({k: first[k] for k in ("format", "format_version", "checkpoint", "suite", "threat", "seed", "versions",
                                         "device", "batch_size", "data_file", "provenance") if k in first})
    record.update({"n": n_total, "indices": [i for _, _, rec in recs for i in rec["indices"]], "labels": labels,
                   "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                   "merged_from": [str(d) for _, d, _ in recs]})
    record["adversarials"] = write_evaluation(out, parts_out, clean, parts, indices=record["indices"], labels=labels)
    results.write_outputs(out, record, clean, parts)
    return record
