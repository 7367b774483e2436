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
from typing import Any

import torch
from torch import Tensor, nn

from robustbench_lite import distributed
from robustbench_lite.progress import progress_bar
from robustbench_lite.results import worst_case
from robustbench_lite.threat import ThreatModel
from robustbench_lite.files import slug
from robustbench_lite.utils import frozen

from . import adversarials as advs
from .attacks import Attack, predict
from .attack_paths import PathRecorder
from .attacks.base import attack_key, scheduling_block
from .parts import CountingModel, Part, join_flags, reuse, write
from .schedule import LocalQueue, StoreQueue, WorkQueue
from .suite import AttackSpec, Suite, entry_radii

logger = logging.getLogger(__name__)


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
    offset: int = 0  # position of x[0] in the full evaluation order (a shard's start; a multiple of scheduling_block(batch_size, the suite's attacks))
    predictions: list[int] | None = None  # filled by run_tasks: the clean prediction per example
    ranks: list[dict[str, Any]] = field(default_factory=list)  # filled by run_tasks: blocks and busy seconds per rank
    adversarials: bool = True  # keep each block's adversarial examples beside its json (evaluations.adversarials)


def _eps_list(spec: AttackSpec, ctx: RunContext) -> tuple[str, tuple[float, ...]]:
    return entry_radii(spec, ctx.threat, ctx.standard_eps)


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

    def stream(self, eps: float | None) -> str:
        """The random stream and part key of radius ``eps``; a minimum-norm run (None) is one run,
        named after its largest radius."""
        return self.key(eps if eps is not None else max(self.eps))

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
    """Clean accuracy plus every (attack, eps) of the suite; returns (clean_correct, parts).

    Under ``torchrun`` (an initialised process group) the ranks share the blocks; every rank
    returns the same result, and only rank 0 writes the assembled parts."""
    return _Run(model, x, y, ctx).run()


@dataclass(frozen=True)
class Item:
    """One block of one (attack, eps): the unit a rank runs. ``eps`` None: a minimum-norm run."""

    task: Task
    eps: float | None
    block: int          # global block index: positions [block * S, (block + 1) * S), S = attacks.base.scheduling_block
    lo: int             # the block's points in this evaluation: x[lo:hi]
    hi: int

    @property
    def key(self) -> str:
        return self.task.key(self.eps) if self.eps is not None else f"{self.task.spec.label}_minnorm"

    def path(self, parts_dir: Path) -> Path:
        return parts_dir / "blocks" / f"{self.task.index:03d}_{slug(self.key)}" / f"{self.block:05d}.json"


_LAUNCH_RUNS = [0]  # runs so far in this process: every rank counts the same, so store keys match


