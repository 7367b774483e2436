"""The ``bench`` command line. Only this module prints; everything else logs.

A user's mistake (:class:`BenchError`) is one sentence on stderr and exit code 2, no traceback; so
is an OSError of the user's paths or disk (permission denied, no space, a file where a folder goes).
Every command checks its output paths (:func:`robustbench_lite.utils.check_output_path`) before any
long work. Building the parser imports no torch, pandas or matplotlib: every command imports what it
needs when it runs, so ``bench --help`` answers at once.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from .errors import BenchError

logger = logging.getLogger("robustbench_lite")

# the files `bench eval` / `bench merge` write inside --out (a folder of one of these names is an error up front)
EVAL_FILES = ("result.json", "summary.csv", "sweeps.csv", "per_example.csv", "checks.json")
TRAIN_FILES = ("checkpoint.pt", "log.csv")


def note(text: str) -> None:
    """A remark the user should see that is not an error: ``bench: note: ...`` on stderr."""
    print(f"bench: note: {text}", file=sys.stderr)


def check_out_folder(path: str | Path, flag: str = "--out", files: Sequence[str] = ()) -> Path:
    """The one up-front check of an output folder (see :func:`robustbench_lite.utils.check_output_path`)."""
    from .utils import check_output_path

    return check_output_path(path, kind="folder", flag=flag, files=files)


def check_threat_text(text: str, dataset: str | None, *, flag: str = "--threat", allow_zero: bool = False) -> None:
    """Parse a --threat/--eps the user gave and check it against the [0,1] box of ``dataset``'s inputs
    (:meth:`ThreatModel.check_box`): a ball covering the box (or eps 0, unless ``allow_zero``) is an
    error; one that reaches the box's centre from every input is a note."""
    from .threat import ThreatModel

    tm = ThreatModel.parse(text)
    if allow_zero and tm.eps == 0:
        return
    shape = None
    if dataset is not None:
        from .data import get_dataset

        shape = get_dataset(dataset).input_shape
    remark = tm.check_box(shape, what=flag)
    if remark:
        note(remark)


def note_n_examples(asked: int | None, used: int | None, dataset: str | None, flag: str = "--n-examples") -> None:
    """The note for an ``--n-examples`` larger than the test split (the record's ``n`` is the real count)."""
    if asked is None or used is None or asked <= used:
        return
    of = f" of {dataset}" if dataset else ""
    note(f"{flag} {asked:,} is more than the {used:,} test examples{of}; evaluated all {used:,}.")


def positive_int(text: str) -> int:
    """argparse type for counts and sizes: a bad value is argparse's one-line usage error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


EPILOG = """examples:
  bench train --defense madry --dataset mnist5k --arch small_cnn --epochs 10 --out runs/madry
  bench eval --model runs/madry/checkpoint.pt --suite quick
  bench eval --model weights.pt --arch resnet18 --dataset cifar10 --data-dir ~/data --suite full
