"""The shared PGD engine against closed forms on a linear model."""
import pytest
import torch

from evaluations.pgd import pgd
from evaluations.norms import project_l1_ball
from robustbench_lite.models import create_model

DUAL = {"linf": 1, "l2": 2, "l1": float("inf")}


def _linear_setup(seed=0, n=64):
    torch.manual_seed(seed)
    m = create_model("linear", num_classes=2, in_channels=1).eval()  # binary: the CE ascent direction is the optimal one
    with torch.no_grad():
        m.fc.weight.mul_(0.5)
    x = 0.5 + 0.02 * torch.randn(n, 1, 28, 28)
    with torch.no_grad():
        y = m(x).argmax(1)
    return m, x, y


def _distances(m, x, y, norm):
    """Exact distance to the nearest decision boundary of a linear model (box ignored)."""
    W, b = m.fc.weight, m.fc.bias
    with torch.no_grad():
        z = m(x)
    wy = W[y]  # (n,d)
    diff = wy[:, None, :] - W[None]  # (n,10,d)
    marg = z.gather(1, y[:, None]) - z  # (n,10)
    dn = diff.norm(p=DUAL[norm], dim=2)
    d = marg / dn
    d[torch.arange(len(y)), y] = float("inf")
    return d.min(1).values


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_pgd_breaks_all_when_eps_exceeds_every_margin(norm):
    m, x, y = _linear_setup()
    d = _distances(m, x, y, norm).detach()
    eps = float(d.max()) * 1.2
    if norm == "linf":
        assert eps < 0.4  # the box [0,1] does not bind around x ~ 0.5
    steps = 200 if norm == "l1" else 50
    res = pgd(m, x, y, norm=norm, eps=eps, steps=steps, step_size=2.5 * eps / steps if norm != "l1" else eps / 10,
              generator=torch.Generator().manual_seed(0))
    assert res.success.all()
    delta = (res.x_adv - x).flatten(1)
    assert float(delta.norm(p={"linf": float("inf"), "l2": 2, "l1": 1}[norm], dim=1).max()) <= eps * (1 + 1e-4)


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_pgd_changes_nothing_below_every_margin(norm):
    m, x, y = _linear_setup(1)
    d = _distances(m, x, y, norm).detach()
    eps = float(d.min()) * 0.9
    res = pgd(m, x, y, norm=norm, eps=eps, steps=30, step_size=eps / 5, restarts=2, generator=torch.Generator().manual_seed(0))
    assert not res.success.any()
    with torch.no_grad():
        assert torch.equal(m(res.x_adv).argmax(1), y)


def test_early_stop_saves_work_and_returns_the_breaking_iterate():
    m, x, y = _linear_setup(2)
    d = _distances(m, x, y, "linf").detach()
    eps = float(d.max()) * 1.5
    calls = {"rows": 0}

    def counted(inp):
        calls["rows"] += inp.shape[0]
        return m(inp)

    res = pgd(counted, x, y, norm="linf", eps=eps, steps=50, step_size=eps / 10, generator=torch.Generator().manual_seed(0))
    assert res.success.all()
    assert calls["rows"] < 0.5 * 50 * len(x)  # broken rows left the batch
    with torch.no_grad():
        assert (m(res.x_adv).argmax(1) != y).all()


def test_deterministic_under_seed_and_restarts_keep_worst_case():
    m, x, y = _linear_setup(3)
    eps = float(_distances(m, x, y, "l2").median())
    kw = dict(norm="l2", eps=eps, steps=5, step_size=eps / 10)
    a = pgd(m, x, y, generator=torch.Generator().manual_seed(7), **kw)
    b = pgd(m, x, y, generator=torch.Generator().manual_seed(7), **kw)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.success, b.success)
    r = pgd(m, x, y, generator=torch.Generator().manual_seed(7), restarts=3, **kw)
    assert (r.success | ~a.success).all()  # a restart never loses a success of the first run
    assert r.success.sum() >= a.success.sum()


def test_training_mode_takes_every_step_and_no_weight_grads():
    m, x, y = _linear_setup(4)
    res = pgd(m, x, y, norm="linf", eps=0.3, steps=3, step_size=0.1, early_stop=False, return_success=False,
              generator=torch.Generator().manual_seed(0))
    assert res.success is None
    assert all(p.grad is None for p in m.parameters())


def test_l1_projection_matches_sorting_reference():
    torch.manual_seed(0)
    v = torch.randn(20, 50)
    eps = 3.0
    p = project_l1_ball(v, eps)
    assert torch.all(p.abs().sum(1) <= eps + 1e-4)
    # optimality: the projection is sign(v) * max(|v| - theta, 0) with one theta per row
    for i in range(20):
        if v[i].abs().sum() <= eps:
            assert torch.equal(p[i], v[i])
            continue
        nz = p[i] != 0
        theta = (v[i].abs() - p[i].abs())[nz]
        assert torch.allclose(theta, theta[0].expand_as(theta), atol=1e-5)
        assert float(p[i].abs().sum()) == pytest.approx(eps, rel=1e-4)
