"""A user's own model given by ``--arch file.py:callable`` or ``module:callable`` loads the user's own
state_dict whatever the user called its attributes (``net``, ``model``, ``module``, ``backbone``,
``normalize`` with buffers, ...), and our checkpoints of such a model round-trip."""
from __future__ import annotations

import csv
import importlib.util
import json
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from robustbench_lite.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from robustbench_lite.data import class_balanced_indices, get_dataset
from robustbench_lite.errors import BenchError

# One file per top-level attribute name. Each ``make(num_classes)`` builds a fresh, randomly
# initialised module; ``bake(module)`` turns it into a classifier of the synthetic data (class c is a
# bright block in cell c of a 4x4 grid) and sets every buffer away from its constructor's value, so a
# load that silently skipped a parameter or buffer changes the logits.
HEADER = '''
import torch
from torch import nn

class Normalize(nn.Module):
    def __init__(self, channels=1):
        super().__init__()
        self.register_buffer("mean", torch.zeros(channels, 1, 1))
        self.register_buffer("std", torch.ones(channels, 1, 1))
    def forward(self, x):
        return (x - self.mean) / self.std

def classifier(num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(784, num_classes))
'''

MODELS = {
    "net": '''
class User(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.net = classifier(num_classes)
    def forward(self, x):
        return self.net(x)
''',
    "model": '''
class User(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.model = classifier(num_classes)
    def forward(self, x):
        return self.model(x)
''',
    "module": '''
class User(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.module = classifier(num_classes)   # every key starts with "module.", like DataParallel's
    def forward(self, x):
        return self.module(x)
''',
    "backbone": '''
class User(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.BatchNorm1d(32))
        self.head = nn.Linear(32, num_classes)
    def forward(self, x):
        return self.head(self.backbone(x))
''',
    "normalize": '''
class User(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.normalize = Normalize()
        self.net = classifier(num_classes)
    def forward(self, x):
        return self.net(self.normalize(x))
''',
}

FOOTER = '''
def make(num_classes=10):
    return User(num_classes)
'''


def _write(tmp_path: Path, attr: str, name: str | None = None) -> Path:
    f = tmp_path / f"{name or 'user_' + attr}.py"
    f.write_text(textwrap.dedent(HEADER) + textwrap.dedent(MODELS[attr]) + textwrap.dedent(FOOTER))
    return f


def _import(f: Path):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(f"_orig_{f.stem}", f)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _protos() -> torch.Tensor:
    p = torch.zeros(10, 28, 28)
    for k in range(10):
        r, q = divmod(k, 4)
        p[k, r * 7:(r + 1) * 7, q * 7:(q + 1) * 7] = 1.0
    return p.flatten(1)


@torch.no_grad()
def bake(m: nn.Module) -> nn.Module:
    """Make ``m`` a good synthetic-data classifier with every buffer moved off its default."""
    torch.manual_seed(1)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm1d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.9, 1.1)
            mod.num_batches_tracked.fill_(7)
        if type(mod).__name__ == "Normalize":
            mod.mean.fill_(0.1)
            mod.std.fill_(0.5)
    linears = [mod for mod in m.modules() if isinstance(mod, nn.Linear)]
    if len(linears) == 1:  # image -> logits: template matching
        linears[0].weight.copy_(_protos())
        linears[0].bias.copy_(-0.5 * linears[0].weight.sum(1))
    else:  # backbone (image -> 32) then head (32 -> logits)
        first, head = linears
        first.weight.zero_()
        first.bias.zero_()
        first.weight[:10].copy_(_protos())
        head.weight.zero_()
        head.weight[:, :10].copy_(torch.eye(10))
    return m.eval()


def _saved(tmp_path: Path, attr: str) -> tuple[Path, Path, nn.Module]:
    f = _write(tmp_path, attr)
    original = bake(_import(f).make(10))
    sd = tmp_path / f"sd_{attr}.pt"
    torch.save(original.state_dict(), sd)
    return f, sd, original


ATTRS = list(MODELS)


@pytest.mark.parametrize("attr", ATTRS)
def test_file_arch_loads_the_users_own_state_dict(tmp_path: Path, attr: str) -> None:
    f, sd, original = _saved(tmp_path, attr)
    c = load_checkpoint(sd, arch=f"{f}:make", dataset="synthetic")
    assert list(c.model.state_dict()) == list(original.state_dict())  # the user's keys, no wrapper prefix
    for k, v in original.state_dict().items():
        assert torch.equal(c.model.state_dict()[k], v), k
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(c.model(x), original(x))


