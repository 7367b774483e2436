"""Report figures, saved as PNG and PDF.

Figures are plain ``matplotlib.figure.Figure`` objects (no pyplot, no global backend switch):
``savefig`` renders PNG with the Agg canvas and PDF with the PDF canvas, headless and thread-safe.

(a) clean vs AutoAttack tradeoff per (dataset, threat) with the published points of that dataset and
threat and the cubic (ARREST Fig. 1); records without an AutoAttack number get their own figure per
(dataset, threat, verdict kind), its axis naming what was measured (the fast verdict, the suite's worst
case), never an axis labelled AutoAttack (:mod:`reports.tradeoff`);
(b) accuracy vs eps per attack with the AUC in the legend (AFD Fig. 2), one per record with sweeps;
(c) transfer success-rate heatmap; (d) accuracy vs a swept defense parameter (ACT alpha, ARREST
phi/tau); (e) a record's model analyses (numeric series only; scalars go to the report's tables).

Example::

    >>> files = make_figures(records, "runs/report", load_baselines())
    >>> [f.png.name for f in files]
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from robustbench_lite.files import slug

from .baselines import dataset_key
from .records import RecordSummary, format_eps, model_name, summarize
from .tradeoff import (OURS_COLOR, PAPER_STYLE, TRADEOFF_KINDS, place_labels, tradeoff_figure,  # noqa: F401
                       tradeoff_kind, tradeoff_title)

logger = logging.getLogger(__name__)

SWEEP_PARAMETERS = ("alpha", "phi", "tau")  # defense_config keys whose sweeps get plot (d)
NORM_LABEL = {"linf": r"$\ell_\infty$", "l2": r"$\ell_2$", "l1": r"$\ell_1$"}


@dataclass(frozen=True)
class FigureFile:
    """A saved figure: its kind (tradeoff, sweep, transfer, parameter, analyses), title and files."""

    kind: str
    title: str
    png: Path
    pdf: Path


def save(fig: Figure, out_dir: Path, stem: str, kind: str, title: str) -> FigureFile:
    out_dir.mkdir(parents=True, exist_ok=True)
    name = slug(stem).strip("_") or "figure"
    png, pdf = out_dir / f"{name}.png", out_dir / f"{name}.pdf"
    fig.savefig(png, dpi=130)
    fig.savefig(pdf, metadata={"CreationDate": None})
    return FigureFile(kind, title, png, pdf)


def sweep_figure(record: Mapping[str, Any]) -> Figure | None:
    """Accuracy vs eps for each swept attack, one panel per norm; None without sweeps."""
    rows = [r for r in record.get("sweeps") or [] if r.get("eps") is not None and r.get("accuracy") is not None]
    if not rows:
        return None
    s = summarize(record)
    norms = [n for n in ("linf", "l2", "l1") if any(str(r.get("norm")) == n for r in rows)]
    fig = Figure(figsize=(5.2 * len(norms), 4.2), layout="constrained")
    axes = fig.subplots(1, len(norms), squeeze=False)[0]
    for ax, norm in zip(axes, norms):
        curves: dict[str, list[Mapping[str, Any]]] = {}
        for r in rows:
            if str(r.get("norm")) == norm:
                curves.setdefault(str(r.get("label", r.get("attack"))), []).append(r)
        for attack, pts in sorted(curves.items()):
            pts = sorted(pts, key=lambda r: float(r["eps"]))
            auc = next((r.get("auc") for r in pts if r.get("auc") is not None), None)
            label = attack if auc is None else f"{attack} (AUC {float(auc):.3f})"
            ax.plot([float(r["eps"]) for r in pts], [float(r["accuracy"]) for r in pts], marker="o", markersize=4,
                    label=label)
        if norm == s.norm:
            ax.axvline(s.eps, color="gray", linestyle=":", linewidth=1, label=f"threat eps {format_eps(s.eps)}")
        ax.set_xlabel(f"perturbation size ε ({NORM_LABEL.get(norm, norm)})")
        ax.set_ylabel("Accuracy (%)")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{s.model}: accuracy vs ε on {s.dataset}")
    return fig


def transfer_figure(records: Sequence[Mapping[str, Any]]) -> Figure | None:
    """Heatmap of transfer attack success rates (target rows, surrogate columns); None if no data."""
    cells: dict[tuple[str, str], float] = {}
    for r in records:
        for t in r.get("transfer") or []:
            if t.get("success_rate") is None:
                continue
            target = model_name(str(t.get("target") or r["checkpoint"].get("path", "?")))
            cells[(target, model_name(str(t.get("surrogate", "?"))))] = float(t["success_rate"])
    if not cells:
        return None
    targets = sorted({k[0] for k in cells})
    surrogates = sorted({k[1] for k in cells})
    grid = np.full((len(targets), len(surrogates)), np.nan)
    for (t, s), v in cells.items():
        grid[targets.index(t), surrogates.index(s)] = v
    fig = Figure(figsize=(1.6 + 1.3 * len(surrogates), 1.6 + 0.7 * len(targets)), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(np.ma.masked_invalid(grid), cmap="Reds", vmin=0, vmax=max(1.0, float(np.nanmax(grid))),
                   aspect="auto")
    for i in range(len(targets)):
        for j in range(len(surrogates)):
            if math.isnan(grid[i, j]):
                ax.text(j, i, "not run", ha="center", va="center", fontsize=8, color="#777777")
            else:
                ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", fontsize=9,
                        color="white" if grid[i, j] > 0.6 * np.nanmax(grid) else "black")
    ax.set_facecolor("#eeeeee")
    ax.set_xticks(range(len(surrogates)), surrogates, rotation=30, ha="right")
    ax.set_yticks(range(len(targets)), targets)
    ax.set_xlabel("surrogate (source of the adversarial examples)")
    ax.set_ylabel("target")
    ax.set_title("Transfer attack success rate (%), lower = more robust", fontsize=10)
    fig.colorbar(im, ax=ax, label="success rate (%)")
    return fig


def parameter_groups(summaries: Sequence[RecordSummary]) -> list[tuple[str, list[RecordSummary]]]:
    """(parameter, summaries) for each defense configuration family swept over one parameter."""
    out = []
    for param in SWEEP_PARAMETERS:
        fams: dict[tuple[Any, ...], list[RecordSummary]] = {}
        for s in summaries:
            if isinstance(s.defense_config.get(param), (int, float)) and not isinstance(s.defense_config[param], bool):
                rest = tuple(sorted((k, str(v)) for k, v in s.defense_config.items() if k not in (param, "seed")))
                fams.setdefault((s.defense, s.dataset, s.arch, s.norm, round(s.eps, 12), s.suite_hash, rest),
                                []).append(s)
        for fam in fams.values():
            if len({float(s.defense_config[param]) for s in fam}) >= 2:
                out.append((param, fam))
    return out


def parameter_figure(param: str, family: Sequence[RecordSummary]) -> Figure:
    """Clean and robust accuracy (mean ± std over seeds) against a defense parameter."""
    use_aa = all(s.autoattack is not None for s in family)
    by_value: dict[float, list[RecordSummary]] = {}
    for s in family:
        by_value.setdefault(float(s.defense_config[param]), []).append(s)
    xs = sorted(by_value)
    fig = Figure(figsize=(6.0, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for label, attr, color, marker in (("clean", "clean", "#1f77b4", "o"),
                                       ("AutoAttack" if use_aa else "robust (worst case)",
                                        "autoattack" if use_aa else "robust", OURS_COLOR, "s")):
        means, stds = [], []
        for x in xs:
            vals = [getattr(s, attr) for s in by_value[x] if getattr(s, attr) is not None]
            means.append(float(np.mean(vals)) if vals else np.nan)
            stds.append(float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0)
        ax.errorbar(xs, means, yerr=stds, marker=marker, capsize=3, color=color, label=f"{label} accuracy")
    first = family[0]
    ax.set_xticks(xs, [f"{x:g}" for x in xs])
    ax.set_xlabel(param)
    ax.set_ylabel("Accuracy (%)")
    ax.set_title(f"{first.defense}: accuracy vs {param} ({first.dataset}, {first.arch}, {first.threat})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _numbers(v: Any) -> list[float] | None:
    if isinstance(v, (list, tuple)) and len(v) >= 2 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        return [float(x) for x in v]
    return None


def plottable_analyses(analyses: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """(name, kind, data) for analyses that can be drawn: a series, an x/y pair or named numbers."""
    out: list[tuple[str, str, Any]] = []
    for name, v in analyses.items():
        if _numbers(v) is not None:
            out.append((name, "series", _numbers(v)))
        elif isinstance(v, Mapping):
            lists = [(k, _numbers(x)) for k, x in v.items() if _numbers(x) is not None]
            scalars = {str(k): float(x) for k, x in v.items()
                       if isinstance(x, (int, float)) and not isinstance(x, bool)}
            if len(lists) >= 2 and len(lists[0][1]) == len(lists[1][1]):  # type: ignore[arg-type]
                out.append((name, "xy", (lists[0], lists[1])))
            elif len(scalars) >= 2 and len(scalars) == len(v):
                out.append((name, "bars", scalars))
    return out


def analyses_figure(record: Mapping[str, Any]) -> Figure | None:
    """One panel per plottable analysis of a record; None if it has none."""
    analyses = record.get("analyses")
    if not isinstance(analyses, Mapping):
        return None
    items = plottable_analyses(analyses)
    if not items:
        return None
    ncols = min(3, len(items))
    nrows = math.ceil(len(items) / ncols)
    fig = Figure(figsize=(4.4 * ncols, 3.6 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (name, kind, data) in zip(axes, items):
        if kind == "series":
            ax.plot(range(1, len(data) + 1), data, marker="o")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("index (1 = first)")
        elif kind == "xy":
            (xname, x), (yname, y) = data
            ax.plot(x, y, marker="o")
            ax.set_xlabel(xname)
            ax.set_ylabel(yname)
        else:
            ax.bar(range(len(data)), list(data.values()), color="#4c72b0")
            ax.set_xticks(range(len(data)), list(data), rotation=30, ha="right")
        ax.set_title(name.replace("_", " "), fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes[len(items):]:
        ax.set_visible(False)
    fig.suptitle(f"{summarize(record).model}: model analyses")
    return fig


def make_figures(records: Sequence[Mapping[str, Any]], out_dir: str | Path,
                 baselines: pd.DataFrame | None, robustbench: bool = False) -> list[FigureFile]:
    """Build and save every figure that the records support; returns the saved files in order
    (``robustbench``: the tradeoff figures also show RobustBench's leaderboard entries)."""
    out = Path(out_dir)
    summaries = [summarize(r) for r in records]
    files: list[FigureFile] = []
    groups: dict[tuple[str, str, float], list[RecordSummary]] = {}
    for s in summaries:  # one figure per (dataset, threat, what was measured): never two threats in one
        groups.setdefault((s.dataset, s.norm, round(s.eps, 12)), []).append(s)
    for (ds, norm, eps), group in sorted(groups.items()):
        for kind in TRADEOFF_KINDS:
            if any(tradeoff_kind(s) == kind for s in group):
                fig = tradeoff_figure(ds, group, baselines, robustbench, kind=kind)
                suffix = "" if kind == "AutoAttack" else "_" + kind.replace(" ", "_")
                files.append(save(fig, out, f"tradeoff_{ds}_{norm}_{format_eps(eps)}{suffix}", "tradeoff",
                                  tradeoff_title(ds, group[0].threat, kind).replace("\n", ": ")))
    for r, s in zip(records, summaries):
        fig = sweep_figure(r)
        if fig is not None:
            files.append(save(fig, out, f"sweep_{s.model}_{s.sha256[:8]}", "sweep", f"{s.model}: accuracy vs eps"))
    fig = transfer_figure(records)
    if fig is not None:
        files.append(save(fig, out, "transfer", "transfer", "Transfer attack success rates"))
    for i, (param, fam) in enumerate(parameter_groups(summaries)):
        fig = parameter_figure(param, fam)
        f = fam[0]
        files.append(save(fig, out, f"param_{f.defense}_{param}_{dataset_key(f.dataset)}_{i}", "parameter",
                          f"{f.defense}: accuracy vs {param} ({f.dataset})"))
    for r, s in zip(records, summaries):
        try:
            fig = analyses_figure(r)
        except (TypeError, ValueError) as e:  # analyses are free-form; a malformed one must not stop a report
            logger.warning("skipping the analyses of %s: %s", s.model, e)
            fig = None
        if fig is not None:
            files.append(save(fig, out, f"analyses_{s.model}_{s.sha256[:8]}", "analyses", f"{s.model}: model analyses"))
    return files
