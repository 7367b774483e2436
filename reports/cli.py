"""``bench`` subcommands of reports: ardist, leaderboard, report, serve, export.

:func:`register` adds them to ``bench``'s subparsers (one ``add_<cmd>`` / ``cmd_<cmd>`` pair per
command, see :mod:`robustbench_lite.cliargs`); ``bench`` turns a :class:`BenchError` into one line
on stderr. These functions print (they are the CLI); everything else in ``reports`` logs.

Example::

    sub = parser.add_subparsers(dest="command")
    register(sub)
    args = parser.parse_args(["ardist", "--clean", "87.14", "--robust", "44.04"])
    args.func(args)

Building the parser imports only what the options' help needs; each ``cmd_<cmd>`` imports its
heavy parts (pandas, matplotlib) when it runs, and checks its output path before any work.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

from robustbench_lite.cliargs import check_out_folder
from robustbench_lite.errors import BenchError

from .store import DEFAULT_DB  # store imports pandas only when it builds a DataFrame

if TYPE_CHECKING:  # pragma: no cover
    from robustbench_lite.cliargs import Subparsers


def register(sub: Subparsers) -> None:
    """Add ``ardist``, ``leaderboard``, ``report``, ``serve`` and ``export`` to ``bench``'s subparsers."""
    add_ardist(sub)
    add_leaderboard(sub)
    add_report(sub)
    add_serve(sub)
    add_export(sub)


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", type=Path, default=DEFAULT_DB, metavar="PATH",
                        help=f"results store, an SQLite file (default: {DEFAULT_DB})")


def _add_baselines(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--baselines", type=Path, nargs="+", action="extend", default=None, metavar="EXTRA.csv",
                        help="your own baseline CSV files (columns method, dataset, metric, value; optional paper, "
                             "table, architecture, std, norm, eps, setting, source, note), added to the published ones")


# -- ardist ---------------------------------------------------------------------------------------

def _percent(name: str, value: float) -> float:
    if not math.isfinite(value) or not 0.0 <= value <= 100.0:
        raise BenchError(f"--{name} must be an accuracy in percent between 0 and 100, got {value!r}.")
    return value


def add_ardist(sub: Subparsers) -> None:
    """``bench ardist --clean 87.14 --robust 44.04 --curve cifar10``."""
    from .ardist import published_fit_names

    p = sub.add_parser("ardist", help="print ARDist and Sum of a (clean, robust) accuracy point against a tradeoff curve",
                       description="Print ARDist and Sum of a (clean, robust) accuracy point against a tradeoff curve.")
    p.add_argument("--clean", type=float, required=True, metavar="PCT",
                   help="standard (clean) accuracy in percent, e.g. 87.14")
    p.add_argument("--robust", type=float, required=True, metavar="PCT",
                   help="robust (AutoAttack) accuracy in percent, e.g. 44.04")
    p.add_argument("--curve", default="cifar10", metavar="NAME|FILE.csv",
                   help=f"tradeoff curve: a published ARREST fit ({', '.join(published_fit_names())}) or a CSV "
                        "file of points with columns clean,robust to fit a cubic to (default: cifar10)")
    p.set_defaults(func=cmd_ardist)


def cmd_ardist(args: argparse.Namespace) -> int:
    from .ardist import accuracy_sum, ardist, point_refusal, resolve_curve

    clean, robust = _percent("clean", args.clean), _percent("robust", args.robust)
    why = point_refusal(clean, robust)
    if why:
        raise BenchError(why)
    curve = resolve_curve(args.curve)
    print(f"ARDist: {ardist(clean, robust, curve):.3f}  (curve {curve.name}: {curve})")
    print(f"Sum: {accuracy_sum(clean, robust):.2f}")
    return 0


# -- leaderboard ----------------------------------------------------------------------------------

