"""The remedies of the adaptive evaluation (:mod:`evaluations.adaptive`), one method each.

:class:`Escalation` holds the run's model, points and parts; ``run_remedy(name)`` runs one remedy on
the points still robust and adds its part ``adaptive[<name>]``. The table of what each remedy does
and when it runs is in :mod:`evaluations.adaptive` and docs/evaluation.md ("Adaptive evaluation").
"""
from __future__ import annotations

import dataclasses
import logging
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor, nn

from robustbench_lite.results import worst_case
from robustbench_lite.threat import ThreatModel

from .breaks import distances, in_ball, in_box
from .attack_paths import PathRecorder
from .attacks import Attack, create_attack, predict
from .attacks.base import attack_key
from .bpda import BPDAModel, find_boundary, load_approx, parse_bpda
from .eot import DEFAULT_DRAWS, DEFAULT_VERDICT_DRAWS, EoTModel, correct_fraction, expected_accuracy, is_random
from .losses import misclassified
from .parts import CountingModel, Part
from .pgd import apgd

logger = logging.getLogger(__name__)

ADAPTIVE = "adaptive"  # the registry-like name of every remedy's part
STEPS_FACTOR, RESTARTS_FACTOR = 4, 2
DEEPEN_STEPS = 100  # eot: APGD-CE steps on the averaged logits from each point's best adversarial, none skipped
BOUNDARY_POINTS = 100


@dataclass(frozen=True)
class AdaptOptions:
    adapt: bool = True              # run the remedies the failed checks name
    eot: int | None = None          # --eot N: EoT with N draws whatever the checks say
    bpda: str | None = None         # --bpda MODULE[=file.py:function]
    verdict_draws: int = DEFAULT_VERDICT_DRAWS


@dataclass
class Adaptation:
    """What the escalation did: the remedies' parts, a log entry per remedy, and for a randomised
    model the expected accuracies (``expected``)."""

    parts: list[Part] = field(default_factory=list)
    remedies: list[dict[str, Any]] = field(default_factory=list)
    expected: dict[str, Any] | None = None
    breaks: list[tuple[Tensor, Tensor]] = field(default_factory=list)  # per part: (positions, adversarials) of its breaks

    def to_json(self, before: float, after: float) -> dict[str, Any]:
        return {"remedies": self.remedies, "robust_accuracy_before": before, "robust_accuracy_after": after,
                "changed": bool(after != before), "expected": self.expected}


