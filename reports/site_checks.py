"""What each sanity check, attack-failure indicator and leaderboard flag means, and what to do about
it: the tooltips of the site's flags and the table of an evaluation's checks (docs/checks.md
explains them in full)."""
from __future__ import annotations

from typing import Mapping

# name -> (what a failure means, what to do about it)
CHECK_HELP: Mapping[str, tuple[str, str]] = {
    "deterministic_output": (
        "repeated forward passes of the same inputs differ: the model is randomized",
        "evaluate with EOT attacks (AutoAttack's rand version); one draw's verdict is noise"),
    "logits_not_probabilities": (
        "the outputs are probabilities (in [0,1], summing to 1), on which attacks saturate",
        "return logits from the model (drop the final softmax) and evaluate again"),
    "static_forward": (
        "the forward pass itself calls autograd: a dynamic or test-time-optimising defense",
        "evaluate with adaptive attacks designed for the defense"),
    "nonzero_input_gradients": (
        "some clean points have an exactly zero input gradient: gradient masking",
        "add gradient-free (Square) and transfer attacks, or BPDA through the masking layer"),
    "finite_input_gradients": (
        "some input gradients are NaN or infinite: attacks stall or produce NaN inputs",
        "fix the numerics of the model (e.g. a log of 0) before trusting any robust accuracy"),
    "above_chance_level": (
        "the clean accuracy is not above chance: every robust accuracy is meaningless",
        "check the checkpoint, its normalisation and the dataset; retrain if needed"),
    "predictions_not_collapsed": (
        "the predictions collapsed onto one class, which keeps that class's points 'robust'",
        "check the checkpoint and its training; a collapsed model cannot be ranked"),
    "white_box_beats_black_box": (
        "a black-box attack broke points the white-box attacks left robust: transfer failure, a sign of "
        "gradient masking",
        "the white-box attacks are failing: add adaptive attacks (BPDA, EOT) and trust the worst case"),
    "more_steps_not_weaker": (
        "an attack with more steps x restarts found fewer adversarials than the same attack with fewer",
        "the attack is not converging (step size, gradient masking): look at the indicators and tune it"),
    "monotone_in_eps": (
        "an attack's accuracy rose with a larger eps, which cannot happen for a sound run",
        "the results were merged or edited by hand: evaluate again"),
    "large_eps_breaks": (
        "points stayed robust at a radius where any input can become any image: unconstrained-attack failure",
        "the attacks are broken on this model (masking, wrong bounds): add adaptive attacks"),
    "no_silent_success": (
        "the probe PGD visited an adversarial and then left it (silent success)",
        "use attacks that return the best (breaking) iterate; suspect a forward pass that resets"),
    "gradients_available": (
        "the probe PGD met all-zero or non-finite gradients before breaking points (unavailable gradients)",
        "gradient masking: use BPDA/straight-through estimators or gradient-free attacks"),
    "predictions_stable": (
        "predictions change under small random noise (unstable predictions)",
        "use EOT attacks; a single draw's verdict is noise"),
    "optimisation_converged": (
        "the probe PGD was still improving at its last step and twice the steps break more (incomplete "
        "optimisation)",
        "run the attacks with more steps or larger steps"),
    "attacks_no_silent_success": (
        "an attack of the suite visited an adversarial of a point it returned as robust (silent success)",
        "trust the worst case over more attacks; the point is not robust"),
    "attacks_gradients_available": (
        "every white-box attack met unusable gradients on points left robust (unavailable gradients)",
        "gradient masking: add BPDA/straight-through or gradient-free attacks"),
    "attacks_converged": (
        "every white-box attack left points still improving at its end (incomplete optimisation)",
        "run the attacks with more steps or restarts"),
    "breaks_verified": (
        "an attack claimed breaks that a fresh forward pass, the threat ball or the [0, 1] box did not confirm "
        "(counted as not broken): a faulty attack, or a model whose prediction changes between passes",
        "check the attack (a user's own one especially); a randomised model needs EoT (bench eval --eot N)"),
}

# flag shown in the leaderboard -> its tooltip
FLAG_HELP: Mapping[str, str] = {
    "unreliable (RobustBench)": "RobustBench flags this entry's evaluation as unreliable: it is known to overestimate "
                                "robustness. It ranks after every reliable entry.",
    "checks not run": "No sanity check ran for this evaluation (its suite has none): its numbers are unchecked.",
    "cascade": "The AutoAttack or PGD value is the worst case through the attack's stage of a cascade (the attack ran "
               "only on points earlier attacks left robust), not the attack's own accuracy.",
    "ok": "Every sanity check and attack-failure indicator that ran passed.",
}

UNKNOWN_CHECK = ("a check this version of the site does not describe failed", "read its detail and docs/checks.md")


def check_help(name: str) -> tuple[str, str]:
    """(what a failure of check ``name`` means, what to do about it)."""
    return CHECK_HELP.get(name, UNKNOWN_CHECK)


def failed_flag_tip(name: str) -> str:
    """The tooltip of a failed check's flag."""
    meaning, todo = check_help(name)
    return f"Failed check {name}: {meaning}. What to do: {todo}. The entry ranks after every reliable entry."
