"""Published baseline tables: transcription checks against the papers and user CSV validation."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from robustbench_lite.reports.ardist import ardist, published_fit
from robustbench_lite.reports.baselines import (COLUMNS, baseline_entries, curve_for_dataset, dataset_key, load_baselines,
                               read_baseline_csv, tradeoff_points)
from robustbench_lite.errors import BenchError

ROOT = Path(__file__).resolve().parents[1]
BASELINES = ROOT / "reports" / "baselines"
PAPERS = Path("/work/shared/papers")


def raw_rows(name: str) -> list[dict[str, str]]:
    with (BASELINES / f"{name}.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_row_counts_per_table() -> None:
    def counts(name: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in raw_rows(name):
            out[r["source"]] = out.get(r["source"], 0) + 1
        return out

    # cells in each table (paper tables counted by hand; "-" cells are left out)
    assert counts("act") == {"ACT Table 1": 24, "ACT Table 2": 60, "ACT Table 3": 24, "ACT Table 4": 14,
                             "ACT Table 5": 24}
    assert counts("arrest") == {"ARREST Table 1": 48, "ARREST Table 2": 24, "ARREST Table 3": 5,
                                "ARREST Table 4": 6, "ARREST Table 5": 4}
    assert counts("afd") == {"AFD Table 1": 123, "AFD Table 2": 171}


@pytest.mark.skipif(not PAPERS.is_dir(), reason="the shared papers are not on this machine")
@pytest.mark.parametrize("name", ["act", "arrest", "afd"])
def test_every_value_is_printed_in_the_paper(name: str) -> None:
    """Each transcribed number (as written in the CSV) occurs in the paper's text."""
    text = (PAPERS / f"{name}.md").read_text(encoding="utf-8")
    numbers = set(re.findall(r"-?\d+\.\d+|-?\d+", text))
    missing = [(r["source"], r["method"], r["metric"], r["value"]) for r in raw_rows(name)
               if r["value"] not in numbers and r["value"] not in ("0.0",)]  # MNIST NT PGD is printed "0."
    assert not missing, missing[:10]
    missing_std = [r for r in raw_rows(name) if r["std"] and r["std"] not in numbers]
    assert not missing_std


def test_spot_values() -> None:
    df = load_baselines()

    def value(source: str, method: str, dataset: str, metric: str, arch: str | None = None,
              setting: str | None = None) -> tuple[float, float]:
        sel = df[(df["source"] == source) & (df["method"] == method) & (df["dataset"] == dataset)
                 & (df["metric"] == metric)]
        if arch is not None:
            sel = sel[sel["architecture"] == arch]
        if setting is not None:
            sel = sel[sel["setting"] == setting]
        assert len(sel) == 1, sel
        return float(sel["value"].iloc[0]), float(sel["std"].iloc[0])

    assert value("ACT Table 2", "ACT", "cifar100", "min_pert", "WRN-28-10") == pytest.approx((0.02595, 0.00016))
    assert value("ACT Table 2", "Madry", "cifar10", "pgd1000", "ResNet-18") == pytest.approx((47.51, 0.16))
    assert value("ACT Table 1", "ACT", "cifar10", "pgd20", setting="alpha=0.9; robust model G")[0] == 55.12
    assert value("ACT Table 3", "ACT", "cifar100", "transfer_success_rate", setting="surrogate=ACT")[0] == 68.61
    assert value("ACT Table 5", "TRADES", "cifar10", "pgd100", setting="eps=15/255")[0] == 23.35
    assert value("ARREST Table 2", "ARREST", "cifar10", "clean", "ResNet-18")[0] == 86.63
    assert value("AFD Table 1", "AFD-WGAN", "cifar10", "autoattack")[0] == 37.33  # the row with a shifted cell
    assert value("AFD Table 2", "AFD-WGAN", "tinyimagenet", "auc_autoattack")[0] == 0.15
    eps = df.loc[(df["source"] == "ACT Table 5") & (df["setting"] == "eps=8/255"), "eps"]
    assert eps.empty  # Table 5 has no 8/255 column
    assert df.loc[df["source"] == "ARREST Table 1", "eps"].iloc[0] == pytest.approx(8 / 255)


def test_arrest_sum_column_is_consistent() -> None:
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for r in raw_rows("arrest"):
        if r["table"] == "1":
            rows.setdefault((r["dataset"], r["method"]), {})[r["metric"]] = float(r["value"])
    for v in rows.values():
        assert v["clean"] + v["autoattack"] == pytest.approx(v["sum"], abs=0.005)


