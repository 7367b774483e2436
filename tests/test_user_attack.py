"""A user's own attack class named in a suite (``file.py:Class``): it runs through the front door,
the cascade, resume and shards like ours, and bad references are one-sentence errors."""
from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest
import torch

from robustbench_lite.errors import BenchError
from robustbench_lite.evaluations.attacks import ATTACKS
from robustbench_lite.evaluations.suite import parse_suite

ATTACK_FILE = '''
from dataclasses import dataclass
import torch
from robustbench_lite.evaluations.attacks import Attack, AttackOutput

CALLS = []

@dataclass(frozen=True, kw_only=True)
class SignStep(Attack):
    """One FGSM step of size eps (the user's own attack; it writes only run)."""
    scale: float = 1.0

    def run(self, model, x, y, *, eps, generator):
        CALLS.append(len(x))
        xg = x.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(xg), y)
        g, = torch.autograd.grad(loss, xg)
        noise = 0 * torch.rand(x.shape, generator=generator)
        x_adv = (x + self.scale * eps * g.sign() + noise).clamp(x - eps, x + eps).clamp(0, 1)
        with torch.no_grad():
            return AttackOutput(x_adv, model(x_adv).argmax(1) != y)

class NotAnAttack:
    pass
'''


@pytest.fixture
def attack_file(tmp_path):
    p = tmp_path / "my_attack.py"
    p.write_text(ATTACK_FILE)
    yield p
    for name in [n for n in ATTACKS.names() if n.startswith(str(p))]:
        ATTACKS.unregister(name)


def _suite(path: Path, cascade: bool = True) -> str:
    return textwrap.dedent(f'''
        name = "user"
        cascade = {str(cascade).lower()}
        [[attacks]]
        name = "pgd"
        steps = 2
        [[attacks]]
        name = "{path}:SignStep"
        label = "mine"
        scale = 0.5
    ''')


def test_user_attack_loads_and_bad_references_are_one_sentence(attack_file, tmp_path) -> None:
    suite = parse_suite(_suite(attack_file))
    spec = suite.attacks[1]
    assert spec.attack.scale == 0.5 and spec.attack.name == f"{attack_file}:SignStep"
    assert ATTACKS.get(spec.name) is type(spec.attack)
    with pytest.raises(BenchError, match="has no option steps"):
        parse_suite(_suite(attack_file).replace("scale = 0.5", "steps = 3"))
    with pytest.raises(BenchError, match="not a subclass"):
        parse_suite(_suite(attack_file).replace(":SignStep", ":NotAnAttack"))
    with pytest.raises(BenchError, match="'Missing' in .* is nothing, not an Attack class"):
        parse_suite(_suite(attack_file).replace(":SignStep", ":Missing"))
    with pytest.raises(BenchError, match="does not exist"):
        parse_suite(_suite(tmp_path / "none.py"))
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(BenchError, match="failed: RuntimeError: boom"):
        parse_suite(_suite(broken))
    with pytest.raises(BenchError, match="cannot import"):
        parse_suite(_suite(attack_file).replace(str(attack_file), "no_such_pkg.mod"))
    # the file's content is part of the suite's hash: an edited attack never reuses old parts
    h1 = suite.hash
    attack_file.write_text(ATTACK_FILE + "\n# edited\n")
    assert parse_suite(_suite(attack_file)).hash != h1


@pytest.mark.slow
def test_user_attack_runs_through_a_suite_resumed_and_sharded(attack_file, tmp_path, eval_natural_ckpt) -> None:
    from robustbench_lite.checkpoint import load_checkpoint
    from robustbench_lite.evaluations.evaluate import EvalOptions, evaluate_loaded, merge

    ckpt = load_checkpoint(eval_natural_ckpt)
    suite = parse_suite(_suite(attack_file, cascade=False))
    # 140 points: two canonical blocks of 128 (a user attack is not row-keyed), so two shards each get one
    opts = EvalOptions(n_examples=140, batch_size=8, threat="linf:0.1", check_examples=8)
    whole = evaluate_loaded(ckpt, suite, tmp_path / "whole", opts)
    rows = {r["label"]: r for r in whole["attacks"]}
    assert rows["mine"]["attack"] == f"{attack_file}:SignStep" and rows["mine"]["kind"] == "white-box"
    assert rows["mine"]["attacked"] > 0 and rows["mine"]["forwards"] > 0 and rows["mine"]["backwards"] > 0
    # the indicators watched its path like any attack's
    assert rows["mine"]["silent_success"] is not None
    # an independent check of its verdict: one signed step of 0.5 eps, then the front door's robust count
    from robustbench_lite.data import class_balanced_indices, get_dataset

    d = get_dataset("mnist5k").load("test")
    x, y = d.batch(class_balanced_indices(d.targets, 140))
    model = ckpt.model.eval()
    xg = x.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(model(xg), y, reduction="none")
    g = torch.autograd.grad(loss.sum(), xg)[0]
    with torch.no_grad():
        clean = model(x).argmax(1) == y
        xa = (x + 0.05 * g.sign()).clamp(x - 0.1, x + 0.1).clamp(0, 1)
        ref = clean & (model(xa).argmax(1) == y)
    assert rows["mine"]["accuracy"] == pytest.approx(100 * float(ref.float().mean()), abs=100 / 140 + 0.01)
    # resumed: nothing re-runs, the same numbers
    import sys

    mod = next(m for m in sys.modules.values() if getattr(m, "__file__", None) == str(attack_file.resolve()))
    mod.CALLS.clear()
    again = evaluate_loaded(ckpt, suite, tmp_path / "whole", dataclasses.replace(opts, resume=True))
    assert mod.CALLS == [] and again["robust_accuracy"] == whole["robust_accuracy"]
    # sharded and merged: the unsharded run's per-example results
    for i in range(2):
        evaluate_loaded(ckpt, suite, tmp_path / f"s{i}", dataclasses.replace(opts, shard=f"{i}/2"))
    merged = merge([tmp_path / "s1", tmp_path / "s0"], tmp_path / "merged")
    assert merged["robust_accuracy"] == whole["robust_accuracy"]
    per_whole = (tmp_path / "whole" / "per_example.csv").read_text()
    assert (tmp_path / "merged" / "per_example.csv").read_text() == per_whole


@pytest.mark.slow
def test_cli_bad_adaptive_options_are_one_sentence(tmp_path, capsys, eval_natural_ckpt) -> None:
    """``bench eval`` with a boundary the model lacks, a bad --eot, or a suite naming a missing
    attack file: exit 2, one sentence, no traceback, nothing written."""
    from robustbench_lite.cli import main

    def run(*argv: str) -> tuple[int, str]:
        code = main(["eval", "--model", str(eval_natural_ckpt), "--n-examples", "4", "--no-db", *argv])
        return code, capsys.readouterr().err

    code, err = run("--bpda", "no.such.module", "--out", str(tmp_path / "a"))
    assert code == 2 and "Traceback" not in err and "no submodule 'no.such.module'" in err, err
    assert not (tmp_path / "a" / "result.json").exists()
    with pytest.raises(SystemExit):
        run("--eot", "0")
    suite = tmp_path / "s.toml"
    suite.write_text(f'name = "s"\n[[attacks]]\nname = "{tmp_path}/missing.py:X"\n')
    code, err = run("--suite", str(suite), "--out", str(tmp_path / "b"))
    assert code == 2 and "does not exist" in err and "Traceback" not in err, err
