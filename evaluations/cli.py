"""``bench`` subcommands of evaluations: ``eval``, ``merge`` (joins ``bench eval --shard`` folders),
``transfer`` and ``analyze``.

:func:`register` adds them to ``bench``'s subparsers (one ``add_<cmd>`` / ``cmd_<cmd>`` pair per
command, see :mod:`robustbench_lite.cliargs`). Nothing heavy is imported at module level (``bench
--help`` builds these parsers); each command imports what it needs when it runs and checks its
output paths before any work. ``bench eval`` records its result in the leaderboard store
(:mod:`robustbench_lite.reports.store`, imported when the command runs).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from robustbench_lite import distributed
from robustbench_lite.cliargs import (EVAL_FILES, HelpFormatter, check_out_folder, check_threat_text, checkpoint_dataset,
                                      format_summary, note, note_n_examples, positive_int)
from robustbench_lite.errors import BenchError

if TYPE_CHECKING:  # pragma: no cover
    from robustbench_lite.cliargs import Subparsers

ANALYZE_FILES = ("analyses.json", "frobenius.csv", "frobenius.png", "random_labels.csv", "random_labels.png",
                 "hdh.csv", "hdh.png")


def register(sub: Subparsers) -> None:
    """Add ``eval``, ``merge``, ``transfer`` and ``analyze`` to ``bench``'s subparsers."""
    add_eval(sub)
    add_merge(sub)
    add_transfer(sub)
    add_analyze(sub)
    from .cli_verify import add_reproduce, add_verify

    add_verify(sub)
    add_reproduce(sub)


# -- eval -----------------------------------------------------------------------------------------