class _Run:
    """One evaluation: the model (counting passes), the points, the blocks finished so far."""

    def __init__(self, model: nn.Module, x: Tensor, y: Tensor, ctx: RunContext) -> None:
        self.model, self.x, self.y, self.ctx = CountingModel(model), x, y, ctx
        self.parts_dir = ctx.out_dir / "parts"
        self.clean: list[bool] = []
        self.results: dict[int, Part] = {}  # item number -> its block's part
        self.assembled: dict[tuple[int, float | None], list[Part]] = {}
        self.world = distributed.world()

    # -- the plan ---------------------------------------------------------------------------------

    def _plan(self, tasks: list[Task]) -> list[Item]:
        # whole canonical blocks per item, so an attack that runs on canonical blocks sees the same
        # points of each whatever the batch size, shard or rank (the front door chunks row-keyed ones)
        bs, off, n = scheduling_block(self.ctx.batch_size, [t.attack for t in tasks]), self.ctx.offset, len(self.x)
        if off % bs:
            raise ValueError(f"offset {off} is not a multiple of the scheduling block {bs}")
        blocks = [(b, max(b * bs, off) - off, min((b + 1) * bs, off + n) - off)
                  for b in range(off // bs, -(-(off + n) // bs))] if n else []
        return [Item(t, e, b, lo, hi) for t in tasks for e in ((None,) if t.attack.minimum_norm else t.eps)
                for b, lo, hi in blocks]

    def _needs(self, i: int) -> list[int]:
        """The items whose results item ``i`` reads: the same block of its own smaller radii and, in
        a cascade, of every earlier attack at its norm (all numbered before ``i``)."""
        it = self.items[i]
        if it.eps is None:
            return []
        return [j for j in self.by_block[it.block] if j < i and (
            self.items[j].task is it.task or (it.task.cascade and self.items[j].task.norm == it.task.norm))]

    # -- running ----------------------------------------------------------------------------------

    def run(self) -> tuple[list[bool], list[Part]]:
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        _LAUNCH_RUNS[0] += 1
        with frozen(self.model):
            self.clean = self._clean()
            tasks = suite_tasks(self.ctx)
            self.items = self._plan(tasks)
            self.by_block: dict[int, list[int]] = {}
            self.by_task: dict[int, list[int]] = {}
            for i, it in enumerate(self.items):
                self.by_block.setdefault(it.block, []).append(i)
                self.by_task.setdefault(it.task.index, []).append(i)
            queue = self._queue()
            try:
                self._work(queue)
                if self.world.distributed:  # every block of every rank, before the parts are assembled
                    queue.wait_for(range(len(self.items)), "the last blocks")
                self.ctx.ranks = queue.busy()
            finally:
                queue.close()
            parts = [p for t in tasks for e in ((None,) if t.attack.minimum_norm else t.eps) for p in self._assemble_eps(t, e)]
        return self.clean, parts

    def _queue(self) -> WorkQueue:
        if not self.world.distributed:
            return LocalQueue(len(self.items))
        prefix = f"rbl-eval/{_LAUNCH_RUNS[0]}"
        return StoreQueue(distributed.store(), prefix, len(self.items), self.world.rank, self.world.size)

    def _work(self, queue: WorkQueue) -> None:
        bar, bar_key, held, attacked = None, None, 0, 0
        busy, blocks = 0.0, 0
        try:
            while (i := queue.take()) is not None:
                it = self.items[i]
                if it.key != bar_key:  # one bar per (attack, eps), over the blocks this process runs
                    if bar is not None:
                        bar.__exit__(None, None, None)
                    total = sum(sum(self.clean[self.items[j].lo:self.items[j].hi]) for j in self.by_task[it.task.index]
                                if self.items[j].eps == it.eps)
                    bar, bar_key, held, attacked = progress_bar(total=total, desc=it.key, unit="ex"), it.key, 0, 0
                    bar.__enter__()  # the innermost bar: an attack's stage notes (AutoAttack's) show on it
                queue.wait_for(self._needs(i), f"{it.key} block {it.block}")
                reused = self._reuse_block(it)
                part = reused or self._block(i)
                self.results[i] = part
                if reused is None:
                    busy, blocks = busy + part.seconds, blocks + 1
                    queue.note_busy(busy, blocks)
                queue.finished(i)
                n_att = sum(part.attacked)
                attacked, held = attacked + n_att, held + sum(r for r, a in zip(part.robust, part.attacked) if a)
                bar.update(sum(self.clean[it.lo:it.hi]))
                bar.set_postfix_str(f"robust {100 * held / max(attacked, 1):.1f}% of {attacked} attacked")
                nxt = self.items[i + 1] if i + 1 < len(self.items) else None
                if not self.world.distributed and (nxt is None or nxt.task is not it.task or nxt.eps != it.eps):
                    self._assemble_eps(it.task, it.eps)  # on disk the moment it is done (merge, figures)
        finally:
            if bar is not None:
                bar.__exit__(None, None, None)

    def _result(self, i: int) -> Part:
        """Item ``i``'s block: run here, or by another rank (read from its file)."""
        if i not in self.results:
            d = json.loads(self.items[i].path(self.parts_dir).read_text())
            self.results[i] = Part.from_json(d["part"])
        return self.results[i]

    def _reuse_block(self, it: Item) -> Part | None:
        path = it.path(self.parts_dir)
        if self.ctx.adversarials and not path.with_suffix(".npz").is_file():
            return None  # made without its adversarials (--no-adversarials, an older version): run again
        return reuse(path, self.ctx.fingerprint, self.ctx.resume, quiet=True)

    def _block(self, i: int) -> Part:
        it = self.items[i]
        task, lo, hi = it.task, it.lo, it.hi
        clean = self._mask(self.clean[lo:hi])
        if it.eps is None:  # a minimum-norm run: every clean-correct point; robust at eps iff its norm > eps
            part, breaks = self._attack(it, clean, None, task.stream(None))
        else:
            own = [self._result(j) for j in self._needs(i) if self.items[j].task is task]
            own_broken = torch.zeros_like(clean)
            for q in own:
                own_broken |= clean & ~self._mask(q.robust)
            todo = clean & ~own_broken
            if task.cascade:  # the worst-case rule over this block of every part so far at the threat
                earlier = [p for j in self._needs(i) for p in self._at_radii(j)]
                todo &= self._mask(worst_case(self.clean[lo:hi], earlier, task.norm, it.eps))
            if it.eps == 0:
                todo[:] = False
            part, breaks = self._attack(it, todo, it.eps, task.stream(it.eps))
            # points not attacked (eps 0, or already broken by another attack in cascade mode) count as
            # robust to this attack; those it broke at a smaller eps of its sweep stay broken
            part.robust = ((self._mask(part.robust) | (clean & ~todo)) & ~own_broken).tolist()
        if self.ctx.adversarials:  # before the json: a block on disk has its adversarials
            advs.save_breaks(it.path(self.parts_dir).with_suffix(".npz"), *breaks)
        write(it.path(self.parts_dir), part, self.ctx.fingerprint)
        return part

    def _at_radii(self, j: int) -> list[Part]:
        """Item ``j``'s block as parts with a radius (a minimum-norm run: one per radius of its task)."""
        it, part = self.items[j], self._result(j)
        if it.eps is not None:
            return [part]
        clean, norms = self._mask(self.clean[it.lo:it.hi]), torch.tensor(part.norms, dtype=torch.float64)
        return [dataclasses.replace(part, eps=e, robust=(clean & ~(norms <= e).to(clean.device)).tolist())
                for e in it.task.eps]

    def _attack(self, it: Item, todo: Tensor, eps: float | None, stream: str) -> tuple[Part, tuple[Any, Any]]:
        """``it.task.attack`` through its front door on the block's points ``todo``, at their global
        positions (so a shard or another rank draws what a whole single run draws for them); and the
        breaks it made there: (positions, adversarials) as numpy arrays."""
        x, model, ctx = self.x[it.lo:it.hi], self.model, self.ctx
        idx = todo.nonzero().flatten()
        robust = todo.clone()  # attacked points start robust; the caller decides about the others
        norms: Tensor | None = None
        notes: list[str] = []
        flags: dict[str, list[bool]] | None = None
        unverified = 0
        breaks = (torch.zeros(0, dtype=torch.long), x[:0].detach().float().cpu())
        f0, b0 = model.forwards, model.backwards
        t0 = time.perf_counter()
        if it.task.attack.minimum_norm:
            norms = torch.full((len(x),), float("inf"), dtype=torch.float64, device=x.device)
            norms[~todo] = 0.0  # misclassified clean points need no perturbation
        if len(idx):
            xs, ys = x[idx], self.y[it.lo:it.hi][idx]
            # a bounded attack runs on the watched model: the failure indicators on its own path
            watch = PathRecorder(model, xs, ys, norm=it.task.norm, eps=eps) if eps else None
            out = it.task.attack(watch or model, xs, ys, eps=eps, batch_size=ctx.batch_size, seed=ctx.seed,
                                 positions=idx + it.lo + ctx.offset, stream=stream, progress=False)
            robust[idx] = ~out.success
            notes, unverified = list(out.notes), out.unverified
            hit = out.success.to(idx.device).nonzero().flatten()
            breaks = ((idx[hit] + it.lo + ctx.offset).cpu(), out.x_adv[hit.to(out.x_adv.device)].detach().float().cpu())
            if watch is not None:
                flags = {}
                for k, v in watch.flags(out.success).items():
                    full = torch.zeros(len(x), dtype=torch.bool, device=x.device)
                    full[idx] = v.to(x.device)
                    flags[k] = full.tolist()
            if norms is not None and out.norms is not None:
                norms[idx] = out.norms
        return Part(stream, it.task.spec.name, it.task.spec.label, it.task.norm, float("nan") if eps is None else eps,
                    robust.tolist(), todo.tolist(), norms.tolist() if norms is not None else None,
                    time.perf_counter() - t0, model.forwards - f0, model.backwards - b0, it.task.attack.config(), notes=notes,
                    indicators=flags, unverified=unverified), (breaks[0].numpy(), breaks[1].contiguous().numpy())

    # -- assembling the parts ---------------------------------------------------------------------

    def _assemble_eps(self, task: Task, eps: float | None) -> list[Part]:
        """The blocks of (task, eps) in order as one part (a minimum-norm run: one per radius), its
        cost the sum of the blocks'; written once, by rank 0."""
        key = (task.index, eps)
        if key not in self.assembled:
            parts = self._concat(task, eps)
            self.assembled[key] = parts[1:] if eps is None else parts
            if self.world.main and self.ctx.adversarials:  # the blocks' adversarials as one file beside the part
                path = task.path(self.parts_dir, eps).with_suffix(".npz")
                items = [i for i in self.by_task[task.index] if self.items[i].eps == eps]
                advs.join([self.items[i].path(self.parts_dir).with_suffix(".npz") for i in items], path,
                          tuple(self.x.shape[1:]))
                for part in parts:
                    part.adversarials = path.name
            if self.world.main:
                if eps is None:  # the minimum-norm run itself
                    write(task.path(self.parts_dir), parts[0], self.ctx.fingerprint)
                for part in self.assembled[key]:
                    write(task.path(self.parts_dir, part.eps), part, self.ctx.fingerprint)
        return self.assembled[key]

    def _concat(self, task: Task, eps: float | None) -> list[Part]:
        blocks = [self._result(i) for i in self.by_task[task.index] if self.items[i].eps == eps]
        key = task.stream(eps)
        first = blocks[0] if blocks else None
        part = Part(key, task.spec.name, task.spec.label, task.norm, float("nan") if eps is None else eps,
                    [r for b in blocks for r in b.robust], [a for b in blocks for a in b.attacked],
                    [v for b in blocks for v in (b.norms or [])] if task.attack.minimum_norm else None,
                    sum(b.seconds for b in blocks), sum(b.forwards for b in blocks), sum(b.backwards for b in blocks),
                    first.config if first else task.attack.config(), notes=[n for b in blocks for n in b.notes],
                    indicators=join_flags([b.indicators for b in blocks], [len(b.robust) for b in blocks]),
                    unverified=sum(b.unverified for b in blocks))
        logger.info("%s: %d/%d attacked, accuracy %.2f%%, %.1fs", key, sum(part.attacked), len(part.robust),
                    100 * sum(part.robust) / max(len(part.robust), 1), part.seconds)
        if eps is not None:
            return [part]
        clean = self._mask(self.clean)
        norms = torch.tensor(part.norms or [], dtype=torch.float64, device=self.x.device)
        return [part] + [Part(task.key(e), task.spec.name, task.spec.label, task.norm, e, (clean & ~(norms <= e)).tolist(),
                              part.attacked, part.norms, *((part.seconds, part.forwards, part.backwards) if e == task.eps[0]
                                                             else (0.0, 0, 0)), part.config,  # cost on the first radius
                              notes=part.notes if e == task.eps[0] else [], unverified=part.unverified)
                         for e in task.eps]

    # -- the clean part ---------------------------------------------------------------------------

    def _clean(self) -> list[bool]:
        """Clean predictions: computed by rank 0 (written to ``000_clean.json``), read by the others."""
        path = self.parts_dir / "000_clean.json"
        if self.world.main:
            part = reuse(path, self.ctx.fingerprint, self.ctx.resume)
            if part is None or part.predictions is None:  # (one made before predictions were kept: made again)
                t0 = time.perf_counter()
                pred = predict(self.model, self.x, self.ctx.batch_size)
                part = Part("clean", "clean", "clean", self.ctx.threat.norm, 0.0, (pred == self.y).tolist(),
                            [True] * len(self.x), None, time.perf_counter() - t0, self.model.forwards, 0,
                            predictions=pred.tolist())
                write(path, part, self.ctx.fingerprint)
        distributed.barrier()
        if not self.world.main:
            part = Part.from_json(json.loads(path.read_text())["part"])
        self.ctx.predictions = part.predictions
        return part.robust

    def _mask(self, flags: list[bool]) -> Tensor:
        return torch.tensor(flags, dtype=torch.bool, device=self.x.device)

