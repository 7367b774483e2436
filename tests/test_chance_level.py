"""``above_chance_level`` is an exact binomial decision (issue #19): it never fails a model that is
clearly above chance (3 of 3 correct included) and still fails one at chance on enough points.
The p-values are checked against scipy.stats.binomtest."""
from __future__ import annotations

import random

import pytest
from scipy.stats import binomtest

from robustbench_lite.evaluations.checks import CHANCE_ALPHA, chance_decision, prediction_checks
from robustbench_lite.results import binom_tail


def _above(preds: list[int], labels: list[int], k: int) -> dict:
    return {c["name"]: c for c in prediction_checks(preds, labels, k)}["above_chance_level"]


def test_binomial_tails_match_scipy() -> None:
    rng = random.Random(0)
    cases = [(0, 1, 0.5), (1, 1, 0.1), (3, 3, 0.1), (0, 50, 0.02), (50, 50, 0.98), (120, 1000, 0.1),
             (4000, 10000, 0.4), (9, 10, 0.999)]
    cases += [(rng.randint(0, n), n, rng.uniform(0.001, 0.999)) for n in (rng.randint(1, 3000) for _ in range(200))]
    for k, n, p in cases:
        for upper, alt in ((True, "greater"), (False, "less")):
            ref = binomtest(k, n, p, alternative=alt).pvalue
            got = binom_tail(k, n, p, upper=upper)
            assert got == pytest.approx(ref, rel=1e-9, abs=1e-300), (k, n, p, alt)


def test_a_perfect_model_on_three_points_passes() -> None:
    """The reported case: 100% on 3 points failed (chance + 3 standard errors is above 100%)."""
    for k in (2, 10, 100):
        check = _above([0, 1, 2], [0, 1, 2], k)
        assert check["passed"], check["detail"]
    assert _above([1, 1, 1], [1, 1, 1], 10)["passed"]  # one label: chance is 100%, nothing to test


@pytest.mark.parametrize("n", [1, 2, 3, 5, 10, 50, 400])
@pytest.mark.parametrize("k", [2, 3, 10, 100])
def test_a_perfect_model_never_fails(n: int, k: int) -> None:
    labels = [i % k for i in range(n)]
    assert _above(labels, labels, k)["passed"]


def test_models_clearly_above_chance_pass() -> None:
    rng = random.Random(1)
    for n, k, acc in ((50, 10, 0.8), (20, 10, 0.5), (200, 2, 0.7), (1000, 10, 0.2), (30, 100, 0.3)):
        labels = [rng.randrange(k) for _ in range(n)]
        preds = [t if i < acc * n else (t + 1) % k for i, t in enumerate(labels)]
        check = _above(preds, labels, k)
        assert check["passed"] and "above chance" in check["detail"], (n, k, check["detail"])


def test_models_at_chance_on_enough_points_fail() -> None:
    rng = random.Random(2)
    labels = [i % 10 for i in range(100)]
    assert not _above([3] * 100, labels, 10)["passed"]                       # a constant class: 10%
    assert not _above([rng.randrange(10) for _ in labels], labels, 10)["passed"]  # guessing
    assert not _above([(t + 1) % 10 for t in labels], labels, 10)["passed"]   # always wrong
    big = [i % 2 for i in range(500)]
    assert not _above([rng.randrange(2) for _ in big], big, 2)["passed"]
    check = _above([3] * 100, labels, 10)
    assert "at chance level" in check["detail"] and "means nothing" in check["detail"]


def test_too_few_points_to_tell_passes_and_says_so() -> None:
    """2 of 3 correct, 10 classes: p = 0.028 against chance, 0.83 against 55%: the data cannot say."""
    check = _above([0, 1, 5], [0, 1, 2], 10)
    assert check["passed"] and "too few points to tell" in check["detail"]


def test_the_decision_is_the_stated_pair_of_scipy_tests() -> None:
    """Over random (k, n, chance): passes iff binomtest rejects 'accuracy <= chance' at the level, or
    does not reject 'accuracy >= halfway from chance to 100%'."""
    rng = random.Random(3)
    for _ in range(300):
        n = rng.randint(1, 300)
        chance = rng.choice([0.5, 0.1, 0.01, rng.uniform(0.01, 0.95)])
        k = rng.randint(0, n)
        p1 = chance + (1 - chance) / 2
        ref = (binomtest(k, n, chance, alternative="greater").pvalue <= CHANCE_ALPHA
               or binomtest(k, n, p1, alternative="less").pvalue > CHANCE_ALPHA)
        assert chance_decision(k, n, chance)[0] == ref, (k, n, chance)
