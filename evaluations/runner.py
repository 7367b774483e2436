"""The suite runner: per-example ground truth on disk, worst case per example, resumable.

For every (attack, eps) the runner keeps a per-example boolean ``robust`` and writes it, with its
timing and pass counts, atomically to ``<out>/parts/`` the moment it finishes; ``resume=True``
re-reads finished parts (same suite hash, seed and examples) and skips them, so an interrupted
run ends with the same numbers as an uninterrupted one.

Worst case: at each threat (norm, eps) a point is robust only if it is clean-correct and no attack
broke it at that eps or any smaller eps of the same norm (a perturbation inside a smaller ball is
inside every larger one). With ``cascade`` (AutoAttack's rule) an attack runs only on points still
robust at its threat; otherwise on every clean-correct point, so its own accuracy is exact. In a
sweep, points an attack broke at a smaller eps are not attacked again at the larger one.
An attack's ``accuracy`` counts points it was not run on (already broken by another attack, in
cascade mode) as robust to it; ``worst_case`` is the suite's accuracy at that threat so far.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from robustbench_lite.errors import BenchError
from robustbench_lite.progress import progress_bar
from robustbench_lite.threat import ThreatModel
from robustbench_lite.files import slug
from robustbench_lite.utils import atomic_write_json, atomic_write_text, frozen, make_generator

from .attacks import Attack, predict
from .suite import AttackSpec, Suite

logger = logging.getLogger(__name__)


class CountingModel(nn.Module):
    """Counts example-rows through forward and backward passes (the attack cost measure)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.forwards = 0
        self.backwards = 0

    def _count_backward(self, n: int) -> Callable[[Tensor], None]:
        def hook(_grad: Tensor) -> None:
            self.backwards += n

        return hook

    def forward(self, x: Tensor) -> Tensor:
        out = self.model(x)
        self.forwards += x.shape[0]
        if out.requires_grad:
            out.register_hook(self._count_backward(x.shape[0]))
        return out


@dataclass
class Part:
    """One finished (attack, eps): per-example results over the evaluated examples."""

    key: str
    attack: str
    label: str
    norm: str
    eps: float
    robust: list[bool]            # clean-correct and not broken by this attack
    attacked: list[bool]          # the attack was run on this point
    norms: list[float] | None     # minimum-norm attacks: smallest adversarial norm (inf: none found)
    seconds: float
    forwards: int
    backwards: int
    config: dict[str, Any] = field(default_factory=dict)
    predictions: list[int] | None = None  # the clean part: the model's predicted class per example

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if self.norms is not None:
            d["norms"] = [None if v == float("inf") else v for v in self.norms]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Part":
        if d.get("norms") is not None:
            d = {**d, "norms": [float("inf") if v is None else v for v in d["norms"]]}
        return cls(**d)


def task_key(label: str, norm: str, eps: float) -> str:
    return f"{label}@{norm}:{eps:.6g}"


@dataclass
class RunContext:
    suite: Suite
    threat: ThreatModel
    seed: int
    batch_size: int
    out_dir: Path
    fingerprint: dict[str, Any]  # what must match for a part to be reused on resume
    resume: bool = False
    cascade: bool | None = None
    standard_eps: dict[str, float] = field(default_factory=dict)  # dataset's radius per norm
    reuse_only: bool = False  # merge: every part must already be on disk; never run an attack
    offset: int = 0  # position of x[0] in the full evaluation order (a shard's start; a multiple of batch_size)
    predictions: list[int] | None = None  # filled by run_tasks: the clean prediction per example


def _eps_list(spec: AttackSpec, ctx: RunContext) -> tuple[str, tuple[float, ...]]:
    # an attack made for one norm (cw_l2, deepfool_linf, ...) keeps it unless the suite says otherwise
    norm = spec.norm or (ctx.threat.norm if ctx.threat.norm in spec.attack.norms_supported else spec.attack.norm)
    if spec.eps is not None:
        return norm, spec.eps
    if spec.eps_scale is not None:
        base = ctx.threat.eps if norm == ctx.threat.norm else ctx.standard_eps.get(norm)
        if base is None:
            raise BenchError(f"attack {spec.label!r} scales the {norm} radius but the dataset has no standard {norm} radius.")
        return norm, tuple(sorted({round(s * base, 10) for s in spec.eps_scale}))
    if norm == ctx.threat.norm:
        return norm, (ctx.threat.eps,)
    if norm in ctx.standard_eps:
        return norm, (ctx.standard_eps[norm],)
    raise BenchError(f"attack {spec.label!r} uses norm {norm} but gives no eps and the dataset has no standard {norm} radius.")


