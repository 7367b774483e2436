"""Evaluation under torchrun (gloo on the CPU): the ranks share the blocks of every (attack, eps)
through the c10d store, and the per-example results equal a single-process run with the same
batch size and seed, whichever rank ran which block; a killed launch resumes to the same numbers;
two torchrun agents joined by a c10d rendezvous equal one process; a rank that dies ends the
launch (no hang) and is named."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from robustbench_lite.errors import BenchError
from robustbench_lite.evaluations.schedule import LocalQueue, StoreQueue

# resisting points make blocks slow enough to interrupt mid-run (small eps: most points hold)
SLOW_SUITE = """name = "slow"
cascade = true
[[attacks]]
name = "pgd"
label = "pgd_a"
eps = "0.05"
steps = 60
restarts = 2
[[attacks]]
name = "pgd"
label = "pgd_b"
eps_scale = [0.5, 1.0]
steps = 60
[[attacks]]
name = "fgsm"
cascade = false
"""


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BENCH_PROGRESS": "0"}
    env.pop("WORLD_SIZE", None)
    return env


def _eval_args(ckpt: Path, out: Path, suite: str, n: int, *extra: str) -> list[str]:
    return ["-m", "robustbench_lite", "eval", "--model", str(ckpt), "--suite", suite, "--n-examples", str(n),
            "--batch-size", "4", "--seed", "3", "--no-db", "--out", str(out), *extra]


def _single(ckpt: Path, out: Path, suite: str, n: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *_eval_args(ckpt, out, suite, n)], env=_env(), capture_output=True,
                          text=True, timeout=900)


def _torchrun(*launcher: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *launcher]


def _same_results(a: Path, b: Path) -> None:
    assert (a / "per_example.csv").read_text() == (b / "per_example.csv").read_text()
    ra, rb = json.loads((a / "result.json").read_text()), json.loads((b / "result.json").read_text())
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(ra["summary"]) == strip(rb["summary"])
    assert ra["robust_accuracy"] == rb["robust_accuracy"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def slow_suite(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("suite") / "slow.toml"
    path.write_text(SLOW_SUITE)
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("suite,n", [("quick", 16), ("full", 8)])
def test_two_ranks_equal_one_process(eval_natural_ckpt: Path, tmp_path: Path, suite: str, n: int) -> None:
    one = _single(eval_natural_ckpt, tmp_path / "one", suite, n)
    assert one.returncode == 0, one.stderr
    two = subprocess.run(_torchrun("--standalone", "--nproc_per_node", "2",
                                   *_eval_args(eval_natural_ckpt, tmp_path / "two", suite, n)),
                         env=_env(), capture_output=True, text=True, timeout=900)
    assert two.returncode == 0, two.stderr[-3000:]
    _same_results(tmp_path / "one", tmp_path / "two")
    ranks = json.loads((tmp_path / "two" / "result.json").read_text())["distributed"]
    assert ranks["world_size"] == 2 and sum(r["blocks"] for r in ranks["ranks"]) > 0
    assert "robust accuracy" in two.stdout and two.stdout.count("robust accuracy (worst case") == 1  # rank 0 alone


@pytest.mark.slow
def test_killed_launch_resumes_to_the_same_numbers(eval_natural_ckpt: Path, tmp_path: Path, slow_suite: str) -> None:
    one = _single(eval_natural_ckpt, tmp_path / "one", slow_suite, 16)
    assert one.returncode == 0, one.stderr
    out = tmp_path / "two"
    cmd = _torchrun("--standalone", "--nproc_per_node", "2", *_eval_args(eval_natural_ckpt, out, slow_suite, 16))
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while len(list((out / "parts" / "blocks").glob("*/*.json"))) < 3:
            assert proc.poll() is None and time.monotonic() < deadline, "the launch ended before it could be killed"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert not (out / "result.json").exists()  # killed mid-run
    done_before = len(list((out / "parts" / "blocks").glob("*/*.json")))
    again = subprocess.run(cmd + ["--resume"], env=_env(), capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    _same_results(tmp_path / "one", out)
    blocks = json.loads((out / "result.json").read_text())["distributed"]["ranks"]
    n_items = len(list((out / "parts" / "blocks").glob("*/*.json")))
    assert sum(r["blocks"] for r in blocks) <= n_items - done_before + 2  # finished blocks were not run again


@pytest.mark.slow
def test_two_nodes_by_c10d_rendezvous_equal_one_process(eval_natural_ckpt: Path, tmp_path: Path) -> None:
    one = _single(eval_natural_ckpt, tmp_path / "one", "quick", 12)
    assert one.returncode == 0, one.stderr
    port = _free_port()
    launcher = ["--nnodes", "2", "--nproc_per_node", "1", "--rdzv-backend", "c10d",
                "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", f"rbl-test-{port}"]
    cmd = _torchrun(*launcher, *_eval_args(eval_natural_ckpt, tmp_path / "two", "quick", 12))
    agents = [subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [a.communicate(timeout=900) for a in agents]
    assert all(a.returncode == 0 for a in agents), [o[1][-2000:] for o in outs]
    _same_results(tmp_path / "one", tmp_path / "two")
    assert json.loads((tmp_path / "two" / "result.json").read_text())["distributed"]["world_size"] == 2


DYING_ARCH = '''
import os
import torch


class Dies(torch.nn.Module):
    """small_cnn's weights; rank 1 exits hard on its 40th forward pass (a crashed worker)."""

    def __init__(self, num_classes=10):
        super().__init__()
        from robustbench_lite.models import create_model
        self.net = create_model("small_cnn", num_classes=num_classes, in_channels=1)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if os.environ.get("RANK") == "1" and self.calls > 40:
            os._exit(3)
        return self.net(x)
