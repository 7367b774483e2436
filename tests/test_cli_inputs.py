"""A hostile user's inputs (issue 19, part C), one family per test: commands never write over their own
inputs or another run's outputs; --arch forms that cannot build a model, --member on a plain
state_dict, recipe options outside their ranges, train --resume without a run and demo plans are
refused up front in one sentence (exit 2, no traceback), with nothing already written changed.
benchmarks/probe_cli.py runs the same families (and more) as a script."""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import pytest
import torch

from robustbench_lite.errors import BenchError
import functools

from eval_helpers import one_clear_error, run_cli

SUITE = 'name = "tiny"\ncascade = false\n[[attacks]]\nname = "pgd"\nsteps = 2\n'


_run = run_cli


_one_clear_error = functools.partial(one_clear_error, strict=False)


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def evals(tmp_path_factory, synthetic_ckpt):
    """A tiny suite, a second checkpoint (other weights), one finished evaluation and two shards of it."""
    from robustbench_lite.evaluations.evaluate import EvalOptions, evaluate

    root = tmp_path_factory.mktemp("evals")
    suite = root / "tiny.toml"
    suite.write_text(SUITE)
    other = root / "other" / "checkpoint.pt"
    other.parent.mkdir()
    obj = torch.load(synthetic_ckpt, weights_only=False)
    obj["members"]["model"] = {k: v + 0.01 for k, v in obj["members"]["model"].items()}
    torch.save(obj, other)
    opts = dict(suite=suite, n_examples=16, device="cpu", batch_size=8)
    evaluate(synthetic_ckpt, root / "eval", EvalOptions(**opts))
    for i in range(2):
        evaluate(synthetic_ckpt, root / f"shard{i}", EvalOptions(**opts, shard=f"{i}/2"))
    return {"root": root, "suite": suite, "ckpt": synthetic_ckpt, "other": other}


def _copy(evals, name, tmp_path):
    dst = tmp_path / name
    shutil.copytree(evals["root"] / name, dst)
    return dst


# -- merge: never over (or inside, or around) its inputs ----------------------------------------------

@pytest.mark.parametrize("where", ["first", "second", "inside", "parent"])
def test_merge_refuses_an_out_that_is_inside_or_contains_a_shard(capsys, tmp_path, evals, where):
    s0, s1 = _copy(evals, "shard0", tmp_path), _copy(evals, "shard1", tmp_path)
    out = {"first": s0, "second": s1, "inside": s0 / "merged", "parent": tmp_path}[where]
    before = _hashes(tmp_path)
    code, _, err = _run(capsys, "merge", s0, s1, "--out", out)
    _one_clear_error(code, err, "--out", "shard folder")
    assert _hashes(tmp_path) == before


@pytest.mark.slow
def test_merge_refuses_a_folder_of_another_run_but_merges_the_same_run_again(capsys, tmp_path, evals):
    s0, s1 = _copy(evals, "shard0", tmp_path), _copy(evals, "shard1", tmp_path)
    other = tmp_path / "other_eval"
    from robustbench_lite.evaluations.evaluate import EvalOptions, evaluate

    evaluate(evals["other"], other, EvalOptions(suite=evals["suite"], n_examples=16, device="cpu", batch_size=8))
    before = _hashes(other)
    code, _, err = _run(capsys, "merge", s0, s1, "--out", other)
    _one_clear_error(code, err, "already holds", "another run", "new --out")
    assert _hashes(other) == before
    # the merge of the same shards again (or into the unsharded run's own folder): the same numbers
    assert _run(capsys, "merge", s0, s1, "--out", tmp_path / "m")[0] == 0
    first = json.loads((tmp_path / "m" / "result.json").read_text())
    assert _run(capsys, "merge", s0, s1, "--out", tmp_path / "m")[0] == 0
    again = json.loads((tmp_path / "m" / "result.json").read_text())
    assert first["robust_accuracy"] == again["robust_accuracy"]
    same = _copy(evals, "eval", tmp_path)
    assert _run(capsys, "merge", s0, s1, "--out", same)[0] == 0
    assert (same / "per_example.csv").read_text() == (evals["root"] / "eval" / "per_example.csv").read_text()