def run_tasks(model: nn.Module, x: Tensor, y: Tensor, ctx: RunContext) -> tuple[list[bool], list[Part]]:
    """Clean accuracy plus every (attack, eps) of the suite; returns (clean_correct, parts)."""
    parts_dir = ctx.out_dir / "parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    n = len(x)
    counted = CountingModel(model)
    cascade = ctx.suite.cascade if ctx.cascade is None else ctx.cascade
    with frozen(counted):
        clean_path = parts_dir / "000_clean.json"
        clean = _reuse(clean_path, ctx)
        if clean is not None and clean.predictions is None and not ctx.reuse_only:
            clean = None  # made before predictions were kept: one forward pass makes it again
        if clean is None:
            _forbid_run("clean", ctx)
            t0 = time.perf_counter()
            pred = predict(counted, x, ctx.batch_size)
            clean = Part("clean", "clean", "clean", ctx.threat.norm, 0.0, (pred == y).tolist(), [True] * n, None,
                         time.perf_counter() - t0, counted.forwards, 0, predictions=pred.tolist())
            _write(clean_path, clean, ctx)
        ctx.predictions = clean.predictions
        clean_correct = torch.tensor(clean.robust, dtype=torch.bool, device=x.device)
        # broken[norm] -> list of (eps, mask) of points broken at that eps by any attack
        broken: dict[str, list[tuple[float, Tensor]]] = {}
        parts: list[Part] = []
        for i, spec in enumerate(ctx.suite.attacks):
            norm, eps_list = _eps_list(spec, ctx)
            attack = spec.attack if spec.attack.norm == norm else dataclasses.replace(spec.attack, norm=norm)
            # --all-points (ctx.cascade False) wins; otherwise an entry's own cascade wins over the suite's
            casc = cascade if (ctx.cascade is not None or spec.cascade is None) else spec.cascade
            new_parts = _run_spec(counted, x, y, clean_correct, i + 1, spec, attack, norm, eps_list, broken, casc, ctx)
            parts.extend(new_parts)
    return clean.robust, parts


def _broken_up_to(broken: dict[str, list[tuple[float, Tensor]]], norm: str, eps: float, n: int, device: torch.device) -> Tensor:
    m = torch.zeros(n, dtype=torch.bool, device=device)
    for e, mask in broken.get(norm, []):
        if e <= eps + 1e-12:
            m |= mask
    return m


def _run_spec(counted: CountingModel, x: Tensor, y: Tensor, clean_correct: Tensor, index: int, spec: AttackSpec,
              attack: Attack, norm: str, eps_list: tuple[float, ...], broken: dict[str, list[tuple[float, Tensor]]],
              cascade: bool, ctx: RunContext) -> list[Part]:
    n = len(x)
    dev = x.device
    parts: list[Part] = []
    if attack.minimum_norm:
        key = task_key(spec.label, norm, max(eps_list))
        path = ctx.out_dir / "parts" / f"{index:03d}_{slug(spec.label)}_minnorm.json"
        base = _reuse(path, ctx)
        if base is None:
            todo = clean_correct.clone()
            base = _attack_part(counted, x, y, todo, attack, None, key, spec, norm, float("nan"), ctx, index)
            _write(path, base, ctx)
        norms_t = torch.tensor(base.norms, dtype=torch.float64, device=dev)
        for eps in eps_list:
            broke = clean_correct & (norms_t <= eps)
            robust = clean_correct & ~broke
            parts.append(Part(task_key(spec.label, norm, eps), spec.name, spec.label, norm, eps, robust.tolist(), base.attacked,
                              base.norms, base.seconds if eps == eps_list[0] else 0.0,
                              base.forwards if eps == eps_list[0] else 0, base.backwards if eps == eps_list[0] else 0, base.config))
            broken.setdefault(norm, []).append((eps, broke))
        return parts
    own_broken = torch.zeros(n, dtype=torch.bool, device=dev)
    for eps in eps_list:
        key = task_key(spec.label, norm, eps)
        path = ctx.out_dir / "parts" / f"{index:03d}_{slug(key)}.json"
        part = _reuse(path, ctx)
        if part is None:
            todo = clean_correct & ~own_broken
            if cascade:
                todo &= ~_broken_up_to(broken, norm, eps, n, dev)
            if eps == 0:
                todo[:] = False
            part = _attack_part(counted, x, y, todo, attack, eps, key, spec, norm, eps, ctx, index)
            # points not attacked (eps 0, or already broken by another attack in cascade mode) count as
            # robust to this attack; those it broke at a smaller eps of its sweep stay broken
            skipped = clean_correct & ~todo
            part.robust = ((torch.tensor(part.robust, device=dev) | skipped) & ~own_broken).tolist()
            _write(path, part, ctx)
        robust = torch.tensor(part.robust, dtype=torch.bool, device=dev)
        broke = clean_correct & ~robust
        own_broken |= broke
        broken.setdefault(norm, []).append((eps, broke))
        parts.append(part)
    return parts


