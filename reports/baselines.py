"""Published numbers of ACT, ARREST and AFD (``reports/baselines/*.csv``) plus user CSV files.

Long format, one row per number; see ``reports/baselines/README.md`` for the columns. A user file
needs at least the columns ``method, dataset, metric, value``; the others default to blank.

Example::

    >>> df = load_baselines(extra_files=["my_results.csv"])
    >>> tradeoff_points(df, "cifar10")[["method", "clean", "autoattack"]].head()
"""
from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from robustbench_lite.errors import BenchError
from robustbench_lite.zoo import ZooEntry, all_entries, source_commit

from .ardist import Cubic, curve_for_points, published_fit_for_dataset, published_fit_threat
from .records import format_threat, parse_eps, same_eps

logger = logging.getLogger(__name__)

BASELINE_DIR = Path(__file__).resolve().parent / "baselines"
COLUMNS = ("paper", "table", "method", "dataset", "architecture", "metric", "value", "std", "norm", "eps",
           "setting", "source", "note")
REQUIRED = ("method", "dataset", "metric", "value")
# The key that makes one published "entry" (a row of a paper table).
ENTRY_KEY = ("paper", "table", "method", "dataset", "architecture", "setting")
PGD_METRICS = ("pgd", "pgd10", "pgd20", "pgd50", "pgd100", "pgd1000")
# Spellings of one data set that papers and users write differently, compacted (lower case, no
# blanks, hyphens, underscores or dots) -> the dataset id. ``mnist5k`` (the 5,000-digit registry
# set) and ``mnist`` (the full data set of the published tables) are different data sets: published
# MNIST numbers are never compared, fitted or drawn as if they were ``mnist5k`` ones.
# Which cubic ARDist measures against: the papers' (ARREST's published fits, else a fit to the papers'
# points of the dataset) or one fitted to RobustBench's leaderboard of the same dataset and threat.
ARDIST_FITS = ("published", "robustbench")
DEFAULT_ARDIST_FIT = "published"
ZOO_EPS_REL = 0.02  # as the leaderboard: linf:0.031 selects RobustBench's linf:8/255
DATASET_SPELLINGS = {"mnist": "mnist", "mnist5k": "mnist5k", "cifar10": "cifar10", "cifar100": "cifar100",
                     "tinyimagenet": "tinyimagenet", "imagenet": "imagenet", "svhn": "svhn"}


def dataset_key(dataset: str) -> str:
    """The dataset id of a spelling (``CIFAR-10`` -> ``cifar10``, ``Tiny-ImageNet`` -> ``tinyimagenet``);
    other names are only lower-cased and stripped. ``mnist5k`` stays ``mnist5k``: it is not ``mnist``."""
    d = str(dataset).strip().lower()
    return DATASET_SPELLINGS.get(re.sub(r"[\s_.-]+", "", d), d)


def packaged_files() -> list[Path]:
    """The shipped paper tables (every CSV beside this module except ``fits.csv``)."""
    return sorted(p for p in BASELINE_DIR.glob("*.csv") if p.name != "fits.csv")


def _float_or_nan(text: str, what: str, where: str) -> float:
    s = str(text).strip()
    if s == "":
        return math.nan
    try:
        return parse_eps(s) if what == "eps" else float(s)
    except (BenchError, ValueError):
        raise BenchError(f"{where}: {what} {s!r} is not a number.") from None


def read_baseline_csv(path: str | Path) -> pd.DataFrame:
    """Read and validate one baseline CSV; missing optional columns are filled with blanks."""
    p = Path(path)
    if not p.is_file():
        raise BenchError(f"baseline file {p} does not exist.")
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise BenchError(f"baseline file {p} is not a readable CSV ({str(e).splitlines()[0]}).") from None
    df.columns = [str(c).strip() for c in df.columns]
    for col in REQUIRED:
        if col not in df.columns:
            raise BenchError(f"baseline file {p} has no {col!r} column (required: {', '.join(REQUIRED)}).")
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = p.stem if col == "source" else ""
    out = df[list(COLUMNS)].copy()
    for i, row in out.iterrows():
        where = f"baseline file {p}, data row {int(i) + 1}"  # type: ignore[call-overload]
        if not str(row["value"]).strip():
            raise BenchError(f"{where}: value is empty.")
        if not str(row["method"]).strip() or not str(row["dataset"]).strip() or not str(row["metric"]).strip():
            raise BenchError(f"{where}: method, dataset and metric must not be empty.")
    where = f"baseline file {p}"
    for col in ("value", "std", "eps"):
        out[col] = [_float_or_nan(v, col, where) for v in out[col]]
    out["dataset"] = [dataset_key(d) for d in out["dataset"]]
    out["norm"] = [str(n).strip().lower() for n in out["norm"]]
    out["file"] = str(p)
    return out


