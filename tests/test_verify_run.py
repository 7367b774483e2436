"""adversarials.npz, ``bench verify`` and ``bench reproduce`` on real runs of a tiny suite (a PGD
sweep, FGSM and a minimum-norm attack) of the natural MNIST-5k model: the stored adversarials are
checked against numpy distances and the model's own predictions; every way of tampering with the
file is caught and named; shards, merge, resume and a lying attack in a suite."""
from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from robustbench_lite.cli import main
from robustbench_lite.evaluations.attacks import AttackOutput
from robustbench_lite.evaluations.attacks.base import Attack

pytestmark = pytest.mark.slow

SUITE = """name = "tiny"
cascade = true
[[attacks]]
name = "pgd"
steps = 3
eps = [0.1, 0.3]
[[attacks]]
name = "fgsm"
[[attacks]]
name = "deepfool_linf"
eps = [0.1, 0.3]
"""
N, BS = 8, 4


def _eval(ckpt: Path, out: Path, suite: Path, *extra: str) -> int:
    return main(["eval", "--model", str(ckpt), "--suite", str(suite), "--n-examples", str(N), "--batch-size", str(BS),
                 "--device", "cpu", "--out", str(out), "--no-db", "--no-progress", *extra])


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("suite") / "tiny.toml"
    p.write_text(SUITE)
    return p