def _attack_part(counted: CountingModel, x: Tensor, y: Tensor, todo: Tensor, attack: Attack, eps: float | None,
                 key: str, spec: AttackSpec, norm: str, eps_value: float, ctx: RunContext, index: int) -> Part:
    _forbid_run(key, ctx)
    n = len(x)
    idx = todo.nonzero().flatten()
    robust = todo.clone()  # attacked points start robust; the caller decides about the others
    norms: Tensor | None = None
    f0, b0 = counted.forwards, counted.backwards
    t0 = time.perf_counter()
    if attack.minimum_norm:
        norms = torch.full((n,), float("inf"), dtype=torch.float64, device=x.device)
        norms[~todo] = 0.0  # misclassified clean points need no perturbation
    if len(idx):
        outs = []
        with progress_bar(total=len(idx), desc=key, unit="ex") as bar:
            for start, sel in _blocks(idx, ctx):
                # one generator per block of global positions: a block's random draws do not depend on
                # which shard it is evaluated in, so merged shards equal an unsharded run
                gen = make_generator(zlib.crc32(f"{ctx.seed}:{key}:{start}".encode()))
                outs.append(attack.run(counted, x[sel], y[sel], eps=eps, generator=gen))
                done = sum(len(o.success) for o in outs)
                held = sum(int((~o.success.bool()).sum()) for o in outs)
                bar.update(len(sel))
                bar.set_postfix_str(f"robust {100 * held / max(done, 1):.1f}% of {done} attacked")
        x_adv = torch.cat([o.x_adv for o in outs])
        success = torch.cat([o.success for o in outs]).to(torch.bool)
        _check_output(x_adv, x[idx], attack, eps)
        robust[idx] = ~success
        if norms is not None and outs[0].norms is not None:
            out_norms = torch.cat([o.norms for o in outs]).double()  # type: ignore[misc]
            norms[idx] = torch.where(success, out_norms, torch.full_like(out_norms, float("inf")))
    seconds = time.perf_counter() - t0
    part = Part(key, spec.name, spec.label, norm, eps_value, robust.tolist(), todo.tolist(),
                norms.tolist() if norms is not None else None, seconds,
                counted.forwards - f0, counted.backwards - b0, attack.config())
    logger.info("%s: %d/%d attacked, accuracy %.2f%%, %.1fs", key, len(idx), n, 100 * robust.float().mean().item(), seconds)
    return part


def _forbid_run(key: str, ctx: RunContext) -> None:
    if ctx.reuse_only:
        raise BenchError(f"the part {key} is not finished in every shard; finish the shards (--resume) before merging.")


def _blocks(idx: Tensor, ctx: RunContext) -> list[tuple[int, Tensor]]:
    """Split the attacked local indices ``idx`` by blocks of ``batch_size`` global positions."""
    glob = idx + ctx.offset
    block = torch.div(glob, ctx.batch_size, rounding_mode="floor")
    return [(int(b) * ctx.batch_size, idx[block == b]) for b in torch.unique(block)]


def _check_output(x_adv: Tensor, x: Tensor, attack: Attack, eps: float | None) -> None:
    if torch.isnan(x_adv).any():
        raise RuntimeError(f"attack {attack.name} returned NaN inputs")


def _reuse(path: Path, ctx: RunContext) -> Part | None:
    if not (ctx.resume and path.is_file()):
        return None
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    old = d.get("fingerprint")
    if old != ctx.fingerprint:
        old = old if isinstance(old, dict) else {}
        keys = [k for k in ctx.fingerprint if old.get(k) != ctx.fingerprint[k]]
        diff = ", ".join(f"another {k}" if k in ("suite", "checkpoint", "threat", "member") else
                         f"{k} {old.get(k)} (now {ctx.fingerprint[k]})" for k in keys)
        logger.warning("not reusing %s: it was made with %s", path.name, diff or "another fingerprint")
        return None
    logger.info("resume: reusing %s", path.name)
    return Part.from_json(d["part"])


def _write(path: Path, part: Part, ctx: RunContext) -> None:
    atomic_write_json(path, {"fingerprint": ctx.fingerprint, "part": part.to_json()})


def write_per_example(path: Path, indices: list[int], labels: list[int], clean: list[bool], parts: list[Part]) -> None:
    """``per_example.csv``: one row per example; columns index, label, clean_correct, then
    ``robust[<attack>@<norm>:<eps>]`` per part and ``min_norm[<attack>]`` per minimum-norm attack."""
    cols = ["index", "label", "clean_correct"] + [f"robust[{p.key}]" for p in parts]
    norm_parts = {p.label: p for p in parts if p.norms is not None}
    cols += [f"min_norm[{lab}]" for lab in norm_parts]
    lines = [",".join(cols)]
    for j, (i, lab) in enumerate(zip(indices, labels)):
        row = [str(i), str(lab), str(int(clean[j]))] + [str(int(p.robust[j])) for p in parts]
        row += ["" if p.norms[j] == float("inf") else f"{p.norms[j]:.6g}" for p in norm_parts.values()]  # type: ignore[index]
        lines.append(",".join(row))
    atomic_write_text(path, "\n".join(lines) + "\n")
