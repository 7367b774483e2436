"""Attack cost benchmark: our engine against the peer libraries, same model, same inputs.

Prints, in one run on a small_cnn trained briefly with Madry PGD on MNIST-5k (some points resist):

1. PGD-20 (Linf 0.3, step 2.5 eps/20, uniform start) time vs 20 x the floor (one forward +
   ``autograd.grad`` w.r.t. the input, frozen weights) and vs foolbox LinfPGD, torchattacks PGD and
   advertorch LinfPGDAttack, separately on points that resist and on points that break.
2. Our AutoAttack attack vs pyautoattack called directly (time, robust accuracy).
3. A cascaded suite (PGD-20, FGSM, MIM, standard AutoAttack) through our runner vs the same attacks
   run one by one on all points with the libraries (torchattacks PGD/FGSM/MIFGSM, pyautoattack),
   with both worst-case robust accuracies.

Usage::

    python benchmarks/bench_attacks.py --model runs/madry/checkpoint.pt --n 256 --n-aa 32

Without ``--model`` it trains Madry for 3 epochs into runs/bench/madry (minutes on a CPU).
Timings are wall-clock on whatever machine runs it; the ratios are what to compare.
"""
from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path
from typing import Callable

import torch

warnings.filterwarnings("ignore")


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def floor_time(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, k: int) -> float:
    """k x (forward + input gradient of the CE loss)."""
    def run() -> None:
        for _ in range(k):
            xr = x.clone().requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(model(xr), y)
            torch.autograd.grad(loss, xr)
    return _timed(run)[0]


