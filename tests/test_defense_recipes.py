"""Each recipe: two training steps on synthetic data give finite losses and move exactly the
parameters the recipe says (and nothing else)."""
from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from robustbench_lite.defenses import DEFENSES, AttackConfig, TrainConfig
from robustbench_lite.defenses.base import Members, Optimizers, Recipe
from robustbench_lite.data import get_dataset
from robustbench_lite.errors import BenchError
from robustbench_lite.models import create_model

ATTACK = AttackConfig(norm="linf", eps=0.3, steps=2, step_size=0.1, random_start="normal")


def setup(defense: str, *, arch: str = "small_cnn", arch_kwargs: dict[str, Any] | None = None,
          epochs: int = 2, **options: Any) -> tuple[Recipe, Members, Optimizers, torch.Tensor, torch.Tensor]:
    cfg = TrainConfig(defense=defense, dataset="synthetic", arch=arch, arch_kwargs=arch_kwargs or {}, epochs=epochs,
                      batch_size=16, lr=0.05, attack=ATTACK, options=options)
    recipe = DEFENSES.get(defense)(cfg)
    torch.manual_seed(0)
    members = recipe.members(lambda: create_model(arch, num_classes=10, in_channels=1, **(arch_kwargs or {})))
    optimizers = recipe.optimizers(members)
    data = get_dataset("synthetic").load("train")
    x, y = data.batch(torch.arange(16))
    recipe.set_epoch(epochs - 1)
    recipe.on_epoch_start(epochs - 1, members, optimizers)
    return recipe, members, optimizers, x, y


def snapshot(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def changed(before: dict[str, torch.Tensor], m: torch.nn.Module) -> set[str]:
    return {k for k, v in m.state_dict().items() if not torch.equal(v, before[k])}


def two_steps(recipe: Recipe, members: Members, optimizers: Optimizers, x: torch.Tensor, y: torch.Tensor) -> list[dict[str, float]]:
    g = torch.Generator().manual_seed(0)
    logs = [recipe.train_step(members, optimizers, x, y, g) for _ in range(2)]
    for log in logs:
        assert all(math.isfinite(v) for v in log.values()), log
    return logs


def weight_names(m: torch.nn.Module) -> set[str]:
    return {k for k, p in m.named_parameters()}


@pytest.mark.parametrize("defense", ["natural", "madry", "trades"])
def test_single_model_recipes_move_every_parameter(defense: str) -> None:
    recipe, members, opts, x, y = setup(defense)
    before = snapshot(members["model"])
    two_steps(recipe, members, opts, x, y)
    assert changed(before, members["model"]) == weight_names(members["model"])


def test_trades_attacks_in_eval_mode_and_trains_on_clean_and_adversarial() -> None:
    recipe, members, opts, x, y = setup("trades", beta=6.0)
    model = members["model"]
    calls: list[tuple[bool, torch.Tensor]] = []
    h = model.register_forward_pre_hook(lambda mod, inp: calls.append((mod.training, inp[0].detach().clone())))
    recipe.train_step(members, opts, x, y, torch.Generator().manual_seed(0))
    h.remove()
    modes = [m for m, _ in calls]
    # clean reference + 2 attack steps in eval mode, then f(x) and f(x') in train mode
    assert modes == [False, False, False, True, True]
    assert torch.equal(calls[3][1], x)
    x_adv = calls[4][1]
    assert (x_adv - x).abs().max() <= 0.3 + 1e-6 and not torch.equal(x_adv, x)
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_act_moves_both_models_and_natural_sees_only_clean_inputs() -> None:
    recipe, members, opts, x, y = setup("act")
    g, f = members["model"], members["natural"]
    assert not all(torch.equal(a, b) for a, b in zip(g.parameters(), f.parameters()))  # independent init
    seen: list[torch.Tensor] = []
    h = f.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].detach().clone()))
    bg, bf = snapshot(g), snapshot(f)
    two_steps(recipe, members, opts, x, y)
    h.remove()
    assert len(seen) == 2 and all(torch.equal(s, x) for s in seen)  # one clean forward per step, never x'
    assert changed(bg, g) == weight_names(g) and changed(bf, f) == weight_names(f)
    assert set(opts) == {"model", "natural"}
    assert recipe.eval_member == "model"


def test_act_robust_model_trains_on_adversarial_inputs() -> None:
    recipe, members, opts, x, y = setup("act")
    seen: list[tuple[bool, torch.Tensor]] = []
    h = members["model"].register_forward_pre_hook(lambda mod, inp: seen.append((mod.training, inp[0].detach().clone())))
    recipe.train_step(members, opts, x, y, torch.Generator().manual_seed(0))
    h.remove()
    assert [m for m, _ in seen] == [False, False, True]  # attack (eval), then G(x') in train mode
    assert not torch.equal(seen[-1][1], x) and (seen[-1][1] - x).abs().max() <= 0.3 + 1e-6