@pytest.mark.parametrize("damage", ["result", "part"])
def test_merge_of_a_damaged_shard_is_one_sentence(capsys, tmp_path, evals, damage):
    s0, s1 = _copy(evals, "shard0", tmp_path), _copy(evals, "shard1", tmp_path)
    target = s0 / "result.json" if damage == "result" else next(iter(sorted((s1 / "parts").glob("*.json"))))
    target.write_text("{ not json")
    code, _, err = _run(capsys, "merge", s0, s1, "--out", tmp_path / "m")
    _one_clear_error(code, err, "damaged")


# -- eval: another run's folder needs --resume of the same run, or a new --out ---------------------------

def _eval_args(evals, model, out, *more):
    return ["eval", "--model", model, "--suite", evals["suite"], "--n-examples", "16", "--batch-size", "8",
            "--device", "cpu", "--no-db", "--no-progress", "--out", out, *more]


def test_eval_into_another_checkpoints_folder_is_refused_and_nothing_changes(capsys, tmp_path, evals):
    ev = _copy(evals, "eval", tmp_path)
    before = _hashes(ev)
    code, _, err = _run(capsys, *_eval_args(evals, evals["other"], ev))
    _one_clear_error(code, err, "already holds the evaluation of", "--resume", "new --out")
    code, _, err = _run(capsys, *_eval_args(evals, evals["other"], ev, "--resume"))
    _one_clear_error(code, err, "another run", "another checkpoint", "new --out")
    assert _hashes(ev) == before


@pytest.mark.parametrize("change,needle", [(["--seed", "3"], "seed 0 (now 3)"), (["--batch-size", "4"], "batch_size 8 (now 4)"),
                                           (["--threat", "linf:0.1"], "another threat")])
def test_eval_resume_continues_only_the_same_run(capsys, tmp_path, evals, change, needle):
    ev = _copy(evals, "eval", tmp_path)
    before = _hashes(ev)
    args = _eval_args(evals, evals["ckpt"], ev, "--resume")
    for i in range(0, len(change), 2):  # replace the flag's value (or add it)
        if change[i] in args:
            args[args.index(change[i]) + 1] = change[i + 1]
        else:
            args += change[i:i + 2]
    code, _, err = _run(capsys, *args)
    _one_clear_error(code, err, needle, "same run")
    assert _hashes(ev) == before


def test_eval_of_the_same_run_needs_resume_and_then_reuses_every_part(capsys, tmp_path, evals):
    ev = _copy(evals, "eval", tmp_path)
    before = _hashes(ev)
    code, _, err = _run(capsys, *_eval_args(evals, evals["ckpt"], ev))
    _one_clear_error(code, err, "already holds", "pass --resume")
    assert _hashes(ev) == before
    parts = {p.name: p.read_bytes() for p in (ev / "parts").glob("*.json")}
    assert _run(capsys, *_eval_args(evals, evals["ckpt"], ev, "--resume"))[0] == 0
    assert {p.name: p.read_bytes() for p in (ev / "parts").glob("*.json")} == parts  # reused, not recomputed


def test_a_stale_part_of_another_run_is_never_mixed_in(capsys, tmp_path, evals):
    """A folder where one part (say from an older run of another suite) has another fingerprint: --resume
    refuses it rather than reusing the rest beside it."""
    ev = _copy(evals, "eval", tmp_path)
    stale = ev / "parts" / "009_other_linf_0.3.json"
    d = json.loads(next((ev / "parts").glob("*pgd*.json")).read_text())
    d["fingerprint"]["suite"] = "another-suite-hash"
    stale.write_text(json.dumps(d))
    code, _, err = _run(capsys, *_eval_args(evals, evals["ckpt"], ev, "--resume"))
    _one_clear_error(code, err, stale.name, "another suite")


def test_the_python_api_keeps_the_same_rule(tmp_path, evals):
    from robustbench_lite.evaluations.evaluate import EvalOptions, evaluate

    ev = _copy(evals, "eval", tmp_path)
    with pytest.raises(BenchError, match="already holds"):
        evaluate(evals["other"], ev, EvalOptions(suite=evals["suite"], n_examples=16, device="cpu", batch_size=8))


@pytest.mark.parametrize("flag", ["--out", "--model", "--suite", "--arch", "--member", "--threat", "--dataset"])
def test_eval_empty_values_are_refused(capsys, tmp_path, evals, flag):
    args = _eval_args(evals, evals["ckpt"], tmp_path / "e")
    if flag in args:
        args[args.index(flag) + 1] = ""
    else:
        args += [flag, ""]
    code, _, err = _run(capsys, *args)
    _one_clear_error(code, err, f"{flag} is empty")
    assert not (tmp_path / "e").exists()


