"""Non-differentiable defenses: BPDA (evaluations.bpda) and the ``bpda`` remedy of the adaptive
evaluation, on quantised-input models whose input gradient is exactly zero."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import Tensor, nn

from robustbench_lite.errors import BenchError
from robustbench_lite.evaluations.adaptive import AdaptOptions, check_options
from robustbench_lite.evaluations.bpda import BPDAModel, find_boundary, parse_bpda
from robustbench_lite.evaluations.losses import margin_loss

from eval_helpers import Rounding, linear_problem


class Quantise(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.round(x * 4) / 4


class NumpyQuantise(nn.Module):
    """Quantisation outside autograd (numpy): the graph is cut, not merely zero."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.from_numpy((x.detach().numpy() * 4).round() / 4).to(x.dtype)


class Pre(nn.Module):
    """``net(pre(x))``: the non-differentiable preprocessing in a named submodule, under a wrapper."""

    def __init__(self, pre: nn.Module, net: nn.Module) -> None:
        super().__init__()
        self.body = nn.ModuleDict({"pre": pre, "net": net})

    def forward(self, x: Tensor) -> Tensor:
        return self.body["net"](self.body["pre"](x))


def test_find_boundary_in_forward_order() -> None:
    lin, x, y = linear_problem(8)
    assert find_boundary(lin, x, y) is None  # an honest model: the input gradient is usable
    assert find_boundary(Rounding(lin), x, y) == "model"  # torch.round in the root's forward, before "model"
    for pre in (Quantise(), NumpyQuantise()):
        m = Pre(pre, lin)
        name = find_boundary(m, x, y)
        assert name == "body.net", name  # "body" and "body.pre" receive a zero (or no) gradient
    # the gradient dies at the very end: nothing to approximate
    class Last(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = lin

        def forward(self, v: Tensor) -> Tensor:
            z = self.lin(v)
            return torch.round(z)
    assert find_boundary(Last(), x, y) is None


def test_bpda_model_forward_is_true_backward_is_identity() -> None:
    lin, x, y = linear_problem(6)
    m = Pre(Quantise(), lin)
    b = BPDAModel(m, "body.net")
    xg = x.clone().requires_grad_(True)
    z = b(xg)
    assert torch.equal(z, m(x))  # the forward pass (and so the verdict) is the true model's
    g = torch.autograd.grad(margin_loss(z, y).sum(), xg)[0]
    xr = Quantise()(x).requires_grad_(True)
    ref = torch.autograd.grad(margin_loss(lin(xr), y).sum(), xr)[0]  # the network's gradient at g(x)
    assert torch.allclose(g, ref)
    # a user's approximation replaces the identity on the backward pass
    b2 = BPDAModel(m, "body.net", approx=lambda v: 2 * v)
    g2 = torch.autograd.grad(margin_loss(b2(xg), y).sum(), xg)[0]
    assert torch.allclose(g2, 2 * ref)


def test_bad_bpda_options_are_one_sentence() -> None:
    lin, _, _ = linear_problem(2)
    m = Pre(Quantise(), lin)
    with pytest.raises(BenchError, match="no submodule 'body.nope'.*body.net"):
        check_options(m, AdaptOptions(bpda="body.nope"))
    with pytest.raises(BenchError, match="file.py:function"):
        parse_bpda("body.net=smooth")
    with pytest.raises(BenchError, match="does not exist"):
        check_options(m, AdaptOptions(bpda="body.net=/nonexistent/approx.py:f"))
    with pytest.raises(BenchError, match="must name a submodule"):
        parse_bpda("=x.py:f")
    check_options(m, AdaptOptions(bpda="body.net"))  # a real boundary passes


def _hand_bpda_pgd(net: nn.Module, x: Tensor, y: Tensor, *, eps: float, steps: int) -> Tensor:
    """Hand-written BPDA-PGD (Athalye et al. 2018): CE gradient of the network at the rounded input,
    applied to x (identity backward through the rounding), signed Linf steps, early stop per point."""
    xa = x.clone()
    done = torch.zeros(len(x), dtype=torch.bool)
    for _ in range(steps):
        xr = (torch.round(xa * 255) / 255).requires_grad_(True)
        z = net(xr)
        done |= z.argmax(1) != y
        g = torch.autograd.grad(nn.functional.cross_entropy(z, y, reduction="sum"), xr)[0]
        step = (2.5 * eps / steps * g.sign()) * (~done).view(-1, 1, 1, 1)
        xa = (xa + step).clamp(x - eps, x + eps).clamp(0, 1)
    return xa


@pytest.mark.slow
def test_bpda_remedy_matches_hand_written_bpda(tmp_path, eval_natural_ckpt) -> None:
    """The quantised-input model (torch.round, zero input gradient): the adaptive verdict, found
    without naming the boundary, matches a hand-written BPDA-PGD and is far below the non-adaptive one."""
    from robustbench_lite.checkpoint import load_checkpoint
    from robustbench_lite.evaluations.evaluate import EvalOptions, evaluate_loaded
    from robustbench_lite.evaluations.suite import parse_suite

    suite = parse_suite('name = "t"\nchecks = true\n[[attacks]]\nname = "pgd"\nsteps = 20\n')
    ckpt = load_checkpoint(eval_natural_ckpt)
    masked = dataclasses.replace(ckpt, model=Rounding(ckpt.model))
    opts = EvalOptions(n_examples=40, check_examples=40, threat="linf:0.15")
    plain = evaluate_loaded(masked, suite, tmp_path / "plain", dataclasses.replace(opts, adapt=False))
    adaptive = evaluate_loaded(masked, suite, tmp_path / "adaptive", opts)
    ran = [r for r in adaptive["adaptive"]["remedies"] if r["ran"]]
    assert ran[0]["remedy"] == "bpda" and "'model'" in ran[0]["note"]
    assert "adaptive" not in plain
    from robustbench_lite.data import class_balanced_indices, get_dataset

    d = get_dataset("mnist5k").load("test")
    x, y = d.batch(class_balanced_indices(d.targets, 40))
    net = ckpt.model.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    x_adv = _hand_bpda_pgd(net, x, y, eps=0.15, steps=20)
    with torch.no_grad():
        hand = 100 * float((masked.model(x_adv).argmax(1) == y).float().mean())
    assert abs(adaptive["robust_accuracy"] - hand) <= 7.5, (adaptive["robust_accuracy"], hand)
    assert adaptive["robust_accuracy"] <= plain["robust_accuracy"] - 30, (adaptive["robust_accuracy"], plain["robust_accuracy"])
    rows = {r["label"]: r for r in adaptive["attacks"]}
    assert rows["adaptive[bpda]"]["accuracy"] == adaptive["robust_accuracy"]
    assert adaptive["adaptive"]["changed"] and adaptive["adaptive"]["robust_accuracy_before"] == plain["robust_accuracy"]
    assert any(p.name.startswith("900_") for p in (tmp_path / "adaptive" / "parts").iterdir())
    # the remedy's breaks are kept like every attack's: adversarials.npz holds exactly the broken points,
    # each in the ball and misclassified by the true (rounding) model
    import numpy as np

    with np.load(tmp_path / "adaptive" / "adversarials.npz", allow_pickle=False) as f:
        t = next(i for i, (nm, e) in enumerate(zip(f["threat_norm"], f["threat_eps"])) if nm == "linf" and abs(e - 0.15) < 1e-9)
        sel = f["threat"] == t
        pos, xa, by = f["position"][sel], torch.from_numpy(f["x_adv"][f["adversarial"][sel]]), set(f["attack_label"][sel])
    assert "adaptive[bpda]" in by
    n_clean = round(adaptive["clean_accuracy"] * 40 / 100)
    assert len(pos) == n_clean - round(adaptive["robust_accuracy"] * 40 / 100)
    with torch.no_grad():
        assert bool((masked.model(xa).argmax(1) != y[pos]).all())
    assert float((xa - x[pos]).abs().amax()) <= 0.15 + 1e-6


EPS_Q = 0.085  # Linf radius of the quantised-linear test: only pixels more than 0.04 from 0.5 can change quarter


def _escalate_bpda(model: nn.Module, x: Tensor, y: Tensor, options: AdaptOptions, checks: list) -> object:
    from types import SimpleNamespace

    from robustbench_lite.evaluations.adaptive import escalate
    from robustbench_lite.evaluations.attacks import create_attack
    from robustbench_lite.threat import ThreatModel

    tasks = [SimpleNamespace(norm="linf", eps=(EPS_Q,), attack=create_attack("pgd", steps=20))]
    return escalate(model, x, y, [True] * len(x), [], checks, ThreatModel("linf", EPS_Q), tasks, seed=0, batch_size=64,
                    options=options)


def test_bpda_remedy_on_a_quantised_linear_model_matches_the_closed_form(tmp_path) -> None:
    """Quantisation to quarters before a linear model: with the boundary found (no name given) the
    remedy breaks exactly the points whose margin to the runner-up the Linf ball of EPS_Q can close through
    the quantiser; with a user's approximation file it runs the same way; a hand-named boundary whose
    input is not the model input's shape is a clear error."""
    lin, x, y = linear_problem(24, classes=3)
    m = Pre(Quantise(), lin)
    with torch.no_grad():
        y = m(x).argmax(1)
    flagged = [{"name": "nonzero_input_gradients", "passed": False}]
    out = _escalate_bpda(m, x, y, AdaptOptions(), flagged)
    (rem,) = out.remedies
    assert rem["ran"] and "'body.net'" in rem["note"]
    broken = ~torch.tensor(out.parts[0].robust)
    # independent reference: each pixel reaches the quarter-grid values between round(x - eps) and
    # round(x + eps); the logit gap is linear in them, so its maximum takes one end per pixel
    lo, hi = torch.round((x - EPS_Q) * 4) / 4, torch.round((x + EPS_Q) * 4) / 4
    w = lin[1].weight
    ref = torch.zeros(len(x), dtype=torch.bool)
    for i in range(len(x)):
        for k in range(3):
            if k == int(y[i]):
                continue
            d = (w[k] - w[int(y[i])]).view(1, 28, 28)
            best = torch.where(d > 0, hi[i], lo[i])  # each pixel independently: the value raising z_k - z_y most
            with torch.no_grad():
                z = lin(best.unsqueeze(0))[0]
            ref[i] |= bool(z[k] > z[int(y[i])])
    assert 0 < int(ref.sum()) < len(x)  # a real test: some points breakable, some not
    assert bool((broken <= ref).all())  # never more than the reachable optimum (the verdict is the true model's)
    assert int(broken.sum()) >= int(ref.sum()) - 2, (int(broken.sum()), int(ref.sum()))
    approx = tmp_path / "approx.py"
    approx.write_text("def ident(x):\n    return x\n")
    out2 = _escalate_bpda(m, x, y, AdaptOptions(adapt=False, bpda=f"body.net={approx}:ident"), [])
    assert out2.remedies[0]["ran"] and "approx.py:ident" in out2.remedies[0]["note"]
    assert out2.parts[0].robust == out.parts[0].robust
    with pytest.raises(BenchError, match="give a differentiable approximation"):
        _escalate_bpda(nn.Sequential(nn.Flatten(), nn.Linear(784, 3)), x, y, AdaptOptions(adapt=False, bpda="1"), [])
