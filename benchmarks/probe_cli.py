"""A hostile user's probe of every ``bench`` subcommand: each input is a mistake that must be refused
with one sentence and a non-zero exit code, before any long work, with nothing already written lost.

Runs every case in this process (``robustbench_lite.cli.main``), so ~150 cases take a minute or two
on a CPU. Prints one line per case: ``ok`` (one error line, exit != 0), ``TRACEBACK`` (an uncaught
exception), ``ACCEPTED`` (exit 0, or still working after the time limit: the mistake was not refused
up front), ``MULTILINE`` (refused, but not in one line) or ``DAMAGED`` (a file that existed before the
command changed). The exit code is the number of cases that were not ``ok``.

Usage::

    python benchmarks/probe_cli.py            # all cases
    python benchmarks/probe_cli.py -k merge   # the cases whose label contains "merge"
    python benchmarks/probe_cli.py --limit 20 # seconds a case may run before it counts as accepted
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import signal
import sys
import tempfile
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

warnings.filterwarnings("ignore")


class _Timeout(BaseException):
    pass


def _fixtures(tmp: Path) -> dict[str, Path]:
    """A tiny synthetic checkpoint, a plain state_dict, corrupt files and a finished eval folder."""
    import torch

    from robustbench_lite.defenses import build_config, train
    from robustbench_lite.evaluations.evaluate import EvalOptions, evaluate

    f: dict[str, Path] = {}
    cfg = build_config("natural", "mnist5k", {"dataset": "synthetic", "epochs": 1, "batch_size": 16, "eval_n": 16,
                                               "eval_steps": 2})
    f["ckpt"] = train(cfg, tmp / "run", progress=False)
    cfg2 = build_config("natural", "mnist5k", {"dataset": "synthetic", "epochs": 1, "batch_size": 16, "eval_n": 16,
                                                "eval_steps": 2, "seed": 1})
    f["ckpt2"] = train(cfg2, tmp / "run2", progress=False)
    obj = torch.load(f["ckpt"], weights_only=False)
    f["plain"] = tmp / "plain.pt"
    torch.save(obj["members"]["model"], f["plain"])
    f["corrupt"] = tmp / "corrupt.pt"
    f["corrupt"].write_bytes(b"not a checkpoint at all")
    f["empty"] = tmp / "empty.pt"
    f["empty"].write_bytes(b"")
    f["text"] = tmp / "notes.txt"
    f["text"].write_text("hello\n")
    f["dir"] = tmp / "a_folder"
    f["dir"].mkdir()
    f["badpy"] = tmp / "broken_arch.py"
    f["badpy"].write_text("def net(:\n")
    f["raisingpy"] = tmp / "raising_arch.py"
    f["raisingpy"].write_text("raise RuntimeError('import-time failure')\n")
    f["okpy"] = tmp / "ok_arch.py"
    f["okpy"].write_text("import torch\nclass NotAModule:\n    pass\ndef needs_args(width, depth):\n"
                         "    return torch.nn.Linear(width, depth)\nVALUE = 3\n")
    suite = tmp / "tiny.toml"
    suite.write_text('name = "tiny"\ncascade = false\n[[attacks]]\nname = "pgd"\nsteps = 2\n')
    f["suite"] = suite
    ev = tmp / "eval_a"
    evaluate(f["ckpt"], ev, EvalOptions(suite=suite, n_examples=16, device="cpu"))
    f["eval"] = ev
    for i in range(2):
        evaluate(f["ckpt"], tmp / f"shard{i}", EvalOptions(suite=suite, n_examples=16, device="cpu", batch_size=8,
                                                           shard=f"{i}/2"))
        f[f"shard{i}"] = tmp / f"shard{i}"
    curve = tmp / "curve.csv"
    curve.write_text("clean,robust\n150,20\n90,40\n80,50\n70,55\n")
    f["curve"] = curve
    return f


def _cases(f: dict[str, Path], tmp: Path) -> list[tuple[str, list[Any]]]:
    ck, pl, cor, emp, txt, d = f["ckpt"], f["plain"], f["corrupt"], f["empty"], f["text"], f["dir"]
    miss, suite, ev, s0, s1 = tmp / "missing.pt", f["suite"], f["eval"], f["shard0"], f["shard1"]
    E = ["eval", "--no-db", "--no-progress", "--n-examples", "8", "--suite", suite]
    T = ["train", "--defense", "natural", "--dataset", "synthetic", "--preset", "mnist5k", "--epochs", "1",
         "--no-progress"]
    o = lambda name: tmp / "outs" / name  # noqa: E731
    c: list[tuple[str, list[Any]]] = [
        # -- eval: the model file
        ("eval missing model", [*E, "--model", miss, "--out", o("e1")]),
        ("eval model is a folder", [*E, "--model", d, "--out", o("e2")]),
        ("eval corrupt model", [*E, "--model", cor, "--out", o("e3")]),
        ("eval empty model file", [*E, "--model", emp, "--out", o("e4")]),
        ("eval text file as model", [*E, "--model", txt, "--out", o("e5")]),
        ("eval empty --model", [*E, "--model", "", "--out", o("e6")]),
        ("eval plain state_dict without --arch", [*E, "--model", pl, "--out", o("e7")]),
        ("eval plain state_dict without --dataset", [*E, "--model", pl, "--arch", "small_cnn", "--out", o("e8")]),
        ("eval plain state_dict with --member", [*E, "--model", pl, "--arch", "small_cnn", "--dataset", "synthetic",
                                                 "--member", "natural", "--out", o("e9")]),
        ("eval --member nosuch", [*E, "--model", ck, "--member", "nosuch", "--out", o("e10")]),
        ("eval --member empty", [*E, "--model", ck, "--member", "", "--out", o("e10b")]),
        # -- eval: --arch
        ("eval --arch unknown name", [*E, "--model", pl, "--arch", "nosuch_net", "--dataset", "synthetic", "--out", o("e11")]),
        ("eval --arch torch.nn:Linear (needs arguments)", [*E, "--model", pl, "--arch", "torch.nn:Linear",
                                                           "--dataset", "synthetic", "--out", o("e12")]),
        ("eval --arch torch.nn:nosuch", [*E, "--model", pl, "--arch", "torch.nn:nosuch", "--dataset", "synthetic",
                                         "--out", o("e13")]),
        ("eval --arch math:pi (not callable)", [*E, "--model", pl, "--arch", "math:pi", "--dataset", "synthetic",
                                                "--out", o("e14")]),
        ("eval --arch os:getcwd (returns a str)", [*E, "--model", pl, "--arch", "os:getcwd", "--dataset", "synthetic",
                                                   "--out", o("e15")]),
        ("eval --arch torch:zeros (needs arguments)", [*E, "--model", pl, "--arch", "torch:zeros", "--dataset", "synthetic",
                                                       "--out", o("e16")]),
        ("eval --arch nosuchmodule:f", [*E, "--model", pl, "--arch", "nosuchmodule_xyz:f", "--dataset", "synthetic",
                                        "--out", o("e17")]),
        ("eval --arch :Linear (empty module)", [*E, "--model", pl, "--arch", ":Linear", "--dataset", "synthetic",
                                                "--out", o("e18")]),
        ("eval --arch torch.nn: (empty attribute)", [*E, "--model", pl, "--arch", "torch.nn:", "--dataset", "synthetic",
                                                     "--out", o("e19")]),
        ("eval --arch missing file.py:f", [*E, "--model", pl, "--arch", f"{tmp}/nosuch.py:f", "--dataset", "synthetic",
                                           "--out", o("e20")]),
        ("eval --arch file.py with a syntax error", [*E, "--model", pl, "--arch", f"{f['badpy']}:net", "--dataset",
                                                     "synthetic", "--out", o("e21")]),
        ("eval --arch file.py that raises on import", [*E, "--model", pl, "--arch", f"{f['raisingpy']}:net",
                                                       "--dataset", "synthetic", "--out", o("e22")]),
        ("eval --arch file.py:class that is not a Module", [*E, "--model", pl, "--arch", f"{f['okpy']}:NotAModule",
                                                            "--dataset", "synthetic", "--out", o("e23")]),
        ("eval --arch file.py:function needing arguments", [*E, "--model", pl, "--arch", f"{f['okpy']}:needs_args",
                                                            "--dataset", "synthetic", "--out", o("e24")]),
        ("eval --arch file.py:VALUE (an int)", [*E, "--model", pl, "--arch", f"{f['okpy']}:VALUE", "--dataset",
                                                "synthetic", "--out", o("e25")]),
        ("eval --arch a folder.py", [*E, "--model", pl, "--arch", f"{d}:f", "--dataset", "synthetic", "--out", o("e26")]),
        ("eval --arch torch.nn:Identity (wrong weights)", [*E, "--model", pl, "--arch", "torch.nn:Identity",
                                                           "--dataset", "synthetic", "--out", o("e27")]),
        ("eval --arch torchvision:nosuch", [*E, "--model", pl, "--arch", "torchvision:nosuch", "--dataset", "synthetic",
                                            "--out", o("e28")]),
        ("eval --arch empty", [*E, "--model", pl, "--arch", "", "--dataset", "synthetic", "--out", o("e29")]),
        ("eval --arch robustbench:NoSuchEntry", [*E, "--model", pl, "--arch", "robustbench:NoSuchEntry", "--out", o("e30")]),
        # -- eval: other flags
        ("eval unknown suite", ["eval", "--no-db", "--model", ck, "--suite", "nosuch", "--out", o("e31")]),
        ("eval suite is a folder", ["eval", "--no-db", "--model", ck, "--suite", d, "--out", o("e32")]),
        ("eval suite is not TOML", ["eval", "--no-db", "--model", ck, "--suite", txt, "--out", o("e33")]),
        ("eval empty --suite", ["eval", "--no-db", "--model", ck, "--suite", "", "--out", o("e34")]),
        ("eval --n-examples 0", [*E, "--model", ck, "--n-examples", "0", "--out", o("e35")]),
        ("eval --n-examples -5", [*E, "--model", ck, "--n-examples", "-5", "--out", o("e36")]),
        ("eval --n-examples abc", [*E, "--model", ck, "--n-examples", "abc", "--out", o("e37")]),
        ("eval --n-examples 1.5", [*E, "--model", ck, "--n-examples", "1.5", "--out", o("e38")]),
        ("eval --batch-size 0", [*E, "--model", ck, "--batch-size", "0", "--out", o("e39")]),
        ("eval --batch-size nan", [*E, "--model", ck, "--batch-size", "nan", "--out", o("e40")]),
        ("eval --seed abc", [*E, "--model", ck, "--seed", "abc", "--out", o("e41")]),
        ("eval --threat linf:nan", [*E, "--model", ck, "--threat", "linf:nan", "--out", o("e42")]),
        ("eval --threat linf:inf", [*E, "--model", ck, "--threat", "linf:inf", "--out", o("e43")]),
        ("eval --threat linf:-0.1", [*E, "--model", ck, "--threat", "linf:-0.1", "--out", o("e44")]),
        ("eval --threat l3:0.1", [*E, "--model", ck, "--threat", "l3:0.1", "--out", o("e45")]),
        ("eval --threat linf:1/0", [*E, "--model", ck, "--threat", "linf:1/0", "--out", o("e46")]),
        ("eval --threat linf:5", [*E, "--model", ck, "--threat", "linf:5", "--out", o("e47")]),
        ("eval --threat garbage", [*E, "--model", ck, "--threat", "garbage", "--out", o("e48")]),
        ("eval --device nosuch", [*E, "--model", ck, "--device", "nosuch", "--out", o("e49")]),
        ("eval --device cuda:99", [*E, "--model", ck, "--device", "cuda:99", "--out", o("e50")]),
        ("eval --dataset nosuch", [*E, "--model", ck, "--dataset", "nosuch", "--out", o("e51")]),
        ("eval --dataset with other class count", [*E, "--model", ck, "--dataset", "cifar100", "--out", o("e52")]),
        ("eval --shard 2/2", [*E, "--model", ck, "--shard", "2/2", "--out", o("e53")]),
        ("eval --shard abc", [*E, "--model", ck, "--shard", "abc", "--out", o("e54")]),
        ("eval --shard 0/0", [*E, "--model", ck, "--shard", "0/0", "--out", o("e55")]),
        ("eval --shard -1/2", [*E, "--model", ck, "--shard", "-1/2", "--out", o("e56")]),
        ("eval --normalize garbage", [*E, "--model", ck, "--normalize", "garbage", "--out", o("e57")]),
        ("eval --normalize 1,2,3 (odd count)", [*E, "--model", ck, "--normalize", "1,2,3", "--out", o("e58")]),
        ("eval --normalize zero std", [*E, "--model", ck, "--normalize", "0.5,0", "--out", o("e59")]),
        ("eval --data-file missing", [*E, "--model", ck, "--data-file", tmp / "nosuch.npz", "--out", o("e60")]),
        ("eval --data-file corrupt", [*E, "--model", ck, "--data-file", txt, "--out", o("e61")]),
        ("eval --data-file a folder", [*E, "--model", ck, "--data-file", d, "--out", o("e62")]),
        ("eval --out is the model file", [*E, "--model", ck, "--out", ck]),
        ("eval --out empty", [*E, "--model", ck, "--out", ""]),
        ("eval --out holds another checkpoint's evaluation", [*E, "--model", f["ckpt2"], "--out", ev]),
        ("eval --out holds this evaluation, no --resume", [*E[:-2], "--suite", suite, "--model", ck, "--out", ev]),
        ("eval --resume into another checkpoint's evaluation", [*E, "--model", f["ckpt2"], "--out", ev, "--resume"]),
        ("eval --resume with another seed", [*E, "--model", ck, "--out", ev, "--resume", "--seed", "7"]),
        ("eval --out is a shard folder", [*E, "--model", ck, "--out", s0]),
        ("eval --db is a folder", ["eval", "--model", ck, "--suite", suite, "--db", d, "--out", o("e63")]),
        ("eval --db is a text file", ["eval", "--model", ck, "--suite", suite, "--db", txt, "--out", o("e64")]),
        ("eval --db is the model", ["eval", "--model", ck, "--suite", suite, "--db", ck, "--out", o("e65")]),
        ("eval --db empty", ["eval", "--model", ck, "--suite", suite, "--db", "", "--out", o("e66")]),
        ("eval --data-dir missing for cifar10", [*E, "--model", pl, "--arch", "small_cnn", "--dataset", "cifar10",
                                                 "--data-dir", tmp / "nodata", "--out", o("e67")]),
        # -- merge
        ("merge --out is a shard", ["merge", s0, s1, "--out", s0]),
        ("merge --out is the second shard", ["merge", s0, s1, "--out", s1]),
        ("merge --out inside a shard", ["merge", s0, s1, "--out", s0 / "merged"]),
        ("merge --out contains the shards", ["merge", s0, s1, "--out", tmp]),
        ("merge --out holds another evaluation", ["merge", s0, s1, "--out", ev]),
        ("merge one shard only", ["merge", s0, "--out", o("m1")]),
        ("merge the same shard twice", ["merge", s0, s0, "--out", o("m2")]),
        ("merge a non-shard folder", ["merge", ev, s1, "--out", o("m3")]),
        ("merge a missing folder", ["merge", tmp / "nosuch", s1, "--out", o("m4")]),
        ("merge a file", ["merge", txt, s1, "--out", o("m5")]),
        ("merge empty --out", ["merge", s0, s1, "--out", ""]),
        ("merge a shard with a corrupt result.json", ["merge", tmp / "badshard", s1, "--out", o("m6")]),
        # -- transfer
        ("transfer missing surrogate", ["transfer", "--surrogates", miss, "--targets", ck, "--out", o("t1")]),
        ("transfer corrupt target", ["transfer", "--surrogates", ck, "--targets", cor, "--out", o("t2")]),
        ("transfer --steps 0", ["transfer", "--surrogates", ck, "--targets", ck, "--steps", "0", "--out", o("t3")]),
        ("transfer --threat linf:-1", ["transfer", "--surrogates", ck, "--targets", ck, "--threat", "linf:-1",
                                       "--out", o("t4")]),
        ("transfer --threat nonsense", ["transfer", "--surrogates", ck, "--targets", ck, "--threat", "x", "--out", o("t5")]),
        ("transfer --out is a checkpoint", ["transfer", "--surrogates", ck, "--targets", ck, "--out", ck]),
        ("transfer --n-examples 0", ["transfer", "--surrogates", ck, "--targets", ck, "--n-examples", "0", "--out", o("t6")]),
        ("transfer plain state_dict", ["transfer", "--surrogates", pl, "--targets", ck, "--out", o("t7")]),
        ("transfer a folder as surrogate", ["transfer", "--surrogates", d, "--targets", ck, "--out", o("t8")]),
        # -- analyze
        ("analyze missing model", ["analyze", "--model", miss, "--out", o("a1")]),
        ("analyze corrupt model", ["analyze", "--model", cor, "--out", o("a2")]),
        ("analyze --member nosuch", ["analyze", "--model", ck, "--member", "nosuch", "--out", o("a3")]),
        ("analyze --reference missing", ["analyze", "--model", ck, "--reference", miss, "--out", o("a4")]),
        ("analyze --n-examples 0", ["analyze", "--model", ck, "--n-examples", "0", "--out", o("a5")]),
        ("analyze --random-label-epochs -1", ["analyze", "--model", ck, "--random-label-epochs", "-1", "--out", o("a6")]),
        ("analyze --out is the model", ["analyze", "--model", ck, "--out", ck]),
        ("analyze plain state_dict", ["analyze", "--model", pl, "--out", o("a7")]),
        ("analyze --pgd-steps abc", ["analyze", "--model", ck, "--pgd-steps", "abc", "--out", o("a8")]),
        # -- train
        ("train unknown defense", ["train", "--defense", "nosuch", "--out", o("r1")]),
        ("train empty defense", ["train", "--defense", "", "--out", o("r2")]),
        ("train unknown dataset", ["train", "--defense", "natural", "--dataset", "nosuch", "--out", o("r3")]),
        ("train unknown preset", ["train", "--defense", "natural", "--preset", "nosuch", "--out", o("r4")]),
        ("train unknown arch", [*T, "--arch", "nosuch", "--out", o("r5")]),
        ("train --arch torch.nn:Linear", [*T, "--arch", "torch.nn:Linear", "--out", o("r5b")]),
        ("train --epochs 0", [*T[:-3], "--epochs", "0", "--out", o("r6")]),
        ("train --lr 0", [*T, "--lr", "0", "--out", o("r7")]),
        ("train --lr -1", [*T, "--lr", "-1", "--out", o("r8")]),
        ("train --lr nan", [*T, "--lr", "nan", "--out", o("r9")]),
        ("train --lr inf", [*T, "--lr", "inf", "--out", o("r10")]),
        ("train --weight-decay -1", [*T, "--weight-decay", "-1", "--out", o("r11")]),
        ("train --eps -0.3", [*T, "--eps", "-0.3", "--out", o("r12")]),
        ("train --eps 2", [*T, "--eps", "2", "--out", o("r13")]),
        ("train --eps abc", [*T, "--eps", "abc", "--out", o("r14")]),
        ("train --attack-step-size -1", [*T, "--attack-step-size", "-1", "--out", o("r15")]),
        ("train --batch-size 0", [*T, "--batch-size", "0", "--out", o("r16")]),
        ("train --option without =", [*T, "--option", "beta", "--out", o("r17")]),
        ("train --option unknown key", [*T, "--option", "beta=6", "--out", o("r18")]),
        ("train trades beta=-6", ["train", "--defense", "trades", "--dataset", "synthetic", "--preset", "mnist5k",
                                  "--epochs", "1", "--no-progress", "--option", "beta=-6", "--out", o("r19")]),
        ("train trades beta=abc", ["train", "--defense", "trades", "--dataset", "synthetic", "--preset", "mnist5k",
                                   "--epochs", "1", "--no-progress", "--option", "beta=abc", "--out", o("r20")]),
        ("train trades beta=NaN", ["train", "--defense", "trades", "--dataset", "synthetic", "--preset", "mnist5k",
                                   "--epochs", "1", "--no-progress", "--option", "beta=NaN", "--out", o("r20b")]),
        ("train act alpha=5", ["train", "--defense", "act", "--dataset", "synthetic", "--preset", "mnist5k",
                               "--epochs", "1", "--no-progress", "--option", "alpha=5", "--out", o("r21")]),
        ("train act alpha=-0.1", ["train", "--defense", "act", "--dataset", "synthetic", "--preset", "mnist5k",
                                  "--epochs", "1", "--no-progress", "--option", "alpha=-0.1", "--out", o("r22")]),
        ("train act temperature=0", ["train", "--defense", "act", "--dataset", "synthetic", "--preset", "mnist5k",
                                     "--epochs", "1", "--no-progress", "--option", "temperature=0", "--out", o("r23")]),
        ("train act attack_form=nosuch", ["train", "--defense", "act", "--dataset", "synthetic", "--preset", "mnist5k",
                                          "--epochs", "1", "--no-progress", "--option", "attack_form=x", "--out", o("r24")]),
        ("train arrest lam=-1", ["train", "--defense", "arrest", "--dataset", "synthetic", "--preset", "mnist5k",
                                 "--epochs", "7", "--no-progress", "--option", "lam=-1", "--out", o("r25")]),
        ("train arrest phi=200", ["train", "--defense", "arrest", "--dataset", "synthetic", "--preset", "mnist5k",
                                  "--epochs", "7", "--no-progress", "--option", "phi=200", "--out", o("r26")]),
        ("train arrest stage1_epochs=-2", ["train", "--defense", "arrest", "--dataset", "synthetic", "--preset",
                                           "mnist5k", "--epochs", "2", "--no-progress", "--option", "stage1_epochs=-2",
                                           "--out", o("r27")]),
        ("train arrest nr_epochs=-5", ["train", "--defense", "arrest", "--dataset", "synthetic", "--preset", "mnist5k",
                                       "--epochs", "7", "--no-progress", "--option", "nr_epochs=-5", "--out", o("r27b")]),
        ("train arrest init missing", ["train", "--defense", "arrest", "--dataset", "synthetic", "--preset", "mnist5k",
                                       "--epochs", "2", "--no-progress", "--option", f"init={miss}",
                                       "--option", "stage1_epochs=0", "--out", o("r28")]),
        ("train arrest variant nosuch", ["train", "--defense", "arrest", "--dataset", "synthetic", "--preset", "mnist5k",
                                         "--epochs", "2", "--no-progress", "--option", "variant=x", "--out", o("r29")]),
        ("train afd lr_features=-1", ["train", "--defense", "afd", "--dataset", "synthetic", "--preset", "mnist5k",
                                      "--epochs", "1", "--no-progress", "--option", "lr_features=-1", "--out", o("r30")]),
        ("train afd lr_discriminator=0", ["train", "--defense", "afd", "--dataset", "synthetic", "--preset", "mnist5k",
                                          "--epochs", "1", "--no-progress", "--option", "lr_discriminator=0",
                                          "--out", o("r31")]),
        ("train afd gan_loss=nosuch", ["train", "--defense", "afd", "--dataset", "synthetic", "--preset", "mnist5k",
                                       "--epochs", "1", "--no-progress", "--option", "gan_loss=x", "--out", o("r32")]),
        ("train afd weight_decay_discriminator=-3", ["train", "--defense", "afd", "--dataset", "synthetic", "--preset",
                                                     "mnist5k", "--epochs", "1", "--no-progress", "--option",
                                                     "weight_decay_discriminator=-3", "--out", o("r33")]),
        ("train --resume on a missing run", [*T, "--resume", "--out", o("r34")]),
        ("train --out holds a checkpoint (no --resume)", [*T, "--out", ck.parent]),
        ("train --out is a file", [*T, "--out", txt]),
        ("train --out empty", [*T, "--out", ""]),
        ("train --seeds with a duplicate", [*T, "--seeds", "1", "1", "--out", o("r35")]),
        ("train --seeds abc", [*T, "--seeds", "abc", "--out", o("r36")]),
        ("train --data-dir a file", ["train", "--defense", "natural", "--dataset", "cifar10", "--epochs", "1",
                                     "--data-dir", txt, "--out", o("r37")]),
        # -- demo
        ("demo --suite nosuch", ["demo", "--suite", "nosuch", "--out", o("d1")]),
        ("demo --defenses nosuch", ["demo", "--defenses", "nosuch", "--out", o("d2")]),
        ("demo --n-examples 0", ["demo", "--n-examples", "0", "--out", o("d3")]),
        ("demo --out a file", ["demo", "--out", txt]),
        ("demo --device nosuch", ["demo", "--device", "nosuch", "--defenses", "natural", "--out", o("d4")]),
        ("demo --out holds a run, no --resume", ["demo", "--defenses", "natural", "--out", tmp / "demo_prev"]),
        ("demo --defenses repeated", ["demo", "--defenses", "natural", "natural", "--out", o("d5")]),
        # -- reports
        ("ardist --clean abc", ["ardist", "--clean", "abc", "--robust", "40"]),
        ("ardist --clean 150", ["ardist", "--clean", "150", "--robust", "40"]),
        ("ardist --robust nan", ["ardist", "--clean", "80", "--robust", "nan"]),
        ("ardist --curve nosuch", ["ardist", "--clean", "80", "--robust", "40", "--curve", "nosuch"]),
        ("ardist --curve a folder", ["ardist", "--clean", "80", "--robust", "40", "--curve", d]),
        ("ardist robust above clean", ["ardist", "--clean", "50", "--robust", "80"]),
        ("ardist fractions", ["ardist", "--clean", "0.8", "--robust", "0.4"]),
        ("ardist curve out of range", ["ardist", "--clean", "80", "--robust", "40", "--curve", f["curve"]]),
        ("leaderboard missing db", ["leaderboard", "--db", tmp / "nosuch.sqlite"]),
        ("leaderboard db is a text file", ["leaderboard", "--db", txt]),
        ("leaderboard db is a folder", ["leaderboard", "--db", d]),
        ("leaderboard --sort nosuch", ["leaderboard", "--db", tmp / "nosuch.sqlite", "--sort", "nosuch"]),
        ("leaderboard --format nosuch", ["leaderboard", "--format", "nosuch"]),
        ("leaderboard --threat garbage", ["leaderboard", "--db", tmp / "nosuch.sqlite", "--threat", "garbage"]),
        ("leaderboard --baselines missing", ["leaderboard", "--baselines", tmp / "nosuch.csv"]),
        ("report --db a text file", ["report", "--db", txt, "--out", o("p1")]),
        ("report --out a file", ["report", "--out", txt]),
        ("report --db missing", ["report", "--db", tmp / "nosuch.sqlite", "--out", o("p2")]),
        ("export --out is the db", ["export", "--db", tmp / "lb.sqlite", "--out", tmp / "lb.sqlite"]),
        ("export --db missing", ["export", "--db", tmp / "nosuch.sqlite", "--out", o("x1.csv")]),
        ("export --out a folder", ["export", "--db", tmp / "lb.sqlite", "--out", d]),
        # -- output paths under a regular file, broken links, empty values
        ("eval --out under a file", [*E, "--model", ck, "--out", txt / "sub"]),
        ("train --out under a file", [*T, "--out", txt / "sub"]),
        ("merge --out under a file", ["merge", s0, s1, "--out", txt / "sub"]),
        ("transfer --out under a file", ["transfer", "--surrogates", ck, "--targets", ck, "--out", txt / "sub"]),
        ("analyze --out under a file", ["analyze", "--model", ck, "--out", txt / "sub"]),
        ("demo --out under a file", ["demo", "--defenses", "natural", "--out", txt / "sub"]),
        ("report --out under a file", ["report", "--db", tmp / "lb.sqlite", "--out", txt / "sub"]),
        ("eval --model a broken symlink", [*E, "--model", tmp / "broken_link.pt", "--out", o("e70")]),
        ("eval --out a broken symlink", [*E, "--model", ck, "--out", tmp / "broken_out"]),
        ("transfer empty surrogate", ["transfer", "--surrogates", "", "--targets", ck, "--out", o("t9")]),
        ("transfer --out holds another matrix", ["transfer", "--surrogates", ck, "--targets", f["ckpt2"],
                                                 "--out", tmp / "old_transfer"]),
        ("analyze empty --out", ["analyze", "--model", ck, "--out", ""]),
        ("analyze empty --model", ["analyze", "--model", "", "--out", o("a9")]),
        ("train --option =3 (empty key)", [*T, "--option", "=3", "--out", o("r38")]),
        ("train --option beta= (empty value)", ["train", "--defense", "trades", "--dataset", "synthetic", "--preset",
                                                "mnist5k", "--epochs", "1", "--no-progress", "--option", "beta=",
                                                "--out", o("r39")]),
        ("train act alpha=true (a boolean)", ["train", "--defense", "act", "--dataset", "synthetic", "--preset", "mnist5k",
                                              "--epochs", "1", "--no-progress", "--option", "alpha=true", "--out", o("r40")]),
        ("train arrest stage1_epochs=1.5", ["train", "--defense", "arrest", "--dataset", "synthetic", "--preset",
                                            "mnist5k", "--epochs", "7", "--no-progress", "--option", "stage1_epochs=1.5",
                                            "--out", o("r41")]),
        ("train --resume with another seed", [*T, "--resume", "--seed", "5", "--out", ck.parent]),
        ("train --resume of another defense", ["train", "--defense", "madry", "--dataset", "synthetic", "--preset",
                                               "mnist5k", "--epochs", "2", "--no-progress", "--resume", "--out", ck.parent]),
        ("train --eps empty", [*T, "--eps", "", "--out", o("r42")]),
        # -- the front door
        ("unknown command", ["nosuch"]),
        ("--log-level nosuch", ["--log-level", "nosuch", "leaderboard"]),
        ("eval without --model", ["eval"]),
        ("merge without folders", ["merge", "--out", o("m9")]),
    ]
    return c


def _prepare(f: dict[str, Path], tmp: Path) -> None:
    """Extra state some cases need: a corrupt shard, a previous demo run, a small leaderboard."""
    import shutil

    bad = tmp / "badshard"
    shutil.copytree(f["shard0"], bad)
    (bad / "result.json").write_text("{ not json")
    (tmp / "broken_link.pt").symlink_to(tmp / "nowhere.pt")
    (tmp / "broken_out").symlink_to(tmp / "nowhere_dir")
    (tmp / "old_transfer").mkdir()
    (tmp / "old_transfer" / "transfer.json").write_text(json.dumps({"rows": [{"surrogate": "x.pt", "target": "y.pt"}]}))
    prev = tmp / "demo_prev" / "natural"
    prev.mkdir(parents=True)
    shutil.copy(f["ckpt"], prev / "checkpoint.pt")
    from robustbench_lite.reports.store import add_record

    add_record(tmp / "lb.sqlite", json.loads((f["eval"] / "result.json").read_text()),
               result_path=str(f["eval"] / "result.json"))


def _snapshot(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and "outs" not in p.relative_to(root).parts:
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run_case(argv: list[Any], limit: float) -> tuple[int | None, str, str]:
    """(exit code or None when it raised/ran too long, stderr, what happened)."""
    from robustbench_lite.cli import main

    err, out = io.StringIO(), io.StringIO()

    def _alarm(*_: Any) -> None:
        raise _Timeout()

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code = main([str(a) for a in argv])
            except SystemExit as e:  # argparse
                code = e.code if isinstance(e.code, int) else 1
        return code, err.getvalue(), "exit"
    except _Timeout:
        return None, err.getvalue(), "timeout"
    except Exception:  # noqa: BLE001 - a traceback is what the probe looks for
        return None, err.getvalue() + traceback.format_exc(), "traceback"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def classify(code: int | None, err: str, how: str) -> str:
    if how == "traceback" or "Traceback" in err:
        return "TRACEBACK"
    if how == "timeout" or code == 0:
        return "ACCEPTED"
    lines = [ln for ln in err.strip().splitlines() if "error:" in ln]
    return "ok" if len(lines) == 1 else "MULTILINE"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", default="", help="only the cases whose label contains this text")
    ap.add_argument("--limit", type=float, default=20.0, help="seconds a case may run before it counts as accepted")
    args = ap.parse_args(argv)
    import logging

    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        f = _fixtures(tmp)
        _prepare(f, tmp)
        cases = [(label, a) for label, a in _cases(f, tmp) if args.k in label]
        bad = 0
        for label, a in cases:
            before = _snapshot(tmp)
            code, err, how = run_case(a, args.limit)
            verdict = classify(code, err, how)
            after = _snapshot(tmp)
            changed = [p for p, h in before.items() if after.get(p) != h]
            if verdict == "ok" and changed:
                verdict = "DAMAGED"
            bad += verdict != "ok"
            first = next((ln for ln in err.strip().splitlines() if "error:" in ln), err.strip()[-200:])
            if verdict == "TRACEBACK":
                first = err.strip().splitlines()[-1] if err.strip() else ""
            print(f"{verdict:<9} exit={code!s:<4} {label}: {first[:220]}", flush=True)
            if changed:
                print(f"          changed: {', '.join(Path(p).name for p in changed[:4])}")
        print(f"\n{len(cases)} cases, {len(cases) - bad} refused in one line, {bad} not", flush=True)
    return min(bad, 125)


if __name__ == "__main__":
    sys.exit(main())