@pytest.fixture(scope="module")
def run_dir(eval_natural_ckpt: Path, suite_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "eval"
    assert _eval(eval_natural_ckpt, out, suite_file) == 0
    return out


def _per_example(run: Path) -> list[dict[str, str]]:
    with (run / "per_example.csv").open() as f:
        return list(csv.DictReader(f))


def _points(indices: list[int]) -> torch.Tensor:
    from robustbench_lite.data import get_dataset

    return get_dataset("mnist5k").load("test").batch(torch.tensor(indices))[0]


def test_adversarials_file_holds_every_break(run_dir: Path, eval_model: torch.nn.Module) -> None:
    rec = json.loads((run_dir / "result.json").read_text())
    f = np.load(run_dir / "adversarials.npz", allow_pickle=False)
    assert f["x_adv"].dtype == np.float32 and f["x_adv"].shape[1:] == (1, 28, 28)
    assert rec["adversarials"]["breaks"] == len(f["position"]) > 0
    assert [(str(n), float(e)) for n, e in zip(f["threat_norm"], f["threat_eps"])] == [("linf", 0.1), ("linf", 0.3)]
    rows = _per_example(run_dir)
    for t, eps in enumerate(f["threat_eps"]):
        cols = [c for c in rows[0] if c.startswith("robust[") and float(c.rsplit(":", 1)[1][:-1]) <= eps + 1e-12]
        broken = {j for j, r in enumerate(rows) if r["clean_correct"] == "1" and any(r[c] == "0" for c in cols)}
        sel = np.nonzero(f["threat"] == t)[0]
        assert set(f["position"][sel].tolist()) == broken
        x = _points(f["index"][sel].tolist())
        adv = f["x_adv"][f["adversarial"][sel]]
        dist = np.abs(adv.astype(np.float64) - x.numpy()).reshape(len(sel), -1).max(1)
        assert (dist <= eps + 1e-6).all() and adv.min() >= 0 and adv.max() <= 1
        with torch.no_grad():
            pred = eval_model(torch.from_numpy(adv)).argmax(1).numpy()
        assert (pred != f["label"][sel]).all()
        assert [rows[p]["index"] for p in f["position"][sel]] == [str(i) for i in f["index"][sel]]
        assert set(f["attack"][sel].tolist()) <= {"pgd", "fgsm", "deepfool_linf"}
    summary = (run_dir / "summary.csv").read_text().splitlines()
    assert summary[0].endswith(",unverified") and all(line.endswith(",0") for line in summary[1:])
    assert [c for c in rec["checks"] if c["name"] == "breaks_verified"][0]["passed"] is True
    prov = rec["provenance"]
    assert prov["argv"] and torch.__version__.startswith(prov["versions"]["torch"]) and "algorithms" in prov["deterministic"]
    assert prov["threads"]["intra_op"] >= 1 and prov["options"]["batch_size"] == BS and "commit" in prov["project"]


def test_verify_passes(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    n = json.loads((run_dir / "result.json").read_text())["adversarials"]["breaks"]
    assert main(["verify", str(run_dir)]) == 0
    assert f"verified {n} of {n} breaks" in capsys.readouterr().out


def _tampered(run_dir: Path, tmp_path: Path, change) -> Path:
    out = tmp_path / "tampered"
    shutil.copytree(run_dir, out)
    with np.load(out / "adversarials.npz", allow_pickle=False) as f:
        data = {k: f[k].copy() for k in f.files}
    change(data)
    np.savez(out / "adversarials.npz", **data)
    return out


def _moved_out_of_ball(d: dict) -> None:
    d["x_adv"][d["adversarial"][0]] = np.where(d["x_adv"][d["adversarial"][0]] > 0.5, 0.0, 1.0)


def _out_of_box(d: dict) -> None:
    d["x_adv"][d["adversarial"][0], 0, 0, 0] = 1.25


def _clean_input(d: dict) -> None:
    d["x_adv"][d["adversarial"][0]] = _points([int(d["index"][0])])[0].numpy()


def _wrong_index(d: dict) -> None:
    d["index"][0] += 1


def _missing_break(d: dict) -> None:
    keep = np.arange(len(d["position"])) != 0
    for k in ("threat", "position", "index", "label", "adversarial", "attack_label", "attack", "attack_eps"):
        d[k] = d[k][keep]


@pytest.mark.parametrize("change,why", [(_moved_out_of_ball, "outside the threat ball"),
                                        (_out_of_box, "outside the [0, 1] box"),
                                        (_clean_input, "not misclassified"),
                                        (_wrong_index, "stored with test index"),
                                        (_missing_break, "holds no adversarial")])
def test_verify_catches_tampering(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], change, why) -> None:
    out = _tampered(run_dir, tmp_path, change)
    with np.load(out / "adversarials.npz") as f:
        first = str(f["index"][0]) if change is not _missing_break else None
    assert main(["verify", str(out)]) == 1
    text = capsys.readouterr().out
    assert text.startswith("FAILED") and why in text
    if first is not None and change is not _wrong_index:
        assert f"example {first} " in text


def test_verify_refuses_another_checkpoint(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other.pt"
    other.write_bytes(b"not the model")
    assert main(["verify", str(run_dir), "--model", str(other)]) == 2
    err = capsys.readouterr().err
    assert "is not the evaluated checkpoint" in err and "Traceback" not in err


def test_verify_finds_a_changed_clean_verdict(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "changed"
    shutil.copytree(run_dir, out)
    lines = (out / "per_example.csv").read_text().splitlines()
    cells = lines[1].split(",")
    cells[2] = "0" if cells[2] == "1" else "1"
    (out / "per_example.csv").write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    assert main(["verify", str(out)]) == 1
    assert "clean prediction" in capsys.readouterr().out


def test_shards_merge_and_resume_keep_the_adversarials(eval_natural_ckpt: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    # shards split blocks of --batch-size only when every attack is row-keyed (deepfool is foolbox's:
    # canonical blocks of 128, which 8 points cannot be split into): min_linf, ours, in its place
    suite_file = tmp_path / "rowkeyed.toml"
    suite_file.write_text(SUITE.replace('name = "deepfool_linf"', 'name = "min_linf"'))
    run_dir = tmp_path / "whole"
    assert _eval(eval_natural_ckpt, run_dir, suite_file) == 0
    shards = [tmp_path / f"s{i}" for i in range(2)]
    for i, s in enumerate(shards):
        assert _eval(eval_natural_ckpt, s, suite_file, "--shard", f"{i}/2") == 0
        assert main(["verify", str(s)]) == 0
    merged = tmp_path / "merged"
    assert main(["merge", *map(str, shards), "--out", str(merged)]) == 0
    assert main(["verify", str(merged)]) == 0
    with np.load(run_dir / "adversarials.npz") as a, np.load(merged / "adversarials.npz") as b:
        for k in ("threat", "position", "index", "attack", "attack_eps"):
            assert a[k].tolist() == b[k].tolist(), k
        np.testing.assert_array_equal(a["x_adv"][a["adversarial"]], b["x_adv"][b["adversarial"]])
    # resume: a block whose adversarials are gone is run again, the others are reused
    resumed = tmp_path / "resumed"
    shutil.copytree(run_dir, resumed)
    (resumed / "adversarials.npz").unlink()
    next((resumed / "parts" / "blocks").glob("001_*/00000.npz")).unlink()
    assert _eval(eval_natural_ckpt, resumed, suite_file, "--resume") == 0
    with np.load(run_dir / "adversarials.npz") as a, np.load(resumed / "adversarials.npz") as b:
        assert a["position"].tolist() == b["position"].tolist()
        np.testing.assert_array_equal(a["x_adv"], b["x_adv"])
    capsys.readouterr()


def test_no_adversarials(eval_natural_ckpt: Path, suite_file: Path, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "none"
    assert _eval(eval_natural_ckpt, out, suite_file, "--no-adversarials") == 0
    assert not (out / "adversarials.npz").exists() and not list((out / "parts").rglob("*.npz"))
    assert json.loads((out / "result.json").read_text())["adversarials"] is None
    capsys.readouterr()
    assert main(["verify", str(out)]) == 2
    assert "no adversarials.npz" in capsys.readouterr().err


def test_reproduce_gives_no_difference(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reproduce", str(run_dir), "--out", str(tmp_path / "again")]) == 0
    assert "identical" in capsys.readouterr().out
    # a changed cell of the record is reported
    changed = tmp_path / "changed"
    shutil.copytree(run_dir, changed)
    lines = (changed / "per_example.csv").read_text().splitlines()
    cells = lines[-1].split(",")
    cells[3] = "0" if cells[3] == "1" else "1"
    (changed / "per_example.csv").write_text("\n".join([*lines[:-1], ",".join(cells)]) + "\n")
    assert main(["reproduce", str(changed), "--out", str(tmp_path / "again2")]) == 1
    out = capsys.readouterr().out
    assert "1 cells of per_example.csv differ" in out and f"example {cells[0]}" in out


@dataclass(frozen=True, kw_only=True)
class Liar(Attack):
    """Claims every point broken and returns it unchanged."""

    def run(self, model, x, y, *, eps, generator):  # type: ignore[override]
        return AttackOutput(x.clone(), torch.ones(len(x), dtype=torch.bool))


def test_lying_attack_in_a_suite(eval_natural_ckpt: Path, tmp_path: Path, temporary_attacks,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    temporary_attacks("test_liar", Liar)
    suite = tmp_path / "liar.toml"
    suite.write_text('name = "liar"\n[[attacks]]\nname = "test_liar"\n')
    out = tmp_path / "liar"
    assert _eval(eval_natural_ckpt, out, suite, "--threat", "linf:0.3") == 0
    rec = json.loads((out / "result.json").read_text())
    assert rec["robust_accuracy"] == rec["clean_accuracy"]  # the truth: nothing moved, nothing is broken
    row = rec["attacks"][0]
    assert row["unverified"] == round(rec["clean_accuracy"] * N / 100) > 0
    check = [c for c in rec["checks"] if c["name"] == "breaks_verified"][0]
    assert check["passed"] is False and check["count"] == row["unverified"]
    from robustbench_lite.reports.leaderboard import leaderboard_entries

    entry = leaderboard_entries([rec])[0]
    assert entry.unreliable and any(name == "breaks_verified" for _, name, _ in entry.failed_checks)
    assert main(["verify", str(out)]) == 0  # no break is counted, so none needs an adversarial
    assert "verified 0 of 0 breaks" in capsys.readouterr().out


def test_torchrun_run_has_the_same_adversarials(eval_natural_ckpt: Path, suite_file: Path, run_dir: Path,
                                                tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "BENCH_PROGRESS": "0"}
    env.pop("WORLD_SIZE", None)
    out = tmp_path / "two"
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "robustbench_lite", "eval", "--model", str(eval_natural_ckpt), "--suite", str(suite_file),
                          "--n-examples", str(N), "--batch-size", str(BS), "--device", "cpu", "--no-db", "--out", str(out)],
                         env=env, capture_output=True, text=True, timeout=900)
    assert two.returncode == 0, two.stderr[-3000:]
    assert main(["verify", str(out)]) == 0
    with np.load(run_dir / "adversarials.npz") as a, np.load(out / "adversarials.npz") as b:
        assert a["position"].tolist() == b["position"].tolist() and a["attack"].tolist() == b["attack"].tolist()
        np.testing.assert_array_equal(a["x_adv"][a["adversarial"]], b["x_adv"][b["adversarial"]])


@pytest.mark.parametrize("suite", ["quick", "fast", "full"])
def test_builtin_suites_verify_and_reproduce(eval_natural_ckpt: Path, tmp_path: Path, suite: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / suite
    assert main(["eval", "--model", str(eval_natural_ckpt), "--suite", suite, "--n-examples", "4", "--batch-size", "2",
                 "--device", "cpu", "--out", str(out), "--no-db", "--no-progress"]) == 0
    rec = json.loads((out / "result.json").read_text())
    n = rec["adversarials"]["breaks"]
    assert [c["passed"] for c in rec["checks"] if c["name"] == "breaks_verified"] == [True]  # honest attacks
    assert all(r["unverified"] == 0 for r in rec["attacks"])
    assert main(["verify", str(out)]) == 0
    assert f"verified {n} of {n} breaks" in capsys.readouterr().out
    if suite == "quick":
        assert main(["reproduce", str(out), "--out", str(tmp_path / "again")]) == 0
        assert "identical" in capsys.readouterr().out