def bench_model(path: str | None) -> Path:
    """``path``, or a Madry small_cnn trained 3 epochs into runs/bench/madry (some points resist)."""
    if path is not None:
        return Path(path)
    from robustbench_lite.defenses import build_config, train

    out = Path("runs/bench/madry/checkpoint.pt")
    if not out.exists():
        train(build_config("madry", "mnist5k", {"epochs": 3}), out.parent, progress=False)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="checkpoint (default: train Madry 3 epochs into runs/bench/madry)")
    ap.add_argument("--n", type=int, default=256, help="test examples for the PGD and suite comparisons")
    ap.add_argument("--n-aa", type=int, default=32, help="examples for the AutoAttack comparison")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from robustbench_lite.checkpoint import load_checkpoint
    from robustbench_lite.data import class_balanced_indices, get_dataset
    from robustbench_lite.utils import frozen, make_generator
    from robustbench_lite.evaluations._compat import import_advertorch
    from robustbench_lite.evaluations.attacks import create_attack
    from robustbench_lite.evaluations.attacks.autoattack import _seed_of

    path = bench_model(args.model)
    model = load_checkpoint(path).model.eval()
    d = get_dataset("mnist5k").load("test")
    x, y = d.batch(class_balanced_indices(d.targets, args.n))
    eps, k = 0.3, 20
    step = 2.5 * eps / k
    import foolbox as fb
    import torchattacks
    import pyautoattack
    import_advertorch()
    from advertorch.attacks import LinfPGDAttack

    with frozen(model):
        with torch.no_grad():
            ok = model(x).argmax(1) == y
        x, y = x[ok], y[ok]
        ours = create_attack("pgd", steps=k)
        _, res = _timed(lambda: ours.run(model, x, y, eps=eps, generator=make_generator(0)))
        groups = {"resisting": ~res.success, "breaking": res.success}
        print(f"model {path}; {len(x)} clean-correct points; PGD-20 Linf eps {eps}")
        print(f"{'points':<10}{'n':>5}{'floor(20)':>11}{'ours':>9}{'foolbox':>9}{'torchatt':>9}{'advertorch':>11}  ratios to floor; robust acc % (ours/fb/ta/adv)")
        for name, m in groups.items():
            xs, ys = x[m], y[m]
            if not len(xs):
                continue
            fl = floor_time(model, xs, ys, k)
            t_o, r_o = _timed(lambda: ours.run(model, xs, ys, eps=eps, generator=make_generator(0)))
            fmodel = fb.PyTorchModel(model, bounds=(0, 1))
            t_f, r_f = _timed(lambda: fb.attacks.LinfPGD(steps=k, abs_stepsize=step)(fmodel, xs, ys, epsilons=eps)[2])
            ta = torchattacks.PGD(model, eps=eps, alpha=step, steps=k, random_start=True)
            t_t, xa_t = _timed(lambda: ta(xs, ys))
            adv = LinfPGDAttack(model, eps=eps, nb_iter=k, eps_iter=step, rand_init=True, clip_min=0.0, clip_max=1.0)
            t_a, xa_a = _timed(lambda: adv.perturb(xs, ys))
            with torch.no_grad():
                accs = [100 * (~r_o.success).float().mean().item(), 100 * (~r_f).float().mean().item(),
                        100 * (model(xa_t).argmax(1) == ys).float().mean().item(),
                        100 * (model(xa_a).argmax(1) == ys).float().mean().item()]
            print(f"{name:<10}{len(xs):>5}{fl:>10.2f}s{t_o:>8.2f}s{t_f:>8.2f}s{t_t:>8.2f}s{t_a:>10.2f}s  "
                  f"{t_o / fl:.2f}x / {t_f / fl:.2f}x / {t_t / fl:.2f}x / {t_a / fl:.2f}x; "
                  + "/".join(f"{a:.1f}" for a in accs))

        # -- AutoAttack: ours vs pyautoattack directly
        xa, ya = x[: args.n_aa], y[: args.n_aa]
        aa = create_attack("autoattack")
        t_ours, out = _timed(lambda: aa.run(model, xa, ya, eps=eps, generator=make_generator(1)))
        ref_aa = pyautoattack.AutoAttack(model, norm="Linf", eps=eps, version="standard", seed=_seed_of(make_generator(1)))
        t_ref, (ref_adv, _) = _timed(lambda: ref_aa.run_standard_evaluation(xa, ya, batch_size=500))
        with torch.no_grad():
            acc_ref = 100 * (model(ref_adv).argmax(1) == ya).float().mean().item()
        print(f"AutoAttack standard, {len(xa)} points: ours {t_ours:.1f}s ({100 * (~out.success).float().mean():.1f}%), "
              f"pyautoattack {t_ref:.1f}s ({acc_ref:.1f}%), ratio {t_ours / t_ref:.2f}x")

    # -- suite vs naive, on the AutoAttack subset (AutoAttack dominates either way)
    import tempfile

    from robustbench_lite.evaluations.runner import RunContext, run_tasks
    from robustbench_lite.evaluations.suite import parse_suite
    from robustbench_lite.threat import ThreatModel

    text = """
name = "bench"
cascade = true
[[attacks]]
name = "pgd"
steps = 20
[[attacks]]
name = "fgsm"
[[attacks]]
name = "mim"
[[attacks]]
name = "autoattack"
"""
    with tempfile.TemporaryDirectory() as tmp:
        ctx = RunContext(parse_suite(text), ThreatModel("linf", eps), 0, 256, Path(tmp), {})
        t_suite, (clean, parts) = _timed(lambda: run_tasks(model, xa, ya, ctx))
    robust = torch.tensor(clean)
    for p in parts:
        robust &= torch.tensor(p.robust)
    with frozen(model):
        def naive() -> torch.Tensor:
            r = torch.ones(len(xa), dtype=torch.bool)
            for atk in (torchattacks.PGD(model, eps=eps, alpha=step, steps=k, random_start=True),
                        torchattacks.FGSM(model, eps=eps), torchattacks.MIFGSM(model, eps=eps, alpha=eps / 10, steps=10)):
                adv_x = atk(xa, ya)
                with torch.no_grad():
                    r &= model(adv_x).argmax(1) == ya
            a = pyautoattack.AutoAttack(model, norm="Linf", eps=eps, version="standard", seed=0)
            adv_x, _ = a.run_standard_evaluation(xa, ya, batch_size=500)
            with torch.no_grad():
                r &= model(adv_x).argmax(1) == ya
            return r
        t_naive, r_naive = _timed(naive)
    print(f"suite (PGD-20, FGSM, MIM, AutoAttack; cascade), {len(xa)} points: ours {t_suite:.1f}s "
          f"({100 * robust.float().mean():.1f}%), naive one-by-one {t_naive:.1f}s ({100 * r_naive.float().mean():.1f}%), "
          f"speed-up {t_naive / t_suite:.2f}x")


if __name__ == "__main__":
    main()
