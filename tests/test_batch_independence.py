"""The numbers do not depend on the batch size (issue #20): every random draw is keyed by (seed,
stream, example position), row-keyed attacks run in any chunks, the others on canonical blocks.

Exact equality on purpose (no tolerance): a verdict that flips with the batch size is the bug."""
from __future__ import annotations

import csv
import tomllib
from pathlib import Path
from typing import Any

import pytest
import torch

from robustbench_lite.evaluations.attacks import ATTACKS, create_attack
from robustbench_lite.evaluations.attacks.base import CANONICAL_BLOCK, scheduling_block
from robustbench_lite.evaluations.draws import RowGenerator, rand, randn, rows
from robustbench_lite.evaluations.evaluate import EvalOptions, evaluate, shard_bounds

from test_attacks_contract import FAST

BATCHES = (1, 7, 128)
SLOW_ATTACKS = {"autoattack"}
CHEAPER = {"cw_l2": {"steps": 20, "binary_search_steps": 2}, "ddn": {"steps": 20}}  # pyautoattack's setup dominates: ~10 s per call on 2 cores


def _attack_cases() -> list[Any]:
    out: list[Any] = []
    for name in ATTACKS.names():
        opts = {**FAST.get(name, {}), **CHEAPER.get(name, {})}
        marks = [pytest.mark.slow] if name in SLOW_ATTACKS else []
        out.append(pytest.param(name, opts, marks=marks, id=name))
    # margin_topk's further targets keep a quarter of the block's survivors: a canonical-block attack
    out.append(pytest.param("margin_topk", {"steps": 10, "k": 2, "more_targets": 2}, id="margin_topk-more"))
    return out


