"""Adaptive evaluation: break what the attack-failure indicators flag (docs/evaluation.md, "Adaptive evaluation").

After a suite with ``checks = true`` has run, every failed indicator names its remedy, and the
remedies run on the points the suite (and the remedies before them) left robust:

============  ==========================================================================================
remedy        when (failed checks)                         what runs
============  ==========================================================================================
``eot``       ``deterministic_output`` (or ``--eot N``)     the suite's attacks at the threat through
                                                            :class:`~evaluations.eot.EoTModel` (gradients
                                                            and scores averaged over N draws); verdict on
                                                            K fresh draws, accuracy = expected accuracy
``bpda``      ``gradients_available``, ``nonzero_input_`` the suite's white-box attacks through
              ``gradients``, ``finite_input_gradients``,   :class:`~evaluations.bpda.BPDAModel` at the
              ``attacks_gradients_available`` (or          boundary :func:`~evaluations.bpda.find_boundary`
              ``--bpda``)                                  finds; verdict on the true model
``silent``    ``no_silent_success``,                        the suite's attacks again, keeping the first
              ``attacks_no_silent_success``                 adversarial they visit in the ball
``from_black  ``white_box_beats_black_box``                 the black-box attacks' returned points as
_box``                                                      starts of APGD (CE, then DLR)
``steps``     ``optimisation_converged``,                   the suite's white-box attacks with 4x the steps
              ``attacks_converged``, ``more_steps_not_      and 2x the restarts
              weaker``
============  ==========================================================================================

Within a round they run as ordered in ``REMEDIES`` (``bpda`` first: on a randomised model it only
sets the boundary the ``eot`` attacks go through, and the single-draw remedies do not run).
Each remedy runs at most once; after a round the result checks are recomputed with the remedies'
parts (their own paths are watched), and a check that now fails calls its remedy in the next round,
until no indicator fails or the remedies are spent. Each remedy adds one part labelled
``adaptive[<remedy>]`` (attack ``adaptive``, white-box) at the threat, so the worst case includes it.
An honest model (no check fails, no ``--eot``/``--bpda``) runs nothing. Attacks of the remedies
draw from their own streams (seeded by the run's seed and the remedy), and the model's own
randomness from the global generator seeded the same way, so a run is reproducible.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from torch import Tensor, nn

from robustbench_lite.threat import ThreatModel

from .bpda import load_approx, parse_bpda
from .parts import Part
from .remedies import ADAPTIVE, AdaptOptions, Adaptation, Escalation

__all__ = ["ADAPTIVE", "AdaptOptions", "Adaptation", "escalate", "adapt_evaluation", "annotate", "check_options"]

logger = logging.getLogger(__name__)

REMEDIES = ("bpda", "eot", "silent", "from_black_box", "steps")  # the order they run in within a round
SINGLE_DRAW = ("silent", "from_black_box", "steps")  # remedies judged on one forward pass: not for a random model
REMEDY_OF = {
    "deterministic_output": "eot",
    "gradients_available": "bpda", "nonzero_input_gradients": "bpda", "finite_input_gradients": "bpda",
    "attacks_gradients_available": "bpda",
    "no_silent_success": "silent", "attacks_no_silent_success": "silent",
    "white_box_beats_black_box": "from_black_box",
    "optimisation_converged": "steps", "attacks_converged": "steps", "more_steps_not_weaker": "steps",
}


def _failed_remedies(checks: list[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for c in checks:
        r = REMEDY_OF.get(c["name"])
        if r and not c["passed"]:
            out.setdefault(r, []).append(c["name"])
    return out


def escalate(model: nn.Module, x: Tensor, y: Tensor, clean: list[bool], parts: list[Part], checks: list[dict[str, Any]],
             threat: ThreatModel, tasks: list[Any], *, seed: int, batch_size: int, offset: int = 0,
             options: AdaptOptions = AdaptOptions(),
             recheck: Callable[[list[Part]], list[dict[str, Any]]] | None = None) -> Adaptation:
    """Run the remedies the failed ``checks`` name (and those ``--eot``/``--bpda`` ask for) on the
    points ``parts`` leave robust; ``recheck(parts)`` recomputes the result checks after a round.
    Returns the remedies' parts and log (empty when nothing failed: an honest model pays nothing)."""
    esc = Escalation(model, x, y, clean, parts, threat, tasks, seed=seed, batch_size=batch_size, offset=offset,
                      options=options)
    wanted = _failed_remedies(checks) if options.adapt else {}
    if options.eot:
        wanted.setdefault("eot", []).append(f"--eot {options.eot}")
    if options.bpda:
        wanted.setdefault("bpda", []).append(f"--bpda {options.bpda}")
    done: set[str] = set()
    esc.random = "eot" in wanted
    while True:
        todo = [r for r in REMEDIES if r in wanted and r not in done]
        if not todo:
            break
        for r in todo:
            done.add(r)
            if esc.random and r in SINGLE_DRAW:
                esc.out.remedies.append({"remedy": r, "reasons": wanted[r], "ran": False, "points": 0, "broken": 0,
                                         "seconds": 0.0, "note": "not run on a randomised model: its verdict is the "
                                         "eot remedy's expected accuracy over K draws, not one forward pass"})
                continue
            esc.run_remedy(r, wanted[r])
        if recheck is None or not options.adapt:
            break
        for r, names in _failed_remedies(recheck(esc.parts)).items():
            if r not in done:
                wanted[r] = names
    return esc.out


