"""The adaptive evaluation through ``evaluate``: a randomised model is recognised by the model
check and evaluated with EoT, reported as expected accuracy with an interval; an honest model runs
no remedy and gets the same per-example results as with ``--no-adapt``."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import Tensor, nn

from robustbench_lite.checkpoint import load_checkpoint
from robustbench_lite.evaluations.evaluate import EvalOptions, evaluate_loaded
from robustbench_lite.evaluations.suite import parse_suite

SUITE = """
name = "t"
checks = true
[[attacks]]
name = "pgd"
steps = 10
"""


class NoisyInput(nn.Module):
    """A randomised defense: Gaussian noise (std 0.15) added to the input on every forward pass."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x + 0.15 * torch.randn_like(x))


def ridge_classifier() -> nn.Module:
    """A linear classifier fitted in closed form (ridge regression on one-hot labels) to MNIST-5k's
    training split: about 85% clean accuracy, and cheap enough for EoT's 20 draws per pass on a CPU."""
    from robustbench_lite.data import get_dataset

    d = get_dataset("mnist5k").load("train")
    x, y = d.batch(list(range(len(d.targets))))
    a = torch.cat([x.flatten(1).double(), torch.ones(len(x), 1, dtype=torch.float64)], 1)
    t = nn.functional.one_hot(y, 10).double()
    w = torch.linalg.solve(a.T @ a + 1.0 * torch.eye(a.shape[1], dtype=torch.float64), a.T @ t)
    lin = nn.Linear(784, 10)
    with torch.no_grad():
        lin.weight.copy_(w[:-1].T.float())
        lin.bias.copy_(w[-1].float())
    return nn.Sequential(nn.Flatten(), lin).eval()


@pytest.mark.slow
def test_random_model_gets_eot_and_expected_accuracy(tmp_path, eval_natural_ckpt) -> None:
    ckpt = load_checkpoint(eval_natural_ckpt)
    noisy = dataclasses.replace(ckpt, model=NoisyInput(ridge_classifier()))
    opts = EvalOptions(n_examples=20, check_examples=20, threat="linf:0.1")
    rec = evaluate_loaded(noisy, parse_suite(SUITE), tmp_path / "a", opts)
    checks = {c["name"]: c for c in rec["checks"]}
    assert not checks["deterministic_output"]["passed"]
    ad = rec["adaptive"]
    assert [r["remedy"] for r in ad["remedies"]][0] == "eot"
    exp = ad["expected"]
    assert rec["robust_accuracy"] == exp["robust"]["accuracy"] == ad["robust_accuracy_after"]
    assert rec["clean_accuracy"] == exp["clean"]["accuracy"]
    assert rec["single_draw"]["robust_accuracy"] == ad["robust_accuracy_before"]
    # the definition, recomputed from the per-example shares
    shares = exp["per_example_robust"]
    assert rec["robust_accuracy"] == pytest.approx(100 * sum(shares) / len(shares), abs=0.01)
    lo, hi = rec["robust_interval"]
    assert lo <= rec["robust_accuracy"] <= hi and hi - lo > 0
    assert exp["verdict_draws"] == 100 and exp["eot_draws"] == 20
    assert all(0 <= s <= 1 for s in shares) and any(0 < s < 1 for s in exp["per_example_clean"] + shares)
    row = {r["label"]: r for r in rec["attacks"]}["adaptive[eot]"]
    assert row["accuracy"] == rec["robust_accuracy"] and row["expected"]
    on_disk = json.loads((tmp_path / "a" / "result.json").read_text())
    assert on_disk["adaptive"]["expected"]["robust"] == exp["robust"]
    assert rec["robust_accuracy"] <= rec["clean_accuracy"]


@pytest.mark.slow
def test_honest_model_runs_no_remedy(tmp_path, eval_natural_ckpt) -> None:
    ckpt = load_checkpoint(eval_natural_ckpt)
    suite = parse_suite(SUITE)
    opts = EvalOptions(n_examples=40, check_examples=40)
    a = evaluate_loaded(ckpt, suite, tmp_path / "a", opts)
    b = evaluate_loaded(ckpt, suite, tmp_path / "b", dataclasses.replace(opts, adapt=False))
    assert all(c["passed"] for c in a["checks"]), [c for c in a["checks"] if not c["passed"]]
    assert "adaptive" not in a and "adaptive" not in b
    assert (tmp_path / "a" / "per_example.csv").read_text() == (tmp_path / "b" / "per_example.csv").read_text()
    assert [r["label"] for r in a["attacks"]] == ["pgd"]


@pytest.mark.slow
def test_forced_eot_on_a_deterministic_model_is_the_plain_verdict(tmp_path, eval_natural_ckpt) -> None:
    """``--eot`` on a deterministic model: every share is 0 or 1, and the expected accuracy is at
    most the suite's own worst case (the EoT attacks only add adversarials)."""
    ckpt = load_checkpoint(eval_natural_ckpt)
    rec = evaluate_loaded(ckpt, parse_suite(SUITE), tmp_path / "a",
                          EvalOptions(n_examples=20, check_examples=20, eot=2, threat="linf:0.05"))
    exp = rec["adaptive"]["expected"]
    assert set(exp["per_example_robust"]) <= {0.0, 1.0} and exp["eot_draws"] == 2
    assert exp["verdict_draws"] == 1  # deterministic: one forward pass is the verdict
    assert rec["robust_accuracy"] <= rec["single_draw"]["robust_accuracy"]
    assert rec["clean_accuracy"] == rec["single_draw"]["clean_accuracy"]