"""


# -- train ----------------------------------------------------------------------------------------

def add_train(sub: Any) -> None:
    p = sub.add_parser("train", help="train a defense and write checkpoints",
                       description="Train a defense recipe. Settings come from the preset "
                       "(defenses/presets/<defense>.toml, table = --preset or the dataset name); flags override them. "
                       "Writes OUT/checkpoint.pt (every epoch, with optimizer and RNG state) and OUT/log.csv.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
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


def cmd_train(args: argparse.Namespace) -> int:
    seeds = args.seeds if args.seeds else [args.seed]
    outs = [Path(args.out) / f"seed{seed}" if args.seeds else Path(args.out) for seed in seeds]
    if args.seeds:
        check_out_folder(args.out, files=("seeds.csv",))
    for out in outs:
        check_out_folder(out, files=TRAIN_FILES)

    from defenses import build_config, train
    from .threat import parse_eps

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
        configs.append(cfg)
    if args.eps is not None:  # eps 0 trains without an attack (a natural baseline); a ball covering [0,1] is an error
        check_threat_text(f"{configs[0].attack.norm}:{args.eps}", configs[0].dataset, flag="--eps", allow_zero=True)
    for cfg, out in zip(configs, outs):
        path = train(cfg, out, resume=args.resume, device=args.device, progress=not args.no_progress)
        print(f"checkpoint: {path}")
    if args.seeds:
        from defenses.seeds import aggregate_seeds, format_seeds

        table = aggregate_seeds(args.out, seeds)
        print(format_seeds(table))
        print(f"seeds: {table}")
    return 0


# -- eval -----------------------------------------------------------------------------------------

def add_eval(sub: Any) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint with an attack suite",
                       description="Evaluate a checkpoint with a suite (evaluations/suites/<name>.toml or your own TOML). "
                       "Writes per_example.csv, summary.csv, sweeps.csv, result.json and parts/ under --out.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint file (ours, or a plain state_dict with --arch and --dataset)")
    p.add_argument("--suite", default="quick", help="suite name (quick, full, ...) or path to a .toml file")
    p.add_argument("--n-examples", type=positive_int, default=None,
                   help="evaluate a fixed class-balanced subset of N test examples (round-robin over classes); default all")
    p.add_argument("--batch-size", type=positive_int, default=None, help="attack batch size (default: 128 on a CPU, 256 on a GPU)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--seed", type=int, default=0, help="seed for every attack's randomness")
    p.add_argument("--out", default=None, help="output folder (default: <checkpoint folder>/eval-<suite>)")
    p.add_argument("--threat", default=None, help="threat model, e.g. linf:8/255 or l2:0.5 (default: the checkpoint's)")
    p.add_argument("--resume", action="store_true", help="reuse finished (attack, eps) parts in --out")
    p.add_argument("--all-points", action="store_true",
                   help="run every attack on every clean-correct point (exact per-attack accuracy) instead of cascading")
    p.add_argument("--arch", default=None, help="architecture for a plain state_dict: registry name, module:callable or file.py:callable")
    p.add_argument("--dataset", default=None, help="dataset for a plain state_dict (or to override the checkpoint's)")
    p.add_argument("--member", default=None, help="which network of a multi-model checkpoint (ACT: natural)")
    p.add_argument("--data-dir", default=None, help="folder holding the dataset files (CIFAR, ImageNet)")
    p.add_argument("--db", default="runs/leaderboard.sqlite", help="leaderboard database the result is recorded in")
    p.add_argument("--no-db", action="store_true", help="do not record the result in the leaderboard database")
    p.add_argument("--shard", default=None, metavar="I/K",
                   help="evaluate the I-th (0-based) of K contiguous shards of the examples into its own folder "
                   "(not recorded in the leaderboard); join the folders with `bench merge`")
    p.add_argument("--no-channels-last", action="store_true",
                   help="evaluate with NCHW conv weights (default: channels_last where the model runs in it; faster, "
                   "same numbers to float rounding)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from evaluations.evaluate import EvalOptions, evaluate, parse_shard

    out = Path(args.out) if args.out else Path(args.model).parent / f"eval-{Path(args.suite).stem}"
    if args.shard and not args.out:
        i, k = parse_shard(args.shard)
        out = out.with_name(f"{out.name}-shard{i}of{k}")
    check_out_folder(out, files=EVAL_FILES)
    check_out_folder(out / "parts")
    record = not args.no_db and not args.shard  # a shard is partial: record the merged result instead
    if record:
        check_store(args.db)
    if args.threat:
        check_threat_text(args.threat, args.dataset or _checkpoint_dataset(args.model))
    opts = EvalOptions(suite=args.suite, n_examples=args.n_examples, batch_size=args.batch_size, device=args.device,
                       seed=args.seed, threat=args.threat, resume=args.resume, all_points=args.all_points,
                       data_dir=args.data_dir, member=args.member, arch=args.arch, dataset=args.dataset, shard=args.shard,
                       channels_last=not args.no_channels_last)
    try:
        rec = evaluate(args.model, out, opts)
    except KeyboardInterrupt:
        print(f"interrupted: finished attacks are saved in {out}/parts; rerun with --resume to continue.", file=sys.stderr)
        return 130
    print(format_summary(rec))
    note_n_examples(args.n_examples, (rec.get("shard") or {}).get("n_total", rec.get("n")),
                    (rec.get("checkpoint") or {}).get("dataset"))
    if record:
        record_in_leaderboard(args.db, rec, out / "result.json")
        print(f"recorded in {args.db}")
    print(f"results: {out}")
    return 0


def _checkpoint_dataset(model: str | Path) -> str | None:
    """The dataset a checkpoint of ours names (None for a plain state_dict); a bad file is a BenchError."""
    from .checkpoint import FORMAT, read_checkpoint_dict

    obj = read_checkpoint_dict(model)
    name = obj.get("dataset") if obj.get("format") == FORMAT else None
    return name if isinstance(name, str) else None


def check_store(db: str | Path, flag: str = "--db") -> None:
    """Up front: the leaderboard database can be created or written (see :func:`reports.store.check_store`)."""
    from reports.store import check_store as _check

    _check(db, flag=flag)


def record_in_leaderboard(db: str | Path, rec: dict[str, Any], result_path: Path) -> None:
    from reports.store import add_record

    add_record(db, rec, result_path=str(result_path))


def format_summary(rec: dict[str, Any]) -> str:
    lines = [f"{'attack':<16}{'norm':<6}{'eps':>9}{'attacked':>9}{'acc %':>9}{'worst %':>9}{'sec':>9}"]
    for r in rec["summary"]:
        label = r.get("label", r["attack"])  # the suite's display name (records before format 2: 'attack')
        lines.append(f"{label:<16}{r['norm']:<6}{r['eps']:>9.4g}{r.get('attacked', r['n']):>9}{r['accuracy']:>9.2f}"
                     f"{r['worst_case']:>9.2f}{r['seconds']:>9.1f}")
    if _cascade_skipped(rec):
        lines.append("(acc %: points an attack did not run on, because an earlier attack at that threat broke them, "
                     "count as robust to it; --all-points runs every attack on every point)")
    lines.append(f"robust accuracy (worst case at {rec['threat']['norm']}:{rec['threat']['eps']:.4g}): {rec['robust_accuracy']:.2f}%")
    checks = rec.get("checks") or []
    failed = [c for c in checks if not c["passed"]]
    lines += [f"CHECK FAILED {c['name']}: {c['detail']}" for c in failed]
    if checks:
        lines.append(f"sanity checks: {len(checks) - len(failed)}/{len(checks)} passed (docs/checks.md explains each)")
    return "\n".join(lines)


def _cascade_skipped(rec: dict[str, Any]) -> bool:
    """Whether some attack row's accuracy counts points it skipped as robust: a row marked
    ``exact: false``, or (records without that mark) a cascading suite in which an attack ran on
    fewer points than the clean-correct ones."""
    rows = rec.get("attacks")
    if rows is None:
        rows = [r for r in rec.get("summary", []) if r.get("attack") != "clean"]
    if any("exact" in r for r in rows):
        return any(r.get("exact") is False for r in rows)
    if not (rec.get("suite") or {}).get("cascade"):
        return False
    attacked = [r.get("attacked") for r in rows if isinstance(r.get("attacked"), int)]
    if not attacked:
        return False
    n = rec.get("n")  # the examples this record's rows count (a shard's own)
    clean = rec.get("clean_accuracy")
    correct = max(attacked)  # the first attack of a cascade runs on every clean-correct point
    if isinstance(n, int) and isinstance(clean, (int, float)):
        correct = min(correct, round(clean * n / 100))
    return any(a < correct for a in attacked)


# -- demo -----------------------------------------------------------------------------------------

DEMO_FILE = Path(__file__).with_name("demo.toml")


def add_demo(sub: Any) -> None:
    p = sub.add_parser("demo", help="the end-to-end showcase on MNIST-5k (what `make demo` runs)",
                       description="Train every recipe listed in robustbench_lite/demo.toml with its MNIST-5k preset, "
                       "evaluate each with the demo suite, record them in OUT/leaderboard.sqlite, write the report "
                       "to OUT/report and print the leaderboard.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
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

    out = check_out_folder(args.out)
    db = out / "leaderboard.sqlite"
    check_store(db, flag="the demo's leaderboard")
    check_out_folder(out / "report", flag="the demo's report folder")

    from defenses import build_config, train
    from evaluations.evaluate import EvalOptions, evaluate
    from reports.baselines import load_baselines
    from reports.leaderboard import leaderboard
    from reports.report import build_report
    from reports.store import load_records

    plan = tomllib.loads(DEMO_FILE.read_text())
    defenses = args.defenses or plan["defenses"]
    suite = args.suite or plan["suite"]
    n = args.n_examples or plan["n_examples"]
    for defense in defenses:
        check_out_folder(out / defense, flag=f"the demo's {defense} folder", files=TRAIN_FILES)
    t0 = time.perf_counter()
    timings: list[tuple[str, float, float]] = []
    for defense in defenses:
        run = out / defense
        ckpt = run / "checkpoint.pt"
        cfg = build_config(defense, "mnist5k", {})
        t1 = time.perf_counter()
        if not (args.resume and ckpt.exists() and _finished(ckpt, cfg.epochs)):
            if ckpt.exists() and not args.resume:
                ckpt.unlink()
            train(cfg, run, resume=args.resume, device=args.device, progress=not args.no_progress)
        t2 = time.perf_counter()
        ev = run / f"eval-{suite}"
        rec = evaluate(ckpt, ev, EvalOptions(suite=suite, n_examples=n, device=args.device, resume=args.resume))
        if defense == defenses[0]:
            note_n_examples(n, rec.get("n"), rec["checkpoint"].get("dataset"))
        record_in_leaderboard(db, rec, ev / "result.json")
        timings.append((defense, t2 - t1, time.perf_counter() - t2))
    files = build_report(load_records(db), out / "report", baselines=load_baselines())
    print(f"\nMNIST-5k, small_cnn presets, {n} class-balanced test examples, Linf eps 0.3, suite {suite}")
    print(leaderboard(db, fmt="table"))
    print("\n" + "  ".join(f"{d}: train {a:.0f}s eval {b:.0f}s" for d, a, b in timings))
    print(f"total {time.perf_counter() - t0:.0f} s; report: {files.html}; results: {out}")
    return 0


def _finished(ckpt: Path, epochs: int) -> bool:
    from .checkpoint import read_checkpoint_dict

    return len(read_checkpoint_dict(ckpt).get("history", [])) >= epochs


# -- main -----------------------------------------------------------------------------------------

EXTRA_COMMANDS: list[Callable[[Any], None]] = []


def _extra_commands() -> list[Callable[[Any], None]]:
    """Subcommands contributed by the other packages (their ``cli.ADDERS``, wired here).

    A subcommand module that fails to import raises: a command must never vanish from ``bench``
    silently. These modules import nothing heavy at module level (each command imports torch,
    pandas or matplotlib when it runs), so building the parser stays fast."""
    from defenses import cli as dcli
    from evaluations import cli as ecli
    from reports import cli as rcli

    return [*ecli.ADDERS, *dcli.ADDERS, *rcli.ADDERS]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench", description="robustbench_lite: train adversarial defenses, evaluate any checkpoint with a "
        "complete attack suite, and compare against a leaderboard and published baselines.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="logging verbosity on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_train(sub)
    add_eval(sub)
    add_demo(sub)
    for adder in _extra_commands():
        adder(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    logging.basicConfig(level=getattr(logging, args.log_level), format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("auto-attack").setLevel(logging.WARNING if args.log_level != "DEBUG" else logging.DEBUG)
    import warnings

    warnings.filterwarnings("ignore", message=".*weights_only.*")
    try:
        with _progress(not getattr(args, "no_progress", False)):
            return int(args.func(args) or 0)
    except BenchError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the user's paths or disk (permission denied, no space, ...); anything else is a bug
        from .utils import describe_os_error

        text = describe_os_error(e)
        if text is None:
            raise
        logger.debug("the error in full", exc_info=True)
        print(f"bench: error: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted; everything finished so far is on disk.", file=sys.stderr)
        return 130


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
