"""``bench verify`` and ``bench reproduce``: check a finished evaluation without attacking, or run
it again from its result.json and compare per example (:mod:`evaluations.verify`,
:mod:`evaluations.reproduce`). Registered by :func:`evaluations.cli.register`."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from robustbench_lite.cliargs import EVAL_FILES, HelpFormatter, check_out_folder, positive_int

if TYPE_CHECKING:  # pragma: no cover
    from robustbench_lite.cliargs import Subparsers

SHOWN = 20  # differences printed by bench reproduce (all of them are counted)


def add_verify(sub: Subparsers) -> None:
    p = sub.add_parser("verify", help="check a finished evaluation's breaks without attacking",
                       description="Rebuild the model and data from RUN_DIR/result.json (the checkpoint's sha256 must "
                       "match), confirm the clean predictions of per_example.csv and every adversarial of "
                       "adversarials.npz (in the [0,1] box, in the threat ball, misclassified by a fresh forward pass) "
                       "and that they cover exactly the points the run counts as broken at each threat. Prints "
                       "'verified N of N breaks' and exits 0, or names the first point that fails and exits 1.",
                       formatter_class=HelpFormatter)
    p.add_argument("run_dir", help="folder of a finished `bench eval` (or `bench merge`) run")
    p.add_argument("--model", default=None, help="the evaluated checkpoint, where it no longer sits at the recorded path")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="forward-pass batch size (default: the run's)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    from .verify import verify_run

    verdict = verify_run(args.run_dir, args.model, device=args.device, batch_size=args.batch_size)
    print(verdict.message if verdict.ok else f"FAILED: {verdict.message}")
    return 0 if verdict.ok else 1


def add_reproduce(sub: Subparsers) -> None:
    p = sub.add_parser("reproduce", help="run an evaluation again from its result.json and compare per example",
                       description="Evaluate again what RUN_DIR/result.json records (checkpoint, the suite text it "
                       "embeds, threat, seed, examples, batch size, data, options) into --out, then compare "
                       "per_example.csv cell by cell: exit 0 when identical, 1 listing the differences.",
                       formatter_class=HelpFormatter)
    p.add_argument("run_dir", help="folder of a finished `bench eval` (or `bench merge`) run")
    p.add_argument("--out", required=True, help="output folder of the new run")
    p.add_argument("--model", default=None, help="the evaluated checkpoint, where it no longer sits at the recorded path")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the recorded device's kind if available)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=cmd_reproduce)


def cmd_reproduce(args: argparse.Namespace) -> int:
    check_out_folder(args.out, files=EVAL_FILES)
    check_out_folder(Path(args.out) / "parts")
    from .reproduce import reproduce

    cmp = reproduce(args.run_dir, args.out, model=args.model, device=args.device)
    if cmp.same:
        print(f"reproduced: per_example.csv identical ({cmp.examples} examples x {cmp.columns} columns); results: {args.out}")
        return 0
    print(f"DIFFERENT: {len(cmp.differences)} cells of per_example.csv differ ({cmp.examples} examples); results: {args.out}")
    for index, col, before, now in cmp.differences[:SHOWN]:
        print(f"  example {index}, {col}: {before} -> {now}")
    if len(cmp.differences) > SHOWN:
        print(f"  ... and {len(cmp.differences) - SHOWN} more")
    return 1
