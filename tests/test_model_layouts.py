"""Our architectures against independent references in the field's key layouts.

The ``Ref*`` modules below mimic the class structure (attribute names, nesting, forward pass) of
RobustBench's ``model_zoo/architectures/wide_resnet.py`` (TRADES), ``resnet.py`` (ResNet,
PreActResNet with PreActBlock / PreActBlockV2 and ``bn_before_fc``) and ``dm_wide_resnet.py`` /
``dm_rn.py`` (DeepMind, Swish, mean/std outside the state_dict), at RobustBench commit 78fcc9e.
A state_dict made by a reference loads into our model (through ``load_checkpoint``, with RobustBench's
``state_dict`` / ``module.`` wrapping) and gives the reference's logits; key sets and shapes of every
registered name equal the reference's (built on the meta device, so the large WRNs cost nothing).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustbench_lite.checkpoint import load_checkpoint
from robustbench_lite.errors import BenchError
from robustbench_lite.models import create_model

CIFAR10 = ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616))


# -- references (structure of RobustBench's files, written for this test) -------------------------

class RefWideBlock(nn.Module):
    def __init__(self, i, o, stride):
        super().__init__()
        self.bn1, self.relu1 = nn.BatchNorm2d(i), nn.ReLU()
        self.conv1 = nn.Conv2d(i, o, 3, stride, 1, bias=False)
        self.bn2, self.relu2 = nn.BatchNorm2d(o), nn.ReLU()
        self.conv2 = nn.Conv2d(o, o, 3, 1, 1, bias=False)
        self.equalInOut = i == o
        self.convShortcut = (not self.equalInOut) and nn.Conv2d(i, o, 1, stride, 0, bias=False) or None

    def forward(self, x):
        if not self.equalInOut:
            x = self.relu1(self.bn1(x))
        else:
            out = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(out if self.equalInOut else x)))
        return torch.add(x if self.equalInOut else self.convShortcut(x), self.conv2(out))


class RefNetworkBlock(nn.Module):
    def __init__(self, n, i, o, stride):
        super().__init__()
        self.layer = nn.Sequential(*[RefWideBlock(i if k == 0 else o, o, stride if k == 0 else 1) for k in range(n)])

    def forward(self, x):
        return self.layer(x)


class RefWideResNet(nn.Module):
    def __init__(self, depth=28, num_classes=10, widen_factor=10, sub_block1=False, bias_last=True):
        super().__init__()
        c = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(3, c[0], 3, 1, 1, bias=False)
        self.block1 = RefNetworkBlock(n, c[0], c[1], 1)
        if sub_block1:
            self.sub_block1 = RefNetworkBlock(n, c[0], c[1], 1)
        self.block2 = RefNetworkBlock(n, c[1], c[2], 2)
        self.block3 = RefNetworkBlock(n, c[2], c[3], 2)
        self.bn1, self.relu = nn.BatchNorm2d(c[3]), nn.ReLU()
        self.fc = nn.Linear(c[3], num_classes, bias=bias_last)
        self.nChannels = c[3]

    def forward(self, x):
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.avg_pool2d(self.relu(self.bn1(out)), 8)
        return self.fc(out.view(-1, self.nChannels))


class RefBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, i, p, stride=1):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(i, p, 3, stride, 1, bias=False), nn.BatchNorm2d(p)
        self.conv2, self.bn2 = nn.Conv2d(p, p, 3, 1, 1, bias=False), nn.BatchNorm2d(p)
        self.shortcut = nn.Sequential()
        if stride != 1 or i != p:
            self.shortcut = nn.Sequential(nn.Conv2d(i, p, 1, stride, bias=False), nn.BatchNorm2d(p))

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class RefBottleneck(nn.Module):
    expansion = 4

    def __init__(self, i, p, stride=1):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(i, p, 1, bias=False), nn.BatchNorm2d(p)
        self.conv2, self.bn2 = nn.Conv2d(p, p, 3, stride, 1, bias=False), nn.BatchNorm2d(p)
        self.conv3, self.bn3 = nn.Conv2d(p, 4 * p, 1, bias=False), nn.BatchNorm2d(4 * p)
        self.shortcut = nn.Sequential()
        if stride != 1 or i != 4 * p:
            self.shortcut = nn.Sequential(nn.Conv2d(i, 4 * p, 1, stride, bias=False), nn.BatchNorm2d(4 * p))

    def forward(self, x):
        out = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        return F.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


class RefPreActBlock(nn.Module):
    expansion = 1

    def __init__(self, i, p, stride=1, out_shortcut=False):
        super().__init__()
        self.out_shortcut = out_shortcut
        self.bn1, self.conv1 = nn.BatchNorm2d(i), nn.Conv2d(i, p, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(p), nn.Conv2d(p, p, 3, 1, 1, bias=False)
        if stride != 1 or i != p:
            self.shortcut = nn.Sequential(nn.Conv2d(i, p, 1, stride, bias=False))

    def forward(self, x):
        out = F.relu(self.bn1(x))
        sc = self.shortcut(out if self.out_shortcut else x) if hasattr(self, "shortcut") else x
        return self.conv2(F.relu(self.bn2(self.conv1(out)))) + sc


class RefPreActBlockV2(RefPreActBlock):
    """RobustBench's PreActBlockV2: the shortcut reads the activated input."""

    def __init__(self, i, p, stride=1, out_shortcut=False):
        super().__init__(i, p, stride, out_shortcut=True)


