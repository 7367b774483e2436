"""aggregate_seeds: per-seed final held-out metrics plus mean and sample std, checked by hand."""
from __future__ import annotations

import csv
import statistics
from pathlib import Path

import pytest
import torch

from robustbench_lite.defenses.seeds import aggregate_seeds, format_seeds
from robustbench_lite.checkpoint import make_checkpoint, save_checkpoint
from robustbench_lite.errors import BenchError


def fake_run(out: Path, seed: int, clean: float, pgd: float) -> None:
    hist = [{"epoch": 1, "heldout_clean": 10.0, "heldout_pgd": 0.0}, {"epoch": 2, "heldout_clean": clean, "heldout_pgd": pgd}]
    ck = make_checkpoint(arch="linear", arch_kwargs={}, dataset="synthetic", num_classes=10, input_shape=(1, 28, 28),
                         threat=None, defense="natural", defense_config={}, history=hist,
                         members={"model": torch.nn.Linear(2, 2)})
    save_checkpoint(out / f"seed{seed}" / "checkpoint.pt", ck)


def test_aggregate_seeds(tmp_path: Path) -> None:
    vals = {0: (90.0, 40.0), 1: (92.0, 44.0), 2: (94.0, 45.0)}
    for s, (c, p) in vals.items():
        fake_run(tmp_path, s, c, p)
    path = aggregate_seeds(tmp_path, [0, 1, 2])
    assert path == tmp_path / "seeds.csv"
    rows = list(csv.DictReader(path.open()))
    assert [r["seed"] for r in rows] == ["0", "1", "2", "mean", "std"]
    assert float(rows[1]["heldout_clean"]) == 92.0 and rows[0]["epochs"] == "2"  # the last epoch's metrics
    assert float(rows[3]["heldout_pgd"]) == pytest.approx(43.0)
    assert float(rows[4]["heldout_pgd"]) == pytest.approx(statistics.stdev([40.0, 44.0, 45.0]))
    assert float(rows[4]["heldout_clean"]) == pytest.approx(2.0)
    assert "heldout_clean: 92.00 ± 2.00 (3 seeds)" in format_seeds(path)


def test_aggregate_seeds_errors(tmp_path: Path) -> None:
    fake_run(tmp_path, 0, 90.0, 40.0)
    assert float(list(csv.DictReader(aggregate_seeds(tmp_path, [0]).open()))[2]["heldout_clean"]) == 0.0  # std of one
    with pytest.raises(BenchError):
        aggregate_seeds(tmp_path, [0, 1])
    with pytest.raises(BenchError):
        aggregate_seeds(tmp_path, [])
