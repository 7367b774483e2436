"""The ``fast`` suite against standard AutoAttack (our ``autoattack`` attack), same conditions.

Prints, in one run per model, on the same class-balanced MNIST-5k test points: robust accuracy
(worst case per example at the threat), attack wall time, forward and backward passes (example
rows through the model, counted by the runner) of

- ``autoattack``: a one-entry suite with our ``autoattack`` attack (pyautoattack standard), and
- ``fast``: ``evaluations/suites/fast.toml``,

both through ``evaluate`` (frozen weights, channels_last, the same batch size and threads), the
ratios, the per-stage figures of ``fast``, and the per-example disagreement (points one broke and
the other left robust). ``attack s`` and the passes count the attacks only (the clean pass and the
model checks are the same in both); ``eval s`` is the whole evaluation, so for ``fast`` it also
holds its attack-failure probes and checks. A third row, ``pyautoattack``, is the accuracy
reference: pyautoattack's standard AutoAttack called directly on the same points (frozen weights,
contiguous layout, the same batch size), timed as called.

Usage::

    python benchmarks/bench_fast.py                         # natural 2, Madry 3, TRADES 3 epochs (trained into runs/bench/)
    python benchmarks/bench_fast.py --models runs/demo/madry/checkpoint.pt --n 200

Without ``--models`` it trains (or reuses) runs/bench/natural, madry and trades (about 20 minutes on
2 CPU cores, once).
"""
from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

warnings.filterwarnings("ignore")

AA_SUITE = '''name = "autoattack"
description = "standard AutoAttack alone (the yardstick of bench_fast)"
cascade = true
[[attacks]]
name = "autoattack"
version = "standard"
'''


def bench_models(paths: list[str] | None) -> list[Path]:
    if paths:
        return [Path(p) for p in paths]
    from robustbench_lite.defenses import build_config, train

    out = []
    for defense, epochs in (("natural", 2), ("madry", 3), ("trades", 3)):
        p = Path(f"runs/bench/{defense}/checkpoint.pt")
        if not p.exists():
            train(build_config(defense, "mnist5k", {"epochs": epochs}), p.parent, progress=False)
        out.append(p)
    return out


def per_example_robust(out_dir: Path) -> list[bool]:
    """Worst case per example at the run's threat: clean-correct and robust in every
    ``robust[<label>@<norm>:<eps>]`` column of per_example.csv at that norm and an eps no larger
    (``fast``'s large-eps stage is not part of the verdict)."""
    import csv
    import json

    from robustbench_lite.results import EPS_TOL

    threat = json.loads((out_dir / "result.json").read_text())["threat"]
    norm, eps = threat["norm"], float(threat["eps"])

    def at_threat(col: str) -> bool:
        if not col.startswith("robust["):
            return False
        n, e = col[len("robust["):-1].rsplit("@", 1)[1].split(":")
        return n == norm and float(e) <= eps + EPS_TOL

    with open(out_dir / "per_example.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["clean_correct"] == "1" and all(v == "1" for k, v in r.items() if at_threat(k)) for r in rows]


def run(model: Path, suite: str | Path, out: Path, n: int, batch: int) -> dict[str, object]:
    from robustbench_lite.evaluations.evaluate import EvalOptions, evaluate

    t = time.perf_counter()
    rec = evaluate(model, out, EvalOptions(suite=suite, n_examples=n, batch_size=batch))
    wall = time.perf_counter() - t
    rows = [r for r in rec["summary"] if r["attack"] != "clean"]
    return {"acc": float(rec["robust_accuracy"]), "clean": float(rec["clean_accuracy"]), "wall": wall,
            "seconds": sum(float(r["seconds"] or 0) for r in rows), "fwd": sum(int(r["forwards"]) for r in rows),
            "bwd": sum(int(r["backwards"]) for r in rows), "rows": rows, "robust": per_example_robust(out),
            "threat": rec["threat"]}


def load_points(model_path: Path, n: int) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """The checkpoint and the ``n`` class-balanced test points ``evaluate`` uses for it."""
    from robustbench_lite.checkpoint import load_checkpoint
    from robustbench_lite.data import class_balanced_indices, get_dataset, load_test_data

    ckpt = load_checkpoint(model_path)
    data = load_test_data(get_dataset(ckpt.dataset), None)
    x, y = data.batch(class_balanced_indices(data.targets, n))
    return ckpt, x, y


def pyautoattack_direct(model_path: Path, n: int, batch: int, threat: dict[str, object]) -> dict[str, object]:
    """pyautoattack's standard AutoAttack called directly on the points ``evaluate`` uses."""
    from pyautoattack import AutoAttack

    from robustbench_lite.evaluations.parts import CountingModel
    from robustbench_lite.utils import frozen

    ckpt, x, y = load_points(model_path, n)
    norm = {"linf": "Linf", "l2": "L2", "l1": "L1"}[str(threat["norm"])]
    model = CountingModel(ckpt.model.eval())
    with frozen(model, eval_mode=False):
        aa = AutoAttack(model, norm=norm, eps=float(threat["eps"]), version="standard", seed=0,  # type: ignore[arg-type]
                        device="cpu")
        t = time.perf_counter()
        x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=batch)
        wall = time.perf_counter() - t
        with torch.no_grad():
            robust = (ckpt.model(x_adv).argmax(1) == y) & (ckpt.model(x).argmax(1) == y)
    return {"acc": 100 * float(robust.float().mean()), "wall": wall, "seconds": wall, "fwd": model.forwards,
            "bwd": model.backwards, "robust": robust.tolist()}