def load_baselines(extra_files: Sequence[str | Path] = ()) -> pd.DataFrame:
    """The packaged paper tables plus ``extra_files`` (user CSVs), as one validated DataFrame."""
    frames = [read_baseline_csv(p) for p in [*packaged_files(), *extra_files]]
    return pd.concat(frames, ignore_index=True)


def tradeoff_points(baselines: pd.DataFrame, dataset: str, norm: str | None = None,
                    eps: float | None = None) -> pd.DataFrame:
    """(clean, autoattack) pairs of the published entries of ``dataset`` (at the threat, if given),
    one row per entry.

    Identical (method, clean, autoattack) points quoted in several tables are kept once.
    """
    ds = dataset_key(dataset)
    cols = ["paper", "method", "architecture", "setting", "source", "clean", "autoattack"]
    entries = [e for e in baseline_entries(baselines, ds, norm, eps)
               if e["clean"] is not None and e["autoattack"] is not None]
    df = pd.DataFrame([{c: e[c] for c in cols} for e in entries], columns=cols)
    return df.drop_duplicates(subset=["method", "clean", "autoattack"]).reset_index(drop=True)


def _row_value(rows: list[dict[str, Any]], metric: str) -> tuple[float | None, float | None]:
    for r in rows:
        if r["metric"] == metric:
            return float(r["value"]), (None if math.isnan(r["std"]) else float(r["std"]))
    return None, None


def _auc_index(baselines: pd.DataFrame) -> dict[tuple[str, ...], list[float]]:
    """(paper, method, dataset, architecture, setting, norm) -> published AUC values, from any table
    of that paper (AFD reports AUCs in Table 2 and accuracies in Table 1)."""
    index: dict[tuple[str, ...], list[float]] = {}
    for r in baselines[baselines["metric"].str.startswith("auc_")].to_dict("records"):
        key = (r["paper"], r["method"], r["dataset"], r["architecture"], r["setting"], r["norm"])
        index.setdefault(key, []).append(float(r["value"]))
    return index


def baseline_entries(baselines: pd.DataFrame, dataset: str | None = None, norm: str | None = None,
                     eps: float | None = None) -> list[dict[str, Any]]:
    """Published entries (rows of paper tables that report a clean accuracy) for the leaderboard.

    Each entry: the ENTRY_KEY fields, ``norm``/``eps`` (of its clean row), and ``clean``,
    ``autoattack``, ``pgd`` (lowest published PGD accuracy), ``auc`` (mean published AUC at the
    entry's norm), ``min_pert``, ``robust`` (AutoAttack, else the lowest PGD), each with a ``*_std``.
    With ``norm``/``eps`` given, only entries at that threat (eps within 2 %, which matches 0.031
    with 8/255) are returned; entries whose threat is unknown are dropped then.
    """
    df = baselines if dataset is None else baselines[baselines["dataset"] == dataset_key(dataset)]
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for r in df.to_dict("records"):
        groups.setdefault(tuple(str(r[k]) for k in ENTRY_KEY), []).append(r)
    aucs = _auc_index(baselines) if groups else {}
    out: list[dict[str, Any]] = []
    for key_values, rows in groups.items():
        clean_row = next((r for r in rows if r["metric"] == "clean"), None)
        if clean_row is None:
            continue
        e_norm = str(clean_row["norm"]) or None
        e_eps = None if math.isnan(clean_row["eps"]) else float(clean_row["eps"])
        if norm is not None and e_norm != norm:
            continue
        if eps is not None and not same_eps(e_eps, eps, rel=0.02):
            continue
        key = dict(zip(ENTRY_KEY, key_values))
        entry: dict[str, Any] = {**key, "norm": e_norm, "eps": e_eps, "source": str(clean_row["source"])}
        for metric in ("clean", "autoattack", "min_pert"):
            entry[metric], entry[f"{metric}_std"] = _row_value(rows, metric)
        pgds = [_row_value(rows, m) for m in PGD_METRICS if any(r["metric"] == m for r in rows)]
        entry["pgd"], entry["pgd_std"] = min(pgds, key=lambda t: t[0]) if pgds else (None, None)  # type: ignore[arg-type,return-value]
        auc = aucs.get((key_values[0], *key_values[2:], e_norm or ""), [])  # the key without the table
        entry["auc"], entry["auc_std"] = (sum(auc) / len(auc) if auc else None), None
        if entry["autoattack"] is not None:
            entry["robust"], entry["robust_std"] = entry["autoattack"], entry["autoattack_std"]
        else:
            entry["robust"], entry["robust_std"] = entry["pgd"], entry["pgd_std"]
        out.append(entry)
    return out


