"""``bench`` subcommands of the reports package: ardist, leaderboard, report, export.

Each command has ``add_arguments_<name>(parser)`` and ``run_<name>(args) -> int``; the ``bench``
entry point wires them into argparse subparsers and turns a :class:`BenchError` into one line on
stderr. These functions print (they are the CLI); everything else in ``reports`` logs.

Example::

    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("ardist", help="ARDist and Sum of one (clean, robust) point")
    add_arguments_ardist(p)
    p.set_defaults(func=run_ardist)

Building the parser imports only what the options' help needs; each ``run_<name>`` imports its
heavy parts (pandas, matplotlib) when it runs, and checks its output path before any work.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any, Callable

from robustbench_lite.errors import BenchError

from .store import DEFAULT_DB  # store imports pandas only when it builds a DataFrame


def _percent(name: str, value: float) -> float:
    if not math.isfinite(value) or not 0.0 <= value <= 100.0:
        raise BenchError(f"--{name} must be an accuracy in percent between 0 and 100, got {value!r}.")
    return value


def add_arguments_ardist(parser: argparse.ArgumentParser) -> None:
    """``bench ardist --clean 87.14 --robust 44.04 --curve cifar10``."""
    from .ardist import published_fit_names

    parser.add_argument("--clean", type=float, required=True, metavar="PCT",
                        help="standard (clean) accuracy in percent, e.g. 87.14")
    parser.add_argument("--robust", type=float, required=True, metavar="PCT",
                        help="robust (AutoAttack) accuracy in percent, e.g. 44.04")
    parser.add_argument("--curve", default="cifar10", metavar="NAME|FILE.csv",
                        help=f"tradeoff curve: a published ARREST fit ({', '.join(published_fit_names())}) or a CSV "
                             "file of points with columns clean,robust to fit a cubic to (default: cifar10)")


def run_ardist(args: argparse.Namespace) -> int:
    from .ardist import accuracy_sum, ardist, resolve_curve

    clean, robust = _percent("clean", args.clean), _percent("robust", args.robust)
    curve = resolve_curve(args.curve)
    print(f"ARDist: {ardist(clean, robust, curve):.3f}  (curve {curve.name}: {curve})")
    print(f"Sum: {accuracy_sum(clean, robust):.2f}")
    return 0


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", type=Path, default=DEFAULT_DB, metavar="PATH",
                        help=f"results store, an SQLite file (default: {DEFAULT_DB})")


def _add_baselines(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--baselines", type=Path, nargs="+", action="extend", default=None, metavar="EXTRA.csv",
                        help="your own baseline CSV files (columns method, dataset, metric, value; optional paper, "
                             "table, architecture, std, norm, eps, setting, source, note), added to the published ones")


def add_arguments_leaderboard(parser: argparse.ArgumentParser) -> None:
    """``bench leaderboard [--db PATH] [--dataset D] [--threat T] [--with-baselines] ...``."""
    from .render import DEFAULT_SORT, FORMATS, SORT_COLUMNS

    _add_db(parser)
    parser.add_argument("--dataset", default=None, metavar="D",
                        help="only this dataset, e.g. cifar10 or mnist5k (default: all)")
    parser.add_argument("--threat", default=None, metavar="T",
                        help='only this threat model, e.g. "linf:8/255" or "l2:0.5" (default: all)')
    parser.add_argument("--with-baselines", action="store_true",
                        help="merge in the published results for the same datasets and threats, marked as published")
    _add_baselines(parser)
    parser.add_argument("--sort", default=DEFAULT_SORT, metavar="COLUMN",
                        help=f"column to rank by (default: {DEFAULT_SORT}, the worst-case robust accuracy; entries with "
                        f"a failed sanity check rank last); one of {', '.join(SORT_COLUMNS)}")
    parser.add_argument("--format", dest="fmt", default="table", choices=FORMATS,
                        help="output format (default: table)")


def run_leaderboard(args: argparse.Namespace) -> int:
    from .baselines import load_baselines
    from .leaderboard import leaderboard

    baselines = load_baselines(extra_files=args.baselines or ())
    print(leaderboard(args.db, dataset=args.dataset, threat=args.threat, with_baselines=args.with_baselines,
                      sort=args.sort, fmt=args.fmt, baselines=baselines), end="")
    return 0


def add_arguments_report(parser: argparse.ArgumentParser) -> None:
    """``bench report [--db PATH] [--out DIR] [--baselines EXTRA.csv ...]``."""
    _add_db(parser)
    parser.add_argument("--out", type=Path, default=Path("runs") / "report", metavar="DIR",
                        help="folder for report.md, index.html and the figures (default: runs/report)")
    _add_baselines(parser)


def run_report(args: argparse.Namespace) -> int:
    from robustbench_lite.files import check_output_path

    check_output_path(args.out, kind="folder", files=("report.md", "index.html"))
    from .baselines import load_baselines
    from .report import build_report
    from .store import load_records

    files = build_report(load_records(args.db), args.out, baselines=load_baselines(extra_files=args.baselines or ()))
    print(f"wrote {files.html} and {files.markdown} ({len(files.figures)} figures as PNG and PDF)")
    return 0


def add_arguments_export(parser: argparse.ArgumentParser) -> None:
    """``bench export --db PATH --out file.csv``."""
    _add_db(parser)
    parser.add_argument("--out", type=Path, required=True, metavar="FILE.csv",
                        help="CSV file to write, one row per stored result (typed columns, no record JSON)")


def run_export(args: argparse.Namespace) -> int:
    from robustbench_lite.files import check_output_path

    from .store import export_csv

    check_output_path(args.out, kind="file")
    out = export_csv(args.db, args.out)
    print(f"wrote {out}")
    return 0


def _adder(name: str, help_text: str, add: Callable[[argparse.ArgumentParser], None],
           run: Callable[[argparse.Namespace], int]) -> Callable[[Any], None]:
    def adder(sub: Any) -> None:
        p = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        add(p)
        p.set_defaults(func=run)

    adder.__name__ = f"add_{name}"
    return adder


# Picked up by robustbench_lite.cli (``rcli.ADDERS``): each takes the argparse subparsers object.
ADDERS: list[Callable[[Any], None]] = [
    _adder("ardist", "print ARDist and Sum of a (clean, robust) accuracy point against a tradeoff curve",
           add_arguments_ardist, run_ardist),
    _adder("leaderboard", "rank the stored results, optionally with the published baselines",
           add_arguments_leaderboard, run_leaderboard),
    _adder("report", "write a Markdown and HTML report with figures from the stored results",
           add_arguments_report, run_report),
    _adder("export", "export the results store to a CSV file", add_arguments_export, run_export),
]