def _points(eval_batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x, y = eval_batch
    x, y = x[:12], y[:12]
    # positions straddling a canonical block boundary, with a gap: two blocks, not in one call's order
    pos = torch.cat([torch.arange(CANONICAL_BLOCK - 5, CANONICAL_BLOCK), torch.arange(CANONICAL_BLOCK + 3, CANONICAL_BLOCK + 10)])
    return x, y, pos


@pytest.mark.parametrize("name,opts", _attack_cases())
def test_every_attack_gives_the_same_per_example_results_at_batch_sizes_1_7_128(name, opts, eval_model, eval_batch,
                                                                                   eval_natural_ckpt):
    """The verdict per point (broken or not; for a minimum-norm attack, found or not, and the norm's
    verdict at three radii) is identical. The adversarial points themselves may differ in the last
    bit for attacks whose steps are not signs (L2, DLR): a model's forward pass on a row is not
    bitwise the same at every batch size (gemv vs gemm); the draws are (test below)."""
    x, y, pos = _points(eval_batch)
    if name == "transfer":
        opts = {**opts, "surrogate": str(eval_natural_ckpt)}
    attack = create_attack(name, **opts)
    eps = None if attack.minimum_norm else {"linf": 0.15, "l2": 1.5, "l1": 8.0}[attack.norm]
    runs = [attack(eval_model, x, y, eps=eps, batch_size=b, seed=3, positions=pos, progress=False) for b in BATCHES]
    first = runs[0]
    assert 0 < int(first.success.sum()), f"{name} broke nothing: the comparison would be empty"
    for b, out in zip(BATCHES[1:], runs[1:]):
        assert torch.equal(out.success, first.success), f"{name}: success differs at batch size {b}"
        if first.norms is not None:
            for e in (0.5, 1.0, 2.0) if attack.norm != "linf" else (0.05, 0.1, 0.2):
                assert torch.equal(out.norms <= e, first.norms <= e), f"{name}: norms' verdict at {e} differs at {b}"


class _NoGradient(torch.nn.Module):
    """Logits that do not depend on the input (a zero gradient): an attack's output is then its random
    start, projected and clipped, with no rounding of a model in it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :5] * 0 + torch.tensor([1.0, 0.5, 0.3, 0.2, 0.0])


@pytest.mark.parametrize("name,opts", [("pgd", {"steps": 2, "restarts": 2}), ("pgd", {"norm": "l2", "steps": 2}),
                                       ("pgd", {"norm": "l1", "steps": 2}), ("pgd", {"random_start": "normal"}),
                                       ("apgd_ce", {"steps": 3, "restarts": 2}), ("apgd_ce", {"norm": "l2", "steps": 3}),
                                       ("apgd_t", {"steps": 3, "n_target_classes": 2, "restarts": 2}),
                                       ("margin_topk", {"steps": 3, "k": 2}), ("transfer", {"steps": 2}),
                                       ("margin_topk", {"steps": 3, "k": 2, "more_targets": 1})])
def test_the_draws_depend_on_seed_stream_and_position_only(name, opts, tmp_path, monkeypatch):
    """Every point's random start is the same at batch sizes 1, 7 and 128, in a shuffled call, and
    alone; another position draws otherwise. (Fails on per-batch-block seeds.)"""
    model = _NoGradient()
    if name == "transfer":
        from robustbench_lite.evaluations.attacks import transfer as transfer_mod

        monkeypatch.setattr(transfer_mod, "load_surrogate", lambda *a: model)
        opts = {**opts, "surrogate": "unused.pt"}
    x = torch.rand(20, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(20, dtype=torch.long)
    pos = torch.cat([torch.arange(CANONICAL_BLOCK - 9, CANONICAL_BLOCK), torch.arange(CANONICAL_BLOCK + 3, CANONICAL_BLOCK + 14)])
    attack = create_attack(name, **opts)
    eps = {"linf": 0.1, "l2": 0.5, "l1": 2.0}[attack.norm]
    runs = [attack(model, x, y, eps=eps, batch_size=b, seed=1, positions=pos, progress=False).x_adv for b in BATCHES]
    assert not torch.equal(runs[0], x)  # a random start moved the points
    for b, out in zip(BATCHES[1:], runs[1:]):
        assert torch.equal(out, runs[0]), f"{name}: the draws differ at batch size {b}"
    if not attack.row_keyed:
        return  # a canonical-block attack's draws depend on its block's points by design
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    shuffled = attack(model, x[perm], y[perm], eps=eps, batch_size=5, seed=1, positions=pos[perm], progress=False)
    assert torch.equal(shuffled.x_adv, runs[0][perm])
    alone = attack(model, x[4:5], y[4:5], eps=eps, batch_size=128, seed=1, positions=pos[4:5], progress=False)
    assert torch.equal(alone.x_adv, runs[0][4:5])
    moved = attack(model, x[4:5], y[4:5], eps=eps, batch_size=128, seed=1, positions=pos[4:5] + 1000, progress=False)
    assert not torch.equal(moved.x_adv, runs[0][4:5])


def test_row_generator_rows_are_independent_streams():
    g = RowGenerator.keyed(0, "s", [5, 6, 7])
    a = rand((3, 4), g)
    b = randn((3, 2), g)
    again = RowGenerator.keyed(0, "s", [7, 5])  # other rows, other order, other call
    assert torch.equal(rand((2, 4), again), a[[2, 0]])
    assert torch.equal(randn((1, 2), rows(again, torch.tensor([1]))), b[[0]])
    assert not torch.equal(rand((1, 4), RowGenerator.keyed(1, "s", [5])), a[:1])  # the seed matters
    assert not torch.equal(rand((1, 4), RowGenerator.keyed(0, "t", [5])), a[:1])  # ... and the stream
    with pytest.raises(ValueError):
        rand((2, 4), g)  # a draw for another number of rows is a bug, not a silent broadcast


def test_plain_generators_draw_as_torch_does():
    """Training and direct ``run`` calls pass a torch.Generator: the draws are torch's own."""
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    assert torch.equal(rand((3, 5), g1), torch.rand(3, 5, generator=g2))
    assert torch.equal(randn((2, 5), g1), torch.randn(2, 5, generator=g2))


def test_scheduling_blocks_are_whole_canonical_blocks_unless_every_attack_is_row_keyed():
    row, block = create_attack("pgd"), create_attack("a3")
    assert scheduling_block(7, [row]) == 7 and scheduling_block(300, [row]) == 300
    for b in (1, 7, 128):
        assert scheduling_block(b, [row, block]) == CANONICAL_BLOCK
    assert scheduling_block(129, [block]) == 2 * CANONICAL_BLOCK
    s = scheduling_block(7, [row, block])
    bounds = [shard_bounds(1000, i, 3, s) for i in range(3)]
    assert all(lo % CANONICAL_BLOCK == 0 for lo, _ in bounds) and bounds[-1][1] == 1000


# -- every built-in suite, through evaluate ---------------------------------------------------------

SUITES = Path(__file__).resolve().parents[1] / "evaluations" / "suites"
_SMALL = {"steps": 3, "restarts": 1, "n_queries": 40, "n_target_classes": 2, "k": 2, "more_targets": 1,
          "odi_steps": 2, "search_steps": 2, "binary_search_steps": 2, "target_classes": 2}


def _small_suite(name: str, out: Path) -> Path:
    """The built-in suite ``name`` with the same attacks (and cascade, radii, labels) at small budgets:
    the built-ins at full budget take minutes per batch size on 2 cores."""
    text = (SUITES / f"{name}.toml").read_text()
    data = tomllib.loads(text)
    lines = [f"name = {name + '_small'!r}", f"cascade = {str(data.get('cascade', False)).lower()}"]
    for k in ("max_eps",):
        if k in data:
            lines.append(f"{k} = {{ {', '.join(f'{n} = {v!r}' for n, v in data[k].items())} }}")
    for entry in data["attacks"]:
        lines.append("[[attacks]]")
        e = dict(entry)
        if e.get("name") == "autoattack":  # standard AutoAttack's four stages, each at a tiny budget
            e["version"] = "custom"
            e["attacks"] = ["apgd-ce", "apgd-t", "fab-t", "square"]
        for k, v in e.items():
            if k in _SMALL and isinstance(v, int) and not isinstance(v, bool):
                v = min(v, _SMALL[k])
            lines.append(f"{k} = {_toml(v)}")
    path = out / f"{name}_small.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, str):
        return repr(v).replace("'", '"')
    if isinstance(v, list):
        return "[" + ", ".join(_toml(i) for i in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml(i)}" for k, i in v.items()) + " }"
    return repr(v)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _suite_cases() -> list[Any]:
    names = sorted(p.stem for p in SUITES.glob("*.toml"))
    return [pytest.param(n, marks=pytest.mark.slow) for n in names]


@pytest.mark.parametrize("suite", _suite_cases())
def test_every_builtin_suite_gives_the_same_per_example_csv_at_batch_sizes_1_7_128(suite, tmp_path, eval_natural_ckpt):
    small = _small_suite(suite, tmp_path)
    # the CIFAR-radius suites have no attack at MNIST's linf:0.3: evaluate them at one of their own radii
    threat = {"act": "linf:8/255", "afd": "linf:8/255"}.get(suite)
    csvs = []
    for b in BATCHES:
        evaluate(eval_natural_ckpt, tmp_path / f"b{b}", EvalOptions(suite=str(small), n_examples=20, batch_size=b,
                                                                    check_examples=4, seed=2, threat=threat))
        csvs.append(_rows(tmp_path / f"b{b}" / "per_example.csv"))
    assert csvs[0] and all(c == csvs[0] for c in csvs[1:])
