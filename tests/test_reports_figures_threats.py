"""Figures name their threat and label each axis by what was measured (issue #19): one tradeoff
figure per (dataset, threat, kind of verdict); no point without an AutoAttack number on an axis
labelled AutoAttack; published points only of the figure's own dataset and threat."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robustbench_lite.reports.baselines import load_baselines
from robustbench_lite.reports.figures import make_figures, tradeoff_figure
from robustbench_lite.reports.records import summarize

from test_reports_rankings import make  # noqa: E402


def points(fig: Any) -> set[tuple[float, float]]:
    ax = fig.axes[0]
    return {(round(float(x), 4), round(float(y), 4)) for c in ax.collections for x, y in np.asarray(c.get_offsets())}


AA = make("with_aa", eps=0.1, clean=98.0, robust=90.0, attacks=("autoattack",))
PGD_ONLY = make("pgd_only", eps=0.3, clean=97.0, robust=70.0, attacks=("pgd",))
FAST = make("fast_one", eps=0.3, suite="fast", clean=96.0, robust=66.0, attacks=("apgd_ce", "square"))
BLANK = make("blank", eps=0.3, clean=99.0, robust=None)


def test_one_figure_per_dataset_threat_and_verdict(tmp_path: Path) -> None:
    files = [f for f in make_figures([AA, PGD_ONLY, FAST, BLANK], tmp_path, load_baselines()) if f.kind == "tradeoff"]
    titles = sorted(f.title for f in files)
    assert len(files) == 3
    assert all("mnist" in t for t in titles)
    assert sum("linf:0.1" in t for t in titles) == 1 and sum("linf:0.3" in t for t in titles) == 2
    assert not any("linf:0.1" in t and "linf:0.3" in t for t in titles)
    assert any("worst-case" in t for t in titles) and any("fast-verdict" in t for t in titles)
    assert len({f.png.name for f in files}) == 3 and all(f.png.is_file() and f.pdf.is_file() for f in files)


def test_axis_says_what_was_measured() -> None:
    s_aa, s_pgd, s_fast, s_blank = (summarize(r) for r in (AA, PGD_ONLY, FAST, BLANK))
    fig = tradeoff_figure("mnist", [s_aa], None, kind="AutoAttack")
    ax = fig.axes[0]
    assert "AutoAttack accuracy" in ax.get_ylabel() and "linf:0.1" in ax.get_ylabel()
    assert "mnist" in ax.get_title() and "linf:0.1" in ax.get_title()
    assert (98.0, 90.0) in points(fig)
    group = [s_pgd, s_fast, s_blank]
    aa = tradeoff_figure("mnist", group, None, kind="AutoAttack")
    assert not points(aa)  # no AutoAttack number at linf:0.3: nothing on an AutoAttack axis
    worst = tradeoff_figure("mnist", group, None, kind="worst case")
    assert "AutoAttack accuracy" not in worst.axes[0].get_ylabel() and "worst case" in worst.axes[0].get_ylabel()
    assert points(worst) == {(97.0, 70.0)}  # the blank row is not plotted (least of all at its clean accuracy)
    fast = tradeoff_figure("mnist", group, None, kind="fast verdict")
    assert "fast verdict" in fast.axes[0].get_ylabel() and points(fast) == {(96.0, 66.0)}


def test_a_figure_never_mixes_threats() -> None:
    with pytest.raises(ValueError, match="one tradeoff figure per threat"):
        tradeoff_figure("mnist", [summarize(AA), summarize(PGD_ONLY)], None)


def test_published_points_only_of_the_figures_threat() -> None:
    base = load_baselines()
    at_8 = make("c8", dataset="cifar10", eps=8 / 255, clean=85.0, robust=45.0, attacks=("autoattack",))
    at_l2 = make("cl2", dataset="cifar10", norm="l2", eps=0.5, clean=85.0, robust=45.0, attacks=("autoattack",))
    linf = points(tradeoff_figure("cifar10", [summarize(at_8)], base))
    l2 = points(tradeoff_figure("cifar10", [summarize(at_l2)], base))
    assert len(linf) > 10  # ARREST's and AFD's Linf 8/255 points
    assert (87.14, 44.04) in linf  # AT, ARREST Table 1 (Linf 8/255)
    assert (87.14, 44.04) not in l2 and len(l2) < len(linf)
    curve_lines = [ln for ln in tradeoff_figure("cifar10", [summarize(at_l2)], base).axes[0].lines
                   if "tradeoff curve" in str(ln.get_label())]
    assert not curve_lines  # ARREST's curve is for Linf 8/255, not L2 0.5
