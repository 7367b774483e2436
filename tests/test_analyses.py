"""``bench analyze`` (evaluations/analyses.py): each measurement against closed forms / numpy, and
the whole report on a tiny synthetic checkpoint through the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from robustbench_lite.defenses import AttackConfig, TrainConfig, train
from robustbench_lite.evaluations.analyses import (AnalysisOptions, analyze, domain_distance, frobenius_norms, mean_cosine,
                                  posterior_entropy, random_label_fit, sparsity)
from robustbench_lite.errors import BenchError
from robustbench_lite.models import create_model


def test_frobenius_norms_match_numpy() -> None:
    torch.manual_seed(0)
    m = create_model("small_cnn", num_classes=10, in_channels=1)
    rows = frobenius_norms(m)
    assert [r["layer"] for r in rows] == ["feature_extractor.conv1.weight", "feature_extractor.conv2.weight",
                                          "feature_extractor.conv3.weight", "feature_extractor.conv4.weight",
                                          "trunk.fc1.weight", "trunk.fc2.weight", "fc3.weight"]
    w = m.feature_extractor.conv1.weight.detach().numpy()
    assert rows[0]["frobenius"] == pytest.approx(np.sqrt((w ** 2).sum()), rel=1e-6)
    assert rows[-1]["frobenius"] == 0.0  # small_cnn zero-initialises its last layer


def test_posterior_entropy() -> None:
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [10.0, 0.0, 0.0, 0.0]])
    p = np.exp([10.0, 0, 0, 0]) / np.exp([10.0, 0, 0, 0]).sum()
    want = (np.log(4) + -(p * np.log(p)).sum()) / 2
    assert posterior_entropy(logits) == pytest.approx(want, rel=1e-9)


def test_sparsity_and_pca_dimensions() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(200, 1, generator=g), torch.randn(200, 1, generator=g)
    # 6 columns: two all-zero, the rest spanned by two directions -> 4 non-zero, 2 PCA dims
    feats = torch.cat([a, b, torch.zeros(200, 1), a + b, 2 * a, torch.zeros(200, 1)], 1)
    s = sparsity(feats)
    assert s["nonzero_features"] == 4 and s["pca_dims_99"] == 2
    assert s["mean_nonzero"] == pytest.approx(4.0)
    iso = torch.randn(2000, 5, generator=g)
    assert sparsity(iso)["pca_dims_99"] == 5


def test_mean_cosine() -> None:
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[2.0, 0.0], [-1.0, 0.0]])
    assert mean_cosine(a, b) == pytest.approx((1.0 - 1 / np.sqrt(2)) / 2)


def test_domain_distance_separates_shifted_features() -> None:
    g = torch.Generator().manual_seed(0)
    clean = torch.randn(200, 4, generator=g)
    same = torch.randn(200, 4, generator=g)
    shifted = clean + 6.0
    assert domain_distance(clean, shifted) == pytest.approx(2.0, abs=0.05)  # perfectly separable
    assert domain_distance(clean, same) < 0.5
    with pytest.raises(BenchError):
        domain_distance(clean[:3], same[:3])


def test_random_label_fit_curve() -> None:
    feats = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    curve = random_label_fit(feats, epochs=20, seed=0)
    assert len(curve) == 20 and all(0 <= c <= 100 for c in curve)
    assert curve[-1] > curve[0]  # 64 points in 8-d with a 400-200 MLP: memorised over the epochs
    assert random_label_fit(feats, epochs=20, seed=0) == curve  # deterministic
    const = torch.zeros(64, 8)
    assert max(random_label_fit(const, epochs=5, seed=0)) <= 70  # no information: about chance


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("nat")
    cfg = TrainConfig(defense="natural", dataset="synthetic", epochs=1, batch_size=64, lr=0.05, eval_n=20, eval_steps=1,
                      attack=AttackConfig(norm="linf", eps=0.3, steps=1, step_size=0.1))
    return train(cfg, out, progress=False)


def test_analyze_writes_every_output(tiny_ckpt: Path, tmp_path: Path) -> None:
    res = analyze(tiny_ckpt, tmp_path, AnalysisOptions(n_examples=40, reference=str(tiny_ckpt), random_label_epochs=3,
                                                       eps_fractions=(0.5, 1.0), pgd_steps=2))
    for f in ("frobenius.csv", "frobenius.png", "random_labels.csv", "random_labels.png", "hdh.csv", "hdh.png",
              "analyses.json"):
        assert (tmp_path / f).is_file(), f
    stored = json.loads((tmp_path / "analyses.json").read_text())
    assert stored == pytest.approx(res)
    assert all(isinstance(v, float) for v in stored.values())
    assert res["cosine_to_reference"] == pytest.approx(1.0)  # a model against itself
    assert 0 <= res["posterior_entropy"] <= np.log(10) + 1e-9
    assert res["feature_dim"] == 200 and 0 <= res["pca_dims_99"] <= 200
    assert 0 <= res["hdh_distance"] <= 2
    assert len((tmp_path / "hdh.csv").read_text().splitlines()) == 3


def test_bench_analyze_cli(tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from robustbench_lite.cli import build_parser, main

    help_text = build_parser()._subparsers._group_actions[0].choices["analyze"].format_help()  # type: ignore[union-attr]
    for flag in ("--model", "--out", "--reference", "--n-examples"):
        assert flag in help_text
    rc = main(["analyze", "--model", str(tiny_ckpt), "--out", str(tmp_path / "a"), "--n-examples", "20",
               "--random-label-epochs", "2", "--pgd-steps", "1"])
    assert rc == 0
    assert "posterior_entropy" in capsys.readouterr().out
    assert (tmp_path / "a" / "analyses.json").is_file()
    assert main(["analyze", "--model", str(tmp_path / "missing.pt")]) == 2  # one-sentence BenchError


_ = nn