# -- transfer / analyze ---------------------------------------------------------------------------------

def test_transfer_refuses_a_folder_holding_another_matrix(capsys, tmp_path, evals):
    out = tmp_path / "t"
    out.mkdir()
    (out / "transfer.json").write_text(json.dumps({"rows": [{"surrogate": "a.pt", "target": "b.pt"}]}))
    before = _hashes(out)
    code, _, err = _run(capsys, "transfer", "--surrogates", evals["ckpt"], "--targets", evals["other"], "--out", out)
    _one_clear_error(code, err, "transfer matrix of other checkpoints")
    assert _hashes(out) == before


def test_analyze_reads_the_reference_before_minutes_of_work(capsys, tmp_path, evals):
    t0 = time.perf_counter()
    code, _, err = _run(capsys, "analyze", "--model", evals["ckpt"], "--reference", tmp_path / "nosuch.pt",
                        "--out", tmp_path / "a")
    _one_clear_error(code, err, "nosuch.pt")
    assert time.perf_counter() - t0 < 30


# -- --arch and --member ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    from robustbench_lite.models import create_model

    root = tmp_path_factory.mktemp("plain")
    torch.save(create_model("small_cnn", num_classes=10, in_channels=1).state_dict(), root / "plain.pt")
    (root / "broken.py").write_text("def net(:\n")
    (root / "raising.py").write_text("raise RuntimeError('import-time failure')\n")
    (root / "mine.py").write_text("import torch\nclass NotAModule:\n    pass\n"
                                  "def needs_args(width, depth):\n    return torch.nn.Linear(width, depth)\nVALUE = 3\n")
    (root / "folder.py").mkdir()
    return root


ARCHES = {
    "torch.nn:Linear": ["torch.nn:Linear", "could not build a model", "TypeError"],
    "torch:zeros": ["torch:zeros", "could not build a model"],
    "needs_args": ["{root}/mine.py:needs_args", "could not build a model", "needs_args"],
    "not a module class": ["{root}/mine.py:NotAModule", "not a torch nn.Module"],
    "an int": ["{root}/mine.py:VALUE", "an int, not a class or function"],
    "a float": ["math:pi", "a float, not a class or function"],
    "missing attribute": ["torch.nn:NoSuchLayer", "is nothing"],
    "empty module": [":Linear", "must name a module and a callable"],
    "empty attribute": ["torch.nn:", "must name a module and a callable"],
    "missing module": ["nosuchmodule_xyz:f", "cannot import"],
    "missing file": ["{root}/nosuch.py:f", "does not exist"],
    "folder.py": ["{root}/folder.py:f", "is a folder"],
    "syntax error": ["{root}/broken.py:net", "syntax error at line 1"],
    "raises on import": ["{root}/raising.py:net", "RuntimeError: import-time failure"],
    "returns a str": ["os:getcwd", "returned str"],
}


@pytest.mark.parametrize("case", list(ARCHES))
def test_bad_arch_forms_are_one_sentence(capsys, tmp_path, plain, case):
    spec, *needles = ARCHES[case]
    spec = spec.format(root=plain)
    code, _, err = _run(capsys, "eval", "--model", plain / "plain.pt", "--arch", spec, "--dataset", "synthetic",
                        "--no-db", "--out", tmp_path / "e")
    _one_clear_error(code, err, *needles)
    assert not (tmp_path / "e").exists()


def test_arch_file_that_fails_leaves_no_module_behind(plain):
    from robustbench_lite.models import build_external

    with pytest.raises(BenchError):
        build_external(f"{plain}/raising.py:net", num_classes=10)
    assert "raising" not in sys.modules


def test_member_on_a_plain_state_dict_is_an_error(capsys, tmp_path, plain):
    from robustbench_lite.checkpoint import load_checkpoint

    with pytest.raises(BenchError, match="plain state_dict holding one network; --member 'natural'"):
        load_checkpoint(plain / "plain.pt", arch="small_cnn", dataset="synthetic", member="natural")
    assert load_checkpoint(plain / "plain.pt", arch="small_cnn", dataset="synthetic").member == "model"
    code, _, err = _run(capsys, "eval", "--model", plain / "plain.pt", "--arch", "small_cnn", "--dataset", "synthetic",
                        "--member", "model", "--no-db", "--out", tmp_path / "e")
    _one_clear_error(code, err, "--member 'model'", "leave it out")