def add_leaderboard(sub: Subparsers) -> None:
    """``bench leaderboard [--db PATH] [--dataset D] [--threat T] [--with-baselines] ...``."""
    from .render import DEFAULT_SORT, FORMATS, SORT_COLUMNS

    p = sub.add_parser("leaderboard", help="rank the stored results, optionally with the published baselines",
                       description="Rank the stored results, optionally with the published baselines.")
    _add_db(p)
    p.add_argument("--dataset", default=None, metavar="D",
                   help="only this dataset, e.g. cifar10 or mnist5k (default: all)")
    p.add_argument("--threat", default=None, metavar="T",
                   help='only this threat model, e.g. "linf:8/255" or "l2:0.5" (default: all)')
    p.add_argument("--with-baselines", action="store_true",
                   help="merge in the published results for the same datasets and threats, marked as published: the "
                   "papers' tables and every RobustBench leaderboard entry (cifar10 linf:8/255 and l2:0.5, cifar100 "
                   "linf:8/255, imagenet linf:4/255; robustbench_lite/leaderboards/README.md)")
    _add_baselines(p)
    p.add_argument("--sort", default=DEFAULT_SORT, metavar="COLUMN",
                   help=f"column to rank by (default: {DEFAULT_SORT}, the worst-case robust accuracy; entries with "
                   f"a failed sanity check rank last); one of {', '.join(SORT_COLUMNS)}")
    p.add_argument("--format", dest="fmt", default="table", choices=FORMATS,
                   help="output format (default: table)")
    p.add_argument("--ardist-fit", default="published", choices=("published", "robustbench"),
                   help="ARDist's tradeoff curve: 'published' (default: ARREST's fits, else a cubic through the papers' "
                   "points of the dataset) or 'robustbench' (a cubic fitted on RobustBench's leaderboard of the same "
                   "dataset and threat; refused with the reason for fewer than 4 points, a clean span under 5 or an "
                   "ill-conditioned fit; never extrapolated; the table's footnote names the fit and the commit)")
    p.set_defaults(func=cmd_leaderboard)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from .baselines import load_baselines
    from .leaderboard import leaderboard

    baselines = load_baselines(extra_files=args.baselines or ())
    print(leaderboard(args.db, dataset=args.dataset, threat=args.threat, with_baselines=args.with_baselines,
                      sort=args.sort, fmt=args.fmt, baselines=baselines, ardist_fit=args.ardist_fit), end="")
    return 0


# -- report ---------------------------------------------------------------------------------------

def add_report(sub: Subparsers) -> None:
    """``bench report [--db PATH] [--out DIR] [--baselines EXTRA.csv ...] [--serve [--port N]]``."""
    p = sub.add_parser("report", help="write the leaderboard site, a Markdown report and figures from the stored results",
                       description="Write the leaderboard site (index.html, a page per evaluation, the run files; it works "
                       "opened from disk or from any static host), the Markdown report (report.md, with report.html) and the "
                       "figures from the stored results.")
    _add_db(p)
    p.add_argument("--out", type=Path, default=Path("runs") / "report", metavar="DIR",
                   help="folder for the site (index.html, eval/, runs/, assets/), report.md, report.html and the "
                        "figures (default: runs/report)")
    _add_baselines(p)
    p.add_argument("--with-robustbench", action="store_true",
                   help="also show every RobustBench leaderboard entry (and the papers' rows) of each table's dataset "
                        "and threat in the site, and plot RobustBench's entries in the tradeoff figures")
    p.add_argument("--serve", action="store_true", help="then serve the folder on 127.0.0.1 (as `bench serve DIR`)")
    _add_port(p)
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    check_out_folder(args.out, files=("report.md", "report.html", "index.html"))
    from .baselines import load_baselines
    from .report import check_report_inputs
    from .site import publish

    db = Path(args.db)
    check_report_inputs(args.out, [db, *(db.with_name(db.name + s) for s in ("-wal", "-shm")), *(args.baselines or ())])
    files, site = publish(db, args.out, baselines=load_baselines(extra_files=args.baselines or ()),
                          robustbench=args.with_robustbench)
    print(f"wrote the site {site.index} ({site.tables} table(s), {len(site.pages)} evaluation page(s)), "
          f"{files.markdown} and {files.html} ({len(files.figures)} figures as PNG and PDF)")
    if args.serve:
        return _serve(args.out, args.port)
    return 0


# -- serve ----------------------------------------------------------------------------------------

def _add_port(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=0, metavar="N",
                        help="port on 127.0.0.1 to serve on (default: 0, a free one)")


def add_serve(sub: Subparsers) -> None:
    """``bench serve DIR [--port N]``."""
    p = sub.add_parser("serve", help="serve a site written by `bench report` on 127.0.0.1 and print its address",
                       description="Serve a site written by `bench report` on 127.0.0.1 (Ctrl-C stops).")
    p.add_argument("dir", type=Path, metavar="DIR", help="the folder `bench report --out DIR` wrote")
    _add_port(p)
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    return _serve(args.dir, args.port)


def _serve(folder: Path, port: int) -> int:
    from .site import make_server

    if not 0 <= port <= 65535:
        raise BenchError(f"--port must be between 0 and 65535, got {port}.")
    server = make_server(folder, port)
    host, bound = server.server_address[:2]
    print(f"serving {folder} at http://{host}:{bound}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


# -- export ---------------------------------------------------------------------------------------

def add_export(sub: Subparsers) -> None:
    """``bench export --db PATH --out file.csv``."""
    p = sub.add_parser("export", help="export the results store to a CSV file",
                       description="Export the results store to a CSV file.")
    _add_db(p)
    p.add_argument("--out", type=Path, required=True, metavar="FILE.csv",
                   help="CSV file to write, one row per stored result (typed columns, no record JSON)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from robustbench_lite.files import check_output_path

    from .store import export_csv

    check_output_path(args.out, kind="file")
    out = export_csv(args.db, args.out)
    print(f"wrote {out}")
    return 0
