"""The full suite through our runner against the same attacks run one by one with the libraries.

Prints, in one run on the same checkpoint and the same class-balanced MNIST-5k test examples:

- ``ours``: ``bench eval --suite full`` (``evaluate``), channels_last (the default): cascaded
  per threat, broken points leave PGD batches, eps sweeps attack only survivors;
- ``ours NCHW``: the same with ``--no-channels-last`` (what the cascade alone buys);
- ``naive``: every entry of evaluations/suites/full.toml run on ALL n points with the peer
  libraries, one call per (attack, eps), on the model as loaded (NCHW) with frozen weights (the
  cheaper way to call them, so the baseline is not inflated by weight gradients):
  torchattacks PGD / PGDL2 / FGSM / MIFGSM, foolbox L1PGD, LinfPGD-20 at each sweep eps in place
  of the bisection, DeepFool / DDN / C&W (foolbox, minimum-norm), pyautoattack standard AutoAttack
  (Linf, L2) and Square (1,000 queries).

For each: seconds per attack, total, and the worst-case robust accuracy at the Linf and L2 radii
(a point is robust at (norm, eps) if clean-correct and no attack of that norm broke it at an eps
<= that eps, the runner's rule). The suite should be faster with equal or lower robust accuracy.

Usage::

    python benchmarks/bench_suite.py --model runs/demo/madry/checkpoint.pt --n 64
    python benchmarks/bench_suite.py --model runs/demo/natural/checkpoint.pt --n 64

Without ``--model`` it trains Madry for 3 epochs into runs/bench/madry (minutes on a CPU).
"""
from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import torch

from robustbench_lite.results import pct, worst_case

warnings.filterwarnings("ignore")

LINF, L2, L1 = 0.3, 2.0, 10.0          # MNIST standard radii (DatasetSpec.standard_eps)
SCALES = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5)