# -- recipe options: every rule of every recipe, before any training -------------------------------------

def _recipes():
    from robustbench_lite.defenses import DEFENSES

    return {name: DEFENSES.get(name) for name in DEFENSES.names()}


def _bad_values(rule):
    from robustbench_lite.defenses.options import Choice, Range

    if isinstance(rule, Choice):
        return ["nosuch"]
    out = []
    if rule.low is not None:
        out.append(rule.low if rule.open_low else rule.low - 1)
    if rule.high is not None:
        out.append(rule.high if rule.open_high else rule.high + 1)
    assert isinstance(rule, Range) and out, rule
    return [v for v in out if v not in rule.also]


def test_every_numeric_or_named_option_has_a_rule():
    """An option that is a number or a name must declare its range or its choices (paths and flags need none)."""
    for name, cls in _recipes().items():
        for k, default in cls.option_defaults.items():
            if isinstance(default, bool) or k == "init":
                continue
            assert k in cls.option_rules, f"{name} option {k} has no rule"
        assert set(cls.option_rules) <= set(cls.option_defaults), name


def _option_cases():
    cases = []
    for name, cls in _recipes().items():
        for k, rule in cls.option_rules.items():
            for v in _bad_values(rule):
                cases.append((name, k, v))
    return cases


@pytest.mark.parametrize("defense,key,value", _option_cases())
def test_every_option_outside_its_rule_is_refused(defense, key, value):
    from robustbench_lite.defenses.options import check_options

    cls = _recipes()[defense]
    with pytest.raises(BenchError, match=rf"option {key} must be .*got {value!r}"):
        check_options(defense, {key: value}, cls.option_defaults, cls.option_rules)
    check_options(defense, {key: cls.option_defaults[key]}, cls.option_defaults, cls.option_rules)  # the default passes


def test_every_preset_passes_its_rules():
    import tomllib

    from robustbench_lite.defenses.options import check_options
    from robustbench_lite.defenses.presets import PRESETS_DIR

    for name, cls in _recipes().items():
        for table, body in tomllib.loads((PRESETS_DIR / f"{name}.toml").read_text()).items():
            check_options(name, body.get("options", {}), cls.option_defaults, cls.option_rules)


@pytest.mark.parametrize("defense,option,needle", [
    ("trades", "beta=-6", "option beta must be >= 0, got -6"),
    ("act", "alpha=5", "option alpha must be in [0, 1], got 5"),
    ("act", "temperature=0", "option temperature must be > 0"),
    ("afd", "lr_features=-1", "option lr_features must be > 0"),
    ("arrest", "phi=200", "option phi must be in [0, 90]"),
    ("trades", "beta=NaN", "option beta must be a number, got nan"),
])
def test_train_refuses_bad_options_before_training(capsys, tmp_path, defense, option, needle):
    t0 = time.perf_counter()
    code, _, err = _run(capsys, "train", "--defense", defense, "--dataset", "synthetic", "--preset", "mnist5k",
                        "--epochs", "7", "--no-progress", "--option", option, "--out", tmp_path / "r")
    _one_clear_error(code, err, needle)
    assert not (tmp_path / "r" / "checkpoint.pt").exists() and time.perf_counter() - t0 < 30


# -- train / demo: up front ----------------------------------------------------------------------------

def test_train_resume_without_a_run_is_an_error(capsys, tmp_path):
    code, _, err = _run(capsys, "train", "--defense", "natural", "--dataset", "synthetic", "--preset", "mnist5k",
                        "--epochs", "1", "--no-progress", "--resume", "--out", tmp_path / "r")
    _one_clear_error(code, err, "--resume", "no run to continue")
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_train_seeds_check_every_folder_before_the_first_trains(capsys, tmp_path, synthetic_ckpt):
    (tmp_path / "r" / "seed2").mkdir(parents=True)
    shutil.copy(synthetic_ckpt, tmp_path / "r" / "seed2" / "checkpoint.pt")
    base = ["train", "--defense", "natural", "--dataset", "synthetic", "--preset", "mnist5k", "--epochs", "1",
            "--no-progress", "--out", tmp_path / "r", "--seeds"]
    code, _, err = _run(capsys, *base, "1", "2")
    _one_clear_error(code, err, "seed2/checkpoint.pt already exists")
    assert not (tmp_path / "r" / "seed1").exists()
    _one_clear_error(*_run(capsys, *base, "1", "1")[::2], "lists a seed twice")


