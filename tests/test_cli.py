"""The `bench` front door: help, user errors as one sentence, end to end on synthetic data."""
import csv
import json

import pytest
import torch

from robustbench_lite.cli import build_parser, main


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_clear_error(code, err, needle):
    assert code == 2
    lines = [l for l in err.strip().splitlines() if l.startswith("bench: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert needle in lines[0], lines[0]


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["eval", "--help"], ["demo", "--help"],
                                  ["transfer", "--help"], ["merge", "--help"], ["analyze", "--help"],
                                  ["report", "--help"], ["export", "--help"], ["leaderboard", "--help"]])
def test_help_explains_every_option(capsys, argv):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: bench" in out
    parser = build_parser()
    sub = {a.dest: a for a in parser._actions}.get("command")
    if len(argv) == 2:
        sp = sub.choices[argv[0]]
        for action in sp._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{argv[0]} {action.option_strings} has no help"
                assert action.option_strings[0] in out


def test_user_errors_are_one_sentence(capsys, tmp_path, synthetic_ckpt):
    code, _, err = _run(capsys, "eval", "--model", str(tmp_path / "missing.pt"))
    _one_clear_error(code, err, "does not exist")

    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(synthetic_ckpt.read_bytes()[:1000])
    code, _, err = _run(capsys, "eval", "--model", str(trunc))
    _one_clear_error(code, err, "truncated")

    code, _, err = _run(capsys, "eval", "--model", str(synthetic_ckpt), "--suite", "nosuch")
    _one_clear_error(code, err, "unknown suite 'nosuch'")

    code, _, err = _run(capsys, "eval", "--model", str(synthetic_ckpt), "--threat", "l7:0.3")
    _one_clear_error(code, err, "unknown norm")

    code, _, err = _run(capsys, "train", "--defense", "nosuch", "--out", str(tmp_path / "x"))
    _one_clear_error(code, err, "unknown defense 'nosuch'")

    code, _, err = _run(capsys, "train", "--defense", "natural", "--dataset", "cifar10", "--data-dir",
                        str(tmp_path / "nodata"), "--out", str(tmp_path / "c"))
    _one_clear_error(code, err, "cifar-10-batches-py")

    sd = tmp_path / "sd.pt"
    torch.save(torch.load(synthetic_ckpt, weights_only=True)["members"]["model"], sd)
    code, _, err = _run(capsys, "eval", "--model", str(sd), "--arch", "resnet18", "--dataset", "mnist5k")
    _one_clear_error(code, err, "do not fit arch 'resnet18'")
    code, _, err = _run(capsys, "eval", "--model", str(sd), "--arch", "small_cnn", "--dataset", "cifar100")
    _one_clear_error(code, err, "")


