"""``--arch robustbench:<name>``: the model table against RobustBench's model_zoo, coverage, zoo-layout
files of each architecture family evaluated end to end on a tiny ``--data-file``, and the one-line errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from robustbench_lite import zoo
from robustbench_lite.checkpoint import load_checkpoint
from robustbench_lite.cli import main
from robustbench_lite.data import get_dataset
from robustbench_lite.errors import BenchError
from robustbench_lite.models import create_model, parse_normalize
from robustbench_lite.models.hub import is_library_spec

# (entries --arch robustbench: builds, entries) per leaderboard at the pinned commit
COVERAGE = {("cifar10", "linf:8/255"): (59, 99), ("cifar10", "l2:0.5"): (19, 21),
            ("cifar100", "linf:8/255"): (31, 38), ("imagenet", "linf:4/255"): (15, 30)}


def test_coverage_is_printed_and_pinned(capsys) -> None:
    cov = zoo.coverage()
    with capsys.disabled():
        for (ds, threat), (done, total) in cov.items():
            print(f"\nrobustbench: {ds} {threat}: {done}/{total} entries build", end="")
        print()
    assert cov == COVERAGE


def test_every_row_matches_an_entry_and_builds() -> None:
    """Every leaderboard entry has a row; every supported row names a registered arch whose arguments it
    accepts (built on the meta device) and a normalisation --normalize reads; the others say what is missing."""
    for e in zoo.all_entries():
        m = zoo.zoo_model(e)
        assert m.model_zoo or not m.supported, e.name
        if not m.supported:
            assert m.missing and not m.arch_kwargs and m.normalize is None, e.name
            continue
        spec = get_dataset(e.dataset)
        if m.normalize is not None:
            parse_normalize(m.normalize, spec.input_shape[0])
        if is_library_spec(m.arch):
            assert m.arch.startswith(("torchvision:", "timm:")) and not m.arch_kwargs
            continue
        with torch.device("meta"):
            create_model(m.arch, num_classes=spec.num_classes, **m.arch_kwargs)


def test_the_constructor_not_the_architecture_string_decides() -> None:
    """'WideResNet-28-10' is TRADES' network for Carmon et al. and DeepMind's for Gowal et al. (model_zoo/cifar10.py)."""
    carmon, gowal = zoo.resolve("Carmon2019Unlabeled"), zoo.resolve("Gowal2020Uncovering_28_10_extra")
    assert carmon.entry.architecture == gowal.entry.architecture == "WideResNet-28-10"
    assert (carmon.arch, carmon.arch_kwargs, carmon.normalize) == ("wrn_28_10", {"sub_block1": True}, None)
    assert (gowal.arch, gowal.normalize) == ("dm_wrn_28_10", "0.4914,0.4822,0.4465,0.2471,0.2435,0.2616")
    rice = zoo.resolve("Rice2020Overfitting", dataset="cifar100")  # a PreActResNet-18 there, a WRN-34-20 on CIFAR-10
    assert (rice.arch, rice.arch_kwargs) == ("preact_resnet18", {"bn_before_fc": True, "out_shortcut": True})
    assert zoo.resolve("Rice2020Overfitting", threat="linf:8/255", dataset="cifar10").arch == "wrn_34_20"
    assert zoo.resolve("Hendrycks2019Using", dataset="cifar10").normalize == "0.5,0.5"  # forward: 2x - 1
    assert zoo.resolve("Salman2020Do_R18").arch == "torchvision:resnet18"


# -- zoo-layout files of each family, evaluated end to end ----------------------------------------

def _zoo_file(tmp_path: Path, name: str, layout: str, **choose: str) -> tuple[Path, zoo.ZooModel, torch.nn.Module]:
    """A random network built from the entry's recipe, saved as RobustBench's file for it would be."""
    m = zoo.resolve(name, **choose)
    spec = get_dataset(m.entry.dataset)
    torch.manual_seed(0)
    if m.arch.startswith("torchvision:"):
        tv = pytest.importorskip("torchvision")
        net = tv.models.get_model(m.arch.split(":", 1)[1], weights=None, num_classes=spec.num_classes)
    else:
        net = create_model(m.arch, num_classes=spec.num_classes, **m.arch_kwargs)
    sd = {k: v for k, v in net.state_dict().items()}
    mean, std = parse_normalize(m.normalize, 3) if m.normalize else ((), ())
    stats = {"mu": torch.tensor(mean).view(1, -1, 1, 1), "sigma": torch.tensor(std).view(1, -1, 1, 1)}
    if layout == "module":  # RobustBench's older files: DataParallel's prefix under 'state_dict'
        obj = {"state_dict": {"module." + k: v for k, v in sd.items()}}
    elif layout == "mu_sigma":  # a model_zoo class with persistent mu/sigma buffers, under 'module.'
        obj = {"state_dict": {**{"module." + k: v for k, v in sd.items()}, **stats}}
    elif layout == "normalize_model":  # imagenet.py's nn.Sequential(normalize=ImageNormalizer, model=...)
        obj = {**{"model." + k: v for k, v in sd.items()}, "normalize.mean": stats["mu"], "normalize.std": stats["sigma"]}
    else:
        obj = sd
    path = tmp_path / f"{name}.pt"
    torch.save(obj, path)
    return path, m, net.eval()


def _data_file(tmp_path: Path, dataset: str, model: torch.nn.Module) -> Path:
    """Four random images of ``dataset``'s shape (uint8 NHWC), labelled with classes ``model`` does not predict:
    nothing is clean-correct, so the suite's attacks have no point to run on and the test stays fast."""
    spec = get_dataset(dataset)
    c, h, w = spec.input_shape
    x = np.random.default_rng(0).integers(0, 256, size=(4, h, w, c), dtype=np.uint8)
    with torch.no_grad():
        pred = model.eval()(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255).argmax(1)
    path = tmp_path / f"{dataset}.npz"
    np.savez(path, x=x, y=((pred + 1) % spec.num_classes).numpy().astype(np.int64))
    return path


