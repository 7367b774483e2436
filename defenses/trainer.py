"""The one trainer loop every recipe plugs into.

Per epoch: shuffle with a seeded ``torch.Generator``, augment as the dataset says, call the
recipe's ``train_step`` per batch, set the LR from the schedule, evaluate clean and PGD accuracy
on a held-out slice, append a row to ``log.csv`` and write ``checkpoint.pt`` atomically with the
optimizer and RNG states, so ``resume=True`` continues exactly where it stopped (the same final
weights as an uninterrupted run on the CPU).

Progress: a bar over the epoch's batches (running loss, and adversarial or clean batch accuracy)
and one over the held-out PGD blocks, drawn in place on a terminal and logged every 30 s when
stderr is piped (:mod:`robustbench_lite.progress`); ``progress=False`` hides both.

Divergence: a NaN or infinite logged value (checked every step; the logs are Python floats) or
parameter/buffer (checked before each save) stops the run with a :class:`BenchError` naming the
epoch and step; nothing is saved for that epoch, so the last good checkpoint stays as it was.

``log.csv`` is rounded for reading (6 significant digits, seconds to 2 decimals); the checkpoint's
``history`` keeps full precision. Held-out accuracies are exact percentages of counts.

Under ``torchrun`` (:mod:`defenses.ddp`): every rank draws the global batch and trains on its rows
with DistributedDataParallel; rank 0 alone computes the held-out metrics, shows progress, logs and
writes ``checkpoint.pt`` and ``log.csv``; ``resume=True`` loads the same checkpoint on every rank.
"""
from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch

from robustbench_lite import distributed
from robustbench_lite.checkpoint import make_checkpoint, read_checkpoint_dict, save_checkpoint
from robustbench_lite.data import augment, class_balanced_indices, get_dataset
from robustbench_lite.errors import BenchError
from robustbench_lite.models import create_model
from robustbench_lite.progress import Bar, progress_bar
from robustbench_lite.utils import atomic_write_text, frozen, make_generator, resolve_device, set_channels_last

from robustbench_lite.evaluations.attacks import predict
from robustbench_lite.evaluations.pgd import default_step_size, pgd

from . import ddp, load_recipes
from .base import DEFENSES, Members, Optimizers, Recipe, TrainConfig

logger = logging.getLogger(__name__)


def heldout_metrics(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
                    batch_size: int | None = None, *, progress: bool = True, desc: str | None = None) -> dict[str, float]:
    """Clean and PGD accuracy (percent, from exact counts) on the held-out slice, at the training threat.

    ``batch_size`` (default: the recipe's training batch) rows per pass. A progress bar runs over
    the PGD blocks (``progress=False`` or ``--no-progress``: none)."""
    a = cfg.attack
    batch_size = batch_size or cfg.batch_size
    with frozen(model):
        clean = int((predict(model, x, batch_size) == y).sum())
        g = make_generator(cfg.seed + 10_000)
        robust = 0
        with _bar(progress, total=len(x), desc=desc or f"held-out pgd{cfg.eval_steps} {a.norm}:{a.eps:g}",
                  unit="ex") as bar:
            for i in range(0, len(x), batch_size):
                r = pgd(model, x[i:i + batch_size], y[i:i + batch_size], norm=a.norm, eps=a.eps, steps=cfg.eval_steps,
                        step_size=default_step_size(a.eps, cfg.eval_steps), generator=g)
                robust += int((~r.success).sum())  # type: ignore[operator]
                bar.update(len(r.success))  # type: ignore[arg-type]
                bar.set_postfix_str(f"pgd acc {100 * robust / min(i + batch_size, len(x)):.1f}%")
    n = max(len(x), 1)
    return {"heldout_clean": 100 * clean / n, "heldout_pgd": 100 * robust / n}


def _bar(progress: bool, total: int, desc: str, unit: str) -> Bar:
    """A :func:`progress_bar` (terminal: in place; piped: a log line every 30 s), or a silent one."""
    return progress_bar(total=total, desc=desc, unit=unit) if progress else Bar(total=total, disable=True)


def _set_lr(recipe: Recipe, optimizers: Optimizers, epoch: int, base_lrs: dict[str, list[float]]) -> float:
    for name, opt in optimizers.items():
        for group, base in zip(opt.param_groups, base_lrs[name]):
            group["lr"] = recipe.cfg.lr_at(epoch, base)
    return recipe.cfg.lr_at(epoch)


