"""The cost of position-keyed random draws (issue #20) against the former per-block generators.

Since issue #20 every random draw of a row-keyed attack comes from a generator of its own row,
seeded by (seed, stream, example position) (:class:`evaluations.draws.RowGenerator`), where it used
to come from one ``torch.Generator`` per block of ``--batch-size`` positions. This script runs, in
one process, on the same model and points, side by side:

1. the draws alone: one random start of a block (uniform Linf, Gaussian L2, APGD's start), one
   generator for the block vs one per row;
2. whole attacks, the way the front door runs them (``Attack.run`` on each block): PGD-20 with a
   uniform start and 1 or 5 restarts, APGD-CE 100 (AutoAttack's first stage) and the L2 PGD, each
   with a block generator (the former scheme) and with per-row generators, timed in alternation
   (``--repeat`` rounds, the median kept) so drift of a shared machine hits both alike.

It prints the seconds of each and the overhead in percent of the attack's time (aim: under 3%).
The model: a small_cnn (MNIST-shaped, 1x28x28) or, with ``--cifar``, a ResNet-18 on 3x32x32
inputs (random weights: the cost of a pass does not depend on them; early exit is off by using a
model whose points are not broken quickly: eps small).

Usage::

    python benchmarks/bench_draws.py [--n 256] [--batch-size 128] [--repeat 3] [--cifar] [--attacks 4] [--device cpu]

Measured (2-core AMD EPYC shared with other jobs, load ~7 per core, small_cnn, 128 points, batch 128):
a 128-row random start costs 0.21 ms (uniform) / 0.25 ms (normal) with one generator and 0.87 / 0.89 ms
with per-row generators, seeding included; PGD-20 took 87.0 s vs 74.5 s (the difference is the
machine's noise, not the draws): the draw-cost estimate is under 0.01% of the attack's time. CIFAR-shaped
(3x32x32, --cifar): 0.78 / 0.97 ms with one generator, 1.51 / 1.62 ms per row: +0.7 ms per random start of
128 rows, against ~20 ResNet-18 gradient passes per start (hundreds of ms on a GPU, seconds on a CPU).
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from robustbench_lite.evaluations.attacks import create_attack
from robustbench_lite.evaluations.draws import RowGenerator, rand, randn
from robustbench_lite.models import create_model
from robustbench_lite.utils import frozen, make_generator


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cifar", action="store_true", help="ResNet-18 on 3x32x32 instead of small_cnn on 1x28x28")
    ap.add_argument("--attacks", type=int, default=4, help="run the first k of the 4 attacks")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    dev = torch.device(args.device)
    torch.manual_seed(0)
    if args.cifar:
        model, shape = create_model("resnet18", num_classes=10), (3, 32, 32)
    else:
        model, shape = create_model("small_cnn", num_classes=10, in_channels=1), (1, 28, 28)
    model = model.to(dev).eval()
    x = torch.rand(args.n, *shape, generator=torch.Generator().manual_seed(1)).to(dev)
    with torch.no_grad():
        y = model(x).argmax(1)  # every point starts correct
    bs = args.batch_size
    blocks = [(i, min(i + bs, args.n)) for i in range(0, args.n, bs)]
    print(f"device {dev}, {args.n} points of {shape}, batch {bs}, {'resnet18' if args.cifar else 'small_cnn'}")

    # 1. the draws alone
    block_shape = (bs, *shape)
    extra = 0.0
    for name, draw in (("uniform", rand), ("normal", randn)):
        t_block = min(_timed(lambda: draw(block_shape, make_generator(0), dev), dev) for _ in range(5))
        t_rows = min(_timed(lambda: draw(block_shape, RowGenerator.keyed(0, "s", range(bs)), dev), dev) for _ in range(5))
        extra = max(extra, t_rows - t_block)
        print(f"draw {name:8s} {bs} rows: block generator {1e3 * t_block:7.2f} ms, per-row generators "
              f"{1e3 * t_rows:7.2f} ms (seeding included)")

    # 2. whole attacks, as the front door runs them, block generator vs per-row generators
    attacks = [("pgd20 linf", create_attack("pgd", steps=20), 2 / 255, 1),
               ("pgd20x5 linf", create_attack("pgd", steps=20, restarts=5), 2 / 255, 5),
               ("apgd_ce100 linf", create_attack("apgd_ce", steps=100), 2 / 255, 1),
               ("pgd20 l2", create_attack("pgd", norm="l2", steps=20), 0.1, 1)][:args.attacks]
    # the measured difference is noisy on a shared machine; the draw-cost estimate is the extra cost
    # of one per-row start (above) times the starts the attack draws, over the attack's time
    print(f"{'attack':16s} {'block gen s':>12s} {'row gens s':>11s} {'overhead':>9s} {'draw-cost estimate':>19s}")
    with frozen(model):
        for label, attack, eps, starts in attacks:
            def run(per_row: bool) -> None:
                for lo, hi in blocks:
                    gen = (RowGenerator.keyed(0, label, range(lo, hi)) if per_row
                           else make_generator(lo))
                    attack.run(model, x[lo:hi], y[lo:hi], eps=eps, generator=gen)

            run(True)  # warm-up
            old, new = [], []
            for _ in range(args.repeat):
                old.append(_timed(lambda: run(False), dev))
                new.append(_timed(lambda: run(True), dev))
            t_old, t_new = statistics.median(old), statistics.median(new)
            estimate = 100 * extra * starts * len(blocks) / t_old
            print(f"{label:16s} {t_old:12.3f} {t_new:11.3f} {100 * (t_new - t_old) / t_old:8.2f}% {estimate:18.3f}%")


if __name__ == "__main__":
    main()
