"""The ``bench`` command line: the front door, the one module that wires every package.

:func:`build_parser` calls each package's ``register(sub)`` (``robustbench_lite.defenses.cli``:
train; ``robustbench_lite.evaluations.cli``: eval, merge, transfer, analyze;
``robustbench_lite.reports.cli``: ardist, leaderboard, report, export) and adds ``demo``, which runs
all three. A package CLI module that fails to import raises: a command never vanishes from
``bench`` silently. What the commands share is in :mod:`robustbench_lite.cliargs`.

Only the CLI modules print; everything else logs. A user's mistake (:class:`BenchError`) is one
sentence on stderr and exit code 2, no traceback; so is an OSError of the user's paths or disk
(permission denied, no space, a file where a folder goes). Every command checks its output paths
(:func:`robustbench_lite.files.check_output_path`) before any long work. Building the parser imports
no torch, pandas or matplotlib: every command imports what it needs when it runs, so ``bench
--help`` answers at once.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from .cliargs import TRAIN_FILES, check_out_folder, note_n_examples, positive_int
from .errors import BenchError
from robustbench_lite.cliargs import HelpFormatter

if TYPE_CHECKING:  # pragma: no cover
    from .cliargs import Subparsers

logger = logging.getLogger("robustbench_lite")

EPILOG = """examples:
  bench train --defense madry --dataset mnist5k --arch small_cnn --epochs 10 --out runs/madry
  bench eval --model runs/madry/checkpoint.pt --suite quick
  bench eval --model weights.pt --arch resnet18 --dataset cifar10 --data-dir ~/data --suite full
"""


# -- demo -----------------------------------------------------------------------------------------

DEMO_FILE = Path(__file__).with_name("demo.toml")


def add_demo(sub: Subparsers) -> None:
    p = sub.add_parser("demo", help="the end-to-end showcase on MNIST-5k (what `make demo` runs)",
                       description="Train every recipe listed in robustbench_lite/demo.toml with its MNIST-5k preset, "
                       "evaluate each with the demo suite, record them in OUT/leaderboard.sqlite, write the report "
                       "to OUT/report and print the leaderboard.",
                       formatter_class=HelpFormatter)
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument("--defenses", nargs="+", default=None, help="recipes to run (default: the list in demo.toml)")
    p.add_argument("--n-examples", type=positive_int, default=None, help="test examples per evaluation (default: demo.toml)")
    p.add_argument("--suite", default=None, help="evaluation suite (default: demo.toml)")
    p.add_argument("--device", default=None, help="cpu or cuda")
    p.add_argument("--resume", action="store_true", help="reuse finished training and evaluation in OUT")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    import time
    import tomllib

    from robustbench_lite.reports.store import add_record, check_store

    out = check_out_folder(args.out)
    db = out / "leaderboard.sqlite"
    check_store(db, flag="the demo's leaderboard")
    check_out_folder(out / "report", flag="the demo's report folder")

    from robustbench_lite.defenses import train
    from robustbench_lite.evaluations.evaluate import EvalOptions, evaluate
    from robustbench_lite.reports.leaderboard import leaderboard
    from robustbench_lite.reports.site import publish

    plan = tomllib.loads(DEMO_FILE.read_text())
    defenses = args.defenses or plan["defenses"]
    suite = args.suite or plan["suite"]
    n = args.n_examples or plan["n_examples"]
    configs = _check_demo_plan(args, out, db, defenses, suite)  # every mistake before the first minute of training
    t0 = time.perf_counter()
    timings: list[tuple[str, float, float]] = []
    for defense, cfg in zip(defenses, configs):
        run = out / defense
        ckpt = run / "checkpoint.pt"
        t1 = time.perf_counter()
        if not (ckpt.exists() and _finished(ckpt, cfg.epochs)):
            train(cfg, run, resume=ckpt.exists(), device=args.device, progress=not args.no_progress)
        t2 = time.perf_counter()
        ev = run / f"eval-{suite}"
        rec = evaluate(ckpt, ev, EvalOptions(suite=suite, n_examples=n, device=args.device, resume=args.resume))
        if defense == defenses[0]:
            note_n_examples(n, rec.get("n"), rec["checkpoint"].get("dataset"))
        add_record(db, rec, result_path=str(ev / "result.json"))
        timings.append((defense, t2 - t1, time.perf_counter() - t2))
    files, site = publish(db, out / "report")
    print(f"\nMNIST-5k, small_cnn presets, {n} class-balanced test examples, Linf eps 0.3, suite {suite}")
    print(leaderboard(db, fmt="table"))
    print("\n" + "  ".join(f"{d}: train {a:.0f}s eval {b:.0f}s" for d, a, b in timings))
    print(f"total {time.perf_counter() - t0:.0f} s; site: {site.index}; report: {files.markdown}; results: {out}")
    return 0


def _check_demo_plan(args: argparse.Namespace, out: Path, db: Path, defenses: Sequence[str], suite: str) -> list[Any]:
    """Refuse, before any training: a repeated or unknown recipe, a bad suite or device, and (without
    --resume) an --out already holding a demo's runs, which the demo would otherwise overwrite. Returns
    the recipes' training configurations."""
    from robustbench_lite.defenses import build_config, check_config
    from robustbench_lite.evaluations.outfolder import holds_evaluation
    from robustbench_lite.evaluations.suite import load_suite

    from .utils import resolve_device

    if len(set(defenses)) != len(defenses):
        raise BenchError(f"--defenses lists a recipe twice ({' '.join(defenses)}); give each once.")
    load_suite(suite)
    resolve_device(args.device)
    configs = []
    for defense in defenses:
        check_out_folder(out / defense, flag=f"the demo's {defense} folder", files=TRAIN_FILES)
        cfg = build_config(defense, "mnist5k", {})
        check_config(cfg)
        configs.append(cfg)
    if not args.resume:
        earlier = [db] if db.exists() else []
        earlier += [out / d for d in defenses if (out / d / "checkpoint.pt").exists() or holds_evaluation(out / d / f"eval-{suite}")]
        if earlier:
            raise BenchError(f"--out {out} already holds an earlier demo's {earlier[0].name}; pass --resume to reuse what is "
                             "finished, or choose a new --out.")
    return configs


