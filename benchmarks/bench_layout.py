"""Memory layout benchmark: NCHW (contiguous) against channels_last (NHWC) conv weights.

``bench eval`` and ``bench train`` put conv nets channels_last by default (``--no-channels-last``
turns it off). This script prints, in one run on the same random inputs, throughput in examples/s
for the three passes attacks and training are made of, in both layouts, and their ratio:

- ``fwd``: forward pass under ``no_grad`` (Square's queries),
- ``grad``: forward + ``autograd.grad`` w.r.t. the input, frozen weights (one PGD/APGD/FAB step),
- ``train``: forward + ``backward`` into the weights (one SGD step, without the update).

It also prints the largest logit difference between the layouts (float rounding only), and the
same passes channels_last under bf16 autocast (``bench train --amp``; training only: evaluation
stays fp32) when the CPU runs bf16 natively.

Usage::

    python benchmarks/bench_layout.py [--threads 2] [--archs small_cnn resnet18]
"""
from __future__ import annotations

import argparse
import time
from typing import Callable

import torch
import torch.nn.functional as F


def throughput(fn: Callable[[], object], n: int, min_seconds: float = 1.0) -> float:
    fn()  # warm-up (allocations, oneDNN primitive caches)
    reps, t0 = 0, time.perf_counter()
    while True:
        fn()
        reps += 1
        dt = time.perf_counter() - t0
        if dt >= min_seconds and reps >= 2:
            return reps * n / dt


def passes(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, bf16: bool = False) -> dict[str, float]:
    def fwd() -> None:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model(x)

    def grad() -> None:
        for p in model.parameters():
            p.requires_grad_(False)
        xr = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            torch.autograd.grad(F.cross_entropy(model(xr), y), xr)

    def train() -> None:
        for p in model.parameters():
            p.requires_grad_(True)
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            F.cross_entropy(model(x), y).backward()

    out = {"fwd": throughput(fwd, len(x)), "grad": throughput(grad, len(x))}
    model.train()
    out["train"] = throughput(train, len(x))
    model.eval()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--archs", nargs="+", default=["small_cnn", "resnet18"])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from robustbench_lite.defenses.trainer import bf16_native
    from robustbench_lite.models import create_model
    from robustbench_lite.utils import set_channels_last

    bf16 = bf16_native(torch.device("cpu"))

    shapes = {"small_cnn": (1, 28, 28)}
    print(f"{'arch':<10}{'batch':>6}{'pass':>7}{'NCHW ex/s':>11}{'NHWC ex/s':>11}{'ratio':>7}"
          + (f"{'NHWC bf16':>11}{'ratio':>7}" if bf16 else "  (no native bf16 here)"))
    for arch in args.archs:
        shape = shapes.get(arch, (3, 32, 32))
        torch.manual_seed(0)
        model = create_model(arch, num_classes=10, in_channels=shape[0]).eval()
        for bs in args.batch_sizes if arch == "small_cnn" else [min(args.batch_sizes)]:
            x, y = torch.rand(bs, *shape), torch.randint(0, 10, (bs,))
            set_channels_last(model, False)
            with torch.no_grad():  # compare before any training pass moves BatchNorm's running statistics
                ref = model(x)
                set_channels_last(model, True)
                diff = (model(x) - ref).abs().max().item()
            set_channels_last(model, False)
            base = passes(model, x, y)
            set_channels_last(model, True)
            fast = passes(model, x, y)
            half = passes(model, x, y, bf16=True) if bf16 else {}
            for k in base:
                extra = f"{half[k]:>11.0f}{half[k] / base[k]:>6.2f}x" if half else ""
                print(f"{arch:<10}{bs:>6}{k:>7}{base[k]:>11.0f}{fast[k]:>11.0f}{fast[k] / base[k]:>6.2f}x{extra}")
            print(f"{arch:<10}{bs:>6}  max |logit difference| between layouts: {diff:.2e}")
            set_channels_last(model, False)


if __name__ == "__main__":
    main()
