"""``--data-file``: a user's own arrays in place of a dataset's test split.

The same arrays give the same per-example results as the registered split (so --n-examples,
sharding and the worst-case rule work unchanged); every layout the loader accepts gives the same
tensors; the file's hash is in result.json and the resume fingerprint; every bad array is one
sentence with exit code 2 from the CLI.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from robustbench_lite.checkpoint import make_checkpoint, save_checkpoint
from robustbench_lite.cli import main
from robustbench_lite.data import get_dataset, load_data_file, load_test_data
from robustbench_lite.errors import BenchError
from robustbench_lite.models import create_model

SUITE = """name = "tiny"
cascade = false

[[attacks]]
name = "pgd"
label = "pgd"
steps = 3
"""


def _split(name: str = "synthetic") -> tuple[np.ndarray, np.ndarray]:
    data = get_dataset(name).load("test")
    x, y = data.batch(range(len(data)))
    return x.numpy(), y.numpy()


def _npz(path: Path, **arrays: object) -> Path:
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


@pytest.fixture(scope="module")
def random_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained small_cnn for the synthetic dataset: enough for the input checks (no training)."""
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1)
    path = tmp_path_factory.mktemp("df") / "m.pt"
    save_checkpoint(path, make_checkpoint(arch="small_cnn", arch_kwargs={}, dataset="synthetic", num_classes=10,
                                          input_shape=(1, 28, 28), threat=None, defense="natural", defense_config={},
                                          history=[], members={"model": model}))
    return path


def test_layouts_give_the_same_tensors(tmp_path: Path) -> None:
    spec = get_dataset("synthetic_rgb")
    x, y = _split("synthetic_rgb")
    u8 = (x * 255).round().astype(np.uint8)
    ref = load_data_file(_npz(tmp_path / "a.npz", x=u8.transpose(0, 2, 3, 1), y=y), spec)  # uint8 NHWC
    assert ref.x.shape == (len(y), 3, 32, 32) and ref.x.dtype == torch.uint8
    for i, x_alt in enumerate([u8, u8.astype(np.float64) / 255, (u8.astype(np.float32) / 255).transpose(0, 2, 3, 1)]):
        got = load_data_file(_npz(tmp_path / f"b{i}.npz", x=x_alt, y=y.astype(np.int32)), spec)
        xa, ya = got.batch(range(len(y)))
        xr, yr = ref.batch(range(len(y)))
        assert torch.allclose(xa, xr, atol=1e-6) and torch.equal(ya, yr)
    gray = load_data_file(_npz(tmp_path / "g.npz", x=_split()[0][:, 0], y=_split()[1]), get_dataset("synthetic"))
    assert gray.x.shape == (64, 1, 28, 28)  # N x H x W is one channel
    assert load_test_data(get_dataset("synthetic"), None, None).x.shape == (64, 1, 28, 28)


@pytest.mark.slow
def test_same_arrays_same_results(tmp_path: Path, synthetic_ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "s.toml").write_text(SUITE)
    x, y = _split()
    data = _npz(tmp_path / "test.npz", x=x, y=y)
    common = ["eval", "--model", str(synthetic_ckpt), "--suite", str(tmp_path / "s.toml"), "--n-examples", "30",
              "--batch-size", "16", "--no-db", "--no-progress", "--device", "cpu"]
    assert main([*common, "--out", str(tmp_path / "split")]) == 0
    assert main([*common, "--data-file", str(data), "--out", str(tmp_path / "file")]) == 0
    for name in ("per_example.csv",):
        assert (tmp_path / "split" / name).read_text() == (tmp_path / "file" / name).read_text()
    a, b = (json.loads((tmp_path / d / "result.json").read_text()) for d in ("split", "file"))
    assert a["indices"] == b["indices"] and a["labels"] == b["labels"]
    assert [r["accuracy"] for r in a["summary"]] == [r["accuracy"] for r in b["summary"]]
    assert "data_file" not in a and b["data_file"]["sha256"] and b["data_file"]["path"] == str(data)
    part = json.loads(next((tmp_path / "file" / "parts").glob("*pgd*.json")).read_text())
    assert part["fingerprint"]["data_file"] == b["data_file"]["sha256"]
    # sharded: the shards of the data file merge into the unsharded result
    for i in range(2):
        assert main([*common, "--data-file", str(data), "--shard", f"{i}/2", "--out", str(tmp_path / f"sh{i}")]) == 0
    assert main(["merge", str(tmp_path / "sh0"), str(tmp_path / "sh1"), "--out", str(tmp_path / "merged")]) == 0
    assert (tmp_path / "merged" / "per_example.csv").read_text() == (tmp_path / "file" / "per_example.csv").read_text()
    assert json.loads((tmp_path / "merged" / "result.json").read_text())["data_file"] == b["data_file"]
    # another file is another run (the fingerprint holds the file's hash): --resume into the first
    # file's folder is refused, naming the file, and leaves it as it was; a new --out evaluates it
    flipped = _npz(tmp_path / "other.npz", x=x[::-1].copy(), y=y[::-1].copy())
    capsys.readouterr()
    kept = (tmp_path / "file" / "result.json").read_text()
    assert main([*common, "--data-file", str(flipped), "--resume", "--out", str(tmp_path / "file")]) == 2
    assert "another data_file" in capsys.readouterr().err
    assert (tmp_path / "file" / "result.json").read_text() == kept
    assert main([*common, "--data-file", str(flipped), "--out", str(tmp_path / "file2")]) == 0
    c = json.loads((tmp_path / "file2" / "result.json").read_text())
    assert c["data_file"]["sha256"] != b["data_file"]["sha256"]
    assert c["labels"] == [int(v) for v in y[::-1][c["indices"]]]


