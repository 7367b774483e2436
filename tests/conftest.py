"""Shared fixtures (pytest finds them here: never import a fixture by name).

- ``synthetic_ckpt``: small_cnn naturally trained on the synthetic dataset (~100% clean accuracy).
- ``mnist_natural_ckpt`` / ``eval_natural_ckpt``: small_cnn naturally trained 2 epochs on MNIST-5k.
- ``eval_model``: that model loaded, in eval mode; ``eval_batch``: 32 class-balanced MNIST-5k test
  examples (x in [0,1], y).
- ``temporary_attacks``: registers a test's own attacks and removes them afterwards, so the global
  registry (and the contract tests parametrised over ``ATTACKS.names()``) never sees them.

Plain helpers (the ``Counting`` and ``Rounding`` models, ``linear_problem``, ``linear_min_norms``) live in
``eval_helpers.py``, imported normally.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Iterator

import pytest
import torch
from torch import nn

warnings.filterwarnings("ignore", message=".*weights_only.*")
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def synthetic_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small_cnn naturally trained on the synthetic dataset to ~100% clean accuracy (~6 s)."""
    from robustbench_lite.defenses import build_config, train

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
    from robustbench_lite.defenses import build_config, train

    out = tmp_path_factory.mktemp("mnist_natural")
    cfg = build_config("natural", "mnist5k", {"epochs": 2, "eval_n": 50})
    return train(cfg, out, progress=False)


@pytest.fixture(scope="session")
def eval_natural_ckpt(mnist_natural_ckpt: Path) -> Path:
    """The model of the evaluation tests: the 2-epoch natural MNIST-5k model (1 epoch left a model at
    chance level with predictions collapsed onto one class on some CPUs, which the prediction checks
    rightly flag)."""
    return mnist_natural_ckpt


@pytest.fixture(scope="session")
def eval_model(eval_natural_ckpt: Path) -> nn.Module:
    from robustbench_lite.checkpoint import load_checkpoint

    return load_checkpoint(eval_natural_ckpt).model.eval()


@pytest.fixture(scope="session")
def eval_batch() -> tuple[torch.Tensor, torch.Tensor]:
    from robustbench_lite.data import class_balanced_indices, get_dataset

    d = get_dataset("mnist5k").load("test")
    return d.batch(class_balanced_indices(d.targets, 32))


@pytest.fixture
def temporary_attacks() -> Iterator[Callable[[str, type], type]]:
    """``temporary_attacks(name, cls)`` registers ``cls`` as attack ``name`` for this test only (like
    ``@register_attack(name)``); every attack it registered is unregistered at teardown, pass or fail."""
    from robustbench_lite.evaluations.attacks import ATTACKS, register_attack

    added: list[str] = []

    def register(name: str, cls: type) -> type:
        register_attack(name)(cls)
        added.append(name)
        return cls

    yield register
    for name in reversed(added):
        ATTACKS.unregister(name)