@pytest.mark.parametrize("attr", ATTRS)
def test_module_arch_loads_the_users_own_state_dict(tmp_path: Path, attr: str, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"bench_user_mod_{attr}"
    f = _write(tmp_path, attr, name)
    monkeypatch.syspath_prepend(str(tmp_path))
    original = bake(_import(f).make(10))
    torch.save(original.state_dict(), tmp_path / "sd.pt")
    c = load_checkpoint(tmp_path / "sd.pt", arch=f"{name}:make", dataset="synthetic")
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(c.model(x), original(x))


@pytest.mark.parametrize("attr", ATTRS)
def test_our_checkpoint_of_a_user_model_round_trips(tmp_path: Path, attr: str) -> None:
    f, sd, original = _saved(tmp_path, attr)
    loaded = load_checkpoint(sd, arch=f"{f}:make", dataset="synthetic").model
    ckpt = make_checkpoint(arch=f"{f}:make", arch_kwargs={}, dataset="synthetic", num_classes=10, input_shape=(1, 28, 28),
                           threat=None, defense="unknown", defense_config={}, history=[], members={"model": loaded})
    assert ckpt["members"]["model"].keys() == original.state_dict().keys()
    p = tmp_path / "ours.pt"
    save_checkpoint(p, ckpt)
    again = load_checkpoint(p, arch=f"{f}:make").model
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(again(x), original(x))
    # and the wrapper's own state_dict / load_state_dict round-trip, also nested in another module
    fresh = load_checkpoint(sd, arch=f"{f}:make", dataset="synthetic").model
    fresh.load_state_dict(loaded.state_dict())
    outer = nn.Sequential(loaded)
    outer.load_state_dict(outer.state_dict())
    with torch.no_grad():
        assert torch.equal(fresh(x), original(x)) and torch.equal(outer(x), original(x))


@pytest.mark.parametrize("attr", ATTRS)
@pytest.mark.parametrize("prefix", ["module.", "net.", "_orig_mod."])
def test_wrapper_prefixes_are_still_accepted(tmp_path: Path, attr: str, prefix: str) -> None:
    """DataParallel's ``module.``, torch.compile's ``_orig_mod.`` and the old wrapper's ``net.`` around
    the user's keys (which may themselves start with ``module.`` or ``net.``)."""
    f, _, original = _saved(tmp_path, attr)
    p = tmp_path / "prefixed.pt"
    torch.save({prefix + k: v for k, v in original.state_dict().items()}, p)
    c = load_checkpoint(p, arch=f"{f}:make", dataset="synthetic")
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(c.model(x), original(x))


def test_keys_that_fit_nothing_name_the_users_keys(tmp_path: Path) -> None:
    f, _, original = _saved(tmp_path, "net")
    sd = original.state_dict()
    sd["extra.weight"] = sd.pop("net.1.weight")
    p = tmp_path / "bad.pt"
    torch.save(sd, p)
    with pytest.raises(BenchError, match=r"1 missing keys \(e.g. \['net.1.weight'\]\), 1 unexpected"):
        load_checkpoint(p, arch=f"{f}:make", dataset="synthetic")


def test_user_file_beside_its_helpers_and_with_a_dataclass(tmp_path: Path) -> None:
    """A user's file may import a module beside it and use dataclasses (both need the import to
    register the module and see its folder)."""
    (tmp_path / "user_layers.py").write_text("import torch\nLinear = torch.nn.Linear\n")
    (tmp_path / "dc_model.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass
        import torch
        from user_layers import Linear

        @dataclass
        class Cfg:
            width: int = 784

        class User(torch.nn.Module):
            def __init__(self, num_classes=10):
                super().__init__()
                self.model = Linear(Cfg().width, num_classes)
            def forward(self, x):
                return self.model(x.flatten(1))
        '''))
    torch.manual_seed(0)
    ref = torch.nn.Linear(784, 10)
    torch.save({f"model.{k}": v for k, v in ref.state_dict().items()}, tmp_path / "w.pt")
    c = load_checkpoint(tmp_path / "w.pt", arch=f"{tmp_path / 'dc_model.py'}:User", dataset="synthetic")
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(c.model(x), ref(x.flatten(1)))


# -- through the command line ---------------------------------------------------------------------

SUITE = '''
name = "tiny"
description = "clean and a 2-step PGD"
cascade = false

[[attacks]]
name = "pgd"
label = "pgd"
steps = 2
'''


@pytest.mark.parametrize("attr", ["net", "module", "normalize"])
def test_cli_eval_with_a_user_file_arch(tmp_path: Path, attr: str, capsys: pytest.CaptureFixture[str]) -> None:
    from robustbench_lite.cli import main

    f, sd, original = _saved(tmp_path, attr)
    (tmp_path / "tiny.toml").write_text(SUITE)
    out = tmp_path / "ev"
    code = main(["eval", "--model", str(sd), "--arch", f"{f}:make", "--dataset", "synthetic", "--suite",
                 str(tmp_path / "tiny.toml"), "--n-examples", "20", "--out", str(out), "--no-db", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "Traceback" not in err and "missing" not in err
    data = get_dataset("synthetic").load("test", None)
    x, y = data.batch(class_balanced_indices(data.targets, 20))
    with torch.no_grad():
        expected = 100 * (original(x).argmax(1) == y).float().mean().item()
    assert expected == 100.0  # the baked model classifies the synthetic data; a random one would not
    rows = {r["attack"]: r for r in csv.DictReader(open(out / "summary.csv"))}
    assert float(rows["clean"]["accuracy"]) == pytest.approx(expected)
    assert json.loads((out / "result.json").read_text())["n"] == 20


def test_cli_eval_user_model_with_mismatched_weights_is_one_sentence(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from robustbench_lite.cli import main

    f, _, _ = _saved(tmp_path, "backbone")
    torch.save(nn.Linear(3, 3).state_dict(), tmp_path / "other.pt")
    code = main(["eval", "--model", str(tmp_path / "other.pt"), "--arch", f"{f}:make", "--dataset", "synthetic",
                 "--no-db", "--out", str(tmp_path / "ev")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith("bench: error:") and "do not fit arch" in err
