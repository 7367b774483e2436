"""Interrupting a recipe and resuming gives exactly the weights of an uninterrupted run (CPU):
2 epochs straight vs ``train(..., stop_after=1)`` then ``train(..., resume=True)``. Every member's
state_dict (ACT's two models, ARREST's frozen reference, AFD's discriminator and its spectral-norm
buffers) and every optimizer's state must match exactly."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from robustbench_lite.defenses import AttackConfig, TrainConfig, train
from robustbench_lite.checkpoint import read_checkpoint_dict

ATTACK = AttackConfig(norm="linf", eps=0.3, steps=2, step_size=0.1, random_start="normal")
AFD = {"arch": "afd_net", "arch_kwargs": {"backbone": "small_cnn"}}

CASES: dict[str, dict[str, Any]] = {
    "natural": {"defense": "natural"},
    "madry": {"defense": "madry", "eps_warmup_epochs": 2},
    "trades": {"defense": "trades"},
    "act": {"defense": "act"},
    "arrest_stage1": {"defense": "arrest", "options": {"stage1_epochs": 1, "phi": 1.0}},
    "afd": {"defense": "afd", **AFD},
}


def cfg_for(case: dict[str, Any], epochs: int = 2) -> TrainConfig:
    return TrainConfig(dataset="synthetic", epochs=epochs, batch_size=64, lr=0.05, attack=ATTACK, eval_n=20, eval_steps=1,
                       **case)


def assert_same(a: Path, b: Path) -> None:
    ca, cb = read_checkpoint_dict(a), read_checkpoint_dict(b)
    assert ca["members"].keys() == cb["members"].keys()
    for m in ca["members"]:
        sa, sb = ca["members"][m], cb["members"][m]
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), f"{m}.{k} differs after resume"
    oa, ob = ca["train_state"]["optimizers"], cb["train_state"]["optimizers"]
    assert oa.keys() == ob.keys()
    for name in oa:
        for pid, st in oa[name]["state"].items():
            for k, v in st.items():
                if isinstance(v, torch.Tensor):
                    assert torch.equal(v, ob[name]["state"][pid][k]), f"optimizer {name} state differs"
    assert [r["heldout_clean"] for r in ca["history"]] == [r["heldout_clean"] for r in cb["history"]]


def run_both(cfg: TrainConfig, tmp: Path) -> None:
    straight = train(cfg, tmp / "straight", progress=False)
    train(cfg, tmp / "resumed", progress=False, stop_after=1)
    assert len(read_checkpoint_dict(tmp / "resumed" / "checkpoint.pt")["history"]) == 1
    resumed = train(cfg, tmp / "resumed", progress=False, resume=True)
    assert_same(straight, resumed)


@pytest.mark.parametrize("name", list(CASES))
def test_resume_matches_uninterrupted(name: str, tmp_path: Path) -> None:
    run_both(cfg_for(CASES[name]), tmp_path)


def test_resume_arrest_from_init_restores_frozen_reference(tmp_path: Path) -> None:
    nat = train(cfg_for({"defense": "natural"}, epochs=1), tmp_path / "nat", progress=False)
    cfg = cfg_for({"defense": "arrest", "options": {"init": str(nat), "phi": 1.0}})
    run_both(cfg, tmp_path)
    # the reference is the pretrained model throughout, bit for bit
    ref = read_checkpoint_dict(tmp_path / "resumed" / "checkpoint.pt")["members"]["reference"]
    pre = read_checkpoint_dict(nat)["members"]["model"]
    assert all(torch.equal(ref[k], pre[k]) for k in pre)


@pytest.mark.slow
@pytest.mark.parametrize("options", [{"update_order": "paper", "gan_loss": "dcgan"}, {"attack": "pgd"}])
def test_resume_afd_variants(options: dict[str, Any], tmp_path: Path) -> None:
    run_both(cfg_for({"defense": "afd", **AFD, "options": options}), tmp_path)


@pytest.mark.slow
def test_resume_arrest_mid_finetuning(tmp_path: Path) -> None:
    cfg = cfg_for({"defense": "arrest", "options": {"stage1_epochs": 1, "phi": 1.0}}, epochs=3)
    straight = train(cfg, tmp_path / "straight", progress=False)
    train(cfg, tmp_path / "resumed", progress=False, stop_after=2)
    assert_same(straight, train(cfg, tmp_path / "resumed", progress=False, resume=True))


@pytest.mark.parametrize("name", ["madry", "act", "afd"])
def test_resume_matches_uninterrupted_under_bf16_autocast(name: str, tmp_path: Path) -> None:
    """--amp: a resumed bf16 run equals the uninterrupted one bit for bit (fp32 where bf16 is not native)."""
    cfg = cfg_for({**CASES[name], "amp": True})
    run_both(cfg, tmp_path)
    from robustbench_lite.defenses.trainer import bf16_native

    want = "bf16" if bf16_native(torch.device("cpu")) else "fp32"
    assert read_checkpoint_dict(tmp_path / "resumed" / "checkpoint.pt")["defense_config"]["precision"] == want