class RefResNet(nn.Module):
    """RobustBench's ResNet (``preact=False``) and PreActResNet (``preact=True``)."""

    def __init__(self, block, num_blocks, num_classes=10, preact=False, bn_before_fc=False, out_shortcut=False):
        super().__init__()
        self.in_planes, self.preact, self.bn_before_fc = 64, preact, bn_before_fc
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        if not preact:
            self.bn1 = nn.BatchNorm2d(64)
        extra = {"out_shortcut": out_shortcut} if preact else {}
        for k, (planes, n) in enumerate(zip((64, 128, 256, 512), num_blocks)):
            layers = []
            for s in [1 if k == 0 else 2] + [1] * (n - 1):
                layers.append(block(self.in_planes, planes, s, **extra))
                self.in_planes = planes * block.expansion
            setattr(self, f"layer{k + 1}", nn.Sequential(*layers))
        if bn_before_fc:
            self.bn = nn.BatchNorm2d(512 * block.expansion)
        self.linear = nn.Linear(512 * block.expansion, num_classes)

    def forward(self, x):
        out = self.conv1(x) if self.preact else F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        if self.bn_before_fc:
            out = F.relu(self.bn(out))
        return self.linear(F.avg_pool2d(out, 4).view(out.size(0), -1))


def swish(x):
    return x * torch.sigmoid(x)


def same_pad(x, stride):
    return F.pad(x, (1, 1, 1, 1) if stride == 1 else (0, 1, 0, 1))


class RefDMBlock(nn.Module):
    def __init__(self, i, o, stride):
        super().__init__()
        self.batchnorm_0, self.conv_0 = nn.BatchNorm2d(i), nn.Conv2d(i, o, 3, stride, 0, bias=False)
        self.batchnorm_1, self.conv_1 = nn.BatchNorm2d(o), nn.Conv2d(o, o, 3, 1, 1, bias=False)
        self.has_shortcut = i != o
        self.shortcut = nn.Conv2d(i, o, 1, stride, 0, bias=False) if self.has_shortcut else None
        self._stride = stride

    def forward(self, x):
        if self.has_shortcut:
            x = swish(self.batchnorm_0(x))
        else:
            out = swish(self.batchnorm_0(x))
        out = self.conv_0(same_pad(x if self.has_shortcut else out, self._stride))
        out = self.conv_1(swish(self.batchnorm_1(out)))
        return torch.add(self.shortcut(x) if self.has_shortcut else x, out)


class RefDMBlockGroup(nn.Module):
    def __init__(self, n, i, o, stride):
        super().__init__()
        self.block = nn.Sequential(*[RefDMBlock(i if k == 0 else o, o, stride if k == 0 else 1) for k in range(n)])

    def forward(self, x):
        return self.block(x)


class RefDMWideResNet(nn.Module):
    def __init__(self, num_classes=10, depth=28, width=10, mean=CIFAR10[0], std=CIFAR10[1]):
        super().__init__()
        self.mean, self.std = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)  # not in the state_dict
        c, n = [16, 16 * width, 32 * width, 64 * width], (depth - 4) // 6
        self.init_conv = nn.Conv2d(3, c[0], 3, 1, 1, bias=False)
        self.layer = nn.Sequential(RefDMBlockGroup(n, c[0], c[1], 1), RefDMBlockGroup(n, c[1], c[2], 2),
                                   RefDMBlockGroup(n, c[2], c[3], 2))
        self.batchnorm, self.logits, self.num_channels = nn.BatchNorm2d(c[3]), nn.Linear(c[3], num_classes), c[3]

    def forward(self, x):
        out = self.layer(self.init_conv((x - self.mean) / self.std))
        out = F.avg_pool2d(swish(self.batchnorm(out)), 8)
        return self.logits(out.view(-1, self.num_channels))


