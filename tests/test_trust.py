"""The number at the top of the table: broken models are flagged and cannot rank first; a
cascaded AutoAttack row never lends its skipped points to the leaderboard's AutoAttack column.

Each test here fails on the behaviour the trust issue found (natural model ranked first with
AutoAttack 93%, a constant-class model unflagged at the top of the quick leaderboard).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

from robustbench_lite.evaluations.checks import prediction_checks
from robustbench_lite.evaluations.evaluate import EvalOptions, evaluate_loaded
from robustbench_lite.evaluations.suite import load_suite, parse_suite
from robustbench_lite.reports.leaderboard import leaderboard_entries
from robustbench_lite.checkpoint import load_checkpoint


CASCADE_SUITE = """
name = "cascade"
cascade = true
[[attacks]]
name = "pgd"
label = "pgd20"
steps = 10
[[attacks]]
name = "autoattack"
version = "standard"
[[attacks]]
name = "square"
n_queries = 20
cascade = false
"""
PGD_ONLY = 'name = "pgd_only"\ncascade = false\n[[attacks]]\nname = "pgd"\nsteps = 5\n'


class Constant(nn.Module):
    """Predicts class ``k`` for every input, with logits that still depend on the input."""

    def __init__(self, base: nn.Module, k: int = 3) -> None:
        super().__init__()
        self.base, self.k = base, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.base(x)
        bump = torch.zeros_like(z)
        bump[:, self.k] = 1e3
        return z + bump


class Softmax(nn.Module):
    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x).softmax(1)


def _eval(ckpt_path: Path, out: Path, suite_text: str, wrap=None, n: int = 20) -> dict:  # type: ignore[no-untyped-def]
    ckpt = load_checkpoint(ckpt_path)
    if wrap is not None:
        ckpt = dataclasses.replace(ckpt, model=wrap(ckpt.model))
    suite = parse_suite(suite_text, default_name="t")
    return evaluate_loaded(ckpt, suite, out, EvalOptions(n_examples=n, seed=0), checkpoint_path=Path(ckpt_path))


def _names(rec: dict) -> dict[str, bool]:
    return {c["name"]: c["passed"] for c in rec["checks"]}


@pytest.mark.slow
def test_cascaded_autoattack_column_is_not_the_skipped_points(mnist_natural_ckpt: Path, tmp_path: Path) -> None:
    """PGD breaks every point of the natural model; AutoAttack (cascaded) runs on none of them.
    Its row counts the skipped points as robust; the leaderboard must show ~0 in every robustness
    column and mark the AutoAttack value as a cascade stage."""
    rec = _eval(mnist_natural_ckpt, tmp_path / "e", CASCADE_SUITE)
    aa = next(r for r in rec["attacks"] if r["attack"] == "autoattack")
    assert aa["attacked"] < sum(1 for _ in rec["indices"]) and not aa["exact"]
    (entry,) = leaderboard_entries([rec])
    assert rec["robust_accuracy"] <= 10
    for metric in ("autoattack", "pgd", "robust"):
        assert entry.get(metric) is not None and entry.get(metric) <= 10, (metric, entry.get(metric))
    assert entry.get("autoattack") <= aa["accuracy"]
    assert entry.scopes.get("autoattack") == "cascade" and "pgd" not in entry.scopes


def test_every_suite_runs_the_model_checks(mnist_natural_ckpt: Path, tmp_path: Path) -> None:
    """A suite without ``checks = true`` still checks the model: a softmax output is flagged."""
    honest = _eval(mnist_natural_ckpt, tmp_path / "h", PGD_ONLY)
    assert _names(honest)["logits_not_probabilities"] and _names(honest)["predictions_not_collapsed"]
    soft = _eval(mnist_natural_ckpt, tmp_path / "s", PGD_ONLY, wrap=Softmax)
    assert not _names(soft)["logits_not_probabilities"]
    assert not load_suite("quick").checks  # the default suite: model checks run all the same


def test_collapsed_model_is_flagged_and_ranks_last(mnist_natural_ckpt: Path, tmp_path: Path) -> None:
    """A constant-class model (10% clean, 10% 'robust') must not top a leaderboard of real models."""
    honest = _eval(mnist_natural_ckpt, tmp_path / "h", PGD_ONLY)
    const = _eval(mnist_natural_ckpt, tmp_path / "c", PGD_ONLY, wrap=Constant)
    checks = _names(const)
    assert not checks["predictions_not_collapsed"] and not checks["above_chance_level"]
    assert _names(honest)["above_chance_level"]
    const["checkpoint"] = {**const["checkpoint"], "sha256": "0" * 64, "path": "runs/constant/checkpoint.pt",
                           "defense": "constant"}  # another configuration, not a second seed
    entries = leaderboard_entries([const, honest])
    assert const["robust_accuracy"] > honest["robust_accuracy"]  # it would rank first by the number alone
    assert [e.unreliable for e in entries] == [False, True]
    assert "predictions_not_collapsed" in entries[1].sanity


@pytest.mark.parametrize("labels,preds,passed", [
    ([0, 1, 2, 3] * 25, [0, 1, 2, 3] * 25, (True, True)),          # perfect
    ([0, 1, 2, 3] * 25, [1] * 100, (False, False)),                # constant class
    ([0, 1, 2, 3] * 25, [1, 2, 3, 0] * 25, (False, True)),         # every prediction wrong, spread out
    ([0, 1, 2, 3] * 25, [0, 1, 2, 3] * 10 + [0] * 60, (True, False)),  # 55% of predictions one class
])
def test_prediction_checks_by_hand(labels: list[int], preds: list[int], passed: tuple[bool, bool]) -> None:
    checks = prediction_checks(preds, labels, num_classes=4)
    assert tuple(c["passed"] for c in checks) == passed
    assert prediction_checks(None, labels, 4) == []  # a run made before predictions were kept


def test_chance_level_uses_the_label_distribution() -> None:
    """On data where one class is 90% of the labels, predicting it everywhere is 'chance' (on 1,000
    points: on 100, 90% correct cannot be told from 95%, halfway to 100%, at the 1% level)."""
    labels = [0] * 900 + [1] * 100
    checks = {c["name"]: c["passed"] for c in prediction_checks([0] * 1000, labels, 2)}
    assert not checks["above_chance_level"]
    assert checks["predictions_not_collapsed"] is False  # 100% >= 90% + half of the remaining 10%
