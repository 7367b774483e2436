"""``bench reproduce RUN_DIR --out NEW``: run an evaluation again from its ``result.json`` alone.

The same checkpoint (sha256 checked), the suite text the record embeds (not the file on disk, which
may have changed since), threat, seed, example count and indices, batch size, data and options
(``provenance.options``); a shard is re-run as that shard, a merged or torchrun run as one whole
run (their numbers do not depend on it). Then ``per_example.csv`` of both are compared cell by cell:
:class:`Comparison` lists every (example, column) that differs. On the same machine there is none.
Example::

    cmp = reproduce("runs/demo/eval-quick", "runs/demo/eval-quick-again")
    cmp.same, cmp.differences[:5]
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robustbench_lite.errors import BenchError

from .verify import read_per_example, read_run

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Comparison:
    examples: int
    columns: int
    differences: tuple[tuple[str, str, str, str], ...]  # (example index, column, before, now)

    @property
    def same(self) -> bool:
        return not self.differences


def rerun_options(rec: dict[str, Any], options: dict[str, Any], device: str | None) -> Any:
    """The :class:`EvalOptions` that make the recorded run again (the suite is passed separately)."""
    from .evaluate import EvalOptions

    known = {f.name for f in dataclasses.fields(EvalOptions)}
    opt = {k: v for k, v in options.items() if k in known}
    opt.update(resume=False, batch_size=int(rec["batch_size"]), seed=int(rec["seed"]))
    if "shard" not in rec:  # a merged run is made again whole
        opt["shard"] = None
    if device is not None:
        opt["device"] = device
    return EvalOptions(**opt)


def reproduce(run_dir: str | Path, out_dir: str | Path, *, model: str | Path | None = None,
              device: str | None = None) -> Comparison:
    """Evaluate the run of ``run_dir`` again into ``out_dir`` and compare (see the module docstring)."""
    from robustbench_lite.checkpoint import load_checkpoint
    from robustbench_lite.threat import ThreatModel

    from .evaluate import evaluate_loaded
    from .suite import parse_suite

    run = read_run(run_dir, model)
    rec = run.record
    if Path(out_dir).resolve() == run.path.resolve():
        raise BenchError("--out must be another folder than the run being reproduced.")
    opts = rerun_options(rec, run.options, device)
    suite = parse_suite(rec["suite"]["text"], default_name=rec["suite"]["name"])
    if suite.hash != rec["suite"]["hash"]:
        raise BenchError(f"the suite text in {run.path}/result.json does not hash to its recorded hash.")
    ckpt = load_checkpoint(run.checkpoint, arch=opts.arch, dataset=opts.dataset, member=opts.member,
                           normalize=opts.normalize, threat=opts.threat)
    new = evaluate_loaded(ckpt, suite, out_dir, opts, checkpoint_path=run.checkpoint)
    if ThreatModel.from_dict(new["threat"]) != ThreatModel.from_dict(rec["threat"]):
        raise BenchError(f"the re-run was evaluated at {new['threat']}, the record at {rec['threat']}.")
    if [int(i) for i in new["indices"]] != [int(i) for i in rec["indices"]]:
        raise BenchError("the re-run evaluated other examples than the record lists (another data set?).")
    return compare(run.path / "per_example.csv", Path(out_dir) / "per_example.csv")


def compare(before: Path, now: Path) -> Comparison:
    """Every (example, column) of two per_example.csv files that differs (a column only one has: its
    every example)."""
    cols_a, rows_a = read_per_example(before)
    cols_b, rows_b = read_per_example(now)
    diffs: list[tuple[str, str, str, str]] = []
    by_index = {r["index"]: r for r in rows_b}
    cols = list(dict.fromkeys(cols_a + cols_b))
    for r in rows_a:
        other = by_index.get(r["index"])
        for c in cols:
            a, b = r.get(c, "(absent)"), (other or {}).get(c, "(absent)")
            if a != b:
                diffs.append((r["index"], c, a, b))
    for i in sorted(set(by_index) - {r["index"] for r in rows_a}):
        diffs.append((i, "index", "(absent)", i))
    return Comparison(len(rows_a), len(cols), tuple(diffs))
