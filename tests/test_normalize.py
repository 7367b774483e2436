"""In-model normalisation (``--normalize``) and the torchvision:/timm: models, against manual composition."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from robustbench_lite.checkpoint import load_checkpoint
from robustbench_lite.cli import main
from robustbench_lite.data import get_dataset
from robustbench_lite.errors import BenchError
from robustbench_lite.models import NormalizedModel, apply_normalize, create_model, parse_normalize

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)
TEXT = "0.4914,0.4822,0.4465,0.2471,0.2435,0.2616"


def _manual(x: torch.Tensor) -> torch.Tensor:
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


@pytest.fixture
def linear_sd(tmp_path):
    """A linear model trained a few steps on normalised synthetic_rgb images, saved as a bare state_dict."""
    torch.manual_seed(0)
    m = create_model("linear", num_classes=10, in_channels=3, in_features=3 * 32 * 32)
    x, y = get_dataset("synthetic_rgb").load("train").batch(range(64))
    opt = torch.optim.SGD(m.parameters(), lr=0.05)
    for _ in range(5):
        opt.zero_grad()
        F.cross_entropy(m(_manual(x)), y).backward()
        opt.step()
    p = tmp_path / "linear.pt"
    torch.save(m.state_dict(), p)
    return p, m.eval()


def _load(p, normalize):
    # the registered 'linear' reads 784 features by default: pass the RGB size through a tiny user arch
    return load_checkpoint(p, arch=f"{__file__}:rgb_linear", dataset="synthetic_rgb", normalize=normalize)


def rgb_linear(num_classes: int = 10):
    return create_model("linear", num_classes=num_classes, in_channels=3, in_features=3 * 32 * 32)


@pytest.mark.parametrize("text", [TEXT, "cifar10", " CIFAR10 "])
def test_wrapped_logits_equal_manual_normalisation(linear_sd, text):
    p, m = linear_sd
    ck = _load(p, text)
    x = torch.rand(5, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ck.model(x), m(_manual(x)), atol=1e-5)
        assert torch.allclose(ck.model.features(x).logits, m(_manual(x)), atol=1e-5)
    assert set(ck.model.state_dict()) == set(m.state_dict())  # the wrapper adds no key and no prefix


def test_pixel_gradient_is_the_manual_composition_and_the_closed_form(linear_sd):
    p, m = linear_sd
    model = _load(p, TEXT).model
    x = torch.rand(3, 3, 32, 32, requires_grad=True)
    g_wrapped, = torch.autograd.grad(model(x)[:, 2].sum(), x)
    x2 = x.detach().clone().requires_grad_(True)
    g_manual, = torch.autograd.grad(m(_manual(x2))[:, 2].sum(), x2)
    assert torch.allclose(g_wrapped, g_manual, atol=1e-6)
    closed = (m.fc.weight[2].view(3, 32, 32) / torch.tensor(STD).view(3, 1, 1)).expand_as(x)  # d z_2 / dx = W_2 / std
    assert torch.allclose(g_wrapped, closed, rtol=1e-5, atol=1e-7)


def test_without_normalize_the_logits_differ(linear_sd):
    p, m = linear_sd
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(_load(p, None).model(x), m(_manual(x)), atol=1e-3)


def test_grey_single_values_and_names():
    assert parse_normalize("0.5,0.25", channels=1) == ((0.5,), (0.25,))
    assert parse_normalize("0.5,0.25", channels=3) == ((0.5,), (0.25,))  # one value for every channel
    assert parse_normalize("imagenet", channels=3) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    m = apply_normalize(create_model("small_cnn", num_classes=10, in_channels=1), (0.5,), (0.25,)).eval()
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(m(x), m.net((x - 0.5) / 0.25))


@pytest.mark.parametrize("text,needle", [
    ("0.5,0.5,0.5", "has 3 values"),
    ("0.5,0.5,0.5,0.2,0.2", "has 5 values"),
    ("0.5,0", "std must be positive"),
    ("0.5,-1", "std must be positive"),
    ("0.5,nan", "finite"),
    ("svhn", "neither MEAN,STD numbers"),
    ("0.5;0.2", "neither MEAN,STD numbers"),
    ("cifar10-grey", "neither"),
])
def test_bad_values_are_one_sentence(text, needle):
    with pytest.raises(BenchError, match=needle) as e:
        parse_normalize(text, channels=3)
    assert str(e.value).count(". ") == 0 and "\n" not in str(e.value)


def test_a_grey_model_refuses_rgb_statistics():
    with pytest.raises(BenchError, match="3-channel"):
        parse_normalize("cifar10", channels=1)


def test_a_model_with_its_own_normalisation_is_not_normalised_twice():
    m = create_model("dm_wide_resnet", num_classes=100, depth=10, width=1)
    assert m.normalize.mean.flatten().tolist() == pytest.approx([0.5071, 0.4865, 0.4409])  # CIFAR-100's by default
    keys = set(m.state_dict())
    assert apply_normalize(m, MEAN, STD) is m and not isinstance(m, NormalizedModel)
    assert m.normalize.std.flatten().tolist() == pytest.approx(list(STD)) and set(m.state_dict()) == keys


def test_nested_wrapper_state_dict_round_trips():
    inner = create_model("resnet18", num_classes=10, widths=(8, 8, 8, 8))
    outer = apply_normalize(apply_normalize(inner, MEAN, STD), (0.5,), (0.5,))  # a wrapper around a wrapper
    sd = outer.state_dict()
    assert set(sd) == set(inner.state_dict())
    outer.load_state_dict(sd, strict=True)


def test_cli_eval_with_normalize(capsys, tmp_path, linear_sd):
    p, _ = linear_sd
    suite = tmp_path / "tiny.toml"
    suite.write_text('name = "tiny"\ncascade = false\n[[attacks]]\nname = "pgd"\nsteps = 2\n')
    out = tmp_path / "ev"
    args = ["eval", "--model", str(p), "--arch", f"{__file__}:rgb_linear", "--dataset", "synthetic_rgb",
            "--suite", str(suite), "--n-examples", "10", "--no-db", "--no-progress", "--device", "cpu"]
    assert main(args + ["--out", str(out), "--normalize", "cifar10"]) == 0, capsys.readouterr().err
    rec = json.loads((out / "result.json").read_text())
    ck = _load(p, "cifar10")
    x, y = get_dataset("synthetic_rgb").load("test").batch(rec["indices"])
    with torch.no_grad():
        want = (ck.model(x).argmax(1) == y).float().mean().item()
    assert rec["clean_accuracy"] == pytest.approx(round(100 * want, 2))
    capsys.readouterr()
    assert main(args + ["--out", str(tmp_path / "bad"), "--normalize", "0.5,0"]) == 2
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("bench: error:")] == [
        "bench: error: every normalisation std must be positive, got [0.0]."]


# -- torchvision: / timm: ---------------------------------------------------------------------------

def test_torchvision_state_dict_loads_as_is_with_imagenet_normalisation_inside(tmp_path):
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    net = tv.models.resnet18(num_classes=10).eval()
    p = tmp_path / "tv.pt"
    torch.save(net.state_dict(), p)
    ck = load_checkpoint(p, arch="torchvision:resnet18", dataset="synthetic_rgb")
    assert set(ck.model.state_dict()) == set(net.state_dict())
    x = torch.rand(2, 3, 32, 32)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        want = net((x - mean) / std)
        assert torch.allclose(ck.model(x), want, rtol=1e-4, atol=1e-5)
        assert torch.allclose(ck.model.features(x).logits, want, rtol=1e-4, atol=1e-5)
    with pytest.raises(BenchError, match="torchvision has no model 'resnet_nosuch'"):
        load_checkpoint(p, arch="torchvision:resnet_nosuch", dataset="synthetic_rgb")


def test_timm_model_loads_with_its_own_normalisation(tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    net = timm.create_model("resnet10t", pretrained=False, num_classes=10).eval()
    p = tmp_path / "timm.pt"
    torch.save({"state_dict": net.state_dict()}, p)
    ck = load_checkpoint(p, arch="timm:resnet10t", dataset="synthetic_rgb")
    cfg = net.pretrained_cfg
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        want = net((x - torch.tensor(cfg["mean"]).view(1, 3, 1, 1)) / torch.tensor(cfg["std"]).view(1, 3, 1, 1))
        assert torch.allclose(ck.model(x), want, rtol=1e-4, atol=1e-5)
        assert torch.allclose(ck.model.features(x).logits, want, rtol=1e-4, atol=1e-5)
    with pytest.raises(BenchError, match="timm has no model"):
        load_checkpoint(p, arch="timm:nosuch_net", dataset="synthetic_rgb")