class Escalation:
    def __init__(self, model: nn.Module, x: Tensor, y: Tensor, clean: list[bool], parts: list[Part],
                 threat: ThreatModel, tasks: list[Any], *, seed: int, batch_size: int, offset: int,
                 options: AdaptOptions) -> None:
        self.raw: nn.Module = model
        self.model: nn.Module = model
        self.x, self.y, self.clean = x, y, clean
        self.parts, self.threat, self.tasks = list(parts), threat, tasks
        self.seed, self.bs, self.offset, self.opt = seed, batch_size, offset, options
        self.out = Adaptation()
        self.random = False  # the eot remedy is wanted: the verdict is the expected accuracy over K draws
        self.eot_draws: int | None = None
        self.bpda: tuple[str, Callable[[Tensor], Tensor] | None] | None = None
        self.adv = x.clone()  # while a remedy runs: the adversarial that broke each point it broke

    # -- the attack model and the suite's attacks ----------------------------------------------------

    def attack_model(self) -> nn.Module:
        m: nn.Module = self.model  # the counting wrapper of the true model while a remedy runs
        if self.bpda is not None:
            m = BPDAModel(m, f"model.{self.bpda[0]}", self.bpda[1])
        if self.eot_draws:
            m = EoTModel(m, self.eot_draws)
        return m

    def suite_attacks(self, white_box_only: bool = False) -> list[Attack]:
        """The suite's fixed-radius attacks at the threat (not transfer); APGD-CE and APGD-DLR when none."""
        out = [t.attack for t in self.tasks if t.norm == self.threat.norm and not t.attack.minimum_norm
               and t.attack.kind != "transfer" and any(abs(e - self.threat.eps) <= 1e-9 for e in t.eps)
               and (t.attack.white_box or not white_box_only)]
        if not any(a.white_box for a in out):
            out += [create_attack(n, norm=self.threat.norm) for n in ("apgd_ce", "apgd_dlr")
                    if self.threat.norm in ("linf", "l2", "l1")]
        return out

    def robust_now(self) -> Tensor:
        return torch.tensor(worst_case(self.clean, self.parts, self.threat.norm, self.threat.eps),
                            dtype=torch.bool, device=self.x.device)

    # -- running one remedy ------------------------------------------------------------------------

    def _inside(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """In the threat ball and the [0, 1] box by the front door's and ``bench verify``'s own test
        (:mod:`evaluations.breaks`), so a remedy keeps no break that verification would reject."""
        norm = self.threat.norm
        dist = distances(x_adv, x, norm).to(x.device)
        return in_ball(dist, self.threat.eps, norm, x[0].numel() if len(x) else 0) & in_box(x_adv).to(x.device)

    def _attack(self, attack: Attack, model: nn.Module, idx: Tensor, stream: str, watch: bool) -> tuple[Tensor, dict]:
        xs, ys = self.x[idx], self.y[idx]
        rec = PathRecorder(model, xs, ys, norm=self.threat.norm, eps=self.threat.eps) if watch else None
        out = attack(rec or model, xs, ys, eps=self.threat.eps, batch_size=self.bs, seed=self.seed,
                     positions=idx + self.offset, stream=stream, progress=False)
        flags = rec.flags(out.success) if rec is not None else {}
        return out.x_adv.detach(), flags

    def run_remedy(self, name: str, reasons: list[str]) -> None:
        todo = self.robust_now()
        counting = CountingModel(self.raw)
        self.model = counting
        t0 = time.perf_counter()
        note = ""
        self.adv = self.x.clone()
        try:
            with torch.random.fork_rng(devices=[self.x.device] if self.x.device.type == "cuda" else []):
                torch.manual_seed(zlib.crc32(f"{self.seed}:adaptive:{name}".encode()))
                broken, flags, note = getattr(self, f"_{name}")(todo)
        finally:
            self.model = self.raw
        if name == "eot" and broken is not None:  # it attacked every point some draw classifies correctly
            todo = self._eot_attacked
        if broken is None:  # the remedy could not run (e.g. no boundary found): spent, nothing changed
            self.out.remedies.append({"remedy": name, "reasons": reasons, "ran": False, "note": note,
                                      "points": 0, "broken": 0, "seconds": round(time.perf_counter() - t0, 3)})
            return
        broken = broken & todo
        robust = (torch.tensor(self.clean, dtype=torch.bool, device=self.x.device) & ~broken).tolist()
        label = f"{ADAPTIVE}[{name}]"
        part = Part(attack_key(label, self.threat.norm, self.threat.eps), ADAPTIVE, label, self.threat.norm,
                    self.threat.eps, robust, todo.tolist(), None, time.perf_counter() - t0, counting.forwards,
                    counting.backwards, {"name": ADAPTIVE, "remedy": name, "reasons": reasons, "note": note},
                    indicators={k: v.tolist() for k, v in flags.items()} if flags else None)
        self.parts.append(part)
        self.out.parts.append(part)
        where = broken.nonzero().flatten()
        self.out.breaks.append((where + self.offset, self.adv[where].detach()))
        self.out.remedies.append({"remedy": name, "reasons": reasons, "ran": True, "note": note,
                                  "points": int(todo.sum()), "broken": int(broken.sum()),
                                  "seconds": round(part.seconds, 3), "forwards": part.forwards,
                                  "backwards": part.backwards})
        logger.info("adaptive[%s] (%s): %d of %d robust points broken", name, ", ".join(reasons),
                    int(broken.sum()), int(todo.sum()))

    def _flags_full(self, idx: Tensor, got: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for f in got:
            for k, v in f.items():
                full = torch.zeros(len(self.x), dtype=torch.bool, device=self.x.device)
                full[idx] = v.to(self.x.device)
                out[k] = full
        return out

    def _run_attacks(self, attacks: list[Attack], model: nn.Module, todo: Tensor, tag: str,
                     watch: bool = True) -> tuple[Tensor, dict[str, Tensor]]:
        """Each attack on the points still robust to the earlier ones; verdict on the true model."""
        broken = torch.zeros(len(self.x), dtype=torch.bool, device=self.x.device)
        got = []
        for i, attack in enumerate(attacks):
            idx = (todo & ~broken).nonzero().flatten()
            if len(idx) == 0:
                break
            x_adv, flags = self._attack(attack, model, idx, f"{ADAPTIVE}[{tag}]:{i}:{attack.name}", watch)
            ok = self._inside(x_adv, self.x[idx]) & (predict(self.model, x_adv, self.bs) != self.y[idx])
            broken[idx[ok]] = True
            self.adv[idx[ok]] = x_adv[ok]
            if flags:
                got.append(flags)
        # the path flags of the first attack, the one that ran on every point of the remedy
        return broken, self._flags_full(todo.nonzero().flatten(), got[:1]) if got else {}

    # -- the remedies ------------------------------------------------------------------------------

    def _eot(self, todo: Tensor) -> tuple[Tensor | None, dict, str]:
        self.eot_draws = self.opt.eot or DEFAULT_DRAWS
        # a deterministic model (--eot asked for it) has one verdict per point: one draw gives it
        k = self.opt.verdict_draws if is_random(self.raw, self.x[:100]) else 1
        clean_share = correct_fraction(self.model, self.x, self.y, draws=k, batch_size=self.bs)
        # single-draw verdicts are noise here: attack every point any draw classifies correctly
        idx = (clean_share > 0).nonzero().flatten()
        self._eot_attacked = clean_share > 0
        worst, best = clean_share.clone(), self.x.clone()  # per point: the lowest share so far, and where
        model = self.attack_model()
        for i, attack in enumerate(self.suite_attacks()):
            if len(idx) == 0:
                break
            x_adv, _ = self._attack(attack, model, idx, f"{ADAPTIVE}[eot]:{i}:{attack.name}", watch=False)
            x_adv = torch.where(self._inside(x_adv, self.x[idx]).view(-1, *[1] * (x_adv.dim() - 1)), x_adv, self.x[idx])
            share = correct_fraction(self.model, x_adv, self.y[idx], draws=k, batch_size=self.bs)
            better = share < worst[idx]
            worst[idx[better]] = share[better]
            best[idx[better]] = x_adv[better]
        # an attack that stops where the averaged logits first cross the boundary leaves a point there, where
        # about half the draws are still correct: APGD-CE on the averaged logits, every step taken, goes on
        # from each point's best adversarial so far (the hand-written EoT-PGD of Athalye et al. never stops)
        if len(idx):
            deep = apgd(model, self.x[idx], self.y[idx], norm=self.threat.norm, eps=self.threat.eps, steps=DEEPEN_STEPS,
                        loss="ce", x_init=best[idx], is_adversarial=_never)
            x_adv = torch.where(self._inside(deep.x_adv, self.x[idx]).view(-1, *[1] * (deep.x_adv.dim() - 1)),
                                deep.x_adv, best[idx])
            share = correct_fraction(self.model, x_adv, self.y[idx], draws=k, batch_size=self.bs)
            better = share < worst[idx]
            worst[idx[better]] = share[better]
            best[idx[better]] = x_adv[better]
        # the verdict: K fresh draws at each point's chosen adversarial (chosen on other draws)
        fresh = correct_fraction(self.model, best, self.y, draws=k, batch_size=self.bs)
        self.adv = best
        clean_fresh = correct_fraction(self.model, self.x, self.y, draws=k, batch_size=self.bs)
        self.out.expected = {"definition": "mean over points of the share of K fresh forward passes classified "
                                           "correctly (expected accuracy over the defense's randomness)",
                             "eot_draws": self.eot_draws, "verdict_draws": k,
                             "clean": expected_accuracy(clean_fresh), "robust": expected_accuracy(fresh),
                             "per_example_clean": [round(float(v), 4) for v in clean_fresh],
                             "per_example_robust": [round(float(v), 4) for v in fresh]}
        return fresh < 0.5, {}, f"{self.eot_draws} draws per gradient, verdict on {k} fresh draws"

    def _bpda(self, todo: Tensor) -> tuple[Tensor | None, dict, str]:
        approx = None
        if self.opt.bpda:
            name, spec = parse_bpda(self.opt.bpda)
            approx = load_approx(spec) if spec else None
        else:
            idx = todo.nonzero().flatten()[:BOUNDARY_POINTS]
            if len(idx) == 0:
                return None, {}, "no robust point left"
            with torch.enable_grad():
                name = find_boundary(self.raw, self.x[idx], self.y[idx])
            if name is None:
                return None, {}, ("no submodule's input receives a usable gradient: name the boundary and an "
                                  "approximation with --bpda MODULE=file.py:function")
        from .bpda import boundary_module

        boundary_module(self.raw, name)
        self.bpda = (name, approx)
        if self.random:  # a random model: the eot remedy attacks through the boundary and judges on K draws
            try:
                xs = self.x[:2].clone().requires_grad_(True)
                self.attack_model()(xs).sum().backward()  # the boundary's input shape is checked here
            except Exception as e:  # noqa: BLE001
                from robustbench_lite.errors import BenchError

                if isinstance(e, BenchError) and not self.opt.bpda:
                    self.bpda = None
                    return None, {}, str(e)
                raise
            return None, {}, f"boundary {name!r} found; the eot remedy attacks through it"
        try:
            broken, flags = self._run_attacks(self.suite_attacks(white_box_only=True), self.attack_model(), todo, "bpda",
                                              watch=not self.eot_draws)
        except Exception as e:  # noqa: BLE001
            from robustbench_lite.errors import BenchError

            if isinstance(e, BenchError) and not self.opt.bpda:  # e.g. the boundary's input has another shape
                self.bpda = None
                return None, {}, str(e)
            raise
        return broken, flags, f"backward pass through {'the identity' if approx is None else self.opt.bpda} before {name!r}"

    def _silent(self, todo: Tensor) -> tuple[Tensor | None, dict, str]:
        broken = torch.zeros(len(self.x), dtype=torch.bool, device=self.x.device)
        model = self.attack_model()
        for i, attack in enumerate(self.suite_attacks()):
            idx = (todo & ~broken).nonzero().flatten()
            if len(idx) == 0:
                break
            keep = _KeepAdversarial(model, self.x[idx], self.y[idx], self._inside)
            attack(keep, self.x[idx], self.y[idx], eps=self.threat.eps, batch_size=self.bs, seed=self.seed,
                   positions=idx + self.offset, stream=f"{ADAPTIVE}[silent]:{i}:{attack.name}", progress=False)
            ok = keep.found & self._inside(keep.points, self.x[idx])
            ok &= predict(self.model, keep.points, self.bs) != self.y[idx]  # verified on a fresh forward pass
            broken[idx[ok]] = True
            self.adv[idx[ok]] = keep.points[ok]
        return broken, {}, "the first visited adversarial kept in place of the returned point"

    def _from_black_box(self, todo: Tensor) -> tuple[Tensor | None, dict, str]:
        black = [a for a in self.suite_attacks() if not a.white_box]
        if not black:
            return None, {}, "no black-box attack at the threat in the suite"
        broken = torch.zeros(len(self.x), dtype=torch.bool, device=self.x.device)
        model = self.attack_model()
        for i, attack in enumerate(black):
            idx = (todo & ~broken).nonzero().flatten()
            if len(idx) == 0:
                break
            starts, _ = self._attack(attack, model, idx, f"{ADAPTIVE}[from_black_box]:{i}:{attack.name}", watch=False)
            starts = torch.where(self._inside(starts, self.x[idx]).view(-1, *[1] * (starts.dim() - 1)), starts, self.x[idx])
            ok = self._inside(starts, self.x[idx]) & (predict(self.model, starts, self.bs) != self.y[idx])
            found = starts.clone()
            for loss in ("ce", "dlr"):
                rows = (~ok).nonzero().flatten()
                if len(rows) == 0:
                    break
                res = apgd(model, self.x[idx][rows], self.y[idx][rows], norm=self.threat.norm, eps=self.threat.eps,
                           loss=loss, x_init=starts[rows])
                hit = self._inside(res.x_adv, self.x[idx][rows]) & (predict(self.model, res.x_adv, self.bs)
                                                                     != self.y[idx][rows])
                ok[rows[hit]] = True
                found[rows[hit]] = res.x_adv[hit]
            broken[idx[ok]] = True
            self.adv[idx[ok]] = found[ok]
        return broken, {}, "APGD (CE, DLR) started from the black-box attacks' returned points"

    def _steps(self, todo: Tensor) -> tuple[Tensor | None, dict, str]:
        stronger = []
        for a in self.suite_attacks(white_box_only=True):
            names = {f.name for f in dataclasses.fields(a)}
            kw = {}
            if "steps" in names:
                kw["steps"] = STEPS_FACTOR * a.steps  # type: ignore[attr-defined]
            if "restarts" in names:
                kw["restarts"] = RESTARTS_FACTOR * max(1, a.restarts)  # type: ignore[attr-defined]
            if kw:
                stronger.append(dataclasses.replace(a, **kw))
        if not stronger:
            return None, {}, "no white-box attack at the threat has a steps or restarts option"
        broken, flags = self._run_attacks(stronger, self.attack_model(), todo, "steps", watch=not self.eot_draws)
        return broken, flags, f"the suite's white-box attacks with {STEPS_FACTOR}x steps, {RESTARTS_FACTOR}x restarts"


def _never(logits: Tensor, y: Tensor) -> Tensor:
    """No row counts as adversarial: the attack takes every step and returns its highest-loss point."""
    return torch.zeros(len(y), dtype=torch.bool, device=y.device)


class _KeepAdversarial(nn.Module):
    """The attack's model, watched: per attacked point, the first row it sends that lies in the
    point's ball and box and is misclassified (rows matched to points as in PathRecorder)."""

    def __init__(self, model: nn.Module, x: Tensor, y: Tensor, inside: Callable[[Tensor, Tensor], Tensor]) -> None:
        super().__init__()
        self.model, self.x0, self.y, self.inside_fn = model, x.detach(), y, inside
        self.training = bool(getattr(model, "training", False))
        self.found = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        self.points = x.detach().clone()

    def forward(self, x: Tensor) -> Tensor:
        out = self.model(x)
        with torch.no_grad():
            idx = torch.cdist(x.detach().flatten(1).float(), self.x0.flatten(1).float()).argmin(1)
            hit = self.inside_fn(x.detach(), self.x0[idx]) & misclassified(out.detach(), self.y[idx]) & ~self.found[idx]
            for r in hit.nonzero().flatten().tolist():
                i = int(idx[r])
                if not self.found[i]:
                    self.found[i] = True
                    self.points[i] = x[r].detach()
        return out


