"""Attack batch size on the CPU: why ``bench eval`` defaults to 128 there (256 on a GPU).

``bench eval`` hands every attack blocks of ``--batch-size`` examples. This script runs, in one
process on the same checkpoint and the same class-balanced MNIST-5k test points, a suite of the
attacks whose cost does not depend on when points break (PGD-100 on a robust model, APGD-CE as
standard AutoAttack runs it, DDN, C&W-L2) through ``evaluate`` once per batch size, and prints
seconds per attack and in total, the ratio to batch 256 (the former default), and the robust
accuracy of each run (different batch sizes draw different random starts, so it may move by a
point or two, never systematically).

It also prints the input-gradient throughput of a freshly initialised ResNet-18 (CIFAR-shaped)
per batch size, to show that the smaller CPU batch does not slow larger networks.

Usage::

    python benchmarks/bench_batch.py [--model runs/demo/madry/checkpoint.pt] [--n 384]

Without ``--model`` it trains Madry for 3 epochs into runs/bench/madry (minutes on a CPU).
"""
from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

warnings.filterwarnings("ignore")

SUITE = """
name = "bench_batch"
cascade = false
[[attacks]]
name = "pgd"
label = "pgd100"
steps = 100
[[attacks]]
name = "autoattack"
label = "apgd-ce"
attacks = ["apgd-ce"]
[[attacks]]
name = "ddn"
[[attacks]]
name = "cw_l2"
"""


def resnet_grad_rate(bs: int) -> float:
    from robustbench_lite.models import create_model
    from robustbench_lite.utils import set_channels_last

    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=10, in_channels=3).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    set_channels_last(model, True)
    x, y = torch.rand(bs, 3, 32, 32), torch.randint(0, 10, (bs,))

    def step() -> None:
        xr = x.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(xr), y), xr)

    step()
    reps, t0 = 0, time.perf_counter()
    while reps < 2 or time.perf_counter() - t0 < 2.0:
        step()
        reps += 1
    return reps * bs / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="checkpoint (default: train Madry 3 epochs into runs/bench/madry)")
    ap.add_argument("--n", type=int, default=384, help="class-balanced MNIST-5k test examples")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from bench_attacks import bench_model

    from robustbench_lite.evaluations.evaluate import EvalOptions, evaluate

    path = bench_model(args.model)
    runs: dict[int, dict[str, float]] = {}
    robust: dict[int, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        suite = Path(tmp) / "bench_batch.toml"
        suite.write_text(SUITE)
        for bs in args.batch_sizes:
            t = time.perf_counter()
            rec = evaluate(path, Path(tmp) / f"bs{bs}", EvalOptions(suite=suite, n_examples=args.n, batch_size=bs, device="cpu"))
            rows = [r for r in rec["summary"] if r["attack"] != "clean"]
            runs[bs] = {r["label"]: float(r["seconds"]) for r in rows}
            runs[bs]["total"] = time.perf_counter() - t
            robust[bs] = " ".join(f"{r['label']} {float(r['accuracy']):.1f}" for r in rows if r["norm"] == "linf")

    ref = runs.get(256)
    print(f"model {path}; {args.n} MNIST-5k test points, channels_last; seconds per attack (x: speed-up over bs 256)")
    print(f"{'attack':<10}" + "".join(f"{f'bs {b}':>16}" for b in args.batch_sizes))
    for label in runs[args.batch_sizes[0]]:
        cells = ""
        for b in args.batch_sizes:
            s = runs[b][label]
            cells += f"{s:>10.1f}" + (f"{ref[label] / s:>5.2f}x" if ref else "      ")
        print(f"{label:<10}{cells}")
    for b in args.batch_sizes:
        print(f"bs {b}: Linf accuracy % {robust[b]}")
    rates = {b: resnet_grad_rate(b) for b in (32, 64, 128, 256)}
    print("resnet18 input-gradient examples/s: " + ", ".join(f"bs {b} {r:.0f}" for b, r in rates.items()))


if __name__ == "__main__":
    main()