def _finished(ckpt: Path, epochs: int) -> bool:
    from .checkpoint import read_checkpoint_dict

    return len(read_checkpoint_dict(ckpt).get("history", [])) >= epochs


# -- main -----------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench", description="robustbench_lite: train adversarial defenses, evaluate any checkpoint with a "
        "complete attack suite, and compare against a leaderboard and published baselines.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="logging verbosity on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # imported here, not at module level: a package CLI that fails to import is an error of this call
    from robustbench_lite.defenses import cli as defenses_cli
    from robustbench_lite.evaluations import cli as evaluations_cli
    from robustbench_lite.reports import cli as reports_cli

    defenses_cli.register(sub)  # train
    evaluations_cli.register(sub)  # eval, merge, transfer, analyze
    reports_cli.register(sub)  # ardist, leaderboard, report, export
    add_demo(sub)  # all three packages at once
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from . import distributed

    world = distributed.world()
    level, who = getattr(logging, args.log_level), ""
    if world.distributed:  # torchrun: rank 0 speaks for the launch; the others only warn, naming themselves
        who = f" (rank {world.rank})"
        if not world.main:
            level, args.no_progress = max(level, logging.WARNING), True
    logging.basicConfig(level=level, format=f"%(levelname)s{who} %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("auto-attack").setLevel(logging.WARNING if args.log_level != "DEBUG" else logging.DEBUG)
    import warnings

    warnings.filterwarnings("ignore", message=".*weights_only.*")
    try:
        with _progress(not getattr(args, "no_progress", False)):
            return int(args.func(args) or 0)
    except BenchError as e:
        print(f"bench: error{who}: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the user's paths or disk (permission denied, no space, ...); anything else is a bug
        from .files import describe_os_error

        text = describe_os_error(e)
        if text is None:
            raise
        logger.debug("the error in full", exc_info=True)
        print(f"bench: error{who}: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted; everything finished so far is on disk.", file=sys.stderr)
        return 130
    finally:
        distributed.teardown()


@contextlib.contextmanager
def _progress(on: bool) -> Iterator[None]:
    """``--no-progress``: every progress bar off for this command (the previous setting restored after,
    so ``main`` called twice in one process does not leak it)."""
    if on:
        yield
        return
    from . import progress

    before = getattr(progress, "_enabled", None)
    progress.set_enabled(False)
    try:
        yield
    finally:
        progress._enabled = before


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
