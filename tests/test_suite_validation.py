"""Suite files are validated like the CLI (issue #19, part A): each mistake one sentence, before any
work; a suite with no attack at the evaluation's threat is refused, naming the threats it has."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from robustbench_lite.cli import main
from robustbench_lite.data import get_dataset
from robustbench_lite.errors import BenchError
from robustbench_lite.evaluations.suite import check_suite_threat, entry_radii, load_suite, parse_suite, suite_names
from robustbench_lite.threat import ThreatModel

PGD = '[[attacks]]\nname = "pgd"\nsteps = 2\n'


def _refused(text: str, *needles: str) -> str:
    with pytest.raises(BenchError) as info:
        parse_suite(text)
    msg = str(info.value)
    assert "\n" not in msg and msg.endswith("."), msg
    for needle in needles:
        assert needle in msg, msg
    return msg


# -- radii ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("entry,needle", [
    ('eps = []', "empty"), ('eps_scale = []', "empty"),
    ('eps = "0"', "only radius 0"), ('eps = 0', "only radius 0"), ('eps = ["0", "0/255"]', "only radius 0"),
    ('eps_scale = [0]', "only radius 0"), ('eps_scale = 0', "only radius 0"), ('eps_scale = [0.0, 0]', "only radius 0"),
    ('eps = true', "radii"), ('eps = [["0.1"]]', "radii"), ('eps = "abc"', "epsilon"), ('eps = "-0.1"', "epsilon"),
    ('eps = "nan"', "epsilon"), ('eps_scale = "1"', "non-negative numbers"), ('eps_scale = [true]', "non-negative numbers"),
    ('eps_scale = [-1]', "non-negative numbers"), ('eps_scale = [inf]', "non-negative numbers"),
    ('eps = "0.1"\neps_scale = [1]', "not both"),
])
def test_radius_lists_that_attack_nothing_or_are_not_radii_are_refused(entry, needle):
    _refused(PGD + entry + "\n", needle)


def test_a_zero_in_a_sweep_with_positive_radii_is_its_clean_anchor():
    """AFD's sweeps start at 0 (the AUC's anchor); the list still attacks at 2/255 and 8/255."""
    suite = parse_suite(PGD + 'eps = ["0", "2/255", "8/255"]\n')
    assert suite.attacks[0].eps == (0.0, 2 / 255, 8 / 255)


@pytest.mark.parametrize("radius,needle", [
    ("5.0", "beyond the [0,1] box"), ("1.5", "beyond the [0,1] box"), ("1.0", "covers the whole [0,1] box"),
    ("1", "covers the whole [0,1] box"),
])
def test_linf_radii_outside_the_box_are_refused_as_the_threat_parser_refuses_them(radius, needle):
    """The rule of --threat (ThreatModel.check_box): a Linf radius >= 1 covers the whole box."""
    with pytest.raises(BenchError, match="covers"):
        ThreatModel.parse(f"linf:{radius}").check_box(None)
    assert "attack 'pgd'" in _refused(PGD + f'norm = "linf"\neps = "{radius}"\n', needle)
    _refused(PGD + f'norm = "linf"\neps = ["0.3", "{radius}"]\n', needle)


def test_a_declared_l2_large_eps_beyond_the_datasets_box_is_refused():
    suite = parse_suite('max_eps = { l2 = "40" }\n' + PGD)
    spec = get_dataset("mnist5k")
    with pytest.raises(BenchError, match="max_eps"):
        check_suite_threat(suite, ThreatModel.parse("linf:0.3"), spec.standard_eps(), spec.input_shape)


def test_the_declared_large_eps_stage_may_reach_the_whole_box_but_not_beyond():
    ok = parse_suite('max_eps = { linf = "1.0" }\n' + PGD + 'norm = "linf"\neps = "1.0"\n')
    assert ok.attacks[0].eps == (1.0,) and ok.extra["max_eps"] == {"linf": 1.0}
    _refused('max_eps = { linf = "1.0" }\n' + PGD + 'norm = "linf"\neps = "5.0"\n', "beyond")
    _refused('max_eps = { linf = "5" }\n' + PGD, "max_eps", "beyond")
    _refused('max_eps = { linf = "0" }\n' + PGD, "max_eps", "only radius 0")
    _refused('max_eps = { linf = ["1"] }\n' + PGD, "max_eps.linf")
    _refused('max_eps = { l7 = "1" }\n' + PGD, "max_eps")


@pytest.mark.parametrize("entry,threat,dataset,needle", [
    ('norm = "l2"\neps = "30"', "linf:0.3", "mnist5k", "beyond the [0,1] box of 1x28x28 inputs"),
    ('norm = "l2"\neps = "28"', "linf:0.3", "mnist5k", "covers the whole [0,1] box"),
    ('norm = "l1"\neps = "800"', "linf:0.3", "mnist5k", "beyond"),
    ('eps = "5.0"', "linf:0.3", "mnist5k", "beyond"),            # the norm follows the threat: Linf here
    ('eps_scale = [200]', "linf:0.3", "mnist5k", "beyond"),      # 200 x 0.3 = 60 in Linf
    ('norm = "l2"\neps_scale = [200]', "linf:8/255", "cifar10", "beyond"),  # 200 x 0.5 > sqrt(3072) = 55.4
    ('norm = "l2"\neps = "0.5"\n[[attacks]]\nname = "ddn"\nlabel = "big"\neps = "60"', "linf:8/255", "cifar10",
     "beyond"),
])
def test_radii_beyond_the_datasets_box_are_refused_before_any_work(entry, threat, dataset, needle):
    suite = parse_suite(PGD + entry + '\n[[attacks]]\nname = "fgsm"\n')
    spec = get_dataset(dataset)
    with pytest.raises(BenchError, match=re.escape(needle)):
        check_suite_threat(suite, ThreatModel.parse(threat), spec.standard_eps(), spec.input_shape)


# -- types and keys ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text,needle", [
    ('cascade = "no"\n' + PGD, "'cascade' must be true or false"),
    ('cascade = 0\n' + PGD, "'cascade' must be true or false"),
    ('checks = "yes"\n' + PGD, "'checks' must be true or false"),
    ('checks = 1\n' + PGD, "'checks' must be true or false"),
    ('name = 3\n' + PGD, "'name' must be a non-empty string"),
    ('name = ""\n' + PGD, "'name' must be a non-empty string"),
    ('description = ["a"]\n' + PGD, "'description' must be a string"),
    (PGD + 'cascade = "false"\n', "'cascade' must be true or false"),
    (PGD + 'cascade = 1\n', "'cascade' must be true or false"),
    (PGD + 'label = 5\n', "'label' must be a non-empty string"),
    (PGD + 'label = ""\n', "'label' must be a non-empty string"),
    (PGD + 'norm = "l7"\n', "unknown norm"),
    (PGD + 'norm = 2\n', "unknown norm"),
    ('[[attacks]]\nname = 5\n', "'name' must be a string"),
    ('[[attacks]]\nname = "nosuch"\n', "unknown attack"),
    ('attacks = [1, 2]\n', "not a table"),
    ('attacks = "pgd"\n', "at least one [[attacks]]"),
    ('attacks = []\n', "at least one [[attacks]]"),
    ('name = "x"\n', "at least one [[attacks]]"),
    ('colour = "red"\n' + PGD, "unknown suite key(s) colour"),
    (PGD + 'colour = "red"\n', "no option colour"),
    ('[[attacks]]\nname = "pgd"\nsteps = true\n', "'steps' must be a positive integer"),  # a boolean is no count
    ('[[attacks]]\nname = "pgd"\nsteps = 2.5\n', "'steps' must be a positive integer"),
    ('[[attacks]]\nname = "pgd"\nsteps = 0\n', "'steps' must be a positive integer"),
    ('[[attacks]]\nname = "pgd"\nrestarts = "5"\n', "'restarts' must be a positive integer"),
    ('[[attacks]]\nname = "pgd"\nsteps = 2\nrandom_start = 1\n', "random_start"),
    ('surrogates = "a.pt"\n' + PGD, "'surrogates' must be a list"),
    ('surrogates = [""]\n' + PGD, "'surrogates' must be a list"),
    (PGD + PGD, "share the label"),
])
def test_every_key_is_type_checked_in_one_sentence(text, needle):
    _refused(text, needle)


def test_norms_take_the_spellings_the_threat_parser_takes():
    for spelling in ("linf", "Linf", "LINF", "inf", "l_inf"):
        assert parse_suite(PGD + f'norm = "{spelling}"\n').attacks[0].norm == "linf"
    assert parse_suite(PGD + 'norm = "L2"\n').attacks[0].attack.norm == "l2"


def test_booleans_are_read_as_booleans():
    suite = parse_suite('cascade = false\nchecks = true\n' + PGD + 'cascade = true\n')
    assert suite.cascade is False and suite.checks is True and suite.attacks[0].cascade is True
    assert parse_suite(PGD).cascade is True and parse_suite(PGD).checks is False  # the defaults


# -- no attack at the threat ------------------------------------------------------------------------

@pytest.mark.parametrize("entry,threat,dataset", [
    ('norm = "l2"', "linf:0.3", "mnist5k"),          # the L2-only suite at the default Linf threat
    ('norm = "linf"', "l2:2.0", "mnist5k"),          # a Linf-only suite at an L2 threat
    ('eps = "0.1"', "linf:0.3", "mnist5k"),          # a smaller radius only
    ('eps = ["0.1", "0.2"]', "linf:0.3", "mnist5k"),
    ('eps = "0.031"', "linf:8/255", "cifar10"),      # close is not the threat: 0.031 is not 8/255
    ('eps_scale = [0.5, 2]', "linf:0.3", "mnist5k"),
])
def test_a_suite_without_an_attack_at_the_threat_is_refused_naming_its_threats(entry, threat, dataset):
    suite = parse_suite(PGD + entry + "\n")
    spec = get_dataset(dataset)
    tm = ThreatModel.parse(threat)
    with pytest.raises(BenchError) as info:
        check_suite_threat(suite, tm, spec.standard_eps(), spec.input_shape)
    msg = str(info.value)
    norm, radii = entry_radii(suite.attacks[0], tm, spec.standard_eps())
    assert f"no attack at the threat {tm}" in msg and "\n" not in msg
    assert all(f"{ThreatModel(norm, e)}" in msg for e in radii if e > 0)


def test_an_attack_at_the_threat_makes_the_suite_acceptable():
    spec = get_dataset("mnist5k")
    for entry in ("", 'eps = ["0.1", "0.3"]', 'eps_scale = [1]', 'eps_scale = [0, 0.5, 1]', 'norm = "linf"'):
        check_suite_threat(parse_suite(PGD + entry + "\n"), ThreatModel.parse("linf:0.3"), spec.standard_eps(),
                           spec.input_shape)
    # eps_scale = [1] on 8/255 is the threat's own radius, not round(8/255, 10)
    suite = parse_suite(PGD + "eps_scale = [0.5, 1]\n")
    assert entry_radii(suite.attacks[0], ThreatModel.parse("linf:8/255"), {})[1][-1] == 8 / 255


def test_a_threat_of_radius_0_is_refused_even_when_the_suite_has_one():
    spec = get_dataset("mnist5k")
    with pytest.raises(BenchError, match="allows no perturbation"):
        check_suite_threat(parse_suite(PGD + 'eps = ["0", "0.3"]\n'), ThreatModel("linf", 0.0), spec.standard_eps(),
                           spec.input_shape)


@pytest.mark.parametrize("name,dataset,threat", [
    ("quick", "mnist5k", "linf:0.3"), ("quick", "cifar10", "l2:0.5"), ("fast", "mnist5k", "linf:0.3"),
    ("fast", "cifar10", "linf:8/255"), ("full", "mnist5k", "linf:0.3"), ("full", "cifar10", "linf:8/255"),
    ("arrest", "cifar10", "linf:8/255"), ("afd", "cifar10", "linf:8/255"), ("afd_mnist", "mnist5k", "linf:0.3"),
    ("afd_mnist", "mnist5k", "l2:2"), ("act", "cifar10", "linf:8/255"), ("act", "cifar10", "linf:0.031"),
])
def test_every_builtin_suite_loads_and_runs_at_its_threats(name, dataset, threat):
    assert name in suite_names()
    spec = get_dataset(dataset)
    check_suite_threat(load_suite(name), ThreatModel.parse(threat), spec.standard_eps(), spec.input_shape)


def test_every_builtin_suite_parses():
    for name in suite_names():
        assert load_suite(name).attacks


# -- through the CLI: one line, exit 2, before any work --------------------------------------------

def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line.startswith("bench: error:")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("suite,threat,needle", [
    (PGD + 'norm = "l2"\n', None, "no attack at the threat linf:0.3"),
    (PGD + 'norm = "linf"\n', "l2:2.0", "no attack at the threat l2:2"),
    (PGD + "eps = []\n", None, "empty"),
    (PGD + "eps_scale = [0]\n", None, "only radius 0"),
    (PGD + 'eps = "0"\n', None, "only radius 0"),
    (PGD + 'norm = "linf"\neps = "5.0"\n', None, "beyond"),
    ('cascade = "no"\n' + PGD, None, "'cascade' must be true or false"),
    ('checks = "yes"\n' + PGD, None, "'checks' must be true or false"),
])
def test_bench_eval_refuses_a_bad_suite_before_loading_data(capsys, tmp_path, monkeypatch, synthetic_ckpt, suite,
                                                           threat, needle):
    import robustbench_lite.evaluations.evaluate as ev

    def no_data(*a, **k):
        raise AssertionError("the test data were loaded before the suite was refused")

    monkeypatch.setattr(ev, "load_test_data", no_data)
    f = tmp_path / "s.toml"
    f.write_text(suite)
    out = tmp_path / "ev"
    code, _, err = _run(capsys, "eval", "--model", synthetic_ckpt, "--suite", f, "--out", out, "--no-db",
                        *(("--threat", threat) if threat else ()))
    _one_line(code, err, needle)
    assert not (out / "result.json").exists()


@pytest.mark.parametrize("threat", ["", "  ", "linf:", ":0.3", "linf:0.3:0.1", "linf: "])
def test_an_empty_or_malformed_threat_is_an_error_not_the_default(capsys, tmp_path, synthetic_ckpt, threat):
    with pytest.raises(BenchError):
        ThreatModel.parse(threat)
    out = tmp_path / "ev"
    code, _, err = _run(capsys, "eval", "--model", synthetic_ckpt, "--threat", threat, "--out", out, "--no-db")
    _one_line(code, err, "--threat")
    assert not out.exists()


def test_transfer_and_leaderboard_refuse_an_empty_threat(capsys, tmp_path, synthetic_ckpt):
    code, _, err = _run(capsys, "transfer", "--surrogates", synthetic_ckpt, "--targets", synthetic_ckpt,
                        "--threat", "", "--out", tmp_path / "tr")
    _one_line(code, err, "empty")
    assert not (tmp_path / "tr").exists()
    code, _, err = _run(capsys, "leaderboard", "--db", tmp_path / "none.sqlite", "--threat", "")
    assert code == 2 and "Traceback" not in err, err


def test_evaluate_refuses_an_empty_threat_through_the_python_api(tmp_path, synthetic_ckpt):
    from robustbench_lite.evaluations.evaluate import EvalOptions, evaluate

    with pytest.raises(BenchError, match="empty"):
        evaluate(synthetic_ckpt, tmp_path / "ev", EvalOptions(threat=""))
    assert not (tmp_path / "ev" / "result.json").exists()


def test_a_checkpoint_trained_at_radius_0_is_evaluated_at_the_datasets_radius(tmp_path):
    """`bench train --eps 0` stores threat linf:0; evaluating at radius 0 would report clean accuracy
    as robust: the dataset's standard radius is used instead."""
    from robustbench_lite.checkpoint import Checkpoint
    from robustbench_lite.evaluations.evaluate import EvalOptions, _threat_for
    import torch

    ckpt = Checkpoint(model=torch.nn.Flatten(), arch="custom", arch_kwargs={}, dataset="mnist5k", num_classes=10,
                      input_shape=(1, 28, 28), threat=ThreatModel("linf", 0.0), defense="natural")
    assert _threat_for(ckpt, EvalOptions()) == ThreatModel("linf", 0.3)


def test_suite_names_resolve_to_files(tmp_path: Path):
    f = tmp_path / "mine.toml"
    f.write_text(PGD)
    assert load_suite(f).name == "mine"