def naive_full(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[dict[str, float], dict[tuple[str, float], torch.Tensor]]:
    """Each full-suite entry on all points with the libraries: (seconds per label, robust flags per (norm, eps))."""
    import foolbox as fb
    import pyautoattack
    import torchattacks

    fmodel = fb.PyTorchModel(model, bounds=(0, 1))
    seconds: dict[str, float] = defaultdict(float)
    robust: dict[tuple[str, float], torch.Tensor] = {}

    def record(norm: str, eps: float, x_adv: torch.Tensor) -> None:
        with torch.no_grad():
            ok = model(x_adv).argmax(1) == y
        key = (norm, round(eps, 6))
        robust[key] = robust.get(key, torch.ones_like(ok)) & ok

    def timed(label: str, fn: Callable[[], None]) -> None:
        t = time.perf_counter()
        fn()
        seconds[label] += time.perf_counter() - t

    def pgd(label: str, norm: str, eps: float, steps: int = 20) -> None:
        alpha = 2.5 * eps / steps
        if norm == "linf":
            atk = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
            timed(label, lambda: record(norm, eps, atk(x, y)))
        elif norm == "l2":
            atk2 = torchattacks.PGDL2(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
            timed(label, lambda: record(norm, eps, atk2(x, y)))
        else:
            a1 = fb.attacks.L1PGD(abs_stepsize=alpha, steps=steps)
            timed(label, lambda: record(norm, eps, a1(fmodel, x, y, epsilons=eps)[1]))

    def minimum(label: str, norm: str, attack: object, radius: float) -> None:
        def run() -> None:
            _, x_adv, ok = attack(fmodel, x, y, epsilons=None)  # type: ignore[operator]
            dist = (x_adv - x).flatten(1).norm(p=float("inf") if norm == "linf" else 2, dim=1)
            dist = torch.where(ok.bool(), dist, torch.full_like(dist, float("inf")))
            for s in SCALES:
                key = (norm, round(s * radius, 6))
                robust[key] = robust.get(key, torch.ones(len(y), dtype=torch.bool)) & ~(dist <= s * radius)
        timed(label, run)

    def autoattack(label: str, norm: str, eps: float, **kw: object) -> None:
        aa = pyautoattack.AutoAttack(model, norm=norm, eps=eps, seed=0, **kw)  # type: ignore[arg-type]
        if kw.get("version") == "custom":
            aa.square.n_queries = 1000
        timed(label, lambda: record(norm.lower(), eps, aa.run_standard_evaluation(x, y)[0]))

    for s in (0.5, 1.0, 1.5):
        pgd("pgd20", "linf", s * LINF)
    pgd("pgd100", "linf", LINF, steps=100)
    fg = torchattacks.FGSM(model, eps=LINF)
    timed("fgsm", lambda: record("linf", LINF, fg(x, y)))
    mi = torchattacks.MIFGSM(model, eps=LINF, alpha=LINF / 10, steps=10, decay=1.0)
    timed("mim", lambda: record("linf", LINF, mi(x, y)))
    autoattack("autoattack", "Linf", LINF, version="standard")
    autoattack("square", "Linf", LINF, version="custom", attacks=["square"])
    bim = fb.attacks.LinfPGD(steps=20, rel_stepsize=2.5 / 20)
    def sweep() -> None:
        for s in SCALES:
            record("linf", s * LINF, bim(fmodel, x, y, epsilons=s * LINF)[1])
    timed("min_linf", sweep)
    minimum("deepfool_linf", "linf", fb.attacks.LinfDeepFoolAttack(steps=50, candidates=10, overshoot=0.02), LINF)
    for s in (0.5, 1.0, 1.5):
        pgd("pgd20_l2", "l2", s * L2)
    minimum("ddn", "l2", fb.attacks.DDNAttack(init_epsilon=1.0, steps=100, gamma=0.05), L2)
    minimum("cw_l2", "l2", fb.attacks.L2CarliniWagnerAttack(binary_search_steps=5, steps=100, stepsize=0.05,
                                                            initial_const=1.0, abort_early=True), L2)
    minimum("deepfool_l2", "l2", fb.attacks.L2DeepFoolAttack(steps=50, candidates=10, overshoot=0.02), L2)
    autoattack("autoattack_l2", "L2", L2, version="standard")
    pgd("pgd20_l1", "l1", L1)
    pgd("pgd20_large_eps", "linf", 1.0)
    return dict(seconds), robust


def worst_case_pct(clean: torch.Tensor, robust: dict[tuple[str, float], torch.Tensor], norm: str, eps: float) -> float:
    """The naive runs' worst case at (norm, eps), by the one rule (robustbench_lite.results)."""
    parts = [SimpleNamespace(norm=n, eps=e, robust=(ok & clean).tolist()) for (n, e), ok in robust.items()]
    return pct(worst_case(clean.tolist(), parts, norm, eps))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="checkpoint (default: train Madry 3 epochs into runs/bench/madry)")
    ap.add_argument("--n", type=int, default=64, help="class-balanced MNIST-5k test examples")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--skip-nchw", action="store_true", help="do not run the suite a second time in NCHW")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from bench_attacks import bench_model

    from robustbench_lite.evaluations.evaluate import EvalOptions, evaluate
    from robustbench_lite.checkpoint import load_checkpoint
    from robustbench_lite.data import class_balanced_indices, get_dataset
    from robustbench_lite.utils import frozen

    path = bench_model(args.model)
    ours: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, cl in (("ours", True), ("ours NCHW", False)):
            if not cl and args.skip_nchw:
                continue
            t = time.perf_counter()
            rec = evaluate(path, Path(tmp) / name, EvalOptions(suite="full", n_examples=args.n, channels_last=cl))
            total = time.perf_counter() - t
            secs: dict[str, float] = defaultdict(float)
            for row in rec["summary"]:
                if row["attack"] != "clean" and row["seconds"] is not None:
                    secs[row["label"]] += float(row["seconds"])
            worst = {(r["norm"], float(r["eps"])): float(r["worst_case"]) for r in rec["summary"] if r["attack"] != "clean"}
            ours[name] = {"total": total, "secs": secs, "linf": worst.get(("linf", LINF)), "l2": worst.get(("l2", L2))}

    model = load_checkpoint(path).model.eval()
    d = get_dataset("mnist5k").load("test")
    x, y = d.batch(class_balanced_indices(d.targets, args.n))
    with frozen(model):
        t = time.perf_counter()
        with torch.no_grad():
            clean = model(x).argmax(1) == y
        n_secs, n_robust = naive_full(model, x, y)
        n_total = time.perf_counter() - t
    naive = {"total": n_total, "secs": n_secs, "linf": worst_case_pct(clean, n_robust, "linf", LINF),
             "l2": worst_case_pct(clean, n_robust, "l2", L2)}

    runs = {**ours, "naive": naive}
    print(f"model {path}; {args.n} MNIST-5k test points, {100 * clean.float().mean():.1f}% clean; seconds per attack")
    print(f"{'attack':<18}" + "".join(f"{k:>12}" for k in runs))
    for label in n_secs:
        print(f"{label:<18}" + "".join(f"{r['secs'].get(label, 0.0):>12.1f}" for r in runs.values()))  # type: ignore[union-attr]
    print(f"{'total (wall)':<18}" + "".join(f"{r['total']:>12.1f}" for r in runs.values()))
    print(f"{'robust Linf 0.3 %':<18}" + "".join(f"{r['linf']:>12.1f}" for r in runs.values()))
    print(f"{'robust L2 2.0 %':<18}" + "".join(f"{r['l2']:>12.1f}" for r in runs.values()))
    for name, r in ours.items():
        print(f"speed-up {name} vs naive: {naive['total'] / r['total']:.2f}x "  # type: ignore[operator]
              f"(robust Linf {r['linf']:.1f} vs {naive['linf']:.1f}, L2 {r['l2']:.1f} vs {naive['l2']:.1f})")


if __name__ == "__main__":
    main()