'''


@pytest.mark.slow
def test_a_dead_rank_ends_the_launch_and_is_named(eval_natural_ckpt: Path, tmp_path: Path, slow_suite: str) -> None:
    arch = tmp_path / "dies.py"
    arch.write_text(DYING_ARCH)
    ckpt = tmp_path / "plain.pt"
    from robustbench_lite.checkpoint import load_checkpoint

    torch.save({f"net.{k}": v for k, v in load_checkpoint(eval_natural_ckpt).model.state_dict().items()}, ckpt)
    cmd = _torchrun("--standalone", "--nproc_per_node", "2",
                    *_eval_args(ckpt, tmp_path / "out", slow_suite, 16, "--arch", f"{arch}:Dies", "--dataset", "mnist5k"))
    t0 = time.monotonic()
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode != 0
    assert time.monotonic() - t0 < 300  # ended, not hung
    assert "rank" in res.stderr and ": 1 (local_rank: 1)" in res.stderr.replace("  ", " ")


def test_store_queue_names_a_rank_whose_heartbeat_stopped() -> None:
    from torch.distributed import HashStore

    store = HashStore()
    store.add("t/hb/1", 1)  # rank 1 beat once, took item 0, and died
    store.add("t/next", 1)
    store.set("t/owner/0", "1")
    queue = StoreQueue(store, "t", 2, rank=0, size=2, beat_s=0.05, dead_after_s=0.3)
    try:
        with pytest.raises(BenchError, match=r"rank 1 stopped responding .* while it held pgd block 0; re-launch with --resume"):
            queue.wait_for([0], "pgd block 0")
        assert queue.take() == 1 and queue.take() is None  # item 0 is rank 1's; the counter hands out 1, then none
        queue.finished(1)
        queue.wait_for([1], "x")  # a finished item needs no wait
    finally:
        queue.close()


def test_local_queue_hands_out_items_in_order() -> None:
    q = LocalQueue(3)
    assert [q.take(), q.take(), q.take(), q.take()] == [0, 1, 2, None]
    q.wait_for([0, 2], "x")


@pytest.mark.slow
def test_transfer_under_torchrun_equals_one_process(eval_natural_ckpt: Path, tmp_path: Path) -> None:
    """Rank r crafts the blocks b with b % 2 == r; the matrix equals one process's."""
    args = ["-m", "robustbench_lite", "transfer", "--surrogates", str(eval_natural_ckpt), "--targets",
            str(eval_natural_ckpt), "--n-examples", "20", "--batch-size", "4", "--steps", "5", "--threat", "linf:0.1"]
    one = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "one")], env=_env(), capture_output=True,
                         text=True, timeout=600)
    assert one.returncode == 0, one.stderr
    two = subprocess.run(_torchrun("--standalone", "--nproc_per_node", "2", *args, "--out", str(tmp_path / "two")),
                         env=_env(), capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    rows = lambda d: json.loads((d / "transfer.json").read_text())["rows"]  # noqa: E731
    assert rows(tmp_path / "one") == rows(tmp_path / "two")
    assert (tmp_path / "one" / "transfer.csv").read_text() == (tmp_path / "two" / "transfer.csv").read_text()
    assert two.stdout.count("results:") == 1
