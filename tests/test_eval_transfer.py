"""`bench transfer`: the matrix of black-box success rates (ACT Table 3 convention)."""
import csv
import json
import zlib

import torch

from evaluations.pgd import pgd
from evaluations.transfer import transfer_matrix
from robustbench_lite.checkpoint import load_checkpoint
from robustbench_lite.cli import main
from robustbench_lite.data import class_balanced_indices, get_dataset
from robustbench_lite.utils import make_generator


def _second_ckpt(tmp_path_factory):
    from defenses import build_config, train

    cfg = build_config("natural", "mnist5k", {"dataset": "synthetic", "epochs": 8, "batch_size": 16, "eval_n": 16,
                                               "eval_steps": 2, "seed": 5})
    return train(cfg, tmp_path_factory.mktemp("second"), progress=False)


def test_self_transfer_equals_white_box_pgd(tmp_path, synthetic_ckpt):
    rows = transfer_matrix([str(synthetic_ckpt)], [str(synthetic_ckpt)], tmp_path, n_examples=40, seed=3, threat="linf:0.6")
    assert len(rows) == 1
    # independent recomputation: PGD-20 on the target itself with the same random start, all steps taken
    c = load_checkpoint(synthetic_ckpt)
    d = get_dataset("synthetic").load("test")
    x, y = d.batch(class_balanced_indices(d.targets, 40))
    m = c.model.eval()
    with torch.no_grad():
        ok = m(x).argmax(1) == y
    eps = 0.6
    adv = pgd(m, x, y, norm="linf", eps=eps, steps=20, step_size=2.5 * eps / 20, early_stop=False, return_success=False,
              generator=make_generator(zlib.crc32(b"3:transfer:0"))).x_adv
    with torch.no_grad():
        broken = (m(adv).argmax(1) != y) & ok
    assert rows[0]["n"] == int(ok.sum())
    assert rows[0]["success_rate"] == round(100 * float(broken.sum()) / int(ok.sum()), 2)
    assert rows[0]["success_rate"] > 0


def test_cli_writes_the_matrix(capsys, tmp_path, tmp_path_factory, synthetic_ckpt):
    other = _second_ckpt(tmp_path_factory)
    out = tmp_path / "tr"
    code = main(["transfer", "--surrogates", str(synthetic_ckpt), str(other), "--targets", str(other),
                 str(synthetic_ckpt), "--n-examples", "30", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    table = list(csv.reader(open(out / "transfer.csv")))
    assert table[0] == ["surrogate", str(other), str(synthetic_ckpt)]
    assert [r[0] for r in table[1:]] == [str(synthetic_ckpt), str(other)]
    values = [float(v) for r in table[1:] for v in r[1:]]
    assert len(values) == 4 and all(0 <= v <= 100 for v in values)
    rec = json.loads((out / "transfer.json").read_text())
    assert len(rec["rows"]) == 4 and rec["threat"] == {"norm": "linf", "eps": 0.3}
    # cells are distinct measurements: each surrogate's examples differ
    cell = {(r["surrogate"], r["target"]): r["success_rate"] for r in rec["rows"]}
    assert cell[(str(synthetic_ckpt), str(other))] != cell[(str(other), str(other))]