def add_eval(sub: Subparsers) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint with an attack suite",
                       description="Evaluate a checkpoint with a suite (evaluations/suites/<name>.toml or your own TOML). "
                       "Writes per_example.csv, summary.csv, sweeps.csv, result.json and parts/ under --out.",
                       formatter_class=HelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint file (ours, or a plain state_dict with --arch and --dataset)")
    p.add_argument("--suite", default="quick", help="suite name (quick: PGD-20 + AutoAttack; fast: an AutoAttack-grade verdict in under a third "
                   "of its time, with attack-failure indicators; full; act, afd, afd_mnist, arrest: the papers' "
                   "grids; docs/evaluation.md) or path to a .toml file")
    p.add_argument("--n-examples", type=positive_int, default=None,
                   help="evaluate a fixed class-balanced subset of N test examples (round-robin over classes); default all")
    p.add_argument("--batch-size", type=positive_int, default=None, help="attack batch size (default: 128 on a CPU, 256 on a GPU)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--seed", type=int, default=0, help="seed for every attack's randomness")
    p.add_argument("--out", default=None, help="output folder (default: <checkpoint folder>/eval-<suite>, "
                   "eval-<suite>-<member> with --member); a folder holding another evaluation needs --resume of the same run")
    p.add_argument("--threat", default=None, help="threat model, e.g. linf:8/255 or l2:0.5 (default: the checkpoint's, or "
                   "a robustbench: entry's leaderboard; another one is evaluated with a warning)")
    p.add_argument("--resume", action="store_true", help="reuse finished (attack, eps) parts in --out")
    p.add_argument("--all-points", action="store_true",
                   help="run every attack on every clean-correct point (exact per-attack accuracy) instead of cascading")
    p.add_argument("--arch", default=None,
                   help="architecture for a plain state_dict: registry name, torchvision:<name>, timm:<name>, "
                   "module:callable, file.py:callable, or robustbench:<leaderboard entry> (e.g. robustbench:Carmon2019Unlabeled: "
                   "architecture, normalisation, dataset and threat from RobustBench's entry)")
    p.add_argument("--dataset", default=None, help="dataset for a plain state_dict (or to override the checkpoint's; "
                   "with robustbench: it must be the entry's)")
    p.add_argument("--normalize", default=None, metavar="MEAN,STD",
                   help="put the input normalisation the model was trained with inside it, so attacks and eps stay in "
                   "[0,1] pixel space: MEAN,STD, three means then three stds, or cifar10, cifar100, imagenet, mnist "
                   "(replaces a robustbench: entry's own)")
    p.add_argument("--member", default=None, help="which network of a multi-model checkpoint (ACT: natural)")
    p.add_argument("--data-dir", default=None, help="folder holding the dataset files (CIFAR, ImageNet)")
    p.add_argument("--data-file", default=None, metavar="FILE.npz",
                   help="evaluate on your own arrays instead of the test split of --dataset (which still gives the "
                   "classes, input shape and standard radii): x uint8 NHWC (0..255) or float NCHW in [0,1], y int labels")
    p.add_argument("--db", default="runs/leaderboard.sqlite", help="leaderboard database the result is recorded in")
    p.add_argument("--no-db", action="store_true", help="do not record the result in the leaderboard database")
    p.add_argument("--shard", default=None, metavar="I/K",
                   help="evaluate the I-th (0-based) of K contiguous shards of the examples into its own folder "
                   "(not recorded in the leaderboard); join the folders with `bench merge`")
    p.add_argument("--no-channels-last", action="store_true",
                   help="evaluate with NCHW conv weights (default: channels_last where the model runs in it; faster, "
                   "same numbers to float rounding)")
    p.add_argument("--no-adversarials", action="store_true",
                   help="do not keep the adversarial example of every break (adversarials.npz; 4 bytes per input "
                   "value per break: 3 KB on MNIST, 12 KB on CIFAR-10); `bench verify` then cannot check the run")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.add_argument("--no-adapt", action="store_true", help="suites with checks: do not run the remedies the failed "
                   "attack-failure indicators name (EoT, BPDA, more steps...; docs/evaluation.md, Adaptive evaluation)")
    p.add_argument("--eot", type=positive_int, default=None, metavar="N",
                   help="randomised model: average gradients and scores over N draws (Expectation over Transformation; "
                   "20 as AutoAttack rand) and report the expected accuracy over its randomness; default: when the "
                   "model check sees a random forward pass in a suite with checks")
    p.add_argument("--bpda", default=None, metavar="MODULE[=FILE.py:FUNCTION]",
                   help="non-differentiable preprocessing: backward pass through the identity (or FUNCTION) up to "
                   "the submodule MODULE (dotted name; BPDA); default: found where gradients vanish, in a suite with checks")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from robustbench_lite.files import slug

    from .evaluate import EvalOptions, evaluate, parse_shard

    for flag, value in (("--model", args.model), ("--suite", args.suite), ("--out", args.out), ("--arch", args.arch),
                        ("--dataset", args.dataset), ("--member", args.member), ("--threat", args.threat),
                        ("--data-file", args.data_file), ("--data-dir", args.data_dir), ("--normalize", args.normalize)):
        if value is not None and not str(value).strip():
            raise BenchError(f"{flag} is empty; leave it out or give a value.")
    member = f"-{slug(args.member)}" if args.member else ""  # ACT's natural F beside its robust G, never over it
    out = Path(args.out) if args.out is not None else Path(args.model).parent / f"eval-{Path(args.suite).stem}{member}"
    if args.shard and not args.out:
        i, k = parse_shard(args.shard)
        out = out.with_name(f"{out.name}-shard{i}of{k}")
    check_out_folder(out, files=EVAL_FILES)
    check_out_folder(out / "parts")
    from .outfolder import check_eval_folder

    check_eval_folder(out, None, resume=args.resume)  # another evaluation there: --resume or a new --out
    record = not args.no_db and not args.shard  # a shard is partial: record the merged result instead
    if record:
        from robustbench_lite.reports.store import add_record, check_store

        check_store(args.db)
    if args.threat is not None:  # --threat "" is an error, not the default
        check_threat_text(args.threat, args.dataset or checkpoint_dataset(args.model))
    opts = EvalOptions(suite=args.suite, n_examples=args.n_examples, batch_size=args.batch_size, device=args.device,
                       seed=args.seed, threat=args.threat, resume=args.resume, all_points=args.all_points,
                       data_dir=args.data_dir, data_file=args.data_file, member=args.member, arch=args.arch, dataset=args.dataset,
                       normalize=args.normalize, shard=args.shard,
                       channels_last=not args.no_channels_last, adversarials=not args.no_adversarials,
                       adapt=not args.no_adapt, eot=args.eot, bpda=args.bpda)
    try:
        rec = evaluate(args.model, out, opts)
    except KeyboardInterrupt:
        print(f"interrupted: finished attacks are saved in {out}/parts; rerun with --resume to continue.", file=sys.stderr)
        return 130
    if "distributed" in rec and not distributed.world().main:
        return 0  # under torchrun rank 0 prints and records the one result
    print(format_summary(rec))
    note_n_examples(args.n_examples, (rec.get("shard") or {}).get("n_total", rec.get("n")),
                    (rec.get("checkpoint") or {}).get("dataset"))
    if record:
        add_record(args.db, rec, result_path=str(out / "result.json"))
        print(f"recorded in {args.db}")
    print(f"results: {out}")
    return 0