def _eval(tmp_path: Path, model: Path, arch: str, data: Path, *extra: str) -> int:
    return main(["eval", "--model", str(model), "--arch", arch, "--suite", "quick", "--n-examples", "4",
                 "--data-file", str(data), "--no-db", "--no-progress", "--device", "cpu",
                 "--out", str(tmp_path / "ev"), *extra])


FAMILIES = [  # (entry, file layout, leaderboard choice): one per architecture family of the table
    ("Wong2020Fast", "mu_sigma", {"dataset": "cifar10"}),  # RobustBench PreActResNet-18, CIFAR-10 stats
    ("Rice2020Overfitting", "mu_sigma", {"threat": "l2:0.5"}),  # PreActResNet-18 + bn before fc, L2 board
    ("Rebuffi2021Fixing_R18_ddpm", "plain", {"dataset": "cifar100"}),  # DeepMind PreActResNet-18 (Swish)
    ("Sehwag2021Proxy_R18", "module", {"threat": "linf:8/255"}),  # CIFAR ResNet-18
    ("Addepalli2021Towards_PARN18", "module", {}),  # CIFAR-100 PreActResNet-18 (V2 blocks)
    ("Salman2020Do_R18", "normalize_model", {}),  # torchvision ResNet-18 with the ImageNet stats inside
    pytest.param("Carmon2019Unlabeled", "module", {}, marks=pytest.mark.slow),  # TRADES WRN-28-10 + sub_block1
    pytest.param("Gowal2020Uncovering_28_10_extra", "plain", {}, marks=pytest.mark.slow),  # DeepMind WRN-28-10
    pytest.param("Engstrom2019Robustness", "mu_sigma", {"threat": "linf:8/255"}, marks=pytest.mark.slow),  # ResNet-50
]


@pytest.mark.parametrize("name,layout,choose", FAMILIES)
def test_zoo_file_evaluates_from_its_name(tmp_path, capsys, name, layout, choose) -> None:
    path, m, net = _zoo_file(tmp_path, name, layout, **choose)
    spec = get_dataset(m.entry.dataset)
    ck = load_checkpoint(path, arch=f"robustbench:{name}", **choose)
    x = torch.rand(4, *spec.input_shape)
    with torch.no_grad():  # the entry's constructor: its network behind its own normalisation, if any
        mean, std = parse_normalize(m.normalize, 3) if m.normalize else ((0.0,), (1.0,))
        want = net((x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1))
        if m.arch.startswith("dm_"):
            want = net(x)  # DeepMind's networks hold their normalisation
        got = ck.model(x)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-5)
    extra = [a for k, v in choose.items() for a in (f"--{k}", v)]
    assert _eval(tmp_path, path, f"robustbench:{name}", _data_file(tmp_path, m.entry.dataset, ck.model), *extra) == 0, \
        capsys.readouterr().err
    rec = json.loads((tmp_path / "ev" / "result.json").read_text())
    assert rec["clean_accuracy"] == 0.0 and rec["n"] == 4
    assert rec["threat"] == m.entry.threat_model.to_dict()
    c = rec["checkpoint"]
    assert (c["arch"], c["dataset"], c["robustbench"]["name"]) == (m.arch, m.entry.dataset, name)
    assert c["robustbench"]["commit"] == zoo.source_commit() and c["robustbench"]["threat"] == m.entry.threat
    if m.normalize:
        assert c["normalize"]["mean"] == pytest.approx(list(parse_normalize(m.normalize, 3)[0]), abs=1e-6)
    else:
        assert c["normalize"] is None


