"""Scale-out: one process against N processes under torchrun, side by side in one run.

For each suite (``quick``, ``full``) on the same checkpoint, class-balanced MNIST-5k points, seed
and batch size, it runs ``bench eval`` once in one process and once under ``torchrun
--nproc_per_node N``, each process with ``--threads`` torch threads (default 1: on a 2-core CPU,
1 vs 2 processes is the fair comparison), and prints:

- wall seconds of each and the speed-up (1-process time / N-process time);
- the balance: each rank's busy seconds (time inside attacks) and blocks, and max/mean busy;
- whether the per-example results are identical (they must be).

On a GPU machine (``--device cuda``) N defaults to the number of GPUs: 1 GPU vs all of them.

Usage::

    python benchmarks/bench_scale.py                      # Madry small_cnn (trained if missing), 128 points
    python benchmarks/bench_scale.py --model ckpt.pt --n 256 --nproc 2
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(cmd: list[str], threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "BENCH_PROGRESS": "0"}
    env.pop("WORLD_SIZE", None)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{res.stderr[-3000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="checkpoint (default: Madry small_cnn in runs/bench/madry, trained if missing)")
    ap.add_argument("--n", type=int, default=128, help="class-balanced test examples")
    ap.add_argument("--batch-size", type=int, default=16, help="block size (more blocks than ranks balance better)")
    ap.add_argument("--suites", default="quick,full")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--nproc", type=int, default=None, help="processes (default: 2 on a CPU, every GPU on CUDA)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_attacks import bench_model

    model = str(bench_model(args.model))
    nproc = args.nproc
    if nproc is None:
        import torch

        nproc = torch.cuda.device_count() if args.device.startswith("cuda") else 2
    print(f"model {model}, {args.n} points, batch {args.batch_size}, {args.threads} thread(s) per process, device {args.device}")
    print(f"{'suite':8} {'1 proc s':>9} {f'{nproc} procs s':>10} {'speed-up':>9} {'busy per rank (s / blocks)':>34} "
          f"{'max/mean':>8} {'identical':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for suite in args.suites.split(","):
            common = ["-m", "robustbench_lite", "eval", "--model", model, "--suite", suite, "--n-examples", str(args.n),
                      "--batch-size", str(args.batch_size), "--device", args.device, "--no-db", "--no-progress"]
            one, many = Path(tmp) / f"{suite}-1", Path(tmp) / f"{suite}-n"
            t1 = run([sys.executable, *common, "--out", str(one)], args.threads)
            tn = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
                      *common, "--out", str(many)], args.threads)
            ranks = json.loads((many / "result.json").read_text())["distributed"]["ranks"]
            busy = [r["busy_s"] for r in ranks]
            balance = max(busy) / (sum(busy) / len(busy)) if sum(busy) else float("nan")
            same = (one / "per_example.csv").read_text() == (many / "per_example.csv").read_text()
            desc = ", ".join(f"{r['busy_s']:.1f}/{r['blocks']}" for r in ranks)
            print(f"{suite:8} {t1:9.1f} {tn:10.1f} {t1 / tn:8.2f}x {desc:>34} {balance:8.2f} {str(same):>9}")


if __name__ == "__main__":
    main()