# -- merge ----------------------------------------------------------------------------------------

def add_merge(sub: Subparsers) -> None:
    p = sub.add_parser("merge", help="merge the folders of sharded evaluations",
                       description="Join the folders of `bench eval --shard i/k` runs by example index into the "
                       "outputs of one unsharded run (parts/, per_example.csv, summary.csv, sweeps.csv, checks.json, "
                       "result.json).", formatter_class=HelpFormatter)
    p.add_argument("dirs", nargs="+", help="shard output folders, in any order")
    p.add_argument("--out", required=True, help="output folder of the merged evaluation")
    p.set_defaults(func=cmd_merge)


def cmd_merge(args: argparse.Namespace) -> int:
    from robustbench_lite.files import check_apart_from_inputs

    check_out_folder(args.out, files=EVAL_FILES)
    check_apart_from_inputs(args.out, args.dirs, what="shard folder")
    check_out_folder(Path(args.out) / "parts")
    from .evaluate import merge

    rec = merge(args.dirs, args.out)
    print(format_summary(rec))
    print(f"results: {args.out}")
    return 0


# -- transfer -------------------------------------------------------------------------------------

def add_transfer(sub: Subparsers) -> None:
    p = sub.add_parser("transfer", help="black-box transfer matrix between checkpoints",
                       description="PGD examples crafted on each surrogate, evaluated on each target. transfer.csv: "
                       "success rate in %% among the target's clean-correct points (ACT Table 3; lower = more robust).",
                       formatter_class=HelpFormatter)
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

    from .transfer import OUT_FILES, transfer_matrix

    check_out_folder(args.out, files=OUT_FILES)
    _check_transfer_folder(Path(args.out), args.surrogates, args.targets)
    rows = transfer_matrix(args.surrogates, args.targets, args.out, n_examples=args.n_examples, threat=args.threat,
                           steps=args.steps, seed=args.seed, batch_size=args.batch_size, device=args.device,
                           data_dir=args.data_dir)
    if not distributed.world().main:
        return 0  # under torchrun rank 0 prints
    for r in rows:
        print(f"{r['surrogate']} -> {r['target']}: {r['success_rate']}% of {r['n']}")
    info = json.loads((Path(args.out) / "transfer.json").read_text())
    for remark in info.get("notes", []):
        note(remark)
    note_n_examples(args.n_examples, info.get("n_examples"), info.get("dataset"))
    print(f"results: {Path(args.out) / 'transfer.csv'}")
    return 0