def test_entries_pair_clean_with_robust_numbers() -> None:
    df = load_baselines()
    pts = tradeoff_points(df, "cifar10")
    assert ((pts["method"] == "ARREST") & (pts["clean"] == 90.24) & (pts["autoattack"] == 50.20)).any()
    mnist = {e["method"]: e for e in baseline_entries(df, "mnist", "linf", 0.3)}
    assert mnist["AFD-WGAN"]["autoattack"] == 90.12 and mnist["AFD-WGAN"]["pgd"] == 97.68
    # AUC joined from AFD Table 2: mean of the Linf AUCs (PGD, FGSM, MIM, DeepFool, AA) of AT on MNIST
    assert mnist["AT"]["auc"] == pytest.approx((0.74 + 0.83 + 0.95 + 0.55 + 0.89) / 5)
    act = [e for e in baseline_entries(df, "cifar10", "linf", 8 / 255) if e["source"] == "ACT Table 2"]
    assert len(act) == 6  # eps 0.031 matches 8/255 within 2 %
    assert {e["pgd"] for e in act if e["method"] == "ACT"} == {53.62, 50.44}  # lowest of PGD-20/100/1000


def test_user_csv_is_added(tmp_path: Path) -> None:
    f = tmp_path / "mine.csv"
    f.write_text("method,dataset,metric,value,eps\nMyDef,cifar10,clean,91.0,8/255\nMyDef,cifar10,autoattack,51.5,8/255\n")
    df = load_baselines(extra_files=[f])
    mine = df[df["method"] == "MyDef"]
    assert list(mine["value"]) == [91.0, 51.5]
    assert (mine["source"] == "mine").all()
    assert mine["eps"].iloc[0] == pytest.approx(8 / 255)
    assert set(COLUMNS) <= set(df.columns)


@pytest.mark.parametrize("text, message", [
    ("method,dataset,value\nA,cifar10,50\n", "no 'metric' column"),
    ("method,dataset,metric,value\nA,cifar10,clean,fifty\n", "'fifty' is not a number"),
    ("method,dataset,metric,value\nA,cifar10,clean,\n", "value is empty"),
    ("method,dataset,metric,value,eps\nA,cifar10,clean,50,8/0\n", "eps '8/0' is not a number"),
])
def test_bad_user_csv_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "bad.csv"
    f.write_text(text)
    with pytest.raises(BenchError, match=re.escape(message)):
        read_baseline_csv(f)


def test_missing_user_csv(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="does not exist"):
        load_baselines(extra_files=[tmp_path / "nope.csv"])


def test_dataset_key_normalises_spellings_but_keeps_mnist5k_apart() -> None:
    assert [dataset_key(d) for d in ("CIFAR-10", " cifar10 ", "Cifar_100", "Tiny-ImageNet", "tiny imagenet")] == [
        "cifar10", "cifar10", "cifar100", "tinyimagenet", "tinyimagenet"]
    assert dataset_key("mnist5k") == "mnist5k" and dataset_key("MNIST") == "mnist"
    assert dataset_key("synthetic_rgb") == "synthetic_rgb"  # registry ids that are no paper's spelling stay as they are


def test_published_full_mnist_rows_are_not_mnist5k() -> None:
    df = load_baselines()
    assert len(tradeoff_points(df, "mnist")) == 5
    assert tradeoff_points(df, "mnist5k").empty
    assert baseline_entries(df, "mnist5k") == []


def test_curve_for_dataset() -> None:
    df = load_baselines()
    # the published ARREST fits, with or without baselines
    for ds in ("cifar10", "CIFAR-100"):
        curve, reason = curve_for_dataset(ds, df)
        assert reason == "" and curve == published_fit(dataset_key(ds))
        assert curve_for_dataset(ds, None) == (curve, "")
    curve, _ = curve_for_dataset("cifar10", df)
    assert curve is not None and ardist(90.24, 50.20, curve) == pytest.approx(3.521, abs=5e-4)  # ARREST, Table 1
    # full MNIST: five points over 0.51 clean-accuracy points, refused with the reason
    curve, reason = curve_for_dataset("mnist", df)
    assert curve is None and "span only 0.51 points of clean accuracy" in reason
    # mnist5k is another data set: no published points of it, so no curve (not the MNIST one)
    curve, reason = curve_for_dataset("mnist5k", df)
    assert curve is None and reason.startswith("no tradeoff curve for mnist5k:") and "no baseline" in reason
    curve, reason = curve_for_dataset("svhn", None)
    assert curve is None and "no baseline points were given" in reason
    # Tiny-ImageNet: 4 AFD points over 37.7-58.3 %, fitted on scaled x and limited to that range
    curve, reason = curve_for_dataset("tinyimagenet", df)
    assert reason == "" and curve is not None and curve.domain == (37.7, 58.3) and curve.scaled


def test_curve_for_dataset_fits_user_points_of_exactly_that_dataset(tmp_path: Path) -> None:
    pts = [(60.0, 40.0), (66.0, 37.0), (72.0, 31.0), (78.0, 22.0), (84.0, 10.0)]
    f = tmp_path / "svhn.csv"
    f.write_text("method,dataset,metric,value\n" + "".join(
        f"m{i},SVHN,clean,{c}\nm{i},SVHN,autoattack,{a}\n" for i, (c, a) in enumerate(pts)))
    df = load_baselines([f])
    curve, reason = curve_for_dataset("svhn", df)
    assert reason == "" and curve is not None and curve.name == "published svhn" and curve.domain == (60.0, 84.0)
    assert curve(72.0) == pytest.approx(31.0, abs=1.0)
    assert curve_for_dataset("mnist5k", df)[0] is None
