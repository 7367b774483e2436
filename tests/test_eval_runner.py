"""Runner tests with fake attacks that succeed on known indices: worst case by hand, cascade,
sweeps, minimum-norm sweeps, resume after an interruption, shards merged == unsharded, AUC."""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import nn

from robustbench_lite.evaluations.attacks import ATTACKS, Attack, AttackOutput
from robustbench_lite.evaluations.evaluate import EvalOptions, build_record, evaluate, merge, shard_bounds
from robustbench_lite.evaluations.metrics import normalized_auc
from robustbench_lite.evaluations.runner import RunContext, run_tasks
from robustbench_lite.evaluations.suite import parse_suite
from robustbench_lite.errors import BenchError
from robustbench_lite.threat import ThreatModel


N = 20
CALLS: list[tuple[str, float | None, list[int]]] = []


class Identity(nn.Module):
    """Logits = one-hot of the label stored in the first pixel (label / 10): every point is
    clean-correct; a positive third pixel (the fake attacks' perturbation) moves it to the next class,
    so their breaks pass the front door's check (in the box, in the ball, misclassified)."""

    def forward(self, x):  # noqa: D401
        lab = (x[:, 0, 0, 0] * 10).round().long() + (x[:, 0, 1, 0] > 0).long()
        return torch.nn.functional.one_hot(lab % 10, 10).float()


def _ids(x: torch.Tensor) -> torch.Tensor:
    return (x[:, 0, 0, 1] * 100).round().long()


def _moved(x: torch.Tensor, hit: torch.Tensor, by: torch.Tensor | float) -> torch.Tensor:
    """``x`` with the third pixel of the ``hit`` rows set to ``by`` (a perturbation of that size)."""
    out = x.clone()
    out[:, 0, 1, 0] = torch.where(hit, torch.as_tensor(by, dtype=x.dtype), out[:, 0, 1, 0])
    return out


@dataclass(frozen=True, kw_only=True)
class FakeIdx(Attack):
    """Test attack: breaks the examples whose id (second pixel) is in ``breaks[eps]``."""

    breaks: tuple[tuple[float, tuple[int, ...]], ...] = ()
    fail_on: float = -1.0  # raise when asked for this eps (simulated interruption)
    tag: str = ""

    def run(self, model, x, y, *, eps, generator):
        ids = _ids(x)
        CALLS.append((self.label_hint(), eps, ids.tolist()))
        if eps == self.fail_on:
            raise KeyboardInterrupt
        hit = set()
        for e, idx in self.breaks:
            if e <= eps + 1e-12:
                hit |= set(idx)
        ok = torch.tensor([int(i) in hit for i in ids], dtype=torch.bool)
        return AttackOutput(_moved(x, ok, eps), ok)

    def label_hint(self) -> str:
        return self.tag


@dataclass(frozen=True, kw_only=True)
class FakeMin(Attack):
    """Test minimum-norm attack: example i has norm ``0.125 * (i % 5) + 0.01`` (none when i % 5 == 4)."""

    minimum_norm: ClassVar[bool] = True

    def run(self, model, x, y, *, eps, generator):
        ids = _ids(x).float()
        norms = 0.125 * (ids % 5) + 0.01
        ok = (ids % 5) != 4
        return AttackOutput(_moved(x, ok, norms), ok, torch.where(ok, norms, torch.full_like(norms, float("inf"))))


@pytest.fixture
def fake_attacks(temporary_attacks):
    """``_fake_idx`` and ``_fake_min`` registered for one test (removed afterwards: the contract tests
    over every registered attack never see them), and an empty call log."""
    temporary_attacks("_fake_idx", FakeIdx)
    temporary_attacks("_fake_min", FakeMin)
    CALLS.clear()
    yield CALLS
    CALLS.clear()


