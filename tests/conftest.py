"""Shared fixtures: tiny trained checkpoints, cached for the session."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

warnings.filterwarnings("ignore", message=".*weights_only.*")
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def synthetic_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small_cnn naturally trained on the synthetic dataset to ~100% clean accuracy (~6 s)."""
    from defenses import build_config, train

    out = tmp_path_factory.mktemp("synthetic_natural")
    cfg = build_config("natural", "mnist5k", {"dataset": "synthetic", "epochs": 8, "batch_size": 16, "eval_n": 32,
                                               "eval_steps": 5})
    path = train(cfg, out, progress=False)
    history = torch.load(path, weights_only=True)["history"]
    assert history[-1]["heldout_clean"] >= 90, "the synthetic fixture model did not learn"
    return path


@pytest.fixture(scope="session")
def mnist_natural_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small_cnn naturally trained for 2 epochs on MNIST-5k (~6 s)."""
    from defenses import build_config, train

    out = tmp_path_factory.mktemp("mnist_natural")
    cfg = build_config("natural", "mnist5k", {"epochs": 2, "eval_n": 50})
    return train(cfg, out, progress=False)