@pytest.mark.parametrize("argv", [
    ["eval", "--model", "m.pt", "--batch-size", "0"],
    ["eval", "--model", "m.pt", "--n-examples", "-3"],
    ["train", "--defense", "madry", "--epochs", "0"],
    ["train", "--defense", "madry", "--batch-size", "x"],
    ["train", "--defense", "madry", "--attack-steps", "0"],
    ["transfer", "--surrogates", "a.pt", "--targets", "b.pt", "--steps", "-1"],
    ["transfer", "--surrogates", "a.pt", "--targets", "b.pt", "--batch-size", "0"],
    ["demo", "--n-examples", "0"],
])
def test_counts_must_be_positive(capsys, argv):
    """A zero or negative count or size is argparse's one-line usage error (exit 2), before any work."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    assert [l for l in err.splitlines() if "error:" in l][0].endswith(("must be a positive integer, got 0",
                                                                         "must be a positive integer, got -3",
                                                                         "must be a positive integer, got -1",
                                                                         "must be a positive integer, got 'x'"))


def test_existing_run_is_not_overwritten(capsys, tmp_path, synthetic_ckpt):
    out = tmp_path / "run"
    out.mkdir()
    target = out / "checkpoint.pt"
    target.write_bytes(synthetic_ckpt.read_bytes())
    before = target.read_bytes()
    code, _, err = _run(capsys, "train", "--defense", "natural", "--dataset", "synthetic", "--preset", "mnist5k",
                        "--epochs", "1", "--out", str(out), "--no-progress")
    _one_clear_error(code, err, "already exists")
    assert target.read_bytes() == before


def test_train_then_eval_end_to_end(capsys, tmp_path):
    run = tmp_path / "run"
    code, out, err = _run(capsys, "train", "--defense", "madry", "--dataset", "synthetic", "--preset", "mnist5k",
                          "--epochs", "1", "--attack-steps", "2", "--out", str(run), "--no-progress")
    assert code == 0, err
    log = list(csv.DictReader(open(run / "log.csv")))
    assert len(log) == 1 and {"epoch", "lr", "loss", "heldout_clean", "heldout_pgd"} <= set(log[0])
    ev = tmp_path / "ev"
    code, out, err = _run(capsys, "eval", "--model", str(run / "checkpoint.pt"), "--suite", "quick",
                          "--n-examples", "20", "--out", str(ev), "--db", str(tmp_path / "lb.sqlite"))
    assert code == 0, err
    from robustbench_lite.reports.store import load_records

    assert [r["checkpoint"]["sha256"] for r in load_records(tmp_path / "lb.sqlite")] == [
        json.loads((ev / "result.json").read_text())["checkpoint"]["sha256"]]
    rows = list(csv.DictReader(open(ev / "summary.csv")))
    assert [r.get("label", r["attack"]) for r in rows] == ["clean", "pgd", "autoattack"]
    assert {"attack", "norm", "eps", "n", "attacked", "accuracy", "worst_case", "mean_min_norm", "median_min_norm",
            "seconds", "forwards", "backwards"} <= set(rows[0])
    rec = json.loads((ev / "result.json").read_text())
    assert rec["n"] == 20 and rec["suite"]["name"] == "quick" and len(rec["checkpoint"]["sha256"]) == 64
    assert {"torch", "pyautoattack"} <= set(rec["versions"]) and rec["seed"] == 0 and rec["date"]
    assert rec["robust_accuracy"] <= min(a["accuracy"] for a in rec["attacks"])
    per = list(csv.DictReader(open(ev / "per_example.csv")))
    assert len(per) == 20
    # worst case recomputed from the per-example ground truth
    worst = sum(int(r["clean_correct"]) and all(int(r[k]) for k in r if k.startswith("robust[")) for r in per)
    assert rec["robust_accuracy"] == pytest.approx(100 * worst / 20)
    # one epoch of madry may leave the model anywhere from chance level up (the machine's float
    # kernels decide), so the counts are checked against the per-example ground truth, not numbers
    n_clean = sum(int(r["clean_correct"]) for r in per)
    assert rec["clean_accuracy"] == pytest.approx(100 * n_clean / 20)
    assert int(rows[1]["attacked"]) == n_clean  # pgd runs on every clean-correct point
    assert int(rows[1]["backwards"]) > 0 or n_clean == 0
    pgd_left = sum(int(r["clean_correct"]) and int(r[k]) for r in per for k in r if k.startswith("robust[pgd"))
    # AutoAttack runs on every clean-correct point (quick does not cascade) or, cascading, on those PGD left robust
    assert int(rows[2]["attacked"]) == (pgd_left if rec["suite"]["cascade"] else n_clean)
    assert int(rows[2]["forwards"]) > 0 or int(rows[2]["attacked"]) == 0


def test_resume_continues_exactly(tmp_path):
    from robustbench_lite.defenses import build_config, train

    cfg = build_config("madry", "mnist5k", {"dataset": "synthetic", "epochs": 2, "eval_n": 16,
                                             "attack_steps": 2})
    a = train(cfg, tmp_path / "a", progress=False)
    train(cfg, tmp_path / "b", progress=False, stop_after=1)
    b = train(cfg, tmp_path / "b", progress=False, resume=True)
    sa = torch.load(a, weights_only=True)
    sb = torch.load(b, weights_only=True)
    assert len(sb["history"]) == 2
    for k, v in sa["members"]["model"].items():
        assert torch.equal(v, sb["members"]["model"][k]), k


def test_preset_brings_its_dataset(capsys, tmp_path):
    """--preset cifar10_act without --dataset trains on CIFAR-10 (here: asks for its folder), not MNIST."""
    code, _, err = _run(capsys, "train", "--defense", "trades", "--preset", "cifar10_act", "--data-dir",
                        str(tmp_path / "nodata"), "--out", str(tmp_path / "t"))
    _one_clear_error(code, err, "cifar-10-batches-py")
    assert not (tmp_path / "t" / "checkpoint.pt").exists()


def test_nan_logits_are_a_clear_error(capsys, tmp_path):
    (tmp_path / "nanmodel.py").write_text(
        "import torch\n"
        "class NaNNet(torch.nn.Module):\n"
        "    def __init__(self, num_classes=10):\n"
        "        super().__init__()\n"
        "        self.fc = torch.nn.Linear(784, num_classes)\n"
        "    def forward(self, x):\n"
        "        return self.fc(x.flatten(1)) * float('nan')\n")
    import importlib.util

    spec = importlib.util.spec_from_file_location("nanmodel", tmp_path / "nanmodel.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.save(mod.NaNNet().state_dict(), tmp_path / "nan.pt")
    code, _, err = _run(capsys, "eval", "--model", str(tmp_path / "nan.pt"), "--arch", f"{tmp_path / 'nanmodel.py'}:NaNNet",
                        "--dataset", "mnist5k", "--n-examples", "10", "--out", str(tmp_path / "ev"), "--no-db")
    _one_clear_error(code, err, "NaN")
