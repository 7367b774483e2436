"""The cost of verified breaks: the attack front door's check and ``bench verify``, against the
evaluation's own time, side by side in one process.

On the same checkpoint and the same class-balanced MNIST-5k test points it runs one suite through
``evaluate`` twice, alternating, ``--repeat`` times each:

- ``verified``: as shipped (every claimed break checked on a fresh forward pass, adversarials kept);
- ``unchecked``: the front door's check replaced by the identity and ``--no-adversarials``
  (the cost of today's code before this change);

and then ``bench verify`` on the verified run. It prints the median wall and CPU seconds of each, the overhead
of the verified run over the unchecked one in percent (aim: under 3%), the time the check itself
took (measured inside the front door), the size of adversarials.npz, and ``bench verify``'s time
as a share of the evaluation's.

Usage::

    python benchmarks/bench_verify.py [--model runs/demo/madry/checkpoint.pt] [--n 256] [--repeat 3]

Without ``--model`` it trains a natural small_cnn on MNIST-5k for 2 epochs into runs/bench/natural.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")

SUITE = """
name = "bench_verify"
cascade = false
[[attacks]]
name = "pgd"
label = "pgd20"
steps = 20
[[attacks]]
name = "apgd_ce"
[[attacks]]
name = "fgsm"
[[attacks]]
name = "deepfool_linf"
"""


def _model(path: str | None) -> Path:
    if path:
        return Path(path)
    from robustbench_lite.defenses import build_config, train

    out = Path("runs/bench/natural")
    ckpt = out / "checkpoint.pt"
    if not ckpt.is_file():
        ckpt = train(build_config("natural", "mnist5k", {"epochs": 2, "eval_n": 50}), out, progress=False)
    return ckpt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threat", default="linf:0.2")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    from robustbench_lite import progress
    from robustbench_lite.evaluations.attacks.base import Attack
    from robustbench_lite.evaluations.evaluate import EvalOptions, evaluate
    from robustbench_lite.evaluations.verify import verify_run

    progress.set_enabled(False)
    ckpt = _model(args.model)
    verified_impl = Attack._verified
    check_seconds = [0.0]

    def timed(self, *a, **k):  # the shipped check, timed
        t0 = time.perf_counter()
        try:
            return verified_impl(self, *a, **k)
        finally:
            check_seconds[0] += time.perf_counter() - t0

    def unchecked(self, model, x, y, eps, out):  # the attack's word, as before
        return out

    times: dict[str, list[float]] = {"verified": [], "unchecked": []}
    cpu: dict[str, list[float]] = {"verified": [], "unchecked": []}
    checks: list[float] = []
    verify_s: list[float] = []
    size = breaks = 0
    with tempfile.TemporaryDirectory() as tmp:
        suite = Path(tmp) / "suite.toml"
        suite.write_text(SUITE)
        for r in range(args.repeat):
            for mode in ("unchecked", "verified") if r % 2 == 0 else ("verified", "unchecked"):
                Attack._verified = timed if mode == "verified" else unchecked  # type: ignore[method-assign]
                check_seconds[0] = 0.0
                out = Path(tmp) / f"{mode}{r}"
                opts = EvalOptions(suite=str(suite), n_examples=args.n, batch_size=args.batch_size, device=args.device,
                                   threat=args.threat, adversarials=mode == "verified")
                t0, c0 = time.perf_counter(), time.process_time()
                rec = evaluate(ckpt, out, opts)
                times[mode].append(time.perf_counter() - t0)
                cpu[mode].append(time.process_time() - c0)
                if mode == "verified":
                    checks.append(check_seconds[0])
                    size, breaks = rec["adversarials"]["bytes"], rec["adversarials"]["breaks"]
                    t0 = time.perf_counter()
                    v = verify_run(out, device=args.device)
                    verify_s.append(time.perf_counter() - t0)
                    assert v.ok, v.message
        Attack._verified = verified_impl  # type: ignore[method-assign]
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    print(f"{args.n} MNIST-5k points, {args.threat}, batch {args.batch_size}, {args.device}, median of {args.repeat}")
    print(f"  evaluation, unchecked (the attack's word, no adversarials kept): {med['unchecked']:8.2f} s")
    print(f"  evaluation, verified (+ adversarials.npz):                       {med['verified']:8.2f} s "
          f"({100 * (med['verified'] / med['unchecked'] - 1):+.1f}%)")
    print(f"  the same in CPU seconds (steadier on a shared machine):          {med_cpu['unchecked']:8.2f} s -> "
          f"{med_cpu['verified']:.2f} s ({100 * (med_cpu['verified'] / med_cpu['unchecked'] - 1):+.1f}%)")
    print(f"  of which the front door's check:                                 {statistics.median(checks):8.3f} s "
          f"({100 * statistics.median(checks) / med['verified']:.2f}% of the evaluation)")
    print(f"  adversarials.npz: {breaks} breaks, {size / 1024:.0f} KiB")
    print(f"  bench verify:                                                    {statistics.median(verify_s):8.2f} s "
          f"({100 * statistics.median(verify_s) / med['verified']:.1f}% of the evaluation)")


if __name__ == "__main__":
    main()
