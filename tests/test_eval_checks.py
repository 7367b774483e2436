"""Sanity checks: an honestly trained model passes them all; a model whose forward pass zeroes its
input gradient (torch.round) is flagged. Unit tests of each result check on hand-made parts."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from robustbench_lite.evaluations.checks import model_checks, result_checks
from robustbench_lite.evaluations.evaluate import EvalOptions, evaluate_loaded
from robustbench_lite.evaluations.parts import Part
from robustbench_lite.evaluations.suite import parse_suite
from robustbench_lite.checkpoint import load_checkpoint

from eval_helpers import Rounding

CHECK_SUITE = """
name = "checks"
cascade = true
checks = true
max_eps = { linf = "1.0" }  # pgd_large: the deliberate whole-box radius of the unconstrained-attack check
[[attacks]]
name = "pgd"
label = "pgd10"
steps = 10
[[attacks]]
name = "pgd"
label = "pgd40"
steps = 40
cascade = false
[[attacks]]
name = "square"
n_queries = 300
cascade = false
[[attacks]]
name = "pgd"
label = "pgd_large"
eps = 1.0
steps = 10
"""


def _evaluate(ckpt, tmp_path, name):
    suite = parse_suite(CHECK_SUITE)
    rec = evaluate_loaded(ckpt, suite, tmp_path / name, EvalOptions(n_examples=40, check_examples=40))
    return {c["name"]: c for c in rec["checks"]}, rec


@pytest.mark.slow
def test_honest_model_passes_and_rounding_model_is_flagged(tmp_path, eval_natural_ckpt):
    ckpt = load_checkpoint(eval_natural_ckpt)
    honest, rec = _evaluate(ckpt, tmp_path, "honest")
    assert all(c["passed"] for c in honest.values()), [c for c in honest.values() if not c["passed"]]
    assert json.loads((tmp_path / "honest" / "checks.json").read_text()) == rec["checks"]
    masked, _ = _evaluate(dataclasses.replace(ckpt, model=Rounding(ckpt.model)), tmp_path, "masked")
    assert not masked["nonzero_input_gradients"]["passed"]
    assert not masked["white_box_beats_black_box"]["passed"]
    assert masked["deterministic_output"]["passed"] and masked["logits_not_probabilities"]["passed"]


def test_model_checks_flag_probabilities_randomness_and_nan(eval_model, eval_batch):
    x, y = eval_batch
    x, y = x[:8], y[:8]

    def softmax_model(v):
        return eval_model(v).softmax(1)

    def noisy_model(v):
        return eval_model(v) + 0.1 * torch.randn(len(v), 10)

    def nan_model(v):
        return eval_model(v) * torch.sqrt(v.sum() * 0)  # sqrt(0): infinite derivative -> NaN gradient

    def by_name(m):
        return {c["name"]: c["passed"] for c in model_checks(m, x, y)}

    assert all(by_name(eval_model).values())
    assert not by_name(softmax_model)["logits_not_probabilities"]
    assert not by_name(noisy_model)["deterministic_output"]
    assert not by_name(nan_model)["finite_input_gradients"]


def _part(label, attack, eps, robust, attacked=None, steps=None, norm="linf"):
    cfg = {"steps": steps, "restarts": 1, "loss": "ce"} if steps else {}
    return Part(f"{label}@{norm}:{eps}", attack, label, norm, eps, robust, attacked or [True] * len(robust), None, 0.0, 0, 0, cfg)


def test_result_checks_on_hand_made_parts():
    n = 100
    clean = [True] * n
    ok = lambda k: [i >= k for i in range(n)]  # noqa: E731  (first k points broken)
    good = [_part("pgd20", "pgd", 0.3, ok(50), steps=20), _part("pgd100", "pgd", 0.3, ok(52), steps=100),
            _part("square", "square", 0.3, ok(45)), _part("big", "pgd", 1.0, ok(100), steps=20)]
    assert all(c["passed"] for c in result_checks(good, clean))
    bad = [_part("pgd20", "pgd", 0.3, ok(50), steps=20), _part("pgd100", "pgd", 0.3, ok(30), steps=100),
           _part("square", "square", 0.3, ok(80)), _part("big", "pgd", 1.0, ok(60), steps=20),
           _part("sweep", "pgd", 0.1, ok(10), steps=20), _part("sweep", "pgd", 0.2, ok(5), steps=20)]
    # "sweep" rises with eps: impossible for one attack's sweep
    res = {c["name"]: c["passed"] for c in result_checks(bad, clean)}
    assert res == {"white_box_beats_black_box": False, "more_steps_not_weaker": False,
                   "monotone_in_eps": False, "large_eps_breaks": False,
                   # parts without attack-path flags: nothing for those indicators to judge
                   "attacks_no_silent_success": True, "attacks_gradients_available": True, "attacks_converged": True}
