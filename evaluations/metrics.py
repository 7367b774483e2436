"""Metrics derived from per-example results."""
from __future__ import annotations

import math
from typing import Sequence

from robustbench_lite.results import mean_median  # noqa: F401  (re-exported: one definition)


def normalized_auc(eps: Sequence[float], accuracy: Sequence[float]) -> float:
    """Area under accuracy (0..1) versus eps by the trapezoid rule, divided by the eps span
    (AFD: "normalised to a maximum of 1"). Points are sorted by eps; one point gives its accuracy."""
    pts = sorted(zip(eps, accuracy))
    if not pts:
        raise ValueError("no points")
    if len(pts) == 1 or pts[-1][0] == pts[0][0]:
        return float(pts[0][1])
    area = sum((e1 - e0) * (a0 + a1) / 2 for (e0, a0), (e1, a1) in zip(pts, pts[1:]))
    return float(area / (pts[-1][0] - pts[0][0]))