@pytest.mark.parametrize("variant", ["aft", "aft_rgkd", "aft_nr", "arrest"])
def test_arrest_reference_never_changes(variant: str) -> None:
    recipe, members, opts, x, y = setup("arrest", variant=variant, stage1_epochs=1, epochs=3)
    recipe.set_epoch(1)  # first finetuning epoch: the reference is frozen from the current weights
    recipe.on_epoch_start(1, members, opts)
    ref = members["reference"]
    assert all(not p.requires_grad for p in ref.parameters()) and not ref.training
    assert set(opts) == {"model"} and all(p not in {id(q) for q in ref.parameters()} for p in map(id, [
        p for grp in opts["model"].param_groups for p in grp["params"]]))
    before_ref, before = snapshot(ref), snapshot(members["model"])
    logs = two_steps(recipe, members, opts, x, y)
    assert changed(before_ref, ref) == set()
    assert changed(before, members["model"]) == weight_names(members["model"])
    assert ("rgkd" in logs[0]) == (variant in ("aft_rgkd", "arrest"))


def test_arrest_noisy_replay_switches_to_uniform_noise() -> None:
    from robustbench_lite.defenses.losses import angular_distance

    recipe, members, opts, x, y = setup("arrest", variant="aft_nr", stage1_epochs=1, epochs=3, phi=0.5)
    recipe.set_epoch(1)
    recipe.on_epoch_start(1, members, opts)
    model, ref = members["model"], members["reference"]
    g = torch.Generator().manual_seed(0)
    first = recipe.train_step(members, opts, x, y, g)
    assert first["nr_frac"] == 0.0  # model == reference at the start of AFT: distance 0, PGD examples
    with torch.no_grad():  # let the representation drift from the reference, as finetuning does
        pg = torch.Generator().manual_seed(1)
        for p in model.feature_extractor.parameters():
            p.add_(0.2 * p.abs().mean() * torch.randn(p.shape, generator=pg))
    model.eval()
    with torch.no_grad():
        switch = angular_distance(model.features(x).pre_pool, ref.features(x).pre_pool) > recipe.tau
    model.train()
    assert switch.any()
    seen: list[torch.Tensor] = []
    h = model.feature_extractor.register_forward_pre_hook(
        lambda mod, inp: seen.append(inp[0].detach().clone()) if mod.training else None)
    second = recipe.train_step(members, opts, x, y, g)
    h.remove()
    assert second["nr_frac"] == pytest.approx(switch.float().mean().item())
    delta = seen[-1] - x
    assert delta.abs().max() <= 0.3 + 1e-6
    inside = (delta.abs() < 0.29) & (seen[-1] > 0) & (seen[-1] < 1)  # strictly inside the ball and the box
    # replaced rows carry uniform noise (most coordinates inside the ball); the others are 2-step sign-PGD points
    assert inside[switch].float().mean() > 0.5
    if (~switch).any():
        assert inside[~switch].float().mean() < inside[switch].float().mean()
    # NR is inactive after the first half of finetuning (nr_epochs = 2 // 2 = 1)
    recipe.set_epoch(2)
    assert recipe.train_step(members, opts, x, y, g)["nr_frac"] == 0.0


def test_arrest_stage1_is_standard_training() -> None:
    recipe, members, opts, x, y = setup("arrest", stage1_epochs=1, epochs=2)
    recipe.set_epoch(0)
    seen: list[torch.Tensor] = []
    h = members["model"].register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].detach().clone()))
    recipe.train_step(members, opts, x, y, torch.Generator().manual_seed(0))
    h.remove()
    assert len(seen) == 1 and torch.equal(seen[0], x)


def test_arrest_option_errors() -> None:
    with pytest.raises(BenchError):
        setup("arrest")  # neither init nor stage 1
    with pytest.raises(BenchError):
        setup("arrest", stage1_epochs=1, variant="rgkd_only")


AFD = dict(arch="afd_net", arch_kwargs={"backbone": "small_cnn"})


@pytest.mark.parametrize("order,gan,attack", [("code", "wgan", "apgd"), ("paper", "dcgan", "pgd")])
def test_afd_two_steps(order: str, gan: str, attack: str) -> None:
    recipe, members, opts, x, y = setup("afd", update_order=order, gan_loss=gan, attack=attack, **AFD)  # type: ignore[arg-type]
    bm, bd = snapshot(members["model"]), snapshot(members["discriminator"])
    two_steps(recipe, members, opts, x, y)
    assert {n for n in changed(bm, members["model"])} >= weight_names(members["model"]) - {"net.fc3.weight", "net.fc3.bias"}
    # WGAN's L_D = mean D(z') - mean D(z) does not depend on the output bias (it cancels)
    expect = weight_names(members["discriminator"]) - ({"out.bias"} if gan == "wgan" else set())
    assert changed(bd, members["discriminator"]) >= expect
    assert set(opts) == {"model", "discriminator", "features"}