# -- one-line errors --------------------------------------------------------------------------------

@pytest.fixture
def r18(tmp_path) -> tuple[Path, Path]:
    path, _, net = _zoo_file(tmp_path, "Sehwag2021Proxy_R18", "module", threat="l2:0.5")
    return path, _data_file(tmp_path, "cifar10", net)


@pytest.mark.parametrize("arch,extra,needle", [
    ("robustbench:Carmon2019Unlabled", [], "'Carmon2019Unlabled' is not a RobustBench leaderboard entry (commit 78fcc9e); "
     "did you mean Carmon2019Unlabeled?"),
    ("robustbench:Kang2021Stable", [], "RobustBench's Kang2021Stable (cifar10 linf:8/255, WideResNet-70-16, Neural ODE "
     "block) cannot be built here: the registry lacks SODEF's WideResNet-70-16 with a neural-ODE block."),
    ("robustbench:Madry2018Towards", [], "RobustBench's Madry2018Towards (cifar10 linf:8/255) has no model in "
     "RobustBench's model_zoo at 78fcc9e, so no zoo file to build; for your own WideResNet-34-10 give --arch a registry name."),
    ("robustbench:Sehwag2021Proxy_R18", [], "RobustBench's Sehwag2021Proxy_R18 is on several leaderboards "
     "(cifar10 l2:0.5, cifar10 linf:8/255); give --dataset and --threat."),
    ("robustbench:Sehwag2021Proxy_R18", ["--dataset", "cifar100"], "RobustBench's Sehwag2021Proxy_R18 is on the "
     "leaderboards cifar10 l2:0.5, cifar10 linf:8/255, not on the one asked for."),
])
def test_bad_names_are_one_line(tmp_path, capsys, r18, arch, extra, needle) -> None:
    assert _eval(tmp_path, r18[0], arch, r18[1], *extra) == 2
    err = capsys.readouterr().err
    assert [ln for ln in err.splitlines() if ln.strip()] == [f"bench: error: {needle}"]


def test_another_threat_is_a_warning_and_is_used(tmp_path, caplog) -> None:
    path, _, net = _zoo_file(tmp_path, "Andriushchenko2020Understanding", "plain")
    data = _data_file(tmp_path, "cifar10", net)
    assert _eval(tmp_path, path, "robustbench:Andriushchenko2020Understanding", data, "--threat", "l2:0.5") == 0
    assert any(r.levelname == "WARNING" and "is on the cifar10 linf:8/255 leaderboard; evaluating it at l2:0.5 as asked"
               in r.getMessage() for r in caplog.records)
    rec = json.loads((tmp_path / "ev" / "result.json").read_text())
    assert rec["threat"]["norm"] == "l2" and rec["threat"]["eps"] == 0.5
    assert rec["checkpoint"]["robustbench"]["threat"] == "linf:8/255"


def test_our_own_checkpoint_refuses_robustbench_names(tmp_path) -> None:
    from robustbench_lite.checkpoint import make_checkpoint, save_checkpoint

    net = create_model("preact_resnet18", num_classes=10)
    p = tmp_path / "ours.pt"
    save_checkpoint(p, make_checkpoint(arch="preact_resnet18", arch_kwargs={}, dataset="cifar10", num_classes=10,
                                       input_shape=(3, 32, 32), threat=None, defense="natural", defense_config={},
                                       history=[], members={"model": net}))
    with pytest.raises(BenchError, match="is for RobustBench's zoo files"):
        load_checkpoint(p, arch="robustbench:Andriushchenko2020Understanding")
