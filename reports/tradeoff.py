"""The accuracy-robustness tradeoff figure (ARREST Fig. 1): one per (dataset, threat, verdict kind).

Clean accuracy against what was measured: AutoAttack accuracy (with the published points of the same
dataset and threat, RobustBench's entries there if asked, and the tradeoff cubic over its range only),
or, for records without an AutoAttack number, the fast verdict or the suite's worst case on an axis
of its own. Titles name the dataset and threat; a figure never mixes threats.

Example::

    >>> fig = tradeoff_figure("cifar10", [summarize(r) for r in records], load_baselines())
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .baselines import curve_for_dataset, tradeoff_points
from .records import RecordSummary

PAPER_STYLE = {"ARREST": ("s", "#4c72b0"), "AFD": ("^", "#55a868"), "ACT": ("D", "#8172b2")}
OURS_COLOR = "#d62728"


# Label offsets (points) tried in order: 8 directions at growing distances; far ones get a leader line.
_DIRECTIONS = [(1, 1), (1, -1), (-1, 1), (-1, -1), (0, 1), (0, -1), (1, 0), (-1, 0)]
_LABEL_OFFSETS = [(dx * r, dy * r * 0.8, "left" if dx > 0 else "right" if dx < 0 else "center",
                   "bottom" if dy > 0 else "top" if dy < 0 else "center", r > 10)
                  for r in (8, 20, 34) for dx, dy in _DIRECTIONS]


def place_labels(fig: Figure, ax: Any, labels: Sequence[tuple[float, float, str]],
                 obstacles: Sequence[tuple[float, float]] = (), **text_kw: Any) -> None:
    """Annotate points greedily so that each label sits near its own point without covering other
    labels or labelled points (heavy penalty), other markers (light penalty) or the axes edge."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.transforms import Bbox

    if not labels:
        return
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw_without_rendering()  # run the layout so data -> pixel transforms are final
    r = 5.0 * fig.dpi / 72.0  # marker half-size in pixels

    def squares(xy: Sequence[tuple[float, float]]) -> list[Any]:
        return [Bbox.from_extents(px - r, py - r, px + r, py + r) for px, py in ax.transData.transform(xy)] if xy else []

    light = squares(list(obstacles))
    heavy = squares([(x, y) for x, y, _ in labels])
    own = ax.transData.transform([(x, y) for x, y, _ in labels])
    frame = ax.get_window_extent(renderer)
    for k, (x, y, text) in enumerate(labels):
        best, best_cost = None, None
        for dx, dy, ha, va, far in _LABEL_OFFSETS:
            ann = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                              arrowprops=dict(arrowstyle="-", lw=0.6, color="#7a0000", shrinkA=0, shrinkB=5)
                              if far else None, **text_kw)
            bb = ann.get_window_extent(renderer)
            centre = np.array([(bb.x0 + bb.x1) / 2, (bb.y0 + bb.y1) / 2])
            nearest_other = int(np.argmin(np.hypot(*(own - centre).T))) != k
            inside = frame.contains(bb.x0, bb.y0) and frame.contains(bb.x1, bb.y1)
            cost = (4 * sum(bb.overlaps(b) for b in heavy) + sum(bb.overlaps(b) for b in light)
                    + (3 if nearest_other and not far else 0) + (0 if inside else 6) + (0.5 if far else 0))
            if best_cost is None or cost < best_cost:
                if best is not None:
                    best[0].remove()
                best, best_cost = (ann, bb), cost
            else:
                ann.remove()
            if cost == 0:
                break
        if best is not None:
            heavy.append(best[1])


TRADEOFF_KINDS = ("AutoAttack", "fast verdict", "worst case")  # one tradeoff figure per (dataset, threat, kind)
Y_LABELS = {"AutoAttack": "AutoAttack accuracy (%)",
            "fast verdict": "Robust accuracy (%):\nfast verdict (not AutoAttack)",
            "worst case": "Robust accuracy (%):\nworst case of the suite (no AutoAttack)"}


def tradeoff_kind(s: RecordSummary) -> str | None:
    """Which tradeoff figure a record's point belongs to: ``AutoAttack`` when it has an AutoAttack
    accuracy at its threat, else its verdict (``fast verdict``, ``worst case``); None without a robust
    accuracy (nothing to plot)."""
    if s.clean is None:
        return None
    if s.autoattack is not None:
        return "AutoAttack"
    if s.robust is None:
        return None
    return "fast verdict" if s.verdict == "fast verdict" else "worst case"