class RefDMPreActBlock(nn.Module):
    def __init__(self, i, o, stride):
        super().__init__()
        self._stride = stride
        self.batchnorm_0, self.conv_2d_1 = nn.BatchNorm2d(i), nn.Conv2d(i, o, 3, stride, 0, bias=False)
        self.batchnorm_1, self.conv_2d_2 = nn.BatchNorm2d(o), nn.Conv2d(o, o, 3, 1, 1, bias=False)
        self.has_shortcut = stride != 1 or i != o
        if self.has_shortcut:
            self.shortcut = nn.Conv2d(i, o, 3, stride, 0, bias=False)

    def forward(self, x):
        out = swish(self.batchnorm_0(x))
        sc = self.shortcut(same_pad(x, self._stride)) if self.has_shortcut else x
        out = self.conv_2d_1(same_pad(out, self._stride))
        return self.conv_2d_2(swish(self.batchnorm_1(out))) + sc


class RefDMPreActResNet(nn.Module):
    def __init__(self, num_classes=10, depth=18, mean=CIFAR10[0], std=CIFAR10[1]):
        super().__init__()
        self.mean, self.std = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
        blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}[depth]
        self.conv_2d = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        for g, (i, o, n) in enumerate(zip((64, 64, 128, 256), (64, 128, 256, 512), blocks)):
            s = 1 if g == 0 else 2
            setattr(self, f"layer_{g}", nn.Sequential(*[RefDMPreActBlock(i if k == 0 else o, o, s if k == 0 else 1)
                                                        for k in range(n)]))
        self.batchnorm, self.logits = nn.BatchNorm2d(512), nn.Linear(512, num_classes)

    def forward(self, x):
        out = self.conv_2d((x - self.mean) / self.std)
        out = self.layer_3(self.layer_2(self.layer_1(self.layer_0(out))))
        out = F.avg_pool2d(swish(self.batchnorm(out)), 4)
        return self.logits(out.view(out.size(0), -1))


# -- the cases ------------------------------------------------------------------------------------

# (our arch, our kwargs, reference factory): the registered names at full size
REGISTERED = [
    ("wrn_28_10", {}, lambda: RefWideResNet(28, 10, 10)),
    ("wrn_34_10", {}, lambda: RefWideResNet(34, 10, 10)),
    ("wrn_34_20", {}, lambda: RefWideResNet(34, 10, 20)),
    ("wrn_70_16", {}, lambda: RefWideResNet(70, 10, 16)),
    ("wrn_28_10", {"sub_block1": True}, lambda: RefWideResNet(28, 10, 10, sub_block1=True)),
    ("wide_resnet", {"depth": 34, "widen_factor": 10, "bias_last": False}, lambda: RefWideResNet(34, 10, 10, bias_last=False)),
    ("resnet18", {}, lambda: RefResNet(RefBasicBlock, [2, 2, 2, 2])),
    ("resnet34", {}, lambda: RefResNet(RefBasicBlock, [3, 4, 6, 3])),
    ("cifar_resnet50", {}, lambda: RefResNet(RefBottleneck, [3, 4, 6, 3])),
    ("preact_resnet18", {}, lambda: RefResNet(RefPreActBlock, [2, 2, 2, 2], preact=True)),
    ("preact_resnet18", {"bn_before_fc": True}, lambda: RefResNet(RefPreActBlockV2, [2, 2, 2, 2], preact=True, bn_before_fc=True)),
    ("dm_wrn_28_10", {}, lambda: RefDMWideResNet(10, 28, 10)),
    ("dm_wrn_70_16", {}, lambda: RefDMWideResNet(10, 70, 16)),
    ("dm_preact_resnet18", {}, lambda: RefDMPreActResNet(10, 18)),
    ("dm_preact_resnet34", {}, lambda: RefDMPreActResNet(10, 34)),
]


def _shapes(m: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in m.state_dict().items()}


@pytest.mark.parametrize("arch,kwargs,ref", REGISTERED, ids=[f"{a}{'-' + '-'.join(k) if k else ''}" for a, k, _ in REGISTERED])
def test_registered_keys_and_shapes_equal_the_reference(arch, kwargs, ref):
    with torch.device("meta"):
        ours, theirs = create_model(arch, num_classes=10, **kwargs), ref()
    assert _shapes(ours) == _shapes(theirs)