# -- the hook of evaluate() --------------------------------------------------------------------------

def check_options(model: nn.Module, options: AdaptOptions) -> None:
    """``--eot`` / ``--bpda`` checked before any attack runs (a named boundary must exist, an
    approximation file must load): a mistake costs one sentence, not an evaluation."""
    from robustbench_lite.errors import BenchError

    from .bpda import boundary_module

    if options.eot is not None and not (isinstance(options.eot, int) and options.eot >= 1):
        raise BenchError(f"--eot must be a positive number of draws, got {options.eot!r}.")
    if options.bpda:
        name, spec = parse_bpda(options.bpda)
        boundary_module(model, name)
        if spec:
            load_approx(spec)


def adapt_evaluation(model: nn.Module, x: Tensor, y: Tensor, clean: list[bool], parts: list[Part],
                     checks: list[dict[str, Any]], threat: ThreatModel, ctx: Any, options: AdaptOptions,
                     recheck: Callable[[list[Part]], list[dict[str, Any]]] | None) -> Adaptation | None:
    """:func:`escalate` for a suite run (``ctx``: the runner's RunContext); the remedies' parts are
    written to ``parts/`` beside the suite's. None when nothing was asked and no check names a remedy."""
    from robustbench_lite.files import slug
    from robustbench_lite.utils import frozen

    from .adversarials import save_breaks
    from .parts import write
    from .runner import suite_tasks

    if not (options.eot or options.bpda or (options.adapt and _failed_remedies(checks))):
        return None
    with frozen(model):
        out = escalate(model, x, y, clean, parts, checks, threat, suite_tasks(ctx), seed=ctx.seed,
                       batch_size=ctx.batch_size, offset=ctx.offset, options=options, recheck=recheck)
    parts_dir = ctx.out_dir / "parts"
    for i, (p, (where, adv)) in enumerate(zip(out.parts, out.breaks)):
        name = f"{900 + i:03d}_{slug(p.key)}"
        if ctx.adversarials:  # the remedy's breaks beside its part, as the suite's parts keep theirs (adversarials.npz)
            save_breaks(parts_dir / f"{name}.npz", where.cpu().numpy(), adv.cpu().numpy())
            p.adversarials = f"{name}.npz"
        write(parts_dir / f"{name}.json", p, ctx.fingerprint)
    return out


def annotate(record: dict[str, Any], adaptation: Adaptation, before: float) -> None:
    """Record what the escalation did (``record["adaptive"]``); for a randomised model the clean and
    robust accuracies become the expected accuracies over its randomness (the single-draw ones kept
    under ``single_draw``), and the ``adaptive[eot]`` row reports the expected robust accuracy."""
    exp = adaptation.expected
    if exp is not None:
        # the suite's own single-draw verdicts, before the remedies (the rebuilt worst case already holds
        # the eot verdict's per-point majority, which is neither the single-draw nor the expected number)
        record["single_draw"] = {"clean_accuracy": record["clean_accuracy"], "robust_accuracy": before}
        record["clean_accuracy"] = exp["clean"]["accuracy"]
        record["robust_accuracy"] = exp["robust"]["accuracy"]
        record["clean_interval"], record["robust_interval"] = exp["clean"]["interval"], exp["robust"]["interval"]
        for row in record.get("summary", []):
            if row["label"] == "clean":
                row["accuracy"] = row["worst_case"] = exp["clean"]["accuracy"]
                row["expected"] = True
            if row["label"] == f"{ADAPTIVE}[eot]":
                row["accuracy"] = row["worst_case"] = exp["robust"]["accuracy"]
                row["interval"], row["expected"], row["verdict_draws"] = exp["robust"]["interval"], True, exp["verdict_draws"]
    record["adaptive"] = adaptation.to_json(before, record["robust_accuracy"])
