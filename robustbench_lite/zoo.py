"""RobustBench's leaderboard as data: one CSV of its public ``model_info`` JSON files (torch-free).

The table ``robustbench_lite/leaderboards/robustbench.csv`` holds every entry of the CIFAR-10 Linf
(8/255), CIFAR-10 L2 (0.5), CIFAR-100 Linf (8/255) and ImageNet Linf (4/255) leaderboards of
RobustBench (github.com/RobustBench/robustbench, MIT licence) at a pinned commit, which its first
line records. :func:`build_table` converts the JSON files of a git directory of that repository::

    python -m robustbench_lite.zoo --from /path/to/robustbench/.git [--commit HEAD]

Accuracies are percentages stored as text in the JSON; they are checked to be numbers in [0, 100]
and copied verbatim; an empty or missing one stays blank (never 0). ``threat`` is the leaderboard's
threat in our syntax (``linf:8/255``); ``eps`` is the radius the entry's own JSON states (a few say
``0.031``). ``external_acc`` is RobustBench's best-known robust accuracy (``external``: an evaluation
stronger than AutoAttack), blank where AutoAttack's is the best known.

Example::

    >>> [e.name for e in entries("cifar10", "linf:8/255")][:1]
    ['Addepalli2021Towards_RN18']
    >>> e = lookup("Carmon2019Unlabeled")
    >>> e.architecture, e.dataset, e.threat
    ('WideResNet-28-10', 'cifar10', 'linf:8/255')

How each entry's model is built is a second table, ``leaderboards/robustbench_models.csv``, curated
from the constructors in RobustBench's ``model_zoo/{cifar10,cifar100,imagenet}.py`` at the same
commit (its ``model_zoo`` column quotes each one): a registered arch (``wrn_28_10``, ``dm_wrn_70_16``,
``torchvision:resnet50``, ...), its arguments (``sub_block1``, depth and width, ...) and the input
normalisation the constructor applies, or, in ``missing``, what the registry lacks. The constructor,
not the leaderboard's architecture string, decides: "WideResNet-28-10" is the TRADES network for
Carmon2019Unlabeled and DeepMind's (Swish, normalisation inside) for Gowal2020Uncovering_28_10_extra.
:func:`resolve` serves ``--arch robustbench:<name>``::

    >>> resolve("Carmon2019Unlabeled").arch, resolve("Carmon2019Unlabeled").arch_kwargs
    ('wrn_28_10', {'sub_block1': True})
"""
from __future__ import annotations

import argparse
import csv
import difflib
import io
import json
import logging
import math
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from .errors import BenchError
from .threat import ThreatModel, parse_eps

logger = logging.getLogger(__name__)

TABLE = Path(__file__).resolve().parent / "leaderboards" / "robustbench.csv"
MODELS_TABLE = TABLE.with_name("robustbench_models.csv")
PREFIX = "robustbench:"  # --arch robustbench:<name>
REPOSITORY = "github.com/RobustBench/robustbench"
LICENCE = "MIT licence, Copyright (c) 2020 Francesco Croce, Maksym Andriushchenko, Vikash Sehwag"
# RobustBench's folder model_info/<dataset>/<threat> -> the leaderboard's threat (corruptions skipped)
LEADERBOARDS: dict[tuple[str, str], str] = {
    ("cifar10", "Linf"): "linf:8/255",
    ("cifar10", "L2"): "l2:0.5",
    ("cifar100", "Linf"): "linf:8/255",
    ("imagenet", "Linf"): "linf:4/255",
}
COLUMNS = ("dataset", "threat", "name", "paper", "venue", "authors", "architecture", "additional_data",
           "number_forward_passes", "eps", "clean_acc", "autoattack_acc", "external_acc", "reported", "unreliable",
           "footnote", "link")
ACCURACIES = ("clean_acc", "autoattack_acc", "external_acc", "reported")


@dataclass(frozen=True)
class ZooEntry:
    """One RobustBench leaderboard entry. Accuracies in percent; None where the JSON has none."""

    dataset: str
    threat: str  # the leaderboard's, in our syntax: "linf:8/255"
    name: str  # RobustBench's model id, the JSON file's stem: "Carmon2019Unlabeled"
    paper: str
    venue: str
    authors: str
    architecture: str
    additional_data: bool | None
    number_forward_passes: int | None
    eps: str  # as the JSON states it
    clean_acc: float | None
    autoattack_acc: float | None
    external_acc: float | None  # best known robust accuracy, where stronger than AutoAttack's
    reported: float | None  # the paper's own robust accuracy
    unreliable: bool  # RobustBench flags its evaluation as unreliable (missing in the JSON: False)
    footnote: str
    link: str

    @property
    def best_known(self) -> float | None:
        """The worst case over the evaluations RobustBench lists: min(AutoAttack, external)."""
        values = [v for v in (self.autoattack_acc, self.external_acc) if v is not None]
        return min(values) if values else None

    @property
    def threat_model(self) -> ThreatModel:
        return ThreatModel.parse(self.threat)