def tradeoff_figure(dataset: str, summaries: Sequence[RecordSummary], baselines: pd.DataFrame | None,
                    robustbench: bool = False, kind: str = "AutoAttack") -> Figure:
    """Clean accuracy against what was measured (``kind``: AutoAttack accuracy, the fast verdict or the
    suite's worst case) for records of one dataset and threat, titled with both. Only the AutoAttack
    figure shows published points of the same dataset and threat (and, with ``robustbench``,
    RobustBench's entries there) and the tradeoff cubic: those are AutoAttack numbers too."""
    threats = sorted({s.threat for s in summaries})
    if len(threats) > 1:
        raise ValueError(f"one tradeoff figure per threat, got {', '.join(threats)}")
    if kind not in TRADEOFF_KINDS:
        raise ValueError(f"unknown tradeoff kind {kind!r}; valid: {', '.join(TRADEOFF_KINDS)}")
    threat = threats[0] if threats else ""
    norm, eps = (summaries[0].norm, summaries[0].eps) if summaries else (None, None)
    fig = Figure(figsize=(9.0, 5.2), layout="constrained")
    ax = fig.add_subplot()
    xs: list[float] = []
    ys: list[float] = []
    aa = kind == "AutoAttack"
    if robustbench and aa and norm is not None:
        from robustbench_lite.zoo import entries, source_commit

        board = entries(dataset, f"{norm}:{eps:.10g}")
        pts = [(e.clean_acc, e.autoattack_acc) for e in board if e.clean_acc is not None and e.autoattack_acc is not None]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=".", s=40, color="#17becf", alpha=0.6,
                       label=f"RobustBench {board[0].threat} ({source_commit()[:7]})", zorder=1)
            xs += [float(p[0]) for p in pts]
            ys += [float(p[1]) for p in pts]
    if baselines is not None and aa:
        pts = tradeoff_points(baselines, dataset, norm, eps)
        for paper, grp in pts.groupby("paper", sort=True):
            marker, color = PAPER_STYLE.get(str(paper), ("o", "#7f7f7f"))
            ax.scatter(grp["clean"], grp["autoattack"], marker=marker, s=30, color=color, alpha=0.75,
                       label=f"{paper} (published)", zorder=2)
            xs += grp["clean"].tolist()
            ys += grp["autoattack"].tolist()
    mine = [s for s in summaries if tradeoff_kind(s) == kind]
    value = (lambda s: s.autoattack) if aa else (lambda s: s.robust)
    exact = [s for s in mine if not (aa and s.autoattack_scope == "cascade")]
    staged = [s for s in mine if aa and s.autoattack_scope == "cascade"]
    if exact:
        ax.scatter([s.clean for s in exact], [value(s) for s in exact], marker="*", s=160, color=OURS_COLOR,
                   edgecolor="black", linewidth=0.5, label=f"this run ({kind})", zorder=4)
    if staged:
        ax.scatter([s.clean for s in staged], [value(s) for s in staged], marker="*", s=160, facecolor="none",
                   edgecolor=OURS_COLOR, label="this run (AutoAttack as a cascade stage: worst case through it)",
                   zorder=4)
    ours = [(float(s.clean), float(value(s)), s.model) for s in mine]  # type: ignore[arg-type]
    published_xy: list[tuple[float, float]] = list(zip(xs, ys))  # label obstacles
    xs += [p[0] for p in ours]
    ys += [p[1] for p in ours]
    if xs:
        xpad, ypad = max(1.0, 0.06 * (max(xs) - min(xs))), max(2.0, 0.08 * (max(ys) - min(ys)))
        xlim = (min(xs) - xpad, min(100.0, max(xs) + xpad))
        ylim = (max(-4.0, min(ys) - ypad), min(102.0, max(ys) + ypad))
        curve = curve_for_dataset(dataset, baselines, norm, eps)[0] if aa else None
        if curve is not None:  # drawn over the points it was fitted on only (no extrapolation)
            lo, hi = curve.domain if curve.domain is not None else xlim
            grid = np.linspace(max(xlim[0], lo), min(xlim[1], hi), 400)
            if grid[0] < grid[-1]:
                ax.plot(grid, curve(grid), "--", color="red", linewidth=1.3, label=f"tradeoff curve ({curve.name})",
                        zorder=3)
                published_xy += [(x, float(curve(x))) for x in grid[::8] if ylim[0] <= curve(x) <= ylim[1]]
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
    ax.set_xlabel("Standard (clean) accuracy (%)")
    ax.set_ylabel(f"{Y_LABELS[kind]} at {threat}" if threat else Y_LABELS[kind])
    ax.set_title(tradeoff_title(dataset, threat, kind), fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    place_labels(fig, ax, ours, published_xy, fontsize=8, color="#7a0000", zorder=5,
                 bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none", alpha=0.75))
    return fig


def tradeoff_title(dataset: str, threat: str, kind: str) -> str:
    what = {"AutoAttack": "clean vs AutoAttack accuracy", "fast verdict": "clean vs fast-verdict robust accuracy",
            "worst case": "clean vs worst-case robust accuracy (no AutoAttack)"}[kind]
    return f"Accuracy-robustness tradeoff on {dataset}, {threat}\n{what}"