def test_demo_validates_its_plan_before_training(capsys, tmp_path):
    t0 = time.perf_counter()
    for args, needle in ((["--suite", "nosuch"], "unknown suite 'nosuch'"),
                         (["--defenses", "natural", "natural"], "lists a recipe twice"),
                         (["--defenses", "nosuch"], "unknown defense 'nosuch'")):
        code, _, err = _run(capsys, "demo", "--out", tmp_path / "d", "--no-progress", *args)
        _one_clear_error(code, err, needle)
    assert time.perf_counter() - t0 < 30 and not (tmp_path / "d" / "natural").exists()


def test_demo_never_deletes_an_earlier_run(capsys, tmp_path, synthetic_ckpt):
    run = tmp_path / "d" / "natural"
    run.mkdir(parents=True)
    shutil.copy(synthetic_ckpt, run / "checkpoint.pt")
    before = _hashes(tmp_path / "d")
    code, _, err = _run(capsys, "demo", "--defenses", "natural", "--out", tmp_path / "d", "--no-progress")
    _one_clear_error(code, err, "earlier demo", "--resume")
    assert _hashes(tmp_path / "d") == before


@pytest.mark.parametrize("change,needle", [(["--seed", "1"], "seed 0 (now 1)"), (["--weight-decay", "0.1"], "weight_decay 0.0 (now 0.1)"),
                                           (["--batch-size", "8"], "batch_size 16 (now 8)")])
def test_train_resume_continues_only_the_same_run(capsys, tmp_path, synthetic_ckpt, change, needle):
    """synthetic_ckpt: natural, mnist5k preset (weight decay 0), batch 16, seed 0, 8 epochs."""
    run = tmp_path / "r"
    run.mkdir()
    shutil.copy(synthetic_ckpt, run / "checkpoint.pt")
    before = _hashes(run)
    code, _, err = _run(capsys, "train", "--defense", "natural", "--dataset", "synthetic", "--preset", "mnist5k",
                        "--batch-size", "16", "--epochs", "9", "--no-progress", "--resume", "--out", run, *change)
    _one_clear_error(code, err, "continues only the same run", needle)
    assert _hashes(run) == before


@pytest.mark.slow
def test_eval_of_another_member_gets_its_own_default_folder(capsys, tmp_path, synthetic_ckpt):
    """`bench eval --model act.pt` then `--member natural` (the README's ACT workflow) must not meet in one folder."""
    obj = torch.load(synthetic_ckpt, weights_only=False)
    obj["members"]["natural"] = {k: v.clone() for k, v in obj["members"]["model"].items()}
    run = tmp_path / "act"
    run.mkdir()
    torch.save(obj, run / "checkpoint.pt")
    (tmp_path / "tiny.toml").write_text(SUITE)
    args = ["eval", "--model", run / "checkpoint.pt", "--suite", tmp_path / "tiny.toml", "--n-examples", "8",
            "--device", "cpu", "--no-db", "--no-progress"]
    assert _run(capsys, *args)[0] == 0
    assert _run(capsys, *args, "--member", "natural")[0] == 0
    assert json.loads((run / "eval-tiny" / "result.json").read_text())["checkpoint"]["member"] == "model"
    assert json.loads((run / "eval-tiny-natural" / "result.json").read_text())["checkpoint"]["member"] == "natural"


@pytest.mark.parametrize("argv", [
    ["train", "--defense", "natural", "--dataset", "synthetic", "--preset", "mnist5k", "--epochs", "1", "--no-progress"],
    ["train", "--defense", "natural", "--dataset", "synthetic", "--preset", "mnist5k", "--epochs", "1", "--no-progress",
     "--seeds", "1", "2"],
    ["analyze", "--model", "m.pt"],
    ["demo", "--defenses", "natural", "--no-progress"],
    ["merge", "a", "b"],
    ["transfer", "--surrogates", "m.pt", "--targets", "m.pt"],
], ids=["train", "train-seeds", "analyze", "demo", "merge", "transfer"])
def test_an_empty_out_is_refused_and_nothing_lands_in_the_working_folder(capsys, tmp_path, monkeypatch, argv):
    """`--out ""` was read as the working folder by train (a checkpoint.pt and log.csv appeared there)."""
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(capsys, *argv, "--out", "")
    _one_clear_error(code, err, "--out is empty")
    assert list(tmp_path.iterdir()) == []
