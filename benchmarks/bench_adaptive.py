"""The adaptive evaluation on the test models: verdict and cost before and after escalation, in one run.

For each model, on the same class-balanced MNIST-5k test points and the same suite (with checks):

- ``honest``: the checkpoint as trained;
- ``round``: its input quantised by ``torch.round`` in the forward pass (zero input gradient; BPDA);
- ``numpy-quant``: a quantiser outside autograd in a submodule (graph cut; BPDA);
- ``noisy``: Gaussian input noise of std 0.5 on every forward pass (randomised; EoT).

Each is evaluated with ``--no-adapt`` and with the escalation; printed: the failed checks, the robust
accuracy of the suite alone (``before``) and after the remedies (``after``; for ``noisy`` the
expected accuracy with its interval, the single-draw one as ``before``), the remedies that ran and
what each broke, and the wall time of the whole evaluation either way (the remedies' own seconds and
passes are in ``adaptive``). For ``honest`` the two runs must agree per example, in time within noise.

Usage::

    python benchmarks/bench_adaptive.py --model runs/bench/natural/checkpoint.pt --n 100
    python benchmarks/bench_adaptive.py --model ckpt.pt --suite fast --threat linf:0.1
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

warnings.filterwarnings("ignore")

LIGHT_SUITE = """name = "bench_adaptive"
checks = true
[[attacks]]
name = "pgd"
steps = 20
[[attacks]]
name = "square"
n_queries = 300
cascade = false
"""


class Round(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(torch.round(x * 255) / 255)


class NumpyQuant(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.from_numpy((x.detach().cpu().numpy() * 8).round() / 8).to(x)


class Noisy(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x + 0.5 * torch.randn_like(x))


def main() -> None:
    from robustbench_lite.checkpoint import load_checkpoint
    from robustbench_lite.evaluations.evaluate import EvalOptions, evaluate_loaded
    from robustbench_lite.evaluations.suite import load_suite, parse_suite

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="an MNIST checkpoint (e.g. a natural small_cnn)")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--suite", default=None, help="suite with checks (default: PGD-20 + Square 300, checks on)")
    ap.add_argument("--threat", default="linf:0.1")
    ap.add_argument("--only", nargs="*", default=None, help="models to run: honest round numpy-quant noisy")
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    ckpt = load_checkpoint(args.model)
    suite = load_suite(args.suite) if args.suite else parse_suite(LIGHT_SUITE)
    net = ckpt.model
    models = {"honest": net, "round": Round(net), "numpy-quant": nn.Sequential(NumpyQuant(), net), "noisy": Noisy(net)}
    opts = EvalOptions(n_examples=args.n, check_examples=min(args.n, 100), threat=args.threat, seed=0)
    print(f"suite {suite.name}, {args.n} points, threat {args.threat}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models.items():
            if args.only and name not in args.only:
                continue
            c = dataclasses.replace(ckpt, model=model)
            t0 = time.perf_counter()
            plain = evaluate_loaded(c, suite, Path(tmp) / f"{name}-plain", dataclasses.replace(opts, adapt=False))
            t1 = time.perf_counter()
            adapt = evaluate_loaded(c, suite, Path(tmp) / f"{name}-adapt", opts)
            t2 = time.perf_counter()
            failed = [ch["name"] for ch in plain["checks"] if not ch["passed"]]
            ad = adapt.get("adaptive")
            print(f"\n== {name}: failed checks: {', '.join(failed) or 'none'}")
            print(f"   before (suite alone): clean {plain['clean_accuracy']:.2f}  robust {plain['robust_accuracy']:.2f}  "
                  f"eval {t1 - t0:.1f}s")
            if ad is None:
                same = (Path(tmp) / f"{name}-plain" / "per_example.csv").read_text() == \
                    (Path(tmp) / f"{name}-adapt" / "per_example.csv").read_text()
                print(f"   after: no remedy ran; robust {adapt['robust_accuracy']:.2f}; per-example identical: {same}; "
                      f"eval {t2 - t1:.1f}s")
                continue
            extra = ""
            if ad.get("expected"):
                e = ad["expected"]
                extra = (f" (expected over the randomness, 95% interval {e['robust']['interval']}; clean "
                         f"{e['clean']['accuracy']:.2f} {e['clean']['interval']})")
            print(f"   after (adaptive): robust {adapt['robust_accuracy']:.2f}{extra}  eval {t2 - t1:.1f}s")
            for r in ad["remedies"]:
                cost = f"{r['seconds']:.1f}s, {r.get('forwards', 0)} fwd / {r.get('backwards', 0)} bwd rows"
                print(f"   - {r['remedy']:<15} {'ran' if r['ran'] else 'not run'}: broke {r['broken']} of "
                      f"{r['points']} points; {cost}; {r['note']}")


if __name__ == "__main__":
    main()
