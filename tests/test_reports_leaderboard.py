"""Leaderboard: golden renderings, seed aggregation, ordering, filters and ARDist wiring.

Golden files were written once from this implementation and checked by eye; to rewrite them after
an intended change run ``REPORTS_UPDATE_GOLDEN=1 pytest tests/test_reports_leaderboard.py``.
"""
from __future__ import annotations

import copy
import json
import os
import statistics
from pathlib import Path
from typing import Any

import pytest

from robustbench_lite.reports.ardist import ardist, fit_cubic
from robustbench_lite.reports.baselines import load_baselines
from robustbench_lite.reports.leaderboard import leaderboard, leaderboard_entries, leaderboard_rankings
from robustbench_lite.reports.store import add_record
from robustbench_lite.errors import BenchError

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "reports"
RECORDS = sorted((FIXTURES / "records").glob("*.json"))
GOLDEN = FIXTURES / "golden"


def records() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in RECORDS]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lb") / "leaderboard.sqlite"
    for r in records():
        add_record(path, r)
    return path


CASES = {
    "all.txt": dict(fmt="table"),
    "all.csv": dict(fmt="csv"),
    "all.md": dict(fmt="markdown"),
    "all.html": dict(fmt="html"),
    "mnist_by_clean.txt": dict(dataset="mnist5k", sort="clean", fmt="table"),
    "cifar10_baselines.md": dict(dataset="cifar10", threat="linf:8/255", with_baselines=True, fmt="markdown"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(db: Path, name: str) -> None:
    text = leaderboard(db, **CASES[name])  # type: ignore[arg-type]
    golden = GOLDEN / name
    if os.environ.get("REPORTS_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")


def test_seeds_aggregate_as_mean_and_std(db: Path) -> None:
    entries = [e for e in leaderboard_entries(records()) if e.defense == "madry" and e.dataset == "mnist5k"]
    assert len(entries) == 1
    e = entries[0]
    assert e.seeds == 2 and e.model == "madry"
    clean = [98.9, 98.7]  # clean_accuracy of madry_s0 / madry_s1
    assert e.values["clean"][0] == pytest.approx(statistics.fmean(clean))
    assert e.values["clean"][1] == pytest.approx(statistics.stdev(clean))
    assert e.values["sum"][0] == pytest.approx((98.9 + 85.2 + 98.7 + 84.6) / 2)


def test_ordering_and_missing_values_last(db: Path) -> None:
    """Default rank: worst-case robust accuracy, descending; an entry with a failed check after
    every entry without one; within each group missing values last."""
    rankings = leaderboard_rankings(records())
    assert [(r.dataset, r.threat) for r in rankings] == [("cifar10", "linf:8/255"), ("mnist5k", "linf:0.3")]
    assert any(e.unreliable for r in rankings for e in r.entries)
    for r in rankings:
        entries = list(r.entries)
        flags = [e.unreliable for e in entries]
        assert flags == sorted(flags)  # False before True
        for group in ([e for e in entries if not e.unreliable], [e for e in entries if e.unreliable]):
            robust = [e.get("robust") for e in group]
            present = [v for v in robust if v is not None]
            assert present == sorted(present, reverse=True)
            assert robust[len(present):] == [None] * (len(robust) - len(present))
    for r in leaderboard_rankings(records(), sort="autoattack"):
        aa = [e.get("autoattack") for e in r.entries if not e.unreliable]
        present = [v for v in aa if v is not None]
        assert present == sorted(present, reverse=True) and aa[len(present):] == [None] * (len(aa) - len(present))
    for r in leaderboard_rankings(records(), sort="clean"):
        by_clean = [e.get("clean") for e in r.entries if not e.unreliable]
        assert by_clean == sorted(by_clean, reverse=True)
    assert [e.model for e in leaderboard_rankings(records(), sort="model")[1].entries][:2] == ["act_a05", "act_a09"]


def test_unknown_sort_and_format(db: Path) -> None:
    with pytest.raises(BenchError, match="unknown sort column 'speed'; valid: clean, autoattack"):
        leaderboard(db, sort="speed")
    with pytest.raises(BenchError, match="unknown format"):
        leaderboard(db, fmt="pdf")


def test_threat_filter_accepts_rounded_eps() -> None:
    a = {e.model for e in leaderboard_entries(records(), threat="linf:8/255")}
    b = {e.model for e in leaderboard_entries(records(), threat="linf:0.031")}
    assert a == b == {"arrest_phi30", "arrest_phi45", "madry_r18"}
    assert leaderboard_entries(records(), threat="l2:0.5") == []


def test_ardist_uses_the_published_fit_for_cifar10() -> None:
    e = next(x for x in leaderboard_entries(records()) if x.model == "arrest_phi30")
    assert e.values["ardist"][0] == pytest.approx(ardist(86.63, 46.14, "cifar10"))
    assert next(x for x in leaderboard_entries(records()) if x.model == "madry_r18").get("ardist") is None  # no AA


def test_ardist_for_other_datasets_needs_four_published_points(tmp_path: Path) -> None:
    rec = copy.deepcopy(records()[0])
    rec["checkpoint"]["dataset"] = "svhn"
    base = load_baselines()
    assert leaderboard_entries([rec], baselines=base)[0].get("ardist") is None  # no SVHN baselines
    pts = [(90.0, 40.0), (92.0, 35.0), (94.0, 25.0), (95.5, 12.0), (96.0, 2.0)]
    f = tmp_path / "svhn.csv"
    f.write_text("method,dataset,metric,value,norm,eps\n" + "".join(
        f"m{i},svhn,clean,{c},linf,0.3\nm{i},svhn,autoattack,{a},linf,0.3\n" for i, (c, a) in enumerate(pts)))
    # points of another threat, or of none, make no curve at this one: a tradeoff belongs to one threat
    other = tmp_path / "svhn_l2.csv"
    other.write_text(f.read_text().replace(",linf,0.3", ",l2,0.5"))
    assert leaderboard_entries([rec], baselines=load_baselines([other]))[0].get("ardist") is None
    inside, outside = copy.deepcopy(rec), copy.deepcopy(rec)
    inside["clean_accuracy"], outside["clean_accuracy"] = 93.0, 97.5
    for r in (inside, outside):
        r["summary"] = [dict(row, accuracy=r["clean_accuracy"]) if row["attack"] == "clean" else row
                        for row in r.get("summary", [])]
    curve = fit_cubic([c for c, _ in pts], [a for _, a in pts])
    entry = leaderboard_entries([inside], baselines=load_baselines([f]))[0]
    assert entry.get("clean") == 93.0
    assert entry.get("ardist") == pytest.approx(ardist(93.0, entry.get("autoattack"), curve))
    # a fitted cubic is not extrapolated beyond the clean accuracies it was fitted on
    assert leaderboard_entries([outside], baselines=load_baselines([f]))[0].get("ardist") is None


def test_baselines_are_marked_published() -> None:
    entries = leaderboard_entries(records(), dataset="cifar10", with_baselines=True)
    published = [e for e in entries if e.published]
    assert published and all(e.source.startswith("published: ") for e in published)
    assert {e.dataset for e in published} == {"cifar10"}
    arrest = next(e for e in published if e.model == "ARREST (phi=30deg)")
    assert arrest.get("ardist") == pytest.approx(3.521, abs=0.002)
    ours = [e for e in entries if not e.published]
    assert {e.source for e in ours} == {"this run"}