def test_afd_feature_step_leaves_classifier_and_discriminator_untouched() -> None:
    recipe, members, opts, x, y = setup("afd", **AFD)  # type: ignore[arg-type]
    model, disc = members["model"], members["discriminator"]
    x_adv = recipe.adversarial(model, x, y, torch.Generator().manual_seed(0))
    assert (x_adv - x).abs().max() <= 0.3 + 1e-6
    recipe.step_classifier(members, opts, x, y)  # gives Dc non-zero weights, so E gets a CE gradient later too
    recipe.step_discriminator(members, opts, x, x_adv, y)
    bm, bd = snapshot(model), snapshot(disc)
    recipe.step_features(members, opts, x_adv, y)
    moved = changed(bm, model)
    assert moved and all(not k.startswith("net.fc3.") for k in moved)  # Dc (the last linear layer) untouched
    feat, cls = model.split_parameters((1, 28, 28))
    assert {id(p) for p in cls} == {id(model.net.fc3.weight), id(model.net.fc3.bias)}
    assert changed(bd, disc) == set()  # Da's weights and spectral-norm buffers untouched
    # the classifier step leaves Da untouched; the discriminator step leaves E and Dc untouched
    bm, bd = snapshot(model), snapshot(disc)
    recipe.step_discriminator(members, opts, x, x_adv, y)
    assert changed(bm, model) == set() and changed(bd, disc)
    bm, bd = snapshot(model), snapshot(disc)
    recipe.step_classifier(members, opts, x, y)
    assert changed(bd, disc) == set() and {"net.fc3.weight", "net.fc3.bias"} <= changed(bm, model)


def test_afd_needs_afd_net() -> None:
    with pytest.raises(BenchError):
        setup("afd")


def test_unknown_option_is_a_bench_error() -> None:
    with pytest.raises(BenchError):
        setup("trades", gamma=1.0)


def test_amp_bf16_training_keeps_fp32_weights_and_learns(tmp_path, monkeypatch):
    """--amp: bf16 autocast around the training passes only where bf16 is native; weights stay fp32."""
    import contextlib

    from robustbench_lite.defenses import build_config, train
    from robustbench_lite.defenses import trainer as tr
    from robustbench_lite.checkpoint import load_checkpoint

    cpu = torch.device("cpu")
    assert isinstance(tr.training_autocast(cpu, False), contextlib.nullcontext)
    monkeypatch.setattr(tr, "bf16_native", lambda device: False)
    assert isinstance(tr.training_autocast(cpu, True), contextlib.nullcontext)  # no native bf16: fp32
    monkeypatch.setattr(tr, "bf16_native", lambda device: True)
    ctx = tr.training_autocast(cpu, True)
    with ctx:
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    seen: list[bool] = []
    original = tr.DEFENSES.get("natural").train_step

    def spy(self, *a, **k):  # type: ignore[no-untyped-def]
        seen.append(torch.is_autocast_enabled("cpu"))
        return original(self, *a, **k)

    monkeypatch.setattr(tr.DEFENSES.get("natural"), "train_step", spy)
    path = train(build_config("natural", "mnist5k", {"epochs": 2, "eval_n": 50, "amp": True}), tmp_path, progress=False)
    assert seen and all(seen)
    ckpt = load_checkpoint(path)
    assert all(p.dtype == torch.float32 for p in ckpt.model.parameters())
    assert ckpt.defense_config["amp"] is True and ckpt.defense_config["precision"] == "bf16" and ckpt.history[-1]["heldout_clean"] > 80


@pytest.mark.parametrize("kwargs,message", [
    ({"lr": -1.0}, "lr must be a number > 0, got -1.0"),
    ({"lr": float("nan")}, "lr must be a number > 0, got nan"),
    ({"weight_decay": -1e-4}, "weight_decay must be a number >= 0"),
    ({"epochs": 0}, "epochs must be an integer >= 1, got 0"),
    ({"batch_size": 2.5}, "batch_size must be an integer >= 1, got 2.5"),
    ({"milestones": (-1,)}, "a milestone must be an integer >= 0"),
    ({"attack": AttackConfig(steps=1)}, None),
])
def test_training_settings_are_checked(kwargs: dict[str, Any], message: str | None) -> None:
    """A negative or NaN learning rate used to reach torch.optim as a traceback, or (NaN) to train a
    NaN model and write its checkpoint; now it is one clear error before any work."""
    if message is None:
        TrainConfig(defense="madry", **kwargs)
        with pytest.raises(BenchError, match="attack steps must be an integer >= 1, got 0"):
            AttackConfig(steps=0)
        return
    with pytest.raises(BenchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig(defense="madry", **kwargs)


@pytest.mark.parametrize("defense,options,message", [
    ("trades", {"beta": "abc"}, "option beta must be a number, got 'abc'"),
    ("arrest", {"stage1_epochs": 1.5}, "option stage1_epochs must be an integer, got 1.5"),
    ("afd", {"reset_classifier": 1}, "option reset_classifier must be true or false, got 1"),
    ("act", {"attack_form": 3}, "option attack_form must be a string, got 3"),
])
def test_recipe_options_have_their_defaults_type(defense: str, options: dict[str, Any], message: str) -> None:
    cfg = TrainConfig(defense=defense, options=options)
    with pytest.raises(BenchError, match=message):
        DEFENSES.get(defense)(cfg)
    DEFENSES.get("trades")(TrainConfig(defense="trades", options={"beta": 6}))  # an integer is a number