def _check_transfer_folder(out: Path, surrogates: list[str], targets: list[str]) -> None:
    """A folder holding the transfer matrix of other checkpoints is refused (it would be replaced); the
    same surrogates and targets again replace their own matrix."""
    import json

    for flag, paths in (("--surrogates", surrogates), ("--targets", targets)):
        for p in paths:
            if not str(p).strip():
                raise BenchError(f"{flag} has an empty path; give checkpoint files.")
    f = out / "transfer.json"
    if not f.is_file():
        return
    try:
        rows = json.loads(f.read_text()).get("rows", [])
        old = {(str(Path(r["surrogate"]).resolve()), str(Path(r["target"]).resolve())) for r in rows}
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        raise BenchError(f"--out {out} holds a transfer.json this command did not write (unreadable); choose a new "
                         "--out.") from None
    new = {(str(Path(s).resolve()), str(Path(t).resolve())) for s in surrogates for t in targets}
    if old != new:
        raise BenchError(f"--out {out} already holds the transfer matrix of other checkpoints; choose a new --out "
                         "(the same --surrogates and --targets again replace their own).")


# -- analyze --------------------------------------------------------------------------------------

def add_analyze(sub: Subparsers) -> None:
    p = sub.add_parser(
        "analyze", help="analyse a checkpoint (weight norms, random-label fitting, entropy, similarity, sparsity, H-Delta-H)",
        description="Model analyses from the ACT, ARREST and AFD papers. Writes frobenius.csv/png, "
        "random_labels.csv/png, hdh.csv/png and analyses.json (a dict of scalar results) under --out.",
        formatter_class=HelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint to analyse (one of ours)")
    p.add_argument("--out", default=None, help="output folder (default: <checkpoint folder>/analyses)")
    p.add_argument("--reference", default=None,
                   help="checkpoint whose pre-pool representation the cosine similarity compares to (e.g. the natural model)")
    p.add_argument("--n-examples", type=positive_int, default=1000,
                   help="class-balanced training and test examples used by each analysis")
    p.add_argument("--member", default=None, help="which network of a multi-model checkpoint (ACT: natural)")
    p.add_argument("--random-label-epochs", type=positive_int, default=30,
                   help="epochs of the 400-200 MLP fitted to random binary labels")
    p.add_argument("--pgd-steps", type=positive_int, default=10, help="PGD steps for the adversarial features of the H-Delta-H estimate")
    p.add_argument("--batch-size", type=positive_int, default=None, help="rows per forward pass and PGD block (default: 128 on a CPU, 256 on a GPU)")
    p.add_argument("--seed", type=int, default=0, help="seed for the random labels, the MLPs and PGD")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--data-dir", default=None, help="folder holding the dataset files (CIFAR)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=cmd_analyze)


def cmd_analyze(args: argparse.Namespace) -> int:
    for flag, value in (("--model", args.model), ("--out", args.out), ("--reference", args.reference),
                        ("--member", args.member)):
        if value is not None and not str(value).strip():
            raise BenchError(f"{flag} is empty; leave it out or give a value.")
    out = Path(args.out) if args.out is not None else Path(args.model).parent / "analyses"
    check_out_folder(out, files=ANALYZE_FILES)
    if args.reference is not None:  # read now: the analyses before the similarity take minutes
        from robustbench_lite.checkpoint import read_checkpoint_dict

        read_checkpoint_dict(args.reference)
    world = distributed.world()
    if world.distributed and not world.main:
        # the analyses are a few small sequential fits (seconds to minutes): under torchrun rank 0 runs
        # them all, on its own device, and the other ranks leave at once (nothing to share or write)
        return 0
    from .analyses import AnalysisOptions, analyze

    res = analyze(args.model, out, AnalysisOptions(
        n_examples=args.n_examples, reference=args.reference, member=args.member,
        random_label_epochs=args.random_label_epochs, pgd_steps=args.pgd_steps, batch_size=args.batch_size, seed=args.seed,
        device=args.device, data_dir=args.data_dir))
    width = max(len(k) for k in res)
    for k, v in res.items():
        print(f"{k:<{width}}  {v:.4g}")
    note_n_examples(args.n_examples, int(res["n_examples_test"]) if "n_examples_test" in res else None, None)
    print(f"results: {out}")
    return 0
