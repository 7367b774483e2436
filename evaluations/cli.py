"""``bench`` subcommands contributed by evaluations: ``merge`` (joins ``bench eval --shard`` folders) and ``transfer``.

The core CLI calls every function in :data:`ADDERS` with its subparsers object. Nothing heavy is
imported at module level (``bench --help`` builds these parsers); each command imports what it
needs when it runs and checks its output folder before any work.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable


def add_merge(sub: Any) -> None:
    p = sub.add_parser("merge", help="merge the folders of sharded evaluations",
                       description="Join the folders of `bench eval --shard i/k` runs by example index into the "
                       "outputs of one unsharded run (parts/, per_example.csv, summary.csv, sweeps.csv, checks.json, "
                       "result.json).", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("dirs", nargs="+", help="shard output folders, in any order")
    p.add_argument("--out", required=True, help="output folder of the merged evaluation")
    p.set_defaults(func=cmd_merge)


def cmd_merge(args: argparse.Namespace) -> int:
    from robustbench_lite.cli import EVAL_FILES, check_out_folder, format_summary

    check_out_folder(args.out, files=EVAL_FILES)
    check_out_folder(Path(args.out) / "parts")
    from .evaluate import merge

    rec = merge(args.dirs, args.out)
    print(format_summary(rec))
    print(f"results: {args.out}")
    return 0


def add_transfer(sub: Any) -> None:
    from robustbench_lite.cli import positive_int

    p = sub.add_parser("transfer", help="black-box transfer matrix between checkpoints",
                       description="PGD examples crafted on each surrogate, evaluated on each target. transfer.csv: "
                       "success rate in %% among the target's clean-correct points (ACT Table 3; lower = more robust).",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--surrogates", nargs="+", required=True, help="checkpoints the attack is crafted on")
    p.add_argument("--targets", nargs="+", required=True, help="checkpoints the examples are evaluated on")
    p.add_argument("--n-examples", type=positive_int, default=None, help="class-balanced subset of N test examples; default all")
    p.add_argument("--threat", default=None, help="e.g. linf:0.3 (default: the dataset's standard Linf radius)")
    p.add_argument("--steps", type=positive_int, default=20, help="PGD steps on the surrogate")
    p.add_argument("--seed", type=int, default=0, help="seed of the random starts")
    p.add_argument("--batch-size", type=positive_int, default=None, help="batch size (default: 128 on a CPU, 256 on a GPU)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N")
    p.add_argument("--data-dir", default=None, help="folder holding the dataset files (CIFAR, ImageNet)")
    p.add_argument("--out", default="runs/transfer", help="output folder (transfer.csv, transfer.json)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=cmd_transfer)


def cmd_transfer(args: argparse.Namespace) -> int:
    import json

    from robustbench_lite.cli import check_out_folder, note, note_n_examples

    from .transfer import OUT_FILES, transfer_matrix

    check_out_folder(args.out, files=OUT_FILES)
    rows = transfer_matrix(args.surrogates, args.targets, args.out, n_examples=args.n_examples, threat=args.threat,
                           steps=args.steps, seed=args.seed, batch_size=args.batch_size, device=args.device,
                           data_dir=args.data_dir)
    for r in rows:
        print(f"{r['surrogate']} -> {r['target']}: {r['success_rate']}% of {r['n']}")
    info = json.loads((Path(args.out) / "transfer.json").read_text())
    for remark in info.get("notes", []):
        note(remark)
    note_n_examples(args.n_examples, info.get("n_examples"), info.get("dataset"))
    print(f"results: {Path(args.out) / 'transfer.csv'}")
    return 0


ADDERS: list[Callable[[Any], None]] = [add_merge, add_transfer]