def _data(n: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.zeros(n, 1, 2, 2)
    y = torch.arange(n) % 10
    x[:, 0, 0, 0] = y.float() / 10
    x[:, 0, 0, 1] = torch.arange(n).float() / 100
    return x, y


SUITE = """
name = "t"
cascade = {cascade}
[[attacks]]
name = "_fake_idx"
label = "a"
tag = "a"
eps = [0.1, 0.3]
breaks = [[0.1, [0, 1]], [0.3, [2, 3]]]
[[attacks]]
name = "_fake_idx"
label = "b"
tag = "b"
eps = 0.3
breaks = [[0.3, [3, 4, 5]]]
[[attacks]]
name = "_fake_min"
eps = [0.05, 0.15, 0.3]
"""


def _run(tmp: Path, cascade: bool, **kw) -> tuple[list[bool], list]:
    suite = parse_suite(SUITE.format(cascade=str(cascade).lower()))
    x, y = _data()
    ctx = RunContext(suite, ThreatModel("linf", 0.3), 0, kw.pop("batch_size", 8), tmp, {"k": 1}, **kw)
    return run_tasks(Identity(), x, y, ctx)


@pytest.mark.parametrize("cascade", [True, False])
def test_worst_case_by_hand(tmp_path, cascade, fake_attacks):
    clean, parts = _run(tmp_path, cascade)
    rec = build_record(clean, parts, ThreatModel("linf", 0.3))
    rows = {(r["label"], r["eps"]): r for r in rec["attacks"]}
    # hand computation: a breaks {0,1} at 0.1 and {0,1,2,3} at 0.3; b {3,4,5}; min-norm breaks
    # ids with id%5 in {0,1,2,3} at norms 0.01,0.135,0.26,0.385 -> at 0.3 those with id%5 in {0,1,2}
    assert rows[("a", 0.1)]["accuracy"] == 100 * (N - 2) / N
    assert rows[("a", 0.3)]["accuracy"] == 100 * (N - 4) / N
    assert rows[("_fake_min", 0.05)]["accuracy"] == 100 * (N - 4) / N  # ids 0,5,10,15 (norm 0.01)
    assert rows[("_fake_min", 0.15)]["accuracy"] == 100 * (N - 8) / N
    robust_hand = [i for i in range(N) if i % 5 in (3, 4) and i not in (0, 1, 2, 3, 4, 5)]
    assert rec["robust_accuracy"] == 100 * len(robust_hand) / N
    # sweeps: a at 0.3 attacks only its survivors of 0.1
    a03 = [ids for lab, eps, ids in CALLS if eps == 0.3 and lab == "a"]
    assert a03 and all(0 not in ids and 1 not in ids for ids in a03)
    b_ids = [i for lab, eps, ids in CALLS if lab == "b" for i in ids]
    if cascade:  # b only sees points a left robust at 0.3
        assert not set(b_ids) & {0, 1, 2, 3}
        assert rows[("b", 0.3)]["accuracy"] == 100 * (N - 2) / N  # 4, 5 (3 was not attacked: counted robust)
    else:
        assert set(b_ids) == set(range(N))
        assert rows[("b", 0.3)]["accuracy"] == 100 * (N - 3) / N
    assert rows[("b", 0.3)]["worst_case"] == 100 * (N - 6) / N


def test_resume_after_interruption_gives_same_numbers(tmp_path, fake_attacks):
    suite_text = SUITE.format(cascade="true").replace("breaks = [[0.3, [3, 4, 5]]]", "breaks = [[0.3, [3, 4, 5]]]\nfail_on = 0.3")
    x, y = _data()
    ctx = RunContext(parse_suite(suite_text), ThreatModel("linf", 0.3), 0, 8, tmp_path / "r", {"k": 1})
    with pytest.raises(KeyboardInterrupt):
        run_tasks(Identity(), x, y, ctx)
    done = sorted(p.name for p in (tmp_path / "r" / "parts").glob("*.json"))
    assert done == ["000_clean.json", "001_a_linf_0.1.json", "001_a_linf_0.3.json"]
    # resume with the fixed attack: finished parts are read back (the fake attack is not called for them)
    CALLS.clear()
    fixed = parse_suite(SUITE.format(cascade="true"))
    ctx2 = RunContext(fixed, ThreatModel("linf", 0.3), 0, 8, tmp_path / "r", {"k": 1}, resume=True)
    clean, parts = run_tasks(Identity(), x, y, ctx2)
    assert not any(lab == "a" for lab, _, _ in CALLS) and any(lab == "b" for lab, _, _ in CALLS)
    full_clean, full_parts = _run(tmp_path / "u", True)
    a = build_record(clean, parts, ThreatModel("linf", 0.3))
    b = build_record(full_clean, full_parts, ThreatModel("linf", 0.3))
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(a["summary"]) == strip(b["summary"]) and a["robust_accuracy"] == b["robust_accuracy"]
    assert [p.robust for p in parts] == [p.robust for p in full_parts]


def test_resume_with_another_fingerprint_recomputes_and_says_why(tmp_path, caplog, fake_attacks):
    """Parts made with another batch size (e.g. the former CPU default 256) are not reused, and the
    warning names what differs."""
    suite = parse_suite(SUITE.format(cascade="true"))
    x, y = _data()
    run_tasks(Identity(), x, y, RunContext(suite, ThreatModel("linf", 0.3), 0, 8, tmp_path, {"batch_size": 16, "seed": 0}))
    CALLS.clear()
    with caplog.at_level("WARNING", logger="robustbench_lite.evaluations.runner"):
        run_tasks(Identity(), x, y, RunContext(suite, ThreatModel("linf", 0.3), 0, 8, tmp_path,
                                               {"batch_size": 8, "seed": 0}, resume=True))
    assert any(lab == "a" for lab, _, _ in CALLS)  # recomputed
    assert "batch_size 16 (now 8)" in caplog.text and "seed" not in caplog.text


def test_auc_matches_numpy_trapezoid():
    rng = np.random.default_rng(0)
    for _ in range(5):
        eps = np.sort(rng.uniform(0, 1, 6))
        acc = np.sort(rng.uniform(0, 1, 6))[::-1]
        trap = getattr(np, "trapezoid", None) or np.trapz
        ref = trap(acc, eps) / (eps[-1] - eps[0])
        assert normalized_auc(list(eps), list(acc)) == pytest.approx(ref, rel=1e-12)
    assert normalized_auc([0.3], [0.4]) == 0.4


def test_shard_bounds_cover_in_whole_blocks():
    bounds = [shard_bounds(1000, i, 3, 256) for i in range(3)]
    assert bounds[0][0] == 0 and bounds[-1][1] == 1000
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    assert all(s % 256 == 0 for s, _ in bounds)


def test_suite_keys(tmp_path):
    s = parse_suite('[[attacks]]\nname = "pgd"\neps_scale = [1, 0.5]\ncascade = false\n')
    assert s.attacks[0].eps_scale == (0.5, 1.0) and s.attacks[0].cascade is False
    with pytest.raises(BenchError):
        parse_suite('[[attacks]]\nname = "pgd"\neps = 0.1\neps_scale = [1]\n')
    s = parse_suite('surrogates = ["a.pt"]\n[[attacks]]\nname = "pgd"\n')
    assert s.attacks[-1].name == "transfer" and s.attacks[-1].label == "transfer[a]" and s.attacks[-1].cascade is False


@pytest.mark.parametrize("entry,message", [
    ('name = "pgd"\nsteps = 0', "option 'steps' must be a positive integer, got 0"),
    ('name = "pgd"\nsteps = "ten"', "option 'steps' must be a positive integer, got 'ten'"),
    ('name = "pgd"\nsteps = 2.5', "option 'steps' must be a positive integer, got 2.5"),
    ('name = "pgd"\nrestarts = 0', "option 'restarts' must be a positive integer"),
    ('name = "pgd"\nstep_size = 0', "option 'step_size' must be a positive number"),
    ('name = "pgd"\nrandom_start = "gauss"', "option 'random_start' must be one of 'uniform', 'normal', 'none'"),
    ('name = "square"\nn_queries = 0', "option 'n_queries' must be a positive integer"),
    ('name = "mim"\ndecay = -1', "option 'decay' must be a non-negative number"),
    ('name = "cw_l2"\nabort_early = 1', "option 'abort_early' must be a boolean"),
    ('name = "autoattack"\nattacks = [1]', "option 'attacks' must be a list of strings, got [1]"),
])
def test_attack_options_are_type_and_range_checked(entry, message):
    """A suite typo such as steps = 0 would run an attack that does nothing and report clean accuracy
    as robust: it is a clear error instead. Valid edge values still parse."""
    with pytest.raises(BenchError, match=re.escape(message)):
        parse_suite(f"[[attacks]]\n{entry}\n")
    parse_suite('[[attacks]]\nname = "mim"\ndecay = 0\n[[attacks]]\nname = "cw_l2"\nconfidence = 0\n')


SHARD_SUITE = """
name = "shardtest"
cascade = true
checks = true
[[attacks]]
name = "pgd"
steps = 5
eps = [0.05, 0.1]
[[attacks]]
name = "min_linf"
steps = 5
search_steps = 3
eps = [0.05, 0.1]
"""


def _per_example(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_two_shards_merged_equal_unsharded(tmp_path, eval_natural_ckpt):
    suite = tmp_path / "s.toml"
    suite.write_text(SHARD_SUITE)
    base = dict(suite=str(suite), n_examples=40, batch_size=16, check_examples=8, threat="linf:0.1")
    full = evaluate(eval_natural_ckpt, tmp_path / "full", EvalOptions(**base))
    for i in range(2):
        evaluate(eval_natural_ckpt, tmp_path / f"s{i}", EvalOptions(**base, shard=f"{i}/2"))
    shard0 = json.loads((tmp_path / "s0" / "result.json").read_text())
    assert shard0["shard"]["stop"] % 16 == 0 and 0 < shard0["shard"]["stop"] < 40  # whole batches of 16
    merged = merge([tmp_path / "s1", tmp_path / "s0"], tmp_path / "m")
    assert _per_example(tmp_path / "m" / "per_example.csv") == _per_example(tmp_path / "full" / "per_example.csv")
    keys = ("attack", "norm", "eps", "n", "accuracy", "worst_case", "mean_min_norm", "median_min_norm", "forwards", "backwards",
            "silent_success", "no_gradient", "still_improving")
    assert [{k: r.get(k) for k in keys} for r in merged["summary"]] == [{k: r.get(k) for k in keys} for r in full["summary"]]
    for f in sorted((tmp_path / "full" / "parts").glob("0*.json")):  # the attack-path flags per example, joined
        assert (json.loads((tmp_path / "m" / "parts" / f.name).read_text())["part"].get("indicators")
                == json.loads(f.read_text())["part"].get("indicators")), f.name
    assert merged["robust_accuracy"] == full["robust_accuracy"] and merged["indices"] == full["indices"]
    assert [c["passed"] for c in merged["checks"]] == [c["passed"] for c in full["checks"]]
    with pytest.raises(BenchError):
        merge([tmp_path / "s0"], tmp_path / "m2")


def test_channels_last_gives_the_same_result_as_nchw(tmp_path, eval_natural_ckpt):
    """The default channels_last layout changes only the speed: per-example results equal NCHW's."""
    suite = tmp_path / "s.toml"
    suite.write_text(SHARD_SUITE)
    base = dict(suite=str(suite), n_examples=40, batch_size=16, check_examples=8, threat="linf:0.1")
    fast = evaluate(eval_natural_ckpt, tmp_path / "nhwc", EvalOptions(**base))
    slow = evaluate(eval_natural_ckpt, tmp_path / "nchw", EvalOptions(**base, channels_last=False))
    assert fast["memory_format"] == "channels_last" and slow["memory_format"] == "contiguous"
    assert _per_example(tmp_path / "nhwc" / "per_example.csv") == _per_example(tmp_path / "nchw" / "per_example.csv")
    assert fast["robust_accuracy"] == slow["robust_accuracy"]


class FlattenByView(nn.Module):
    """A user's model whose ``.view`` on the feature map needs NCHW memory."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 28 * 28, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x))
        return self.fc(h.view(h.size(0), -1))


def test_model_that_cannot_run_channels_last_falls_back_to_nchw(tmp_path):
    from robustbench_lite.evaluations.evaluate import evaluate_loaded
    from robustbench_lite.checkpoint import Checkpoint

    torch.manual_seed(0)
    model = FlattenByView().eval()
    probe = torch.rand(2, 1, 28, 28)
    model.to(memory_format=torch.channels_last)
    with pytest.raises(RuntimeError):  # the premise: this model breaks in channels_last
        model(probe)
    model.to(memory_format=torch.contiguous_format)
    ckpt = Checkpoint(model=model, arch="custom", arch_kwargs={}, dataset="mnist5k", num_classes=10,
                      input_shape=(1, 28, 28), threat=None, defense="unknown")
    suite = tmp_path / "s.toml"
    suite.write_text(SHARD_SUITE)
    rec = evaluate_loaded(ckpt, parse_suite(suite.read_text()), tmp_path / "out",
                          EvalOptions(suite=str(suite), n_examples=16, batch_size=16, check_examples=8,
                                      threat="linf:0.1"))
    assert rec["memory_format"] == "contiguous" and rec["n"] == 16


def test_default_batch_size_is_128_on_a_cpu_and_recorded(tmp_path):
    """No --batch-size: the CPU default (128) is what runs, and result.json and the fingerprint say so."""
    from robustbench_lite.evaluations.evaluate import evaluate_loaded
    from robustbench_lite.checkpoint import Checkpoint
    from robustbench_lite.utils import default_batch_size

    assert default_batch_size(torch.device("cpu")) == 128 and default_batch_size(torch.device("cuda")) == 256
    torch.manual_seed(0)
    ckpt = Checkpoint(model=FlattenByView().eval(), arch="custom", arch_kwargs={}, dataset="mnist5k", num_classes=10,
                      input_shape=(1, 28, 28), threat=None, defense="unknown")
    suite = tmp_path / "s.toml"
    suite.write_text(SHARD_SUITE)
    rec = evaluate_loaded(ckpt, parse_suite(suite.read_text()), tmp_path / "out",
                          EvalOptions(suite=str(suite), n_examples=16, check_examples=8, device="cpu",
                                      threat="linf:0.1"))
    assert rec["batch_size"] == 128
    part = json.loads(next((tmp_path / "out" / "parts").glob("*.json")).read_text())
    assert part["fingerprint"]["batch_size"] == 128


def test_fake_attacks_are_registered_only_inside_their_fixture(request):
    """Outside the fixture the fakes are not in the global registry (in file order this runs after the
    tests that used it, so it checks the teardown); inside it they resolve to the test's classes."""
    assert "_fake_idx" not in ATTACKS and "_fake_min" not in ATTACKS
    request.getfixturevalue("fake_attacks")
    assert ATTACKS.get("_fake_idx") is FakeIdx and FakeIdx.name == "_fake_idx" and ATTACKS.get("_fake_min") is FakeMin


def test_a_block_out_of_memory_runs_in_halves_with_a_note(monkeypatch):
    """The front door halves a block on out-of-memory (as on a GPU), keeps every point's verdict and says so."""
    from robustbench_lite.evaluations.attacks import create_attack

    attack = create_attack("fgsm")
    real = type(attack).run

    def run(self, model, x, y, *, eps, generator):  # type: ignore[no-untyped-def]
        if len(x) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(self, model, x, y, eps=eps, generator=generator)

    monkeypatch.setattr(type(attack), "run", run)
    w = torch.zeros(2, 4)
    w[0, 0], w[1, 0] = -1.0, 1.0
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    model[1].weight.data, model[1].bias.data = w, torch.tensor([0.5, -0.5])  # class 1 iff x[0] > 0.5
    x = torch.rand(8, 1, 2, 2)
    y = (x.flatten(1)[:, 0] > 0.5).long()
    out = attack(model, x, y, eps=0.1, batch_size=8, progress=False)
    margin = (x.flatten(1)[:, 0] - 0.5).abs()
    assert torch.equal(out.success, margin < 0.1)  # closed form: FGSM moves coordinate 0 by eps
    assert out.notes and "run in halves of 4 and 4" in out.notes[0] and any("halves of 2 and 2" in n for n in out.notes)


def _threshold_model():  # type: ignore[no-untyped-def]
    """Class 1 iff x[0] > 0.5: FGSM at eps breaks exactly the points with |x[0] - 0.5| < eps."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    w = torch.zeros(2, 4)
    w[0, 0], w[1, 0] = -1.0, 1.0
    model[1].weight.data, model[1].bias.data = w, torch.tensor([0.5, -0.5])
    return model


def test_front_door_sweep_is_in_the_order_asked_and_keeps_smaller_ball_adversarials():
    from robustbench_lite.evaluations.attacks import create_attack

    model = _threshold_model()
    x = torch.rand(40, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    y = (x.flatten(1)[:, 0] > 0.5).long()
    margin = (x.flatten(1)[:, 0] - 0.5).abs()
    outs = create_attack("fgsm")(model, x, y, eps=[0.3, 0.1, 0.2], batch_size=16, progress=False)
    for out, eps in zip(outs, (0.3, 0.1, 0.2)):
        assert torch.equal(out.success, margin < eps)  # closed form, in the order asked
    small, mid = outs[1], outs[2]
    kept = small.success
    assert torch.equal(mid.x_adv[kept], small.x_adv[kept])  # broken at 0.1: not attacked again at 0.2


def test_front_door_blocks_are_seeded_by_position_not_by_the_call():
    from robustbench_lite.evaluations.attacks import create_attack

    model = _threshold_model()
    x = torch.rand(30, 1, 2, 2, generator=torch.Generator().manual_seed(1))
    y = (x.flatten(1)[:, 0] > 0.5).long()
    pgd = create_attack("pgd", steps=3)  # uniform random start: the draws matter
    sub = torch.tensor([3, 9, 10, 17, 29])
    part = pgd(model, x[sub], y[sub], eps=0.05, batch_size=8, seed=7, positions=sub, progress=False)
    # the same blocks inside a bigger call (another block added, as another process or shard would see it)
    more = torch.cat([sub, torch.tensor([40, 41])])
    xm, ym = torch.cat([x[sub], x[:2]]), torch.cat([y[sub], y[:2]])
    bigger = pgd(model, xm, ym, eps=0.05, batch_size=8, seed=7, positions=more, progress=False)
    assert torch.equal(bigger.x_adv[:5], part.x_adv) and torch.equal(bigger.success[:5], part.success)
    other = pgd(model, x[sub], y[sub], eps=0.05, batch_size=8, seed=7, progress=False)  # as positions 0..4: one block
    assert not torch.equal(other.x_adv, part.x_adv)
