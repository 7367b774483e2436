"""Rankings that cannot mislead (issue #19): only rows of one (dataset, threat) are ranked together,
each row says which suite and kind of verdict produced it, its n and a 95% interval; the same model
under two suites is two rows; a blank robust accuracy stays blank with its reason and ranks last; the
leaderboard says why it is empty."""
from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from scipy.stats import binomtest

from robustbench_lite.cli import main
from robustbench_lite.errors import BenchError
from robustbench_lite.reports.leaderboard import (leaderboard, leaderboard_entries, leaderboard_rankings,
                                                  ranking_entries, ranking_groups)
from robustbench_lite.reports.records import builtin_suites
from robustbench_lite.reports.store import add_record

SUITES = Path(__file__).resolve().parents[1] / "evaluations" / "suites"


def suite_hash(name: str) -> str:
    return hashlib.sha256((SUITES / f"{name}.toml").read_text(encoding="utf-8").encode()).hexdigest()


def make(name: str, *, dataset: str = "mnist", norm: str = "linf", eps: float = 0.3, suite: str = "quick",
         suite_hash_: str | None = None, clean: float = 90.0, robust: float | None = 80.0, n: int = 1000,
         attacks: tuple[str, ...] = ("pgd", "autoattack"), sha: str | None = None, seed: int | None = 0,
         defense: str = "madry", config: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    rows = [{"attack": a, "norm": norm, "eps": eps, "n": n, "accuracy": robust, "worst_case": robust,
             "exact": True, "kind": "white-box"} for a in attacks]
    return {
        "format": "robustbench_lite/result", "format_version": 2,
        "checkpoint": {"path": f"runs/{name}/ckpt.pt", "sha256": sha or hashlib.sha256(name.encode()).hexdigest(),
                       "arch": "small_cnn", "dataset": dataset, "defense": defense,
                       "defense_config": config or {}, "member": "model", "num_classes": 10, "seed": seed},
        "suite": {"name": suite, "hash": suite_hash_ or suite_hash(suite)},
        "threat": {"norm": norm, "eps": eps}, "seed": 0, "n": n, "date": "2026-12-01T00:00:00+00:00",
        "versions": {}, "clean_accuracy": clean, "robust_accuracy": robust, "attacks": rows if robust is not None
        else [], "sweeps": [], "checks": [], **extra,
    }


def db_of(tmp_path: Path, *recs: dict[str, Any]) -> Path:
    p = tmp_path / "lb.sqlite"
    for r in recs:
        add_record(p, r)
    return p


def wilson_reference(k: int, n: int) -> tuple[float, float]:
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return 100 * ci.low, 100 * ci.high


def test_threats_and_suites_never_share_a_ranking(tmp_path: Path) -> None:
    """The issue's case: a model at Linf 0.1 with fast, one at Linf 0.3 with quick."""
    a = make("fast_01", eps=0.1, suite="fast", attacks=("apgd_ce", "square"), clean=99.0, robust=95.0)
    b = make("quick_03", eps=0.3, suite="quick", clean=98.0, robust=85.0)
    rankings = leaderboard_rankings([a, b])
    assert [(r.dataset, r.threat) for r in rankings] == [("mnist", "linf:0.1"), ("mnist", "linf:0.3")]
    assert [[e.model for e in r.entries] for r in rankings] == [["fast_01"], ["quick_03"]]
    assert rankings[0].entries[0].suite == "fast" and rankings[0].entries[0].verdict == "fast verdict"
    assert rankings[1].entries[0].suite == "quick" and rankings[1].entries[0].verdict == "worst case"
    assert ranking_groups([a, b]) == [("mnist", "linf:0.1"), ("mnist", "linf:0.3")]
    assert [e.model for e in ranking_entries([a, b], "mnist", "linf:0.3")] == ["quick_03"]
    db = db_of(tmp_path, a, b)
    text = leaderboard(db)
    blocks = text.split("\n\n")
    assert blocks[0].startswith("== mnist, linf:0.1") and "fast_01" in blocks[0] and "quick_03" not in blocks[0]
    assert blocks[1].startswith("== mnist, linf:0.3") and "quick_03" in blocks[1] and "fast_01" not in blocks[1]
    for line in text.splitlines():  # each ranking numbers its rows from 1
        if ("fast_01" in line or "quick_03" in line) and line.lstrip()[:1].isdigit():
            assert line.split()[0] == "1"
    md = leaderboard(db, fmt="markdown")
    assert "#### mnist, linf:0.1" in md and "#### mnist, linf:0.3" in md
    page = leaderboard(db, fmt="html")
    assert page.count('<table class="leaderboard">') == 2 and "<h3>mnist, linf:0.1" in page
    table = pd.read_csv(io.StringIO(leaderboard(db, fmt="csv")))
    assert list(table["rank"]) == [1, 1] and list(table["threat"]) == ["linf:0.1", "linf:0.3"]
    assert list(table["suite"]) == ["fast", "quick"] and list(table["verdict"]) == ["fast verdict", "worst case"]


def test_datasets_never_share_a_ranking() -> None:
    rankings = leaderboard_rankings([make("m", dataset="mnist"), make("c", dataset="cifar10", eps=8 / 255)])
    assert [(r.dataset, len(r.entries)) for r in rankings] == [("cifar10", 1), ("mnist", 1)]


@pytest.mark.parametrize("clean, robust, n", [(85.0, 85.0, 40), (100.0, 0.0, 40), (62.5, 12.5, 8), (98.6, 87.4, 1000)])
def test_every_accuracy_carries_its_95_interval(tmp_path: Path, clean: float, robust: float, n: int) -> None:
    rec = make("small", clean=clean, robust=robust, n=n)
    e = leaderboard_entries([rec])[0]
    for metric, value in (("clean", clean), ("robust", robust), ("autoattack", robust)):
        lo, hi = e.intervals[metric]
        ref = wilson_reference(round(value * n / 100), n)
        assert lo == pytest.approx(ref[0], abs=1e-6) and hi == pytest.approx(ref[1], abs=1e-6)
    text = leaderboard(db_of(tmp_path, rec))
    row = next(line for line in text.splitlines() if line.lstrip().startswith("1 "))
    lo, hi = e.intervals["clean"]
    assert f"{clean:.2f} [{lo:.1f}, {hi:.1f}]" in row  # never a bare "85.00"
    if robust != 0:  # (else Sum = clean + 0 prints the same digits)
        assert not re.search(rf"{clean:.2f}(?! \[)", row)
    assert f" {n} " in row + " "
    assert "95% Wilson score interval" in text
    table = pd.read_csv(io.StringIO(leaderboard(db_of(tmp_path, rec), fmt="csv")))
    assert table.loc[0, "clean_ci_low"] == pytest.approx(lo, abs=1e-5)
    assert table.loc[0, "robust_ci_high"] == pytest.approx(e.intervals["robust"][1], abs=1e-5)


def test_interval_of_seeds_pools_their_points() -> None:
    a = make("m_s0", clean=90.0, robust=80.0, n=40, seed=0, sha="a" * 64)
    b = make("m_s1", clean=85.0, robust=70.0, n=40, seed=1, sha="b" * 64)
    (e,) = leaderboard_entries([a, b])
    assert e.seeds == 2
    assert e.intervals["robust"] == pytest.approx(wilson_reference(32 + 28, 80), abs=1e-6)


def test_published_rows_have_no_interval_and_no_bare_n(tmp_path: Path) -> None:
    rec = make("c", dataset="cifar10", eps=8 / 255, clean=85.0, robust=45.0)
    entries = leaderboard_entries([rec], with_baselines=True)
    published = [e for e in entries if e.published]
    assert published and all(not e.intervals for e in published)


def test_same_model_under_two_suites_is_two_rows(tmp_path: Path) -> None:
    sha = "c" * 64
    quick = make("model", sha=sha, suite="quick", clean=95.0, robust=80.0)
    full = make("model", sha=sha, suite="full", clean=95.0, robust=76.0)
    custom = make("model", sha=sha, suite="mine", suite_hash_="d" * 64, attacks=("autoattack",), robust=78.0)
    entries = leaderboard_entries([quick, full, custom])
    assert len(entries) == 3
    assert sorted((e.suite, e.verdict) for e in entries) == [
        ("full", "worst case"), ("mine (custom dddddddd)", "AutoAttack"), ("quick", "worst case")]
    text = leaderboard(db_of(tmp_path, quick, full, custom))
    assert "quick" in text and "full" in text and "mine (custom dddddddd)" in text


def test_records_without_distinct_seeds_are_not_merged() -> None:
    a = make("run", sha="e" * 64, seed=None, robust=80.0)
    b = make("run", sha="f" * 64, seed=None, robust=60.0)
    entries = leaderboard_entries([a, b])
    assert len(entries) == 2 and all(e.seeds == 1 for e in entries)
    assert len({e.model for e in entries}) == 2  # look-alike rows are told apart by the checkpoint hash
    assert {e.model for e in entries} == {"run [eeeeeeee]", "run [ffffffff]"}
    same_seed = leaderboard_entries([make("r", sha="1" * 64, seed=3), make("r", sha="2" * 64, seed=3)])
    assert len(same_seed) == 2
    seeds = leaderboard_entries([make("r_s0", sha="1" * 64, seed=0), make("r_s1", sha="2" * 64, seed=1)])
    assert len(seeds) == 1 and seeds[0].seeds == 2


@pytest.mark.parametrize("why_key", [None, "robust_accuracy_note"])
def test_blank_robust_accuracy_stays_blank_and_ranks_last(tmp_path: Path, why_key: str | None) -> None:
    extra = {why_key: "no attack of suite l2only ran at linf:0.3"} if why_key else {}
    blank = make("unattacked", clean=99.9, robust=None, **extra)
    weak = make("weak", clean=60.0, robust=5.0)
    for sort in ("robust", "clean", "sum", "model"):
        entries = leaderboard_entries([blank, weak], sort=sort)
        assert [e.model for e in entries] == ["weak", "unattacked"], sort
    e = leaderboard_entries([blank])[0]
    assert e.get("robust") is None and e.get("sum") is None and e.verdict == "none"
    text = leaderboard(db_of(tmp_path, blank, weak))
    row = next(line for line in text.splitlines() if "unattacked" in line and line.lstrip()[0].isdigit())
    assert row.count("99.90") == 1  # the clean accuracy, once: never copied into the robust column
    note = next(line for line in text.splitlines() if line.startswith("robust blank for unattacked"))
    assert ("l2only" in note) if why_key else ("the record has no robust accuracy" in note)
    csv = pd.read_csv(io.StringIO(leaderboard(db_of(tmp_path, blank, weak), fmt="csv")))
    assert math.isnan(csv.set_index("model").loc["unattacked", "robust"])
    assert "robust: " in csv.set_index("model").loc["unattacked", "blank"]


def test_published_rows_join_only_their_own_dataset_and_threat() -> None:
    rec = make("c", dataset="cifar10", eps=8 / 255, clean=85.0, robust=45.0)
    l2 = make("c2", dataset="cifar10", norm="l2", eps=0.5, clean=88.0, robust=60.0)
    for r in leaderboard_rankings([rec, l2], with_baselines=True):
        for e in r.entries:
            if e.published:
                assert e.dataset == "cifar10" and e.threat.split(":")[0] == r.threat.split(":")[0], (r.threat, e)


def test_leaderboard_on_an_empty_store_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.sqlite"
    add_record(empty, make("x"))
    import sqlite3
    from contextlib import closing
    with closing(sqlite3.connect(empty)) as conn, conn:
        conn.execute("DELETE FROM results")
    code = main(["leaderboard", "--db", str(empty)])
    err = capsys.readouterr().err
    assert code != 0 and "holds no results" in err and "(no entries)" not in err


def test_leaderboard_for_a_missing_dataset_lists_what_is_there(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    db = db_of(tmp_path, make("a"), make("b", dataset="cifar10", eps=8 / 255))
    code = main(["leaderboard", "--db", str(db), "--dataset", "nosuch"])
    err = capsys.readouterr().err
    assert code != 0 and "no entries for dataset 'nosuch'" in err
    assert "cifar10 linf:8/255 (1)" in err and "mnist linf:0.3 (1)" in err
    code = main(["leaderboard", "--db", str(db), "--dataset", "mnist", "--threat", "l2:2.0"])
    err = capsys.readouterr().err
    assert code != 0 and "threat 'l2:2.0'" in err and "mnist linf:0.3" in err


def test_leaderboard_on_a_foreign_store_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import sqlite3
    from contextlib import closing
    p = tmp_path / "app.sqlite"
    with closing(sqlite3.connect(p)) as conn, conn:
        conn.execute("CREATE TABLE notes (t TEXT)")
    code = main(["leaderboard", "--db", str(p)])
    assert code != 0 and "another application" in capsys.readouterr().err


def test_leaderboard_ardist_is_blank_with_the_reason_outside_the_curve(tmp_path: Path) -> None:
    low = make("low", dataset="cifar100", eps=8 / 255, clean=10.0, robust=5.0)
    text = leaderboard(db_of(tmp_path, low))
    e = leaderboard_entries([low])[0]
    assert e.get("ardist") is None
    assert any(m == "ardist" and "not extrapolated" in why for m, why in e.notes)
    assert "ardist blank for low" in text and "not extrapolated" in text


def test_builtin_suites_are_recognised_by_their_text() -> None:
    names = set(builtin_suites().values())
    assert {"quick", "fast", "full"} <= names
    renamed = make("r", suite="fast", suite_hash_="9" * 64, attacks=("apgd_ce",))
    e = leaderboard_entries([renamed])[0]
    assert e.verdict == "worst case" and "not" not in e.suite and "99999999" in e.suite


def test_ardist_uses_a_curve_of_the_rows_own_threat_only() -> None:
    """ARREST's CIFAR-10 curve is a Linf 8/255 tradeoff: an L2 row gets no ARDist from it."""
    linf = make("linf", dataset="cifar10", eps=8 / 255, clean=87.14, robust=44.04, attacks=("autoattack",))
    l2 = make("l2", dataset="cifar10", norm="l2", eps=0.5, clean=87.14, robust=44.04, attacks=("autoattack",))
    by_model = {e.model: e for e in leaderboard_entries([linf, l2])}
    assert by_model["linf"].get("ardist") == pytest.approx(-1.5, abs=5e-4)  # ARREST Table 1, AT
    assert by_model["l2"].get("ardist") is None
    assert any(m == "ardist" and "linf:8/255" in why for m, why in by_model["l2"].notes)


def test_report_ranks_per_dataset_and_threat(tmp_path: Path) -> None:
    from robustbench_lite.reports.report import build_report

    a = make("fast_01", eps=0.1, suite="fast", attacks=("apgd_ce", "square"), clean=99.0, robust=95.0, n=40)
    b = make("quick_03", eps=0.3, suite="quick", clean=85.0, robust=50.0, n=40)
    files = build_report([a, b], tmp_path / "rep")
    md = files.markdown.read_text(encoding="utf-8")
    page = files.html.read_text(encoding="utf-8")
    assert "#### mnist, linf:0.1" in md and "#### mnist, linf:0.3" in md
    assert "<h3>mnist, linf:0.1" in page and "<h3>mnist, linf:0.3" in page
    lo, hi = wilson_reference(34, 40)
    assert f"85.00 [{lo:.1f}, {hi:.1f}]" in md and f"85.00 [{lo:.1f}, {hi:.1f}]" in page
    assert "| 85.00 |" not in md
    section = md[md.index("#### mnist, linf:0.1"):md.index("#### mnist, linf:0.3")]
    assert "fast_01" in section and "quick_03" not in section and "fast verdict" in section


def test_empty_store_with_baselines_and_no_dataset_says_why(tmp_path: Path) -> None:
    p = db_of(tmp_path, make("x"))
    import sqlite3
    from contextlib import closing
    with closing(sqlite3.connect(p)) as conn, conn:
        conn.execute("DELETE FROM results")
    with pytest.raises(BenchError, match="holds no results"):
        leaderboard(p, with_baselines=True)
    assert "Bartoldson" in leaderboard(p, dataset="cifar10", with_baselines=True)  # published rows still shown


def test_one_checkpoint_evaluated_twice_is_two_told_apart_rows() -> None:
    a = make("same", sha="7" * 64, seed=0, n=40, robust=80.0)
    b = copy.deepcopy(a)
    b["n"], b["seed"], b["robust_accuracy"] = 1000, 1, 79.0
    entries = leaderboard_entries([a, b])
    assert len(entries) == 2
    names = [e.model for e in entries]
    assert len(set(names)) == 2 and all(n.startswith("same [77777777, n=") for n in names), names


def test_published_ardist_blank_has_its_reason() -> None:
    rec = make("c", dataset="cifar100", eps=8 / 255, clean=60.0, robust=30.0, attacks=("autoattack",))
    published = [e for e in leaderboard_entries([rec], with_baselines=True) if e.published]
    blank = [e for e in published if e.get("ardist") is None and e.get("autoattack") is not None]
    assert blank and all(any(m == "ardist" for m, _ in e.notes) for e in blank)


def test_a_recorded_robust_accuracy_no_attack_produced_is_blank() -> None:
    """An older record whose only attack ran at another threat (an L2 suite at the Linf threat) still
    carries robust_accuracy = its clean accuracy: the leaderboard must not rank it as robust."""
    old = make("l2_only_suite", clean=99.0, robust=99.0)
    old["attacks"] = [{"attack": "pgd", "norm": "l2", "eps": 2.0, "n": 1000, "accuracy": 40.0,
                       "worst_case": 40.0, "exact": True}]
    honest = make("honest", clean=90.0, robust=60.0)
    entries = leaderboard_entries([old, honest])
    assert [e.model for e in entries] == ["honest", "l2_only_suite"]
    e = entries[1]
    assert e.get("robust") is None and e.verdict == "none"
    assert any(m == "robust" and "not an attack's" in why for m, why in e.notes)


def test_ranking_entries_picks_exactly_the_ranking_asked_for() -> None:
    full = make("full_mnist", dataset="mnist", robust=80.0)
    subset = make("subset", dataset="mnist5k", robust=90.0)
    at_8 = make("c8", dataset="cifar10", eps=8 / 255)
    at_031 = make("c031", dataset="cifar10", eps=0.031)
    recs = [full, subset, at_8, at_031]
    assert [e.model for e in ranking_entries(recs, "mnist", "linf:0.3")] == ["full_mnist"]
    assert [e.model for e in ranking_entries(recs, "mnist5k", "linf:0.3")] == ["subset"]
    assert [e.model for e in ranking_entries(recs, "cifar10", "linf:8/255")] == ["c8"]
    assert [e.model for e in ranking_entries(recs, "cifar10", "linf:0.031")] == ["c031"]
    assert ranking_entries(recs, "cifar10", "l2:0.5") == []
    assert ("cifar10", "linf:0.031") in ranking_groups(recs) and ("cifar10", "linf:8/255") in ranking_groups(recs)


def test_random_stores_rank_comparably() -> None:
    """Random small stores: each record lands in exactly one ranking, that of its own (dataset,
    threat); no two rows of a ranking read alike; rows without a robust accuracy come last (within the
    rows whose checks passed, and within those that failed); every interval holds its value."""
    import random

    rng = random.Random(0)
    for trial in range(40):
        recs = []
        for i in range(rng.randint(1, 9)):
            clean = rng.choice([40.0, 62.5, 85.0, 99.0, 100.0])
            robust = rng.choice([None, 0.0, clean / 2, clean])
            recs.append(make(
                f"m{rng.randint(0, 3)}", sha=f"{trial:02d}{i:02d}".ljust(64, "0"), dataset=rng.choice(["mnist", "cifar10"]),
                norm=rng.choice(["linf", "l2"]), eps=rng.choice([0.1, 0.3]), suite=rng.choice(["quick", "fast", "full"]),
                clean=clean, robust=robust, n=rng.choice([8, 40, 1000]), seed=rng.choice([None, 0, 1]),
                defense=rng.choice(["madry", "trades"])))
        rankings = leaderboard_rankings(recs)
        seen = []
        for r in rankings:
            keys = [(e.model, e.suite, e.verdict) for e in r.entries]
            assert len(keys) == len(set(keys)), keys
            for e in r.entries:
                assert (e.dataset, e.threat) == (r.dataset, r.threat)
                seen += [rec.sha256 for rec in e.records]
                for m, (lo, hi) in e.intervals.items():
                    assert lo <= e.get(m) + 1e-9 and e.get(m) <= hi + 1e-9  # type: ignore[operator]
            for flag in (False, True):
                blank = [e.get("robust") is None for e in r.entries if e.unreliable is flag]
                assert blank == sorted(blank)
        assert sorted(seen) == sorted(rec["checkpoint"]["sha256"] for rec in recs)