def watch_overhead(model_path: Path, n: int, batch: int, threat: dict[str, object]) -> list[tuple[str, float, float]]:
    """Wall time of two of fast's stages on the same points, run plain and through the runner's
    PathRecorder (the attack-failure indicators on every attack's path), alternated twice."""
    from robustbench_lite.evaluations.attack_paths import PathRecorder
    from robustbench_lite.evaluations.attacks import create_attack
    from robustbench_lite.utils import frozen

    ckpt, x, y = load_points(model_path, n)
    model = ckpt.model.eval().to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
    norm, eps = str(threat["norm"]), float(threat["eps"])  # type: ignore[arg-type]
    out = []
    with frozen(model):
        for name, kw in (("apgd_ce", {"steps": 50}), ("square", {"n_queries": 1000})):
            attack = create_attack(name, norm=norm, **kw)
            plain = watched = 0.0
            for _ in range(2):
                t = time.perf_counter()
                attack(model, x, y, eps=eps, batch_size=batch, seed=0, progress=False)
                plain += time.perf_counter() - t
                t = time.perf_counter()
                attack(PathRecorder(model, x, y, norm=norm, eps=eps), x, y, eps=eps, batch_size=batch, seed=0,
                       progress=False)
                watched += time.perf_counter() - t
            out.append((name, plain / 2, watched / 2))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=None, help="checkpoints (default: runs/bench/natural and madry)")
    ap.add_argument("--n", type=int, default=100, help="class-balanced MNIST-5k test examples")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--batch-size", type=int, default=128, help="the runner's batch (both suites)")
    ap.add_argument("--suite", default="fast", help="the suite to compare (default: fast)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    for model in bench_models(args.models):
        with tempfile.TemporaryDirectory() as tmp:
            aa_file = Path(tmp) / "autoattack.toml"
            aa_file.write_text(AA_SUITE)
            fast = run(model, args.suite, Path(tmp) / "fast", args.n, args.batch_size)
            aa = run(model, aa_file, Path(tmp) / "aa", args.n, args.batch_size)
        ref = pyautoattack_direct(model, args.n, args.batch_size, aa["threat"])  # type: ignore[arg-type]
        print(f"\nmodel {model}: {args.n} MNIST-5k test points, clean {aa['clean']:.1f}%, "
              f"{args.threads} threads, batch {args.batch_size}")
        print(f"{'':<12}{'robust %':>10}{'attack s':>10}{'eval s':>9}{'forwards':>11}{'backwards':>11}{'fwd+bwd':>11}")
        for name, r in (("autoattack", aa), (args.suite, fast), ("pyautoattack", ref)):
            print(f"{name:<12}{r['acc']:>10.2f}{r['seconds']:>10.1f}{r['wall']:>9.1f}{r['fwd']:>11}{r['bwd']:>11}"
                  f"{r['fwd'] + r['bwd']:>11}")  # type: ignore[operator]
        passes = (fast["fwd"] + fast["bwd"]) / max(1, aa["fwd"] + aa["bwd"])  # type: ignore[operator]
        print(f"ratio fast/AA: attack time {fast['seconds'] / max(aa['seconds'], 1e-9):.3f} "  # type: ignore[operator]
              f"(eval {fast['wall'] / aa['wall']:.3f}), fwd+bwd {passes:.3f}, "  # type: ignore[operator]
              f"robust accuracy {fast['acc'] - aa['acc']:+.2f} points")  # type: ignore[operator]
        fr, ar = fast["robust"], aa["robust"]
        only_fast = sum(1 for f, a in zip(fr, ar) if a and not f)  # type: ignore[call-overload]
        only_aa = sum(1 for f, a in zip(fr, ar) if f and not a)  # type: ignore[call-overload]
        print(f"per example: fast broke {only_fast} that AA left robust; AA broke {only_aa} that fast left robust")
        print(f"accuracy reference (pyautoattack called directly): {ref['acc']:.2f}%; fast - reference "
              f"{fast['acc'] - ref['acc']:+.2f} points")  # type: ignore[operator]
        for name, plain, watched in watch_overhead(model, args.n, args.batch_size, aa["threat"]):  # type: ignore[arg-type]
            print(f"indicator watch: {name} {plain:.2f} s plain, {watched:.2f} s watched: ratio {watched / plain:.3f}")
        print(f"{args.suite} stages:")
        for r in fast["rows"]:  # type: ignore[attr-defined]
            print(f"  {r['label']:<14} attacked {r['attacked']:>5}  worst case {r['worst_case']:>6}%  "
                  f"{float(r['seconds'] or 0):>7.1f} s  fwd {r['forwards']:>8}  bwd {r['backwards']:>8}")


if __name__ == "__main__":
    main()