# -- conversion from RobustBench's JSON files ------------------------------------------------------

def _git(git_dir: str | Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", "--git-dir", str(git_dir), *args], capture_output=True, text=True, check=False)
    except OSError as e:
        raise BenchError(f"could not run git: {e}.") from None
    if done.returncode != 0:
        raise BenchError(f"git {' '.join(args)} failed in {git_dir}: {done.stderr.strip() or done.returncode}.")
    return done.stdout


def _accuracy(value: Any, field: str, where: str) -> str:
    """A percentage from the JSON (a string, sometimes a number) checked and kept verbatim; '' if none."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return ""
    if isinstance(value, bool):
        raise BenchError(f"{where}: {field} {value!r} is not a number.")
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        raise BenchError(f"{where}: {field} {text!r} is not a number.") from None
    if not math.isfinite(number) or not 0.0 <= number <= 100.0:
        raise BenchError(f"{where}: {field} {text!r} is not a percentage.")
    return text


def _flag(value: Any) -> str:
    return "" if value is None else ("true" if value else "false")


def convert_entry(info: dict[str, Any], dataset: str, threat: str, name: str, where: str = "") -> dict[str, str]:
    """One JSON ``model_info`` dict -> one CSV row (strings; blank where the JSON has nothing)."""
    where = where or name
    parse_eps(str(info.get("eps", "")).strip() or "0")  # a malformed eps is an error, not a silent blank
    fwd = info.get("number_forward_passes")
    return {
        "dataset": dataset, "threat": threat, "name": name, "paper": str(info.get("name") or ""),
        "venue": str(info.get("venue") or ""), "authors": str(info.get("authors") or ""),
        "architecture": str(info.get("architecture") or ""), "additional_data": _flag(info.get("additional_data")),
        "number_forward_passes": "" if fwd is None else str(int(fwd)), "eps": str(info.get("eps") or ""),
        **{f: _accuracy(info.get("external" if f == "external_acc" else f), f, where) for f in ACCURACIES},
        "unreliable": _flag(info.get("unreliable")),
        "footnote": " ".join(str(info.get("footnote") or "").split()), "link": str(info.get("link") or ""),
    }


def build_table(repo_git_dir: str | Path, commit: str = "HEAD") -> list[dict[str, str]]:
    """Rows of the leaderboards in :data:`LEADERBOARDS` read from RobustBench's ``model_info`` at ``commit``.

    Sorted by dataset, threat folder and name, so a rebuild at the same commit gives the same file.
    """
    paths = _git(repo_git_dir, "ls-tree", "-r", "--name-only", commit, "model_info").split()
    rows = []
    for path in sorted(paths):
        parts = path.split("/")
        if len(parts) != 4 or not parts[3].endswith(".json") or (parts[1], parts[2]) not in LEADERBOARDS:
            continue
        try:
            info = json.loads(_git(repo_git_dir, "show", f"{commit}:{path}"))
        except json.JSONDecodeError as e:
            raise BenchError(f"{path} at {commit} is not valid JSON ({e}).") from None
        rows.append(convert_entry(info, parts[1], LEADERBOARDS[(parts[1], parts[2])], parts[3][:-5], where=path))
    return rows


def write_table(rows: Sequence[dict[str, str]], commit: str, out: str | Path = TABLE) -> Path:
    """The CSV with its provenance line (``# source: ... at <commit>``) first."""
    from .files import atomic_write_text, csv_text

    head = f"# source: {REPOSITORY} model_info at commit {commit} ({LICENCE})\n"
    atomic_write_text(out, head + csv_text(rows, COLUMNS))
    return Path(out)


# -- reading the packaged table ----------------------------------------------------------------

def _number(text: str) -> float | None:
    return float(text) if text.strip() else None


def _entry(row: dict[str, str]) -> ZooEntry:
    return ZooEntry(
        dataset=row["dataset"], threat=row["threat"], name=row["name"], paper=row["paper"], venue=row["venue"],
        authors=row["authors"], architecture=row["architecture"],
        additional_data=None if not row["additional_data"] else row["additional_data"] == "true",
        number_forward_passes=int(row["number_forward_passes"]) if row["number_forward_passes"] else None,
        eps=row["eps"], clean_acc=_number(row["clean_acc"]), autoattack_acc=_number(row["autoattack_acc"]),
        external_acc=_number(row["external_acc"]), reported=_number(row["reported"]),
        unreliable=row["unreliable"] == "true", footnote=row["footnote"], link=row["link"])


@lru_cache(maxsize=4)
def _load(path: str) -> tuple[str, tuple[ZooEntry, ...]]:
    lines = Path(path).read_text(encoding="utf-8").splitlines(keepends=True)
    comments = [ln for ln in lines if ln.startswith("#")]
    commit = ""
    for ln in comments:
        if " at commit " in ln:
            commit = ln.split(" at commit ", 1)[1].split()[0]
    reader = csv.DictReader(io.StringIO("".join(ln for ln in lines if not ln.startswith("#"))))
    return commit, tuple(_entry(r) for r in reader)


def all_entries(table: str | Path = TABLE) -> list[ZooEntry]:
    """Every entry of the table, in file order (dataset, threat folder, name)."""
    return list(_load(str(table))[1])


def source_commit(table: str | Path = TABLE) -> str:
    """The RobustBench commit the table was built from."""
    return _load(str(table))[0]


def entries(dataset: str, threat: str | ThreatModel, table: str | Path = TABLE) -> list[ZooEntry]:
    """The entries of one leaderboard: ``dataset`` (``cifar10``, ``cifar100``, ``imagenet``) and a threat
    (``"linf:8/255"``, compared by norm and radius, so ``linf:0.0314`` does not select it); [] if none."""
    tm = threat if isinstance(threat, ThreatModel) else ThreatModel.parse(threat)
    return [e for e in all_entries(table) if e.dataset == dataset.strip().lower()
            and e.threat_model.norm == tm.norm and math.isclose(e.threat_model.eps, tm.eps, rel_tol=1e-9)]


def lookup(name: str, dataset: str | None = None, threat: str | None = None, table: str | Path = TABLE) -> ZooEntry:
    """The entry named ``name`` (RobustBench's model id, e.g. ``Carmon2019Unlabeled``); ``dataset`` and
    ``threat`` choose among leaderboards that share a name (``Standard``, ``Bai2024MixedNUTS``, ...).
    An unknown or ambiguous name is a :class:`BenchError` with the close matches or the choices."""
    every = all_entries(table)
    found = [e for e in every if e.name == name]
    if not found:
        close = difflib.get_close_matches(name, sorted({e.name for e in every}), n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "."
        raise BenchError(f"{name!r} is not a RobustBench leaderboard entry (commit {source_commit(table)[:7]}){hint}")
    if dataset is not None:
        found = [e for e in found if e.dataset == dataset.strip().lower()]
    if threat is not None:
        tm = ThreatModel.parse(threat)
        found = [e for e in found if e.threat_model.norm == tm.norm and math.isclose(e.threat_model.eps, tm.eps, rel_tol=1e-9)]
    if len(found) == 1:
        return found[0]
    boards = ", ".join(f"{e.dataset} {e.threat}" for e in (found or [e for e in every if e.name == name]))
    if not found:
        raise BenchError(f"RobustBench's {name} is on the leaderboards {boards}, not on the one asked for.")
    raise BenchError(f"RobustBench's {name} is on several leaderboards ({boards}); give --dataset and --threat.")


# -- how each entry's model is built (--arch robustbench:<name>) -----------------------------------

@dataclass(frozen=True)
class ZooModel:
    """How to build one entry's network from its zoo file (a row of ``robustbench_models.csv``)."""

    entry: ZooEntry
    arch: str  # a registered name, torchvision:<name> or timm:<name>; "" where the registry lacks it
    arch_kwargs: dict[str, Any]
    normalize: str | None  # --normalize text (three means then three stds, or MEAN,STD); None: none applied
    missing: str  # what the registry lacks ("" when arch is set)
    model_zoo: str  # the constructor in RobustBench's model_zoo it was read from

    @property
    def supported(self) -> bool:
        return bool(self.arch)


@lru_cache(maxsize=4)
def _load_models(path: str) -> dict[tuple[str, str, str], dict[str, str]]:
    lines = [ln for ln in Path(path).read_text(encoding="utf-8").splitlines(keepends=True) if not ln.startswith("#")]
    return {(r["dataset"], r["threat"], r["name"]): r for r in csv.DictReader(io.StringIO("".join(lines)))}


def zoo_model(entry: ZooEntry, table: str | Path = MODELS_TABLE) -> ZooModel:
    """The build recipe of a leaderboard entry (every entry has a row, supported or not)."""
    row = _load_models(str(table)).get((entry.dataset, entry.threat, entry.name))
    if row is None:
        return ZooModel(entry, "", {}, None, f"{table} has no row for {entry.name}", "")
    return ZooModel(entry, row["arch"], json.loads(row["arch_kwargs"]) if row["arch_kwargs"] else {},
                    row["normalize"] or None, row["missing"], row["model_zoo"])


def is_robustbench_spec(arch: str | None) -> bool:
    """``robustbench:<name>``."""
    return bool(arch) and str(arch).startswith(PREFIX) and len(str(arch)) > len(PREFIX)


def _choose(name: str, dataset: str | None, threat: str | None) -> tuple[ZooEntry, str | None]:
    """The entry for ``--arch robustbench:<name>``, and a warning when ``threat`` is not its leaderboard's.

    ``--dataset`` must be the entry's (else one sentence: the classes and input shape would not fit);
    ``--threat`` chooses among leaderboards sharing a name and otherwise only warns: evaluating an
    Linf model at an L2 radius is a legitimate experiment, the leaderboard's numbers just do not apply."""
    found = [e for e in all_entries() if e.name == name]
    if not found or (dataset is not None and not any(e.dataset == dataset.strip().lower() for e in found)):
        lookup(name, dataset=dataset)  # the sentence: an unknown name (with close matches) or another dataset's
    found = [e for e in found if dataset is None or e.dataset == dataset.strip().lower()]
    if threat is not None:
        tm = ThreatModel.parse(threat)
        same = [e for e in found if e.threat_model.norm == tm.norm and math.isclose(e.threat_model.eps, tm.eps, rel_tol=1e-9)]
        if len(same) == 1:
            return same[0], None
        if not same and len(found) == 1:
            e = found[0]
            return e, (f"RobustBench's {name} is on the {e.dataset} {e.threat} leaderboard; evaluating it at {threat} as "
                       "asked, so its leaderboard numbers do not apply.")
    if len(found) == 1:
        return found[0], None
    boards = ", ".join(f"{e.dataset} {e.threat}" for e in found)
    raise BenchError(f"RobustBench's {name} is on several leaderboards ({boards}); give --dataset and --threat.")


def resolve(name: str, dataset: str | None = None, threat: str | None = None,
            table: str | Path = MODELS_TABLE) -> ZooModel:
    """``--arch robustbench:<name>`` (the prefix optional) -> the entry's build recipe; dataset and threat
    default from the entry. An unknown name, a contradicting ``dataset`` and an entry whose architecture
    the registry lacks are one-sentence :class:`BenchError`s; a contradicting ``threat`` is a logged warning."""
    name = name[len(PREFIX):] if name.startswith(PREFIX) else name
    entry, warning = _choose(name.strip(), dataset, threat)
    model = zoo_model(entry, table)
    if not model.supported and not model.model_zoo:
        raise BenchError(f"RobustBench's {entry.name} ({entry.dataset} {entry.threat}) has no model in RobustBench's "
                         f"model_zoo at {source_commit()[:7]}, so no zoo file to build; for your own {entry.architecture} "
                         "give --arch a registry name.")
    if not model.supported:
        raise BenchError(f"RobustBench's {entry.name} ({entry.dataset} {entry.threat}, {entry.architecture}) cannot be "
                         f"built here: the registry lacks {model.missing}.")
    if warning:
        logger.warning("%s", warning)
    return model


def coverage(table: str | Path = MODELS_TABLE) -> dict[tuple[str, str], tuple[int, int]]:
    """(dataset, threat) -> (entries ``--arch robustbench:`` can build, entries on that leaderboard)."""
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for e in all_entries():
        done, total = out.get((e.dataset, e.threat), (0, 0))
        out[(e.dataset, e.threat)] = (done + zoo_model(e, table).supported, total + 1)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m robustbench_lite.zoo",
                                description="Rebuild the RobustBench leaderboard table from a git directory of "
                                f"{REPOSITORY}.")
    p.add_argument("--from", dest="git_dir", required=True, help="the repository's git directory (e.g. robustbench/.git)")
    p.add_argument("--commit", default="HEAD", help="commit to read model_info at (default HEAD)")
    p.add_argument("--out", default=str(TABLE), help=f"CSV to write (default {TABLE})")
    args = p.parse_args(argv)
    try:
        commit = _git(args.git_dir, "rev-parse", f"{args.commit}^{{commit}}").strip()
        rows = build_table(args.git_dir, commit)
        out = write_table(rows, commit, args.out)
    except BenchError as e:
        print(f"zoo: error: {e}", file=sys.stderr)
        return 2
    counts: dict[tuple[str, str], int] = {}
    for r in rows:
        counts[(r["dataset"], r["threat"])] = counts.get((r["dataset"], r["threat"]), 0) + 1
    for (ds, threat), n in counts.items():
        print(f"{ds} {threat}: {n}")
    print(f"wrote {out} ({len(rows)} entries, commit {commit})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