def _bad_cases(tmp: Path) -> dict[str, tuple[Path, str]]:
    x, y = _split()
    u8 = (x * 255).round().astype(np.uint8)
    text = tmp / "notes.npz"
    text.write_text("not an archive")
    npy = tmp / "arr.npz"
    with open(npy, "wb") as f:
        np.save(f, x)
    return {
        "missing file": (tmp / "nowhere.npz", "does not exist"),
        "not an npz": (text, "not an .npz archive"),
        "a .npy": (npy, "not an .npz archive"),
        "no y": (_npz(tmp / "noy.npz", x=x), "has no array 'y' (it holds x)"),
        "no x or y": (_npz(tmp / "none.npz", a=x), "has no array 'x' or 'y'"),
        "wrong channels": (_npz(tmp / "ch.npz", x=np.repeat(x, 3, axis=1), y=y), "x has 3 channel(s) of 28x28 (NCHW); synthetic has 1"),
        "wrong size": (_npz(tmp / "sz.npz", x=x[:, :, :16, :16], y=y), "synthetic needs images of 1x28x28"),
        "not images": (_npz(tmp / "flat.npz", x=x.reshape(len(x), -1), y=y), "not a batch of images"),
        "int64 pixels": (_npz(tmp / "i64.npz", x=u8.astype(np.int64), y=y), "x is int64; give uint8"),
        "outside [0,1]": (_npz(tmp / "big.npz", x=x * 255, y=y), "outside [0,1]"),
        "NaN": (_npz(tmp / "nan.npz", x=np.where(x > 0.9, np.nan, x), y=y), "NaN or infinite"),
        "labels out of range": (_npz(tmp / "lab.npz", x=x, y=y + 5), "labels from 5 to 14; synthetic has classes 0..9"),
        "negative labels": (_npz(tmp / "neg.npz", x=x, y=y - 1), "labels from -1 to 8"),
        "non-integer labels": (_npz(tmp / "frac.npz", x=x, y=y + 0.5), "non-integer labels"),
        "string labels": (_npz(tmp / "str.npz", x=x, y=y.astype(str)), "give integer class indices"),
        "2-d labels": (_npz(tmp / "y2.npz", x=x, y=y[:, None]), "one integer label per image"),
        "lengths differ": (_npz(tmp / "len.npz", x=x, y=y[:10]), "64 images but y 10 labels"),
        "empty": (_npz(tmp / "empty.npz", x=x[:0], y=y[:0]), "are empty"),
        "object arrays": (_npz(tmp / "obj.npz", x=np.array([x[0], "a"], dtype=object), y=y[:2]), "not readable numeric arrays"),
    }


def test_bad_arrays_are_one_sentence_via_the_cli(tmp_path: Path, random_ckpt: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    for i, (case, (path, needle)) in enumerate(_bad_cases(tmp_path).items()):
        out = tmp_path / f"ev{i}"
        code = main(["eval", "--model", str(random_ckpt), "--data-file", str(path), "--out", str(out), "--no-db",
                     "--no-progress", "--device", "cpu"])
        err = capsys.readouterr().err
        lines = [ln for ln in err.strip().splitlines() if ln.startswith("bench: error:")]
        assert code == 2 and "Traceback" not in err and len(lines) == 1, (case, err)
        assert needle in lines[0] and "--data-file" in lines[0], (case, lines[0])
        assert not (out / "result.json").exists()


def test_loader_accepts_float_integral_labels(tmp_path: Path) -> None:
    x, y = _split()
    got = load_data_file(_npz(tmp_path / "f.npz", x=x, y=y.astype(np.float32)), get_dataset("synthetic"))
    assert got.y.dtype == torch.int64 and torch.equal(got.y, torch.as_tensor(y))
    with pytest.raises(BenchError, match="synthetic_rgb needs images of 3x32x32"):
        load_data_file(_npz(tmp_path / "rgb.npz", x=x, y=y), get_dataset("synthetic_rgb"))