def datasets_with_points(baselines: pd.DataFrame) -> Iterable[str]:
    return sorted(set(baselines.loc[baselines["metric"] == "autoattack", "dataset"]))


def curve_for_dataset(dataset: str, baselines: pd.DataFrame | None, norm: str | None = None,
                      eps: float | None = None) -> tuple[Cubic | None, str]:
    """The tradeoff curve for ARDist on ``dataset`` and "", or None and one sentence why there is none.

    The published ARREST fit of the data set (cifar10, cifar100; ARREST Section 5.1), else a cubic
    fitted (:func:`reports.ardist.curve_for_points`) to the published (clean, AutoAttack) points of
    exactly that data set in ``baselines`` -- ``mnist5k`` records get no curve from full-MNIST rows.
    """
    key = dataset_key(dataset)
    published = published_fit_for_dataset(key, norm, eps)
    if published is not None:
        return published, ""
    fitted_at = published_fit_threat(key)
    at = "" if norm is None else f" at {format_threat(norm, eps) if eps is not None else norm}"
    none = (f"ARREST's curve of {key} is for {fitted_at}, not{at}" if fitted_at else "ARREST publishes none")
    if baselines is None:
        return None, f"no tradeoff curve for {key}{at}: {none} and no baseline points were given."
    pts = tradeoff_points(baselines, key, norm, eps)
    if pts.empty:
        return None, (f"no tradeoff curve for {key}{at}: {none} and no baseline has (clean, AutoAttack) "
                      f"points of it.")
    return curve_for_points(pts["clean"].tolist(), pts["autoattack"].tolist(), name=f"published {key}{at}")


def robustbench_points(dataset: str, norm: str, eps: float,
                       table: Sequence[ZooEntry] | None = None) -> list[ZooEntry]:
    """RobustBench's entries of ``dataset`` at the threat (``norm``, ``eps`` within 2 %) that have both a
    clean and an AutoAttack accuracy and that RobustBench does not flag unreliable (their AutoAttack
    numbers are known to overestimate robustness); ``table`` defaults to the packaged one."""
    key = dataset_key(dataset)
    rows = all_entries() if table is None else table
    return [z for z in rows if dataset_key(z.dataset) == key and z.threat_model.norm == norm
            and same_eps(z.threat_model.eps, eps, rel=ZOO_EPS_REL) and not z.unreliable
            and z.clean_acc is not None and z.autoattack_acc is not None]


def curve_for_robustbench(dataset: str, norm: str | None, eps: float | None,
                          table: Sequence[ZooEntry] | None = None) -> tuple[Cubic | None, str]:
    """A cubic fitted (:func:`reports.ardist.curve_for_points`: same refusals, never extrapolated) on the
    (clean, AutoAttack) points of RobustBench's leaderboard of ``dataset`` at the threat, and "" -- or
    None and one sentence why not. The curve's name says the leaderboard and, for the packaged table,
    the commit it was read at."""
    key = dataset_key(dataset)
    commit = source_commit()[:7] if table is None else ""
    where = f"RobustBench {commit}" if commit else "RobustBench"
    if norm is None or eps is None:
        return None, f"no {where} tradeoff curve for {key}: it is fitted per threat and none was given (--threat)."
    picked = robustbench_points(key, norm, eps, table)
    threat = picked[0].threat if picked else format_threat(norm, eps)
    name = f"{where} {key} {threat}"
    if not picked:
        return None, (f"no tradeoff curve for {name}: the leaderboard has no reliable entry with clean and "
                      f"AutoAttack accuracies at that threat.")
    clean = [z.clean_acc for z in picked if z.clean_acc is not None]
    robust = [z.autoattack_acc for z in picked if z.autoattack_acc is not None]
    return curve_for_points(clean, robust, name=name)


def ardist_curve(fit: str, dataset: str, baselines: pd.DataFrame | None, norm: str | None = None,
                 eps: float | None = None, table: Sequence[ZooEntry] | None = None) -> tuple[Cubic | None, str]:
    """The curve ARDist uses under ``fit`` (one of ``ARDIST_FITS``): ``published`` is
    :func:`curve_for_dataset`, ``robustbench`` is :func:`curve_for_robustbench` at the threat."""
    if fit == "published":
        return curve_for_dataset(dataset, baselines, norm, eps)
    if fit == "robustbench":
        return curve_for_robustbench(dataset, norm, eps, table)
    raise BenchError(f"unknown ARDist fit {fit!r}; valid: {', '.join(ARDIST_FITS)}.")
