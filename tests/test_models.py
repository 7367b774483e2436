import pytest
import torch

from robustbench_lite.errors import BenchError
from robustbench_lite.models import MODELS, BenchModel, create_model

SHAPES = {"small_cnn": (1, 28, 28), "linear": (1, 28, 28), "resnet50": (3, 224, 224)}


# seconds each to build and run on 2 CPU cores (the large WRNs, and generic factories whose default is one)
SLOW = {"wrn_34_20", "wrn_70_16", "dm_wrn_70_16", "dm_wrn_28_10", "wide_resnet", "dm_wide_resnet", "dm_preact_resnet34"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in MODELS.names()])
def test_every_model_gives_logits_and_both_feature_maps(name):
    shape = SHAPES.get(name, (3, 32, 32))
    torch.manual_seed(0)
    m = create_model(name, num_classes=7, in_channels=shape[0]).eval()
    assert isinstance(m, BenchModel)
    x = torch.rand(2, *shape)
    with torch.no_grad():
        f = m.features(x)
        logits = m(x)
    assert logits.shape == (2, 7)
    assert f.pre_pool.ndim == 4 and f.pre_pool.shape[0] == 2
    assert f.pooled.ndim == 2 and f.pooled.shape[0] == 2
    assert torch.allclose(f.logits, logits, atol=1e-5)
    assert torch.allclose(m.head(m.pool(f.pre_pool)), logits, atol=1e-5)


def test_resnet18_is_the_cifar_variant():
    m = create_model("resnet18", num_classes=10)
    assert m.conv1.kernel_size == (3, 3) and m.conv1.stride == (1, 1)
    assert sum(p.numel() for p in m.parameters()) == 11_173_962


def test_afd_small_resnet_widths():
    m = create_model("resnet18", num_classes=10, in_channels=1, widths=(16, 32, 48, 64))
    f = m.features(torch.rand(2, 1, 28, 28))
    assert f.pooled.shape == (2, 64)


def test_unknown_model_lists_known():
    with pytest.raises(BenchError, match="small_cnn"):
        create_model("vgg99", num_classes=10)
