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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from robustbench_lite.errors import BenchError
from robustbench_lite.results import worst_case
from robustbench_lite.threat import ThreatModel
from robustbench_lite.files import slug
from robustbench_lite.utils import atomic_write_json, frozen

from .attacks import Attack, predict
from .attacks.base import attack_key
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


@dataclass(frozen=True)
class Task:
    """One suite entry at its norm and radii: what the runner attacks and where its parts go."""

    index: int                  # 1-based position in the suite: the prefix of its part files
    spec: AttackSpec
    attack: Attack              # the entry's attack, in the task's norm
    norm: str
    eps: tuple[float, ...]
    cascade: bool               # run only on points every earlier attack at the threat left robust

    def key(self, eps: float) -> str:
        return attack_key(self.spec.label, self.norm, eps)

    def path(self, parts_dir: Path, eps: float | None = None) -> Path:
        """The part file of radius ``eps`` (the minimum-norm run itself when None)."""
        name = f"{slug(self.spec.label)}_minnorm" if eps is None else slug(self.key(eps))
        return parts_dir / f"{self.index:03d}_{name}.json"


def suite_tasks(ctx: RunContext) -> list[Task]:
    """The suite's entries as tasks: norm and radii resolved, cascade decided (``--all-points``,
    i.e. ``ctx.cascade`` False, wins; otherwise an entry's own setting wins over the suite's)."""
    suite_cascade = ctx.suite.cascade if ctx.cascade is None else ctx.cascade
    tasks = []
    for i, spec in enumerate(ctx.suite.attacks):
        norm, eps_list = _eps_list(spec, ctx)
        attack = spec.attack if spec.attack.norm == norm else dataclasses.replace(spec.attack, norm=norm)
        cascade = suite_cascade if (ctx.cascade is not None or spec.cascade is None) else spec.cascade
        tasks.append(Task(i + 1, spec, attack, norm, eps_list, cascade))
    return tasks


def run_tasks(model: nn.Module, x: Tensor, y: Tensor, ctx: RunContext) -> tuple[list[bool], list[Part]]:
    """Clean accuracy plus every (attack, eps) of the suite; returns (clean_correct, parts)."""
    return _Run(model, x, y, ctx).run()


class _Run:
    """One evaluation: the model (counting passes), the points, the parts finished so far."""

    def __init__(self, model: nn.Module, x: Tensor, y: Tensor, ctx: RunContext) -> None:
        self.model, self.x, self.y, self.ctx = CountingModel(model), x, y, ctx
        self.parts_dir = ctx.out_dir / "parts"
        self.parts: list[Part] = []
        self.clean: list[bool] = []

    def run(self) -> tuple[list[bool], list[Part]]:
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        with frozen(self.model):
            clean = self._clean()
            self.ctx.predictions = clean.predictions
            self.clean = clean.robust
            for task in suite_tasks(self.ctx):
                self.parts.extend(self._minimum_norm(task) if task.attack.minimum_norm else self._fixed_eps(task))
        return self.clean, self.parts

    def _clean(self) -> Part:
        path = self.parts_dir / "000_clean.json"
        part = _reuse(path, self.ctx)
        if part is not None and part.predictions is not None:
            return part  # (one made before predictions were kept is made again: one forward pass)
        t0 = time.perf_counter()
        pred = predict(self.model, self.x, self.ctx.batch_size)
        part = Part("clean", "clean", "clean", self.ctx.threat.norm, 0.0, (pred == self.y).tolist(), [True] * len(self.x),
                    None, time.perf_counter() - t0, self.model.forwards, 0, predictions=pred.tolist())
        _write(path, part, self.ctx)
        return part

    def _mask(self, flags: list[bool]) -> Tensor:
        return torch.tensor(flags, dtype=torch.bool, device=self.x.device)

    def _minimum_norm(self, task: Task) -> list[Part]:
        """One run gives every radius: robust at eps iff the smallest adversarial found is > eps."""
        path = task.path(self.parts_dir)
        base = _reuse(path, self.ctx)
        if base is None:
            base = self._attack(task, self._mask(self.clean), None, task.key(max(task.eps)))
            _write(path, base, self.ctx)
        clean, norms = self._mask(self.clean), torch.tensor(base.norms, dtype=torch.float64, device=self.x.device)
        parts = []
        for eps in task.eps:
            first = eps == task.eps[0]  # the run's cost sits on the first radius
            part = Part(task.key(eps), task.spec.name, task.spec.label, task.norm, eps, (clean & ~(norms <= eps)).tolist(),
                        base.attacked, base.norms, base.seconds if first else 0.0, base.forwards if first else 0,
                        base.backwards if first else 0, base.config)
            _write(task.path(self.parts_dir, eps), part, self.ctx)  # every radius on disk: merge reads parts only
            parts.append(part)
        return parts

    def _fixed_eps(self, task: Task) -> list[Part]:
        clean = self._mask(self.clean)
        own_broken = torch.zeros_like(clean)
        parts: list[Part] = []
        for eps in task.eps:
            path = task.path(self.parts_dir, eps)
            part = _reuse(path, self.ctx)
            if part is None:
                todo = clean & ~own_broken
                if task.cascade:  # the worst-case rule over every part so far (its own smaller radii included)
                    todo &= self._mask(worst_case(self.clean, self.parts + parts, task.norm, eps))
                if eps == 0:
                    todo[:] = False
                part = self._attack(task, todo, eps, task.key(eps))
                # points not attacked (eps 0, or already broken by another attack in cascade mode) count as
                # robust to this attack; those it broke at a smaller eps of its sweep stay broken
                part.robust = ((self._mask(part.robust) | (clean & ~todo)) & ~own_broken).tolist()
                _write(path, part, self.ctx)
            own_broken |= clean & ~self._mask(part.robust)
            parts.append(part)
        return parts

    def _attack(self, task: Task, todo: Tensor, eps: float | None, key: str) -> Part:
        """Run ``task.attack`` through its front door on the points ``todo``, at their global
        positions (so a shard draws what the whole evaluation draws for them)."""
        x, model, ctx = self.x, self.model, self.ctx
        n = len(x)
        idx = todo.nonzero().flatten()
        robust = todo.clone()  # attacked points start robust; the caller decides about the others
        norms: Tensor | None = None
        f0, b0 = model.forwards, model.backwards
        t0 = time.perf_counter()
        if task.attack.minimum_norm:
            norms = torch.full((n,), float("inf"), dtype=torch.float64, device=x.device)
            norms[~todo] = 0.0  # misclassified clean points need no perturbation
        if len(idx):
            out = task.attack(model, x[idx], self.y[idx], eps=eps, batch_size=ctx.batch_size, seed=ctx.seed,
                              positions=idx + ctx.offset, stream=key)
            robust[idx] = ~out.success
            if norms is not None and out.norms is not None:
                norms[idx] = out.norms
        seconds = time.perf_counter() - t0
        part = Part(key, task.spec.name, task.spec.label, task.norm, float("nan") if eps is None else eps,
                    robust.tolist(), todo.tolist(), norms.tolist() if norms is not None else None, seconds,
                    model.forwards - f0, model.backwards - b0, task.attack.config())
        logger.info("%s: %d/%d attacked, accuracy %.2f%%, %.1fs", key, len(idx), n, 100 * robust.float().mean().item(),
                    seconds)
        return part


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
