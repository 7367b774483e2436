"""The shared PGD engine against closed forms on a linear model."""
import pytest
import torch

from robustbench_lite.evaluations.pgd import default_step_size, pgd
from robustbench_lite.evaluations.norms import project_l1_ball
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
    eps = float(_distances(m, x, y, "l2").detach().median())
    kw = dict(norm="l2", eps=eps, steps=5, step_size=eps / 10)
    a = pgd(m, x, y, generator=torch.Generator().manual_seed(7), **kw)
    b = pgd(m, x, y, generator=torch.Generator().manual_seed(7), **kw)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.success, b.success)
    r = pgd(m, x, y, generator=torch.Generator().manual_seed(7), restarts=3, **kw)
    assert (r.success | ~a.success).all()  # a restart never loses a success of the first run
    assert r.success.sum() >= a.success.sum()


def test_training_mode_takes_every_step_and_no_weight_grads():
    m, x, y = _linear_setup(4)
    eps, steps, step = 0.3, 3, 0.1
    assert float(_distances(m, x, y, "linf").detach().max()) < step  # every row is broken by the first step
    calls = {"forwards": 0, "rows": 0}

    def counted(inp):
        calls["forwards"] += 1
        calls["rows"] += inp.shape[0]
        return m(inp)

    res = pgd(counted, x, y, norm="linf", eps=eps, steps=steps, step_size=step, random_start="none",
              early_stop=False, return_success=False, generator=torch.Generator().manual_seed(0))
    assert res.success is None
    # one gradient pass per step for every row (broken rows stay), no success-check pass
    assert calls == {"forwards": steps, "rows": steps * len(x)}
    # and every step moved the point: on a binary linear model the CE ascent direction is
    # sign(w_other - w_y) at every iterate, so `steps` steps of eps/steps end on the ball's corner
    # (one step, or stopping at the breaking iterate, would end at eps/steps)
    W = m.fc.weight.detach()
    corner = (x + eps * (W[1 - y] - W[y]).sign().view_as(x)).clamp(0, 1)
    assert torch.allclose(res.x_adv, corner, atol=1e-6)
    assert all(p.grad is None for p in m.parameters())


def _mi_fgsm_one_row(m, x, y, eps, step, steps, decay):
    """MI-FGSM (Dong et al. 2018) for one row, written out: returns the iterate that broke it."""
    cur, g = x.clone(), torch.zeros_like(x)
    for _ in range(steps):
        cur = cur.detach().requires_grad_(True)
        logits = m(cur)
        if logits.argmax(1) != y:
            return cur.detach(), True
        grad = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, y), cur)[0]
        g = decay * g + grad / grad.abs().sum()
        cur = (x + (cur.detach() + step * g.sign() - x).clamp(-eps, eps)).clamp(0, 1)
    with torch.no_grad():
        return cur, bool(m(cur).argmax(1) != y)


@pytest.mark.parametrize("decay", [1.0, 0.5])
def test_momentum_step_is_mi_fgsm_per_row(decay):
    """The engine's momentum state follows each row through the early exit: batched = row by row."""
    torch.manual_seed(5)
    m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
    x = 0.5 + 0.05 * torch.randn(24, 1, 28, 28)
    with torch.no_grad():
        y = m(x).argmax(1)
    y[::5] = (y[::5] + 1) % 10  # misclassified from the start: returned unchanged
    eps = float(_distances_any(m, x, y).median())
    res = pgd(m, x, y, norm="linf", eps=eps, steps=10, step_size=eps / 10, random_start="none", momentum=decay)
    assert res.success.any() and not res.success.all()
    for i in range(len(x)):
        ref, ok = _mi_fgsm_one_row(m, x[i:i + 1], y[i:i + 1], eps, eps / 10, 10, decay)
        assert bool(res.success[i]) == ok
        assert torch.allclose(res.x_adv[i:i + 1], ref, atol=1e-6)


def _distances_any(m, x, y):
    """Linf distance to the nearest boundary of a linear model (box ignored), any class count."""
    W = m[1].weight.detach()
    with torch.no_grad():
        z = m(x)
    d = (z.gather(1, y[:, None]) - z) / (W[y][:, None, :] - W[None]).abs().sum(2).clamp_min(1e-12)
    d[torch.arange(len(y)), y] = float("inf")
    return d.min(1).values.clamp_min(0)


def test_momentum_zero_is_plain_linf_pgd():
    m, x, y = _linear_setup(6)
    kw = dict(norm="linf", eps=0.02, steps=10, step_size=0.005)
    a = pgd(m, x, y, generator=torch.Generator().manual_seed(1), **kw)
    b = pgd(m, x, y, generator=torch.Generator().manual_seed(1), momentum=0.0, **kw)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.success, b.success)


def test_default_step_size_is_the_one_rule():
    from robustbench_lite.evaluations.attacks import create_attack

    assert default_step_size(0.3, 20) == 2.5 / 20 * 0.3
    assert default_step_size(0.3, 0) == 2.5 * 0.3  # steps < 1 counts as one
    assert default_step_size(0.3, 20, 0.1) == 0.1 * 0.3  # an explicit rel_step_size wins
    assert torch.equal(default_step_size(torch.tensor([0.1, 0.2]), 10), 0.25 * torch.tensor([0.1, 0.2]))
    assert create_attack("pgd", steps=40).step_for(0.1) == default_step_size(0.1, 40)


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
