"""A diverging run stops at the first non-finite loss with one clear sentence (exit 2 on the command
line); it writes no NaN checkpoint, and the last good checkpoint and log.csv stay byte for byte."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from robustbench_lite.defenses import DEFENSES, AttackConfig, TrainConfig, register_defense, train
from robustbench_lite.defenses.base import Recipe
from robustbench_lite.checkpoint import read_checkpoint_dict
from robustbench_lite.data import get_dataset
from robustbench_lite.errors import BenchError

ATTACK = AttackConfig(norm="linf", eps=0.3, steps=1, step_size=0.3)
HUGE = 1e10  # SGD at this rate overflows small_cnn within a few steps


def cfg_for(**kw) -> TrainConfig:  # type: ignore[no-untyped-def]
    base = dict(defense="natural", dataset="synthetic", epochs=1, batch_size=32, lr=0.05, attack=ATTACK, eval_n=20,
                eval_steps=1, channels_last=False)
    return TrainConfig(**{**base, **kw})


def _no_nan_anywhere(path: Path) -> None:
    for name, sd in read_checkpoint_dict(path)["members"].items():
        for k, t in sd.items():
            assert not t.is_floating_point() or torch.isfinite(t).all(), f"{name}.{k} is not finite"


@pytest.mark.parametrize("defense", ["natural", "madry"])
def test_fresh_run_that_diverges_writes_nothing(tmp_path: Path, defense: str) -> None:
    with pytest.raises(BenchError) as e:
        train(cfg_for(defense=defense, lr=HUGE), tmp_path / "run", progress=False)
    msg = str(e.value)
    assert f"training {defense} diverged in epoch 1/1" in msg and "step" in msg, msg
    assert "lower --lr" in msg and "no checkpoint was written" in msg and "\n" not in msg
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    assert not (tmp_path / "run" / "log.csv").exists()


def test_multi_epoch_run_keeps_the_last_good_epoch(tmp_path: Path) -> None:
    """Epoch 1 at a sane rate is saved; epoch 2 at a huge one diverges and must not touch it."""
    cfg = cfg_for(epochs=3, lr_schedule=((0, 0.05), (1, HUGE)))
    run = tmp_path / "run"
    saved: dict[str, bytes] = {}

    def snapshot(row):  # type: ignore[no-untyped-def]
        saved["ckpt"] = (run / "checkpoint.pt").read_bytes()
        saved["log"] = (run / "log.csv").read_bytes()

    with pytest.raises(BenchError, match=r"diverged in epoch 2/3: .* still holds epoch 1"):
        train(cfg, run, progress=False, on_epoch=snapshot)
    assert (run / "checkpoint.pt").read_bytes() == saved["ckpt"]
    assert (run / "log.csv").read_bytes() == saved["log"]
    assert len(read_checkpoint_dict(run / "checkpoint.pt")["history"]) == 1
    _no_nan_anywhere(run / "checkpoint.pt")
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_resumed_run_that_diverges_leaves_the_checkpoint_as_it_was(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(cfg_for(epochs=2), run, progress=False, stop_after=1)
    before = (run / "checkpoint.pt").read_bytes()
    log_before = (run / "log.csv").read_bytes()
    with pytest.raises(BenchError, match="still holds epoch 1"):
        train(cfg_for(epochs=2, lr_schedule=((0, 0.05), (1, HUGE))), run, progress=False, resume=True)
    assert (run / "checkpoint.pt").read_bytes() == before
    assert (run / "log.csv").read_bytes() == log_before


class InfParams(Recipe):
    """Logs a finite loss but leaves an infinite weight after its last step (the update overflowed)."""

    def loss(self, model, x, y, generator):  # type: ignore[no-untyped-def]
        return torch.nn.functional.cross_entropy(model(x), y), {}

    def on_epoch_start(self, epoch, members, optimizers):  # type: ignore[no-untyped-def]
        n = len(get_dataset(self.cfg.dataset).load("train", None))
        self.left = -(-n // self.cfg.batch_size)

    def train_step(self, members, optimizers, x, y, generator):  # type: ignore[no-untyped-def]
        logs = super().train_step(members, optimizers, x, y, generator)
        self.left -= 1
        if self.left == 0:  # after the epoch's last logged loss
            with torch.no_grad():
                next(members["model"].parameters()).view(-1)[0] = float("inf")
        return logs


@pytest.fixture
def inf_params_defense():  # type: ignore[no-untyped-def]
    """``test_inf_params`` registered for one test only (the registry is global)."""
    register_defense("test_inf_params")(InfParams)
    yield "test_inf_params"
    DEFENSES.unregister("test_inf_params")


def test_non_finite_parameters_are_caught_before_saving(tmp_path: Path, inf_params_defense: str) -> None:
    with pytest.raises(BenchError, match=r"test_inf_params diverged in epoch 1/1: model\.\S+ holds NaN or infinite"):
        train(cfg_for(defense=inf_params_defense), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_a_healthy_run_is_not_stopped(tmp_path: Path) -> None:
    path = train(cfg_for(), tmp_path / "ok", progress=False)
    _no_nan_anywhere(path)


def test_command_line_divergence_is_exit_2_and_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from robustbench_lite.cli import main

    run = tmp_path / "run"
    code = main(["train", "--defense", "natural", "--dataset", "synthetic", "--preset", "mnist5k", "--epochs", "1",
                 "--batch-size", "32", "--lr", "1e10", "--out", str(run), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("bench: error:")]
    assert len(errors) == 1 and "diverged" in errors[0] and "--lr" in errors[0], err
    assert not (run / "checkpoint.pt").exists()