def train(cfg: TrainConfig, out_dir: str | Path, *, resume: bool = False, device: str | None = None,
          progress: bool = True, stop_after: int | None = None, sync_bn: bool = False,
          on_epoch: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """Train ``cfg.defense``; returns the checkpoint path (``out_dir/checkpoint.pt``).

    ``stop_after`` ends the run after that many epochs of this call (used to test resume).
    ``progress=False`` shows no bars. A diverging run raises :class:`BenchError` and saves nothing
    for the epoch it diverged in. In a process group of several ranks (``torchrun``, after
    :func:`robustbench_lite.distributed.setup`) the run is data-parallel (:mod:`defenses.ddp`);
    ``sync_bn`` then normalises by the global batch's statistics (CUDA only).
    """
    out = Path(out_dir)
    ckpt_path = out / "checkpoint.pt"
    world = distributed.world()
    dev = distributed.device_for(device) if world.distributed else resolve_device(device)
    progress = progress and world.main
    spec = get_dataset(cfg.dataset)
    load_recipes()
    recipe = DEFENSES.get(cfg.defense)(cfg)
    train_data = spec.load("train", cfg.data_dir)
    test_data = spec.load("test", cfg.data_dir)
    hx, hy = test_data.batch(class_balanced_indices(test_data.targets, cfg.eval_n))
    hx, hy = hx.to(dev), hy.to(dev)

    torch.manual_seed(cfg.seed)
    members: Members = recipe.members(
        lambda: create_model(cfg.arch, num_classes=spec.num_classes, in_channels=spec.input_shape[0], **cfg.arch_kwargs))
    for m in members.values():
        m.to(dev)
        set_channels_last(m, cfg.channels_last)  # before the optimizers see the parameters
    optimizers = recipe.optimizers(members)
    base_lrs = {k: [g["lr"] for g in o.param_groups] for k, o in optimizers.items()}
    gen = make_generator(cfg.seed)
    history: list[dict[str, Any]] = []
    start = 0
    if resume and ckpt_path.exists():
        start, history = _restore(ckpt_path, cfg, members, optimizers, gen)
        if world.main:
            logger.info("resuming %s from epoch %d", ckpt_path, start)
    elif resume and world.main:
        logger.info("--resume: no checkpoint at %s yet, starting fresh", ckpt_path)
    elif ckpt_path.exists() and not resume:
        raise BenchError(f"{ckpt_path} already exists; pass --resume to continue it or choose another --out.")
    n = len(train_data)
    shard: ddp.Shard | None = None
    replicas: dict[str, Any] = dict(members)
    if world.distributed:
        ddp.check_batch(cfg.batch_size, n, world.size)
        shard = ddp.Shard(world.rank, world.size)
        replicas = ddp.prepare(members, shard, dev, sync_bn=sync_bn, find_unused=recipe.ddp_find_unused)
        if world.main and not sync_bn and ddp.has_batchnorm(members):
            logger.info("BatchNorm normalises by each rank's rows (pass --sync-bn on GPUs for the global batch's)")
    recipe.shard = shard
    if world.main:
        out.mkdir(parents=True, exist_ok=True)

    autocast = training_autocast(dev, cfg.amp)
    precision = "bf16" if isinstance(autocast, torch.autocast) else "fp32"
    n_steps = -(-n // cfg.batch_size)
    done_now = 0
    for epoch in range(start, cfg.epochs):
        if stop_after is not None and done_now >= stop_after:
            break
        lr = _set_lr(recipe, optimizers, epoch, base_lrs)
        recipe.set_epoch(epoch)
        recipe.on_epoch_start(epoch, members, optimizers)
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen)
        sums: dict[str, float] = {}
        count = 0
        where = f"{cfg.defense} epoch {epoch + 1}/{cfg.epochs}"
        with _bar(progress, total=n_steps, desc=where, unit="batch") as bar:
            for step, i in enumerate(range(0, n, cfg.batch_size), 1):
                x, y = train_data.batch(perm[i:i + cfg.batch_size])
                x = augment(x, spec.augmentation, gen)  # the global batch: every rank draws the same
                rows_in_batch = len(y)
                if shard is not None:  # this rank's rows
                    rows = shard.split(rows_in_batch, dev).cpu()
                    x, y = x[rows], y[rows]
                x, y = x.to(dev), y.to(dev)
                with autocast:
                    logs = recipe.train_step(replicas, optimizers, x, y, gen)
                if shard is not None:  # the global batch's means, on every rank
                    logs = ddp.reduce_logs(logs, shard, dev)
                _check_finite_logs(logs, cfg, epoch, step, n_steps, lr, ckpt_path, len(history))
                for k, v in logs.items():
                    sums[k] = sums.get(k, 0.0) + v * rows_in_batch
                count += rows_in_batch
                bar.update()
                bar.set_postfix_str(_postfix(sums, count))
        _check_finite_members(members, cfg, epoch, n_steps, lr, ckpt_path, len(history))
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, **{k: v / max(count, 1) for k, v in sums.items()}}
        done_now += 1
        if not world.main:  # rank 0 alone evaluates, logs and writes
            history.append(row)
            continue
        row.update(heldout_metrics(members[recipe.eval_member], hx, hy, cfg, progress=progress,
                                   desc=f"{where} held-out pgd{cfg.eval_steps}"))
        row["seconds"] = round(time.perf_counter() - t0, 2)
        history.append(row)
        logger.info("%s epoch %d/%d: %s", cfg.defense, epoch + 1, cfg.epochs,
                    ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch"))
        _save(ckpt_path, cfg, recipe, members, optimizers, gen, history, epoch + 1, spec, precision)
        _write_log(out / "log.csv", history)
        if on_epoch:
            on_epoch(row)
    if world.distributed:  # no rank returns (or reads the checkpoint) before rank 0 has written it
        distributed.barrier()
    return ckpt_path


def _postfix(sums: dict[str, float], count: int) -> str:
    """The bar's postfix: the epoch's running mean loss, and its adversarial (else clean) batch accuracy."""
    parts = [f"loss {sums.get('loss', 0.0) / max(count, 1):.4g}"]
    for key, label in (("adv_acc", "adv acc"), ("acc", "acc")):
        if key in sums:
            parts.append(f"{label} {100 * sums[key] / max(count, 1):.1f}%")
            break
    return ", ".join(parts)


def _diverged(cfg: TrainConfig, epoch: int, what: str, lr: float, ckpt_path: Path, saved_epochs: int) -> BenchError:
    kept = (f"{ckpt_path} still holds epoch {saved_epochs}" if saved_epochs else "no checkpoint was written")
    return BenchError(f"training {cfg.defense} diverged in epoch {epoch + 1}/{cfg.epochs}: {what}; this epoch was not "
                      f"saved ({kept}); try a lower --lr (this epoch's lr is {lr:g}).")


def _check_finite_logs(logs: dict[str, float], cfg: TrainConfig, epoch: int, step: int, n_steps: int, lr: float,
                       ckpt_path: Path, saved_epochs: int) -> None:
    """Stop at the first step whose logged loss (or any logged value) is NaN or infinite. The logs are
    Python floats already, so this costs nothing per step."""
    for k, v in logs.items():
        try:
            finite = math.isfinite(v)
        except TypeError:  # a recipe may log something that is no number; not ours to judge
            continue
        if not finite:
            raise _diverged(cfg, epoch, f"{k} is {float(v)} at step {step}/{n_steps}", lr, ckpt_path, saved_epochs)


def _check_finite_members(members: Members, cfg: TrainConfig, epoch: int, n_steps: int, lr: float,
                          ckpt_path: Path, saved_epochs: int) -> None:
    """Before anything is saved: every floating-point parameter and buffer is finite (the last step's
    update may have overflowed after its loss was logged)."""
    for name, m in members.items():
        for key, t in m.state_dict().items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise _diverged(cfg, epoch, f"{name}.{key} holds NaN or infinite values after step {n_steps}/{n_steps}",
                                lr, ckpt_path, saved_epochs)


def bf16_native(device: torch.device) -> bool:
    """Whether the device runs bf16 convolutions and matmuls natively (CPU: AVX512-BF16 / AMX via
    oneDNN; CUDA: compute capability 8.0+)."""
    if device.type == "cuda":
        try:  # without emulation: pre-Ampere GPUs report bf16 "supported" but run it slowly
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:
            return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def training_autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast for the training passes (the inner attack and the update) when ``amp`` and the
    device runs bf16 natively, else a no-op (fp32). Weights, optimizer state and the held-out
    metrics stay fp32; bf16 needs no loss scaling. On the 2-core AMX CPU a small_cnn training step is
    ~3.5x and an attack step ~4x faster than fp32 NCHW (``benchmarks/bench_layout.py``)."""
    if amp and bf16_native(device):
        logger.info("training with bf16 autocast on %s", device)
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if amp:
        logger.info("--amp: %s has no native bf16; training in fp32", device)
    return contextlib.nullcontext()


def _save(path: Path, cfg: TrainConfig, recipe: Recipe, members: Members, optimizers: Optimizers,
          gen: torch.Generator, history: list[dict[str, Any]], epoch: int, spec: Any, precision: str) -> None:
    train_state = {
        "epoch": epoch,
        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
        "generator": gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "config": cfg.to_dict(),
    }
    ckpt = make_checkpoint(
        arch=cfg.arch, arch_kwargs=cfg.arch_kwargs, dataset=cfg.dataset, num_classes=spec.num_classes,
        input_shape=spec.input_shape, threat=cfg.attack.threat, defense=cfg.defense,
        defense_config={**cfg.to_dict(), "options": recipe.opts, "precision": precision}, history=history, members=members,
        default_member=recipe.eval_member, train_state=train_state)
    save_checkpoint(path, ckpt)


# settings a resumed run may change: more epochs and their LR schedule, where the data lives, the memory
# layout (same numbers) and the held-out log's sample; the rest (data, model, batch, attack, seed,
# recipe options, precision setting) make another run
RESUME_MAY_CHANGE = frozenset({"epochs", "lr", "lr_schedule", "milestones", "gamma", "data_dir", "channels_last",
                               "precision", "options", "eval_n", "eval_steps"})


def _changed_settings(old: Any, cfg: TrainConfig) -> str:
    """'seed 0 (now 1), option beta 6.0 (now 1.0)': the stored settings this configuration changes."""
    if not isinstance(old, dict):
        return ""
    new = cfg.to_dict()
    diffs = [f"{k} {old[k]} (now {new[k]})" for k in new if k not in RESUME_MAY_CHANGE and k in old and old[k] != new[k]]
    old_opts = old.get("options") if isinstance(old.get("options"), dict) else {}
    diffs += [f"option {k} {old_opts[k]} (now {v})" for k, v in cfg.options.items() if k in old_opts and old_opts[k] != v]
    return ", ".join(diffs)


def check_same_run(path: Path, cfg: TrainConfig, ckpt: dict[str, Any] | None = None) -> None:
    """Refuse to resume the checkpoint at ``path`` with ``cfg`` when it was trained with another recipe,
    architecture or setting (continuing would make one run of two configurations' epochs)."""
    if not path.is_file():
        return
    ckpt = read_checkpoint_dict(path) if ckpt is None else ckpt
    if ckpt.get("defense") != cfg.defense or ckpt.get("arch") != cfg.arch:
        raise BenchError(f"{path} was trained with {ckpt.get('defense')}/{ckpt.get('arch')}, not {cfg.defense}/{cfg.arch}.")
    changed = _changed_settings(ckpt.get("defense_config"), cfg)
    if changed:
        raise BenchError(f"--resume continues only the same run, but {path} was trained with {changed}; resume with "
                         "its settings (only the epochs, the LR schedule, --data-dir and the memory layout may change) or "
                         "choose another --out.")


def _restore(path: Path, cfg: TrainConfig, members: Members, optimizers: Optimizers,
             gen: torch.Generator) -> tuple[int, list[dict[str, Any]]]:
    ckpt = read_checkpoint_dict(path)
    state = ckpt.get("train_state")
    if state is None:
        raise BenchError(f"{path} holds no training state to resume from.")
    check_same_run(path, cfg, ckpt)
    try:
        for k, m in members.items():
            m.load_state_dict(ckpt["members"][k])
        for k, o in optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if torch.cuda.is_available() and state.get("cuda_rng"):
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        epoch, history = int(state["epoch"]), list(ckpt.get("history", []))
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise BenchError(f"cannot resume from {path}: its training state is damaged or from another configuration "
                         f"({type(e).__name__}: {first}).") from None
    return epoch, history


def _log_value(key: str, value: Any) -> Any:
    """A log.csv cell: seconds to 2 decimals, every other float to 6 significant digits (no float noise
    such as 28.999999165534973); integers and text as they are."""
    if isinstance(value, float) and not isinstance(value, bool):
        return f"{value:.2f}" if key == "seconds" else f"{value:.6g}"
    return value


def _write_log(path: Path, history: list[dict[str, Any]]) -> None:
    """``log.csv``: one row per epoch, rounded for reading (:func:`_log_value`); the checkpoint's
    ``history`` keeps the full-precision values."""
    cols: list[str] = []
    for row in history:
        cols += [k for k in row if k not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow({k: _log_value(k, v) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())
