"""Subcommands contributed by ``defenses`` (collected by :mod:`robustbench_lite.cli` via ``ADDERS``).

``bench analyze``: the papers' model analyses (:mod:`evaluations.analyses`) on one checkpoint.
Nothing heavy is imported at module level (``bench --help`` builds this parser).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable


ANALYZE_FILES = ("analyses.json", "frobenius.csv", "frobenius.png", "random_labels.csv", "random_labels.png",
                 "hdh.csv", "hdh.png")


def add_analyze(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from robustbench_lite.cli import positive_int

    p = sub.add_parser(
        "analyze", help="analyse a checkpoint (weight norms, random-label fitting, entropy, similarity, sparsity, H-Delta-H)",
        description="Model analyses from the ACT, ARREST and AFD papers. Writes frobenius.csv/png, "
        "random_labels.csv/png, hdh.csv/png and analyses.json (a dict of scalar results) under --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint to analyse (one of ours)")
    p.add_argument("--out", default=None, help="output folder (default: <checkpoint folder>/analyses)")
    p.add_argument("--reference", default=None,
                   help="checkpoint whose pre-pool representation the cosine similarity compares to (e.g. the natural model)")
    p.add_argument("--n-examples", type=positive_int, default=1000,
                   help="class-balanced training and test examples used by each analysis")
    p.add_argument("--member", default=None, help="which network of a multi-model checkpoint (ACT: natural)")
    p.add_argument("--random-label-epochs", type=positive_int, default=30,
                   help="epochs of the 400-200 MLP fitted to random binary labels")
    p.add_argument("--pgd-steps", type=positive_int, default=10, help="PGD steps for the adversarial features of the H-Delta-H estimate")
    p.add_argument("--seed", type=int, default=0, help="seed for the random labels, the MLPs and PGD")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--data-dir", default=None, help="folder holding the dataset files (CIFAR)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=cmd_analyze)


def cmd_analyze(args: argparse.Namespace) -> int:
    from robustbench_lite.cli import check_out_folder, note_n_examples

    out = Path(args.out) if args.out else Path(args.model).parent / "analyses"
    check_out_folder(out, files=ANALYZE_FILES)
    from evaluations.analyses import AnalysisOptions, analyze

    res = analyze(args.model, out, AnalysisOptions(
        n_examples=args.n_examples, reference=args.reference, member=args.member,
        random_label_epochs=args.random_label_epochs, pgd_steps=args.pgd_steps, seed=args.seed,
        device=args.device, data_dir=args.data_dir))
    width = max(len(k) for k in res)
    for k, v in res.items():
        print(f"{k:<{width}}  {v:.4g}")
    note_n_examples(args.n_examples, int(res["n_examples_test"]) if "n_examples_test" in res else None, None)
    print(f"results: {out}")
    return 0


ADDERS: list[Callable[[argparse._SubParsersAction], None]] = [add_analyze]  # type: ignore[type-arg]
