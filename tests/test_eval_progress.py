"""Progress of long evaluation work: piped output (as in CI or `| tee`) gets periodic log lines per
attack with examples done / attacked and the running accuracy, and AutoAttack names its stage."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from robustbench_lite.evaluations.attacks import create_attack
from robustbench_lite.evaluations.runner import RunContext, run_tasks
from robustbench_lite.evaluations.suite import parse_suite
from robustbench_lite import progress
from robustbench_lite.checkpoint import load_checkpoint
from robustbench_lite.data import class_balanced_indices, get_dataset
from robustbench_lite.threat import ThreatModel

SUITE = 'name = "p"\ncascade = false\n[[attacks]]\nname = "pgd"\nsteps = 3\n'


@pytest.fixture()
def piped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "_is_terminal", lambda: False)
    monkeypatch.setattr(progress, "PIPED_INTERVAL", 0.0)
    progress.set_enabled(True)
    yield
    progress._enabled = None


def _data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    d = get_dataset("mnist5k").load("test")
    return d.batch(class_balanced_indices(d.targets, n))


def test_attack_progress_lines_when_piped(mnist_natural_ckpt: Path, tmp_path: Path, piped: None,
                                          caplog: pytest.LogCaptureFixture) -> None:
    model = load_checkpoint(mnist_natural_ckpt).model.eval()
    x, y = _data(24)
    ctx = RunContext(parse_suite(SUITE), ThreatModel("linf", 0.3), 0, 8, tmp_path, {})
    with caplog.at_level(logging.INFO, logger="robustbench_lite.progress"):
        run_tasks(model, x, y, ctx)
    lines = [r.getMessage() for r in caplog.records if r.name == "robustbench_lite.progress"]
    assert lines and all("\r" not in s for s in lines)
    assert any("pgd@linf:0.3" in s and "attacked" in s and "robust" in s for s in lines), lines
    assert any("/" in s and "ex" in s for s in lines)  # examples done / to attack


def test_progress_off(mnist_natural_ckpt: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    progress.set_enabled(False)
    try:
        model = load_checkpoint(mnist_natural_ckpt).model.eval()
        x, y = _data(10)
        ctx = RunContext(parse_suite(SUITE), ThreatModel("linf", 0.3), 0, 8, tmp_path, {})
        with caplog.at_level(logging.INFO, logger="robustbench_lite.progress"):
            run_tasks(model, x, y, ctx)
        assert not [r for r in caplog.records if r.name == "robustbench_lite.progress"]
    finally:
        progress._enabled = None


@pytest.mark.slow
def test_autoattack_stage_on_the_bar(mnist_natural_ckpt: Path, piped: None, caplog: pytest.LogCaptureFixture) -> None:
    """The AutoAttack wrapper names its running stage; the numbers are those of a run without bars."""
    model = load_checkpoint(mnist_natural_ckpt).model.eval()
    x, y = _data(6)
    aa = create_attack("autoattack", version="standard", attacks=("apgd-ce", "apgd-t"))
    with caplog.at_level(logging.INFO, logger="robustbench_lite.progress"):
        with progress.progress_bar(total=len(x), desc="aa") as bar:
            out = aa.run(model, x, y, eps=0.05, generator=torch.Generator().manual_seed(0))
            bar.update(len(x))
    lines = " ".join(r.getMessage() for r in caplog.records if r.name == "robustbench_lite.progress")
    assert "apgd-ce on" in lines
    progress.set_enabled(False)
    again = aa.run(model, x, y, eps=0.05, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.success, again.success) and torch.equal(out.x_adv, again.x_adv)
