"""Training progress and its log: a bar per epoch (running loss, adversarial accuracy) and per held-out
evaluation; piped output gets log lines instead of silence; ``progress=False`` and
``set_enabled(False)`` hide every bar; log.csv is rounded for reading, the checkpoint keeps full precision."""
from __future__ import annotations

import csv
import io
import logging
import math
from pathlib import Path

import pytest
import torch

from robustbench_lite.defenses import AttackConfig, TrainConfig, train
from robustbench_lite.defenses.trainer import _log_value, heldout_metrics
from robustbench_lite import progress
from robustbench_lite.checkpoint import read_checkpoint_dict
from robustbench_lite.models import create_model

ATTACK = AttackConfig(norm="linf", eps=0.3, steps=1, step_size=0.3)
PROGRESS_LOGGER = "robustbench_lite.progress"


def cfg_for(**kw) -> TrainConfig:  # type: ignore[no-untyped-def]
    base = dict(defense="madry", dataset="synthetic", epochs=1, batch_size=64, lr=0.05, attack=ATTACK, eval_n=20,
                eval_steps=1, channels_last=False)
    return TrainConfig(**{**base, **kw})


@pytest.fixture
def progress_default():  # type: ignore[no-untyped-def]
    """Progress as a user gets it (on), whatever BENCH_PROGRESS says; restored after."""
    before = progress._enabled
    progress.set_enabled(True)
    yield
    progress._enabled = before


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == PROGRESS_LOGGER]


def test_piped_training_logs_progress_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture, progress_default,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "_is_terminal", lambda: False)
    caplog.set_level(logging.INFO, logger=PROGRESS_LOGGER)
    train(cfg_for(), tmp_path / "run", progress=True)
    lines = _lines(caplog)
    epoch = [line for line in lines if line.startswith("madry epoch 1/1:")]
    held = [line for line in lines if line.startswith("madry epoch 1/1 held-out pgd1")]
    assert epoch and held, lines
    assert "4/4" in epoch[-1] and "loss " in epoch[-1] and "adv acc " in epoch[-1], epoch[-1]
    assert "20/20" in held[-1] and "pgd acc" in held[-1], held[-1]
    assert not any("\r" in line for line in lines)


def test_terminal_training_draws_bars_in_place(tmp_path: Path, caplog: pytest.LogCaptureFixture, progress_default,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "_is_terminal", lambda: True)
    from robustbench_lite.defenses import trainer

    # redraw on every update: with tqdm's 0.1 s minimum interval a fast machine finishes the 4 batches
    # before the first redraw, and a closed in-place bar is cleared without a last one
    bar = trainer.progress_bar
    monkeypatch.setattr(trainer, "progress_bar", lambda *a, **k: bar(*a, mininterval=0, **k))
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    caplog.set_level(logging.INFO, logger=PROGRESS_LOGGER)
    train(cfg_for(defense="natural"), tmp_path / "run", progress=True)
    drawn = err.getvalue()
    assert "\r" in drawn and "natural epoch 1/1" in drawn and "held-out" in drawn and "acc " in drawn
    assert not _lines(caplog)


@pytest.mark.parametrize("how", ["argument", "set_enabled"])
def test_progress_off_shows_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
                                    progress_default, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    monkeypatch.setattr(progress, "_is_terminal", lambda: False)
    caplog.set_level(logging.INFO, logger=PROGRESS_LOGGER)
    if how == "set_enabled":
        progress.set_enabled(False)
    train(cfg_for(defense="natural"), tmp_path / "run", progress=how != "argument")
    assert not _lines(caplog)
    assert "epoch 1/1" not in capsys.readouterr().err


def test_heldout_metrics_are_exact_percentages() -> None:
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1).eval()
    x, y = torch.rand(30, 1, 28, 28), torch.arange(30) % 10
    m = heldout_metrics(model, x, y, cfg_for(eval_steps=2), batch_size=8, progress=False)
    for v in m.values():
        assert (v * 30 / 100) == pytest.approx(round(v * 30 / 100), abs=1e-9)
        assert v == 100 * round(v * 30 / 100) / 30  # a count over n, with no float32 noise
    with torch.no_grad():
        assert m["heldout_clean"] == 100 * int((model(x).argmax(1) == y).sum()) / 30


def test_log_csv_is_rounded_and_history_keeps_full_precision(tmp_path: Path) -> None:
    path = train(cfg_for(epochs=2), tmp_path / "run", progress=False)
    history = read_checkpoint_dict(path)["history"]
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert len(rows) == len(history) == 2
    for row, full in zip(rows, history):
        assert list(row) == list(full)
        assert row["epoch"] == str(full["epoch"])
        assert len(row["seconds"].split(".")[1]) == 2
        for k, text in row.items():
            if k in ("epoch", "seconds"):
                continue
            digits = text.lstrip("-").split("e")[0].replace(".", "").lstrip("0")
            assert len(digits) <= 6, (k, text)
            assert float(text) == pytest.approx(full[k], rel=1e-5, abs=1e-12), k
    assert any(isinstance(v, float) and len(repr(v)) > 8 for r in history for v in r.values()), \
        "the checkpoint's history should keep full precision"


@pytest.mark.parametrize("key, value, text", [
    ("heldout_clean", 28.999999165534973, "29"),
    ("loss", 0.123456789, "0.123457"),
    ("lr", 0.01, "0.01"),
    ("lr", 1e-05, "1e-05"),
    ("seconds", 3.14159, "3.14"),
    ("loss", float("nan"), "nan"),
    ("epoch", 3, 3),
])
def test_log_value_format(key: str, value: float, text: object) -> None:
    assert _log_value(key, value) == text
    if isinstance(text, str) and text != "nan":
        assert math.isclose(float(text), value, rel_tol=1e-5, abs_tol=0.005)
