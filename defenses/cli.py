"""``bench`` subcommands of defenses: ``train``.

:func:`register` adds them to ``bench``'s subparsers (one ``add_<cmd>`` / ``cmd_<cmd>`` pair per
command, see :mod:`robustbench_lite.cliargs`). Nothing heavy is imported at module level (``bench
--help`` builds this parser): ``cmd_train`` loads the recipes when it runs, after checking its
output folders.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustbench_lite.cliargs import TRAIN_FILES, HelpFormatter, check_out_folder, check_threat_text, positive_int
from robustbench_lite.errors import BenchError

if TYPE_CHECKING:  # pragma: no cover
    from robustbench_lite.cliargs import Subparsers


def register(sub: Subparsers) -> None:
    """Add ``train`` to ``bench``'s subparsers."""
    add_train(sub)


def add_train(sub: Subparsers) -> None:
    p = sub.add_parser("train", help="train a defense and write checkpoints",
                       description="Train a defense recipe. Settings come from the preset "
                       "(defenses/presets/<defense>.toml, table = --preset or the dataset name); flags override them. "
                       "Writes OUT/checkpoint.pt (every epoch, with optimizer and RNG state) and OUT/log.csv.",
                       formatter_class=HelpFormatter)
    p.add_argument("--defense", required=True, help="defense recipe name (natural, madry, ...)")
    p.add_argument("--dataset", default=None,
                   help="dataset name (mnist5k, cifar10, cifar100, synthetic); default: the preset's dataset, else mnist5k")
    p.add_argument("--preset", default=None,
                   help="preset table in defenses/presets/<defense>.toml (default: the dataset name, else mnist5k)")
    p.add_argument("--arch", default=None, help="model architecture (registry name); default from the preset")
    p.add_argument("--epochs", type=positive_int, default=None, help="number of epochs (default from the preset)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="training batch size (default from the preset)")
    p.add_argument("--lr", type=float, default=None, help="initial learning rate (default from the preset)")
    p.add_argument("--weight-decay", type=float, default=None, help="SGD weight decay (default from the preset)")
    p.add_argument("--eps", default=None, help="training attack radius, e.g. 0.3 or 8/255 (default from the preset)")
    p.add_argument("--attack-steps", type=positive_int, default=None, help="training attack PGD steps (default from the preset)")
    p.add_argument("--attack-step-size", default=None, help="training attack step size (default from the preset)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="recipe option, repeatable (e.g. beta=6 for trades, alpha=0.9 for act)")
    p.add_argument("--seed", type=int, default=0, help="random seed (init, data order, attacks)")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="train one checkpoint per seed under OUT/seed<S>/ (overrides --seed)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt exactly where it stopped")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--data-dir", default=None, help="folder holding the dataset files (CIFAR, ImageNet)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--no-channels-last", action="store_true",
                   help="keep conv weights NCHW (default: channels_last, 1.1-1.4x faster small_cnn steps on the CPU)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast for the training passes where the device runs bf16 natively (AMX/AVX512-BF16 "
                   "CPUs, Ampere+ GPUs; else fp32); weights and evaluation stay fp32 (default from the preset)")
    p.add_argument("--sync-bn", action="store_true",
                   help="under torchrun: BatchNorm normalises by the global batch's statistics (SyncBatchNorm, CUDA "
                   "only); without it each process uses its own rows'")
    p.set_defaults(func=cmd_train)


def _parse_option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise BenchError(f"--option {text!r} must look like KEY=VALUE.")
    k, v = text.split("=", 1)
    import json

    try:
        return k.strip(), json.loads(v)
    except json.JSONDecodeError:
        return k.strip(), v


def _check_resume(outs: list[Path], resume: bool) -> None:
    """Up front, before any seed trains: ``--resume`` needs a run to continue (a checkpoint in at least
    one of ``outs``; with --seeds, seeds without one start fresh); without it no checkpoint may exist."""
    found = [out / "checkpoint.pt" for out in outs if (out / "checkpoint.pt").is_file()]
    if resume and not found:
        where = outs[0] if len(outs) == 1 else f"any seed folder of {outs[0].parent}"
        raise BenchError(f"--resume: there is no run to continue (no checkpoint.pt in {where}); leave out --resume "
                         "to start one.")
    if not resume and found:
        raise BenchError(f"{found[0]} already exists; pass --resume to continue it or choose another --out.")


def cmd_train(args: argparse.Namespace) -> int:
    """``bench train``; under ``torchrun`` every process joins the group and trains its share of each
    batch with DistributedDataParallel (rank 0 alone prints, logs and writes)."""
    from robustbench_lite import distributed

    if not distributed.launched():
        return _train(args, main=True)
    import logging

    world = distributed.setup(distributed.device_for(args.device))
    if not world.main:  # one voice: rank 0 logs
        logging.getLogger("robustbench_lite").setLevel(logging.WARNING)
    try:
        return _train(args, main=world.main)
    finally:
        distributed.teardown()


def _train(args: argparse.Namespace, *, main: bool) -> int:
    seeds = args.seeds if args.seeds else [args.seed]
    if len(set(seeds)) != len(seeds):
        raise BenchError(f"--seeds lists a seed twice ({' '.join(map(str, seeds))}); give each seed once.")
    check_out_folder(args.out, files=("seeds.csv",) if args.seeds else TRAIN_FILES)
    outs = [Path(args.out) / f"seed{seed}" if args.seeds else Path(args.out) for seed in seeds]
    for out in outs:
        check_out_folder(out, files=TRAIN_FILES)
    _check_resume(outs, args.resume)

    from robustbench_lite.threat import parse_eps

    from robustbench_lite.defenses import build_config, check_config, train

    overrides: dict[str, Any] = {
        "arch": args.arch, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
        "weight_decay": args.weight_decay, "data_dir": args.data_dir, "dataset": args.dataset,
        "channels_last": False if args.no_channels_last else None, "amp": args.amp,
        "attack_eps": parse_eps(args.eps) if args.eps is not None else None,
        "attack_steps": args.attack_steps,
        "attack_step_size": parse_eps(args.attack_step_size) if args.attack_step_size is not None else None,
    }
    options = dict(_parse_option(o) for o in args.option)
    configs = []
    for seed in seeds:  # every setting is checked before the first seed trains
        cfg = build_config(args.defense, args.preset or args.dataset or "mnist5k", {**overrides, "seed": seed})
        if options:
            import dataclasses

            cfg = dataclasses.replace(cfg, options={**cfg.options, **options})
        check_config(cfg)  # names, recipe options and their ranges: before anything loads or trains
        configs.append(cfg)
    if args.resume:  # the run in each folder must be this configuration's, before any seed trains
        from .trainer import check_same_run

        for cfg, out in zip(configs, outs):
            check_same_run(out / "checkpoint.pt", cfg)
    if args.eps is not None:  # eps 0 trains without an attack (a natural baseline); a ball covering [0,1] is an error
        check_threat_text(f"{configs[0].attack.norm}:{args.eps}", configs[0].dataset, flag="--eps", allow_zero=True)
    for cfg, out in zip(configs, outs):
        path = train(cfg, out, resume=args.resume, device=args.device, progress=not args.no_progress,
                     sync_bn=args.sync_bn)
        if main:
            print(f"checkpoint: {path}")
    if args.seeds and main:
        from .seeds import aggregate_seeds, format_seeds

        table = aggregate_seeds(args.out, seeds)
        print(format_seeds(table))
        print(f"seeds: {table}")
    return 0
