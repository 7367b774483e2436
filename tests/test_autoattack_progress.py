"""Progress inside standard AutoAttack (issue #19): the display used to sit at 0/N until a block
ended. Each sub-attack now says when it begins, on how many points and with the robust fraction so
far (a log line and the innermost drawn bar, i.e. the runner's), and each of its single runs
advances a note, all while pyautoattack is still running."""
from __future__ import annotations

import inspect
import io
import logging

import pytest
import torch

from robustbench_lite import progress
from robustbench_lite.evaluations.attacks import create_attack


def _inside_pyautoattack() -> bool:
    return any(f.function == "run_standard_evaluation" for f in inspect.stack())


def test_a_note_reaches_the_outer_drawn_bar_through_a_disabled_inner_one():
    """The suite runner's bar is the one drawn; the front door's own (progress=False) must not swallow
    the notes of the attack running inside it."""
    outer = progress.Bar(total=3, desc="runner", file=io.StringIO(), mininterval=0)
    with outer:
        with progress.progress_bar(total=3, desc="front door", enabled=False):
            with progress.where("pgd@linf:0.1 block 2"):
                progress.note("stage x")
    outer.close()
    assert "pgd@linf:0.1 block 2: stage x" in str(outer.postfix)


class _Linear(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(16, 10)
        torch.nn.init.normal_(self.fc.weight, generator=torch.Generator().manual_seed(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def test_autoattack_reports_each_stage_and_run_while_it_runs(monkeypatch, caplog):
    model = _Linear().eval()
    x = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    notes: list[tuple[str, bool]] = []
    real_note = progress.Bar.note

    def note(self, text):  # type: ignore[no-untyped-def]
        notes.append((text, _inside_pyautoattack()))
        return real_note(self, text)

    monkeypatch.setattr(progress.Bar, "note", note)
    lines: list[tuple[str, bool]] = []

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append((record.getMessage(), _inside_pyautoattack()))

    grab = Grab(level=logging.INFO)
    log = logging.getLogger("robustbench_lite.evaluations.attacks.autoattack")
    log.addHandler(grab)
    old_level = log.level
    log.setLevel(logging.INFO)
    aa = create_attack("autoattack", version="standard", attacks=("apgd-ce", "apgd-t"))
    try:
        with progress.Bar(total=len(x), desc="runner", file=io.StringIO(), mininterval=0) as bar:
            out = aa(model, x, y, eps=1e-3, batch_size=128, seed=0, progress=False, stream="aa")
            bar.update(len(x))
    finally:
        log.removeHandler(grab)
        log.setLevel(old_level)
    held = int((~out.success).sum())
    stages = [(t, inside) for t, inside in lines if " stage " in t]
    assert [t.split(" stage ")[1].split(" ")[0] for t, _ in stages] == ["apgd-ce", "apgd-t"], lines
    assert all(inside for _, inside in stages)  # during pyautoattack's run, not after it
    assert stages[0][0].startswith("aa block 0: autoattack stage apgd-ce on 6 points, robust 6/6 (100.0%) so far")
    assert f"robust {held}/6" in lines[-1][0] and not lines[-1][1]  # the block's end, with its robust fraction
    runs = [t for t, inside in notes if " run " in t and inside]
    assert any("apgd-t run 1 of at most 9" in t for t in runs) and any("apgd-t run 9 of at most 9" in t for t in runs), runs
    assert any("apgd-ce run 1 of at most 1" in t for t in runs)


@pytest.mark.parametrize("attacks", [("apgd-ce",)])
def test_the_progress_hooks_leave_the_results_untouched(attacks):
    """The wrapped sub-attacks give what pyautoattack gives unwrapped (same seed)."""
    from pyautoattack import AutoAttack

    from robustbench_lite.evaluations.attacks.autoattack import _seed_of
    from robustbench_lite.utils import frozen

    model = _Linear().eval()
    x = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    aa = create_attack("autoattack", version="custom", attacks=attacks)
    out = aa.run(model, x, y, eps=0.05, generator=torch.Generator().manual_seed(3))
    ref = AutoAttack(model, norm="Linf", eps=0.05, version="custom", attacks=list(attacks),
                     seed=_seed_of(torch.Generator().manual_seed(3)), device=x.device)
    ref.logger.setLevel(logging.WARNING)
    with frozen(model, eval_mode=False):
        x_ref, _ = ref.run_standard_evaluation(x, y, batch_size=len(x))
    assert torch.equal(out.x_adv, x_ref.to(x.device))
