import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robustbench_lite.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from robustbench_lite.errors import BenchError
from robustbench_lite.models import create_model
from robustbench_lite.threat import ThreatModel


def _ckpt(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    m = create_model("small_cnn", num_classes=10, in_channels=1)
    torch.nn.init.normal_(m.fc3.weight)
    d = make_checkpoint(arch="small_cnn", arch_kwargs={}, dataset="mnist5k", num_classes=10, input_shape=(1, 28, 28),
                        threat=ThreatModel("linf", 0.3), defense="madry", defense_config={"lr": 0.05},
                        history=[{"epoch": 1, "loss": 1.5}], members={"model": m})
    p = tmp_path / "c.pt"
    save_checkpoint(p, d)
    return p, m


def test_round_trip(tmp_path):
    p, m = _ckpt(tmp_path)
    c = load_checkpoint(p)
    assert c.arch == "small_cnn" and c.dataset == "mnist5k" and c.num_classes == 10
    assert c.threat == ThreatModel("linf", 0.3) and c.defense == "madry"
    assert c.history == [{"epoch": 1, "loss": 1.5}] and c.defense_config == {"lr": 0.05}
    assert c.raw["format_version"] == 1 and "torch" in c.raw["versions"]
    x = torch.rand(3, 1, 28, 28)
    m.eval()
    with torch.no_grad():
        assert torch.equal(c.model(x), m(x))


def test_plain_state_dict_with_dataparallel_prefix(tmp_path):
    m = create_model("small_cnn", num_classes=10, in_channels=1)
    torch.nn.init.normal_(m.fc3.weight)
    p = tmp_path / "sd.pt"
    torch.save({f"module.{k}": v for k, v in m.state_dict().items()}, p)
    with pytest.raises(BenchError, match="--arch and --dataset"):
        load_checkpoint(p)
    c = load_checkpoint(p, arch="small_cnn", dataset="mnist5k")
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(c.model(x), m.eval()(x))
    with pytest.raises(BenchError, match="do not fit arch 'resnet18'"):
        load_checkpoint(p, arch="resnet18", dataset="mnist5k")


def test_wrong_class_count(tmp_path):
    m = create_model("small_cnn", num_classes=100, in_channels=1)
    p = tmp_path / "sd100.pt"
    torch.save(m.state_dict(), p)
    with pytest.raises(BenchError, match="shape"):
        load_checkpoint(p, arch="small_cnn", dataset="mnist5k")


def test_missing_and_truncated(tmp_path):
    with pytest.raises(BenchError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    p, _ = _ckpt(tmp_path)
    data = p.read_bytes()
    t = tmp_path / "trunc.pt"
    t.write_bytes(data[: len(data) // 2])
    with pytest.raises(BenchError, match="truncated"):
        load_checkpoint(t)
    junk = tmp_path / "junk.pt"
    junk.write_text("hello")
    with pytest.raises(BenchError):
        load_checkpoint(junk)


def test_code_executing_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    # build the malicious file in a subprocess so its class is not importable here
    code = (
        "import os, torch\n"
        "class Evil:\n"
        f"    def __reduce__(self): return (os.system, ('touch {marker}',))\n"
        f"torch.save({{'model': Evil()}}, {str(evil)!r})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert evil.exists() and not marker.exists()
    with pytest.raises(BenchError, match="arbitrary unpickling"):
        load_checkpoint(evil, arch="small_cnn", dataset="mnist5k")
    assert not marker.exists()


def test_a_file_that_is_no_checkpoint_says_so(tmp_path):
    """A text file fails torch's weights-only unpickler too; it must not be reported as a pickled object."""
    text = tmp_path / "notes.pt"
    text.write_text("# not a checkpoint\n")
    with pytest.raises(BenchError, match="not a PyTorch checkpoint"):
        load_checkpoint(text, arch="small_cnn", dataset="mnist5k")


def test_stored_arch_is_resolved_only_through_registry(tmp_path):
    p, _ = _ckpt(tmp_path)
    d = torch.load(p, weights_only=True)
    d["arch"] = "os:system"
    save_checkpoint(p, d)
    with pytest.raises(BenchError, match="unknown model 'os:system'"):
        load_checkpoint(p)


def test_member_selection(tmp_path):
    g = create_model("small_cnn", num_classes=10, in_channels=1)
    f = create_model("small_cnn", num_classes=10, in_channels=1)
    torch.nn.init.normal_(g.fc3.weight)
    torch.nn.init.normal_(f.fc3.weight)
    d = make_checkpoint(arch="small_cnn", arch_kwargs={}, dataset="mnist5k", num_classes=10, input_shape=(1, 28, 28),
                        threat=None, defense="act", defense_config={}, history=[], members={"model": g, "natural": f})
    p = tmp_path / "act.pt"
    save_checkpoint(p, d)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(load_checkpoint(p).model(x), g.eval()(x))
        assert torch.equal(load_checkpoint(p, member="natural").model(x), f.eval()(x))
    with pytest.raises(BenchError, match="no member"):
        load_checkpoint(p, member="teacher")


def test_arch_from_a_python_file_on_the_command_line(tmp_path, capsys):
    from robustbench_lite.cli import main

    (tmp_path / "mynet.py").write_text(
        "import torch\n"
        "def build(num_classes=10):\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, num_classes))\n")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    p = tmp_path / "ext.pt"
    torch.save(net.state_dict(), p)
    c = load_checkpoint(p, arch=f"{tmp_path / 'mynet.py'}:build", dataset="mnist5k")
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(c.model(x), net(x))
    with pytest.raises(BenchError, match="exposes no features"):
        c.model.features(x)
    code = main(["eval", "--model", str(p), "--arch", f"{tmp_path / 'mynet.py'}:nosuch", "--dataset", "mnist5k"])
    assert code == 2 and "'nosuch' in" in capsys.readouterr().err


# -- malformed checkpoints: one sentence each, never a traceback ------------------------------------

def _drop(key):
    return lambda d: d.pop(key)


def _set(key, value):
    return lambda d: d.__setitem__(key, value)


MALFORMED = {
    "no members": (_drop("members"), "no 'members'"),
    "members a list": (_set("members", [1, 2]), "'members' is a list"),
    "members empty": (_set("members", {}), "'members' is empty"),
    "member a string": (_set("members", {"model": "weights"}), "member 'model' is not a state_dict"),
    "member of numbers": (_set("members", {"model": {"fc.weight": 1.0}}), "member 'model' is not a state_dict"),
    "default member missing": (_set("default_member", "teacher"), "default member 'teacher' is missing"),
    "default member ill-typed": (_set("default_member", 3), "default_member is 3"),
    "arch_kwargs a string": (_set("arch_kwargs", "drop=0.5"), "'arch_kwargs' is 'drop=0.5'"),
    "arch_kwargs a list": (_set("arch_kwargs", [0.5]), "'arch_kwargs' is [0.5]"),
    "arch_kwargs unknown": (_set("arch_kwargs", {"depth": 3}), "rejects its arch_kwargs {'depth': 3}"),
    "arch_kwargs bad value": (_set("arch_kwargs", {"drop": "half"}), "rejects its arch_kwargs"),
    "num_classes a string": (_set("num_classes", "10"), "'num_classes' is '10'"),
    "num_classes a float": (_set("num_classes", 10.0), "'num_classes' is 10.0"),
    "num_classes zero": (_set("num_classes", 0), "'num_classes' is 0"),
    "num_classes missing": (_drop("num_classes"), "no 'num_classes'"),
    "input_shape missing": (_drop("input_shape"), "no 'input_shape'"),
    "input_shape a string": (_set("input_shape", "1x28x28"), "'input_shape' is '1x28x28'"),
    "input_shape empty": (_set("input_shape", []), "'input_shape' is []"),
    "input_shape of strings": (_set("input_shape", [1, "28", 28]), "'input_shape'"),
    "arch unknown": (_set("arch", "nosuch"), "unknown model 'nosuch'"),
    "arch a number": (_set("arch", 18), "'arch' is 18"),
    "arch missing": (_drop("arch"), "no 'arch'"),
    "dataset missing": (_drop("dataset"), "no 'dataset'"),
    "dataset a list": (_set("dataset", ["mnist5k"]), "'dataset' is ['mnist5k']"),
    "format_version a string": (_set("format_version", "one"), "format_version is 'one'"),
    "threat a string": (_set("threat", "linf:0.3"), "'threat' is 'linf:0.3'"),
    "threat without eps": (_set("threat", {"norm": "linf"}), "its threat"),
    "threat bad norm": (_set("threat", {"norm": "l7", "eps": 0.3}), "its threat"),
    "history a string": (_set("history", "none"), "'history' is str"),
    "defense_config a list": (_set("defense_config", []), "'defense_config' is list"),
}


def _malformed(tmp_path: Path, case: str) -> Path:
    p, _ = _ckpt(tmp_path)
    d = torch.load(p, weights_only=True)
    MALFORMED[case][0](d)
    bad = tmp_path / "bad.pt"
    torch.save(d, bad)
    return bad


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_checkpoint_is_one_clear_sentence(tmp_path, case):
    bad = _malformed(tmp_path, case)
    with pytest.raises(BenchError) as e:
        load_checkpoint(bad)
    assert MALFORMED[case][1] in str(e.value)
    assert str(e.value).count("\n") == 0


@pytest.mark.parametrize("case", ["no members", "default member missing", "arch_kwargs a string", "arch_kwargs unknown",
                                  "num_classes a string", "input_shape a string", "arch unknown", "threat a string"])
def test_malformed_checkpoint_on_the_command_line(tmp_path, case, capsys):
    from robustbench_lite.cli import main

    bad = _malformed(tmp_path, case)
    code = main(["eval", "--model", str(bad), "--no-db", "--out", str(tmp_path / "ev")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("bench: error:") and "Traceback" not in err
    assert len([l for l in err.splitlines() if l.startswith("bench: error:")]) == 1
    assert MALFORMED[case][1] in err


def test_a_named_member_still_beats_a_missing_default(tmp_path):
    """``--member`` picks a network even when the stored default is gone."""
    p, m = _ckpt(tmp_path)
    d = torch.load(p, weights_only=True)
    d["default_member"] = "teacher"
    save_checkpoint(p, d)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(load_checkpoint(p, member="model").model(x), m.eval()(x))


def test_a_user_model_that_cannot_take_the_datasets_inputs_is_one_sentence(tmp_path):
    (tmp_path / "wide.py").write_text(
        "import torch\n"
        "def make(num_classes=10):\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, num_classes))\n")
    torch.save(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10)).state_dict(), tmp_path / "w.pt")
    with pytest.raises(BenchError, match=r"cannot run on mnist5k inputs of shape \(1, 28, 28\)"):
        load_checkpoint(tmp_path / "w.pt", arch=f"{tmp_path / 'wide.py'}:make", dataset="mnist5k")
