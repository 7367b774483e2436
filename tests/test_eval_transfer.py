"""`bench transfer`: the matrix of black-box success rates (ACT Table 3 convention)."""
import csv
import json

import torch

from robustbench_lite.evaluations.pgd import pgd
from robustbench_lite.evaluations.transfer import transfer_matrix
from robustbench_lite.checkpoint import load_checkpoint
from robustbench_lite.cli import main
from robustbench_lite.data import class_balanced_indices, get_dataset
from robustbench_lite.evaluations.draws import RowGenerator


def _second_ckpt(tmp_path_factory):
    from robustbench_lite.defenses import build_config, train

    cfg = build_config("natural", "mnist5k", {"dataset": "synthetic", "epochs": 8, "batch_size": 16, "eval_n": 16,
                                               "eval_steps": 2, "seed": 5})
    return train(cfg, tmp_path_factory.mktemp("second"), progress=False)


def _direct_rate(surrogate, target, n, seed, eps):
    """Success rate (%) recomputed without transfer_matrix: PGD-20 on the surrogate (the same random
    start, step 2.5 * eps / 20, every step taken), predictions of the target, among its clean-correct
    points. Returns (n clean-correct, rate or None)."""
    s_model = load_checkpoint(surrogate).model.eval()
    t_model = load_checkpoint(target).model.eval()
    d = get_dataset("synthetic").load("test")
    x, y = d.batch(class_balanced_indices(d.targets, n))
    with torch.no_grad():
        ok = t_model(x).argmax(1) == y
    adv = pgd(s_model, x, y, norm="linf", eps=eps, steps=20, step_size=2.5 * eps / 20, early_stop=False,
              return_success=False, generator=RowGenerator.keyed(seed, "transfer", range(len(x)))).x_adv
    assert float((adv - x).abs().max()) <= eps + 1e-6 and float(adv.min()) >= 0 and float(adv.max()) <= 1
    with torch.no_grad():
        broken = (t_model(adv).argmax(1) != y) & ok
    n_ok = int(ok.sum())
    return n_ok, (round(100 * float(broken.sum()) / n_ok, 2) if n_ok else None)


def test_self_transfer_equals_white_box_pgd(tmp_path, synthetic_ckpt):
    rows = transfer_matrix([str(synthetic_ckpt)], [str(synthetic_ckpt)], tmp_path, n_examples=40, seed=3, threat="linf:0.6")
    assert len(rows) == 1
    # independent recomputation: PGD-20 on the target itself with the same random start, all steps taken
    n_ok, rate = _direct_rate(synthetic_ckpt, synthetic_ckpt, 40, 3, 0.6)
    assert rows[0]["n"] == n_ok
    assert rows[0]["success_rate"] == rate
    # linf:0.6 reaches the grey image from every input: a note in transfer.json, not an error
    assert "grey" in json.loads((tmp_path / "transfer.json").read_text())["notes"][0]


def test_cli_writes_the_matrix(capsys, tmp_path, tmp_path_factory, synthetic_ckpt):
    """Properties of the matrix, not the numbers of one machine: the two models are trained with
    bf16 where the CPU has it, so which cells differ (or are all 0.0) depends on the machine."""
    other = _second_ckpt(tmp_path_factory)
    out = tmp_path / "tr"
    surrogates, targets = [str(synthetic_ckpt), str(other)], [str(other), str(synthetic_ckpt)]
    code = main(["transfer", "--surrogates", *surrogates, "--targets", *targets, "--n-examples", "30", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    table = list(csv.reader(open(out / "transfer.csv")))
    assert table[0] == ["surrogate", *targets]
    assert [r[0] for r in table[1:]] == surrogates
    assert all(len(r) == 1 + len(targets) for r in table)
    rec = json.loads((out / "transfer.json").read_text())
    assert rec["threat"] == {"norm": "linf", "eps": 0.3} and rec["n_examples"] == 30 and rec["dataset"] == "synthetic"
    assert {(r["surrogate"], r["target"]) for r in rec["rows"]} == {(s, t) for s in surrogates for t in targets}
    assert len(rec["rows"]) == 4
    cell = {(r["surrogate"], r["target"]): r for r in rec["rows"]}
    for (s, t), r in cell.items():
        assert 0 <= r["n"] <= 30
        if r["n"]:
            assert 0 <= r["success_rate"] <= 100
            # the CSV shows the same number as the JSON row
            assert float(table[1 + surrogates.index(s)][1 + targets.index(t)]) == r["success_rate"]
        else:
            assert r["success_rate"] is None
        # every cell, self-transfer (white-box) or not, equals a direct recomputation
        assert (r["n"], r["success_rate"]) == _direct_rate(s, t, 30, 0, 0.3), (s, t)
    # a target's clean-correct count does not depend on the surrogate
    for t in targets:
        assert len({cell[(s, t)]["n"] for s in surrogates}) == 1
    assert f"-> {targets[0]}:" in captured.out