def _randomised(ref: nn.Module, seed: int) -> nn.Module:
    """Random weights and BN statistics (eval mode), so a wrong wiring changes the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in ref.state_dict().items():
            if t.dtype.is_floating_point:
                r = torch.rand(t.shape, generator=g)
                t.copy_(0.5 + r if name.endswith(("running_var", "bn1.weight", "bn2.weight")) else (r - 0.5) * 0.6)
    return ref.eval()


# small variants with the full forward pass, loaded through load_checkpoint as a RobustBench zoo file
SMALL = [
    ("wide_resnet", lambda: RefWideResNet(10, 10, 1), {"depth": 10, "widen_factor": 1, "sub_block1": False, "bias_last": True}),
    ("wide_resnet", lambda: RefWideResNet(16, 10, 2, sub_block1=True, bias_last=False),
     {"depth": 16, "widen_factor": 2, "sub_block1": True, "bias_last": False}),
    ("preact_resnet18", lambda: RefResNet(RefPreActBlock, [2, 2, 2, 2], preact=True), {"bn_before_fc": False}),
    ("preact_resnet18", lambda: RefResNet(RefPreActBlock, [2, 2, 2, 2], preact=True, bn_before_fc=True, out_shortcut=True),
     {"bn_before_fc": True}),
    ("resnet18", lambda: RefResNet(RefBasicBlock, [2, 2, 2, 2]), {}),
    ("dm_wide_resnet", lambda: RefDMWideResNet(10, 10, 1), {"depth": 10, "width": 1}),
    ("dm_wide_resnet", lambda: RefDMWideResNet(10, 16, 2), {"depth": 16, "width": 2}),
    ("dm_preact_resnet", lambda: RefDMPreActResNet(10, 18), {"depth": 18}),
]


@pytest.mark.parametrize("i", range(len(SMALL)), ids=[f"{a}-{i}" for i, (a, _, _) in enumerate(SMALL)])
def test_reference_state_dict_loads_and_gives_the_reference_logits(tmp_path, i):
    arch, ref_fn, inferred = SMALL[i]
    torch.manual_seed(i)
    ref = _randomised(ref_fn(), seed=i)
    p = tmp_path / "zoo.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}, p)  # as Carmon2019Unlabeled.pt
    ck = load_checkpoint(p, arch=arch, dataset="synthetic_rgb")
    assert ck.arch_kwargs == inferred  # read off the keys and shapes
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = ref(x), ck.model(x)
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())
        assert torch.allclose(ck.model.features(x).logits, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())
    theirs = ref_fn()
    theirs.load_state_dict(ck.model.state_dict(), strict=True)  # and back: our state_dict is the reference's


def test_our_wrn_trains_and_its_checkpoint_loads_into_the_reference():
    ours = create_model("wide_resnet", num_classes=10, depth=10, widen_factor=1)
    opt = torch.optim.SGD(ours.parameters(), lr=0.1)
    x, y = torch.rand(8, 3, 32, 32), torch.arange(8) % 10
    F.cross_entropy(ours(x), y).backward()
    opt.step()
    ref = RefWideResNet(10, 10, 1)
    ref.load_state_dict(ours.state_dict(), strict=True)
    ours.eval(), ref.eval()
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5)


def test_model_prefix_and_missing_normalisation_buffers(tmp_path):
    """RobustBench's rules: ``model.`` stripped; the file may lack a model's mu/sigma buffers."""
    torch.manual_seed(0)
    ref = _randomised(RefResNet(RefBasicBlock, [2, 2, 2, 2]), seed=3)
    p = tmp_path / "m.pt"
    torch.save({"model_state_dict": {f"model.{k}": v for k, v in ref.state_dict().items()}}, p)
    ck = load_checkpoint(p, arch="resnet18", dataset="synthetic_rgb")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ck.model(x), ref(x), rtol=1e-4, atol=1e-4)


def test_stored_normalisation_must_match_the_models(tmp_path):
    ref = RefDMWideResNet(10, 10, 1)
    sd = dict(ref.state_dict())
    p = tmp_path / "dm.pt"
    torch.save({**sd, "mean": torch.tensor(CIFAR10[0]).view(1, 3, 1, 1), "std": torch.tensor(CIFAR10[1])}, p)
    load_checkpoint(p, arch="dm_wide_resnet", dataset="synthetic_rgb")  # the values it applies: fine
    torch.save({**sd, "mean": torch.tensor([0.5, 0.5, 0.5]), "std": torch.tensor(CIFAR10[1])}, p)
    with pytest.raises(BenchError, match="stores the input normalisation mean"):
        load_checkpoint(p, arch="dm_wide_resnet", dataset="synthetic_rgb")
    with pytest.raises(BenchError, match="does not apply"):  # a model without normalisation
        torch.save({**RefWideResNet(10, 10, 1).state_dict(), "mu": torch.zeros(3)}, p)
        load_checkpoint(p, arch="wide_resnet", dataset="synthetic_rgb")


def test_wrong_wrn_depth_is_one_sentence(tmp_path):
    p = tmp_path / "w.pt"
    torch.save(RefWideResNet(10, 10, 1).state_dict(), p)
    with pytest.raises(BenchError, match="do not fit arch 'wrn_28_10'"):
        load_checkpoint(p, arch="wrn_28_10", dataset="synthetic_rgb")
