"""Model analyses from the defense papers, for any checkpoint (``bench analyze``).

- ``frobenius``: Frobenius norm of every weight layer (conv / linear), ACT Fig. 3 (left).
- ``random_labels``: a 400-200 MLP fitted to random binary labels on the frozen penultimate
  features of training samples; its training accuracy per epoch (ACT Fig. 3 right: lower =
  more information compression).
- ``entropy``: average posterior (softmax) entropy over training samples, nats (ACT Fig. 4).
- ``cosine``: mean cosine similarity of the flattened pre-pool representation h(x) to a reference
  checkpoint's, on clean test examples (ARREST Table 3).
- ``sparsity``: non-zero penultimate features and the PCA dimensions explaining 99% of their
  variance over test examples (AFD Sec. 4.5).
- ``hdh``: H-Delta-H distance between clean and PGD (shared engine) features, estimated by a
  discriminator (an MLP) trained on half of the pairs: ``alpha = TPR + TNR`` on the other half,
  ``d = 2 |alpha - 1|``, beside the adversarial-minus-clean error gap, per eps (AFD Fig. 3a).

Writes CSVs, PNG figures (matplotlib Agg) and ``analyses.json`` (a flat dict of scalars) to the
output folder. Example::

    res = analyze("runs/act/checkpoint.pt", "runs/act/analyses", reference="runs/natural/checkpoint.pt")
"""
from __future__ import annotations

import csv
import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustbench_lite.checkpoint import load_checkpoint
from robustbench_lite.data import class_balanced_indices, get_dataset
from robustbench_lite.errors import BenchError
from robustbench_lite.utils import atomic_write_json, atomic_write_text, default_batch_size, frozen, make_generator, resolve_device

from .pgd import default_step_size, pgd

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class AnalysisOptions:
    n_examples: int = 1000                  # training and test examples used (class-balanced)
    reference: str | None = None            # checkpoint for the cosine similarity
    member: str | None = None               # network of a multi-model checkpoint
    random_label_epochs: int = 30
    eps_fractions: tuple[float, ...] = (0.25, 0.5, 1.0)   # of the checkpoint's eps, for hdh
    pgd_steps: int = 10
    batch_size: int | None = None          # rows per pass (default: the device's attack batch size)
    seed: int = 0
    device: str | None = None
    data_dir: str | None = None


# -- the measurements (tensors in, numbers out) ------------------------------------------------

def frobenius_norms(model: nn.Module) -> list[dict[str, Any]]:
    """One row per weight layer (parameters named ``*weight`` with >= 2 dims), in module order."""
    return [{"layer": n, "shape": "x".join(map(str, p.shape)), "frobenius": float(p.detach().norm())}
            for n, p in model.named_parameters() if n.endswith("weight") and p.ndim >= 2]


@torch.no_grad()
def _batched(fn: Any, x: Tensor, batch_size: int, device: torch.device) -> Tensor:
    return torch.cat([fn(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])


def features(model: nn.Module, x: Tensor, *, which: str = "pooled", batch_size: int = 256,
             device: torch.device | str = "cpu") -> Tensor:
    """(N, D) penultimate features (``pooled``) or flattened pre-pool maps (``pre_pool``), eval mode."""
    with frozen(model):
        return _batched(lambda b: getattr(model.features(b), which).flatten(1), x, batch_size, torch.device(device))


def posterior_entropy(logits: Tensor) -> float:
    """Mean over rows of ``-sum_k p_k log p_k`` (nats), p = softmax(logits)."""
    logp = F.log_softmax(logits.double(), dim=1)
    return float(-(logp.exp() * logp).sum(1).mean())


def random_label_fit(feats: Tensor, *, epochs: int = 30, seed: int = 0, batch_size: int = 128,
                     lr: float = 1e-3) -> list[float]:
    """Training accuracy (%) per epoch of a 400-200 ReLU MLP (Adam) fitting random binary labels on
    frozen, standardised features (Lamb et al. 2019, as in ACT Fig. 3)."""
    g = make_generator(seed)
    y = torch.randint(0, 2, (len(feats),), generator=g)
    z = feats.double()
    z = ((z - z.mean(0)) / z.std(0).clamp_min(1e-6)).float()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mlp = nn.Sequential(nn.Linear(z.shape[1], 400), nn.ReLU(), nn.Linear(400, 200), nn.ReLU(), nn.Linear(200, 2))
    opt = torch.optim.Adam(mlp.parameters(), lr=lr)
    curve = []
    for _ in range(epochs):
        perm = torch.randperm(len(z), generator=g)
        correct = 0
        for i in range(0, len(z), batch_size):
            idx = perm[i:i + batch_size]
            out = mlp(z[idx])
            loss = F.cross_entropy(out, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            correct += int((out.argmax(1) == y[idx]).sum())
        curve.append(100.0 * correct / len(z))
    return curve


def mean_cosine(a: Tensor, b: Tensor) -> float:
    """Mean over rows of the cosine similarity of the flattened rows of ``a`` and ``b``."""
    return float(F.cosine_similarity(a.flatten(1).double(), b.flatten(1).double(), dim=1, eps=1e-12).mean())


def sparsity(feats: Tensor, *, variance: float = 0.99, tol: float = 1e-8) -> dict[str, float]:
    """``nonzero_features``: feature dimensions non-zero on at least one example; ``mean_nonzero``:
    non-zero dimensions per example; ``pca_dims_99``: principal components needed to explain
    ``variance`` of the total variance (eigenvalues of the sample covariance)."""
    z = feats.double()
    nz = z.abs() > tol
    zc = z - z.mean(0)
    s = torch.linalg.svdvals(zc) ** 2
    ratio = torch.cumsum(s, 0) / s.sum().clamp_min(1e-300)
    dims = int((ratio < variance - 1e-12).sum()) + 1 if s.sum() > 0 else 0
    return {"nonzero_features": float(nz.any(0).sum()), "mean_nonzero": float(nz.sum(1).float().mean()),
            "pca_dims_99": float(min(dims, z.shape[1]))}


def domain_distance(clean: Tensor, adv: Tensor, *, seed: int = 0) -> float:
    """H-Delta-H estimate: a discriminator (MLP, 64 hidden) trained to label clean 1 / adversarial 0
    on the first half of the examples; on the second half ``alpha = TPR + TNR`` and ``d = 2|alpha - 1|``."""
    from sklearn.neural_network import MLPClassifier

    n = len(clean)
    if n < 4:
        raise BenchError("the H-Delta-H estimate needs at least 4 examples.")
    half = n // 2
    perm = torch.randperm(n, generator=make_generator(seed))
    tr, te = perm[:half], perm[half:]
    xs = torch.cat([clean[tr], adv[tr]]).double().numpy()
    ys = [1] * len(tr) + [0] * len(tr)
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a separable pair never "converges"; the estimate stands
        clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=500, random_state=seed).fit(xs, ys)
    tpr = float((clf.predict(clean[te].double().numpy()) == 1).mean())
    tnr = float((clf.predict(adv[te].double().numpy()) == 0).mean())
    return 2 * abs(tpr + tnr - 1)


# -- the whole report ---------------------------------------------------------------------------

def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _figure(path: Path, draw: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    draw(ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def analyze(model_path: str | Path, out_dir: str | Path, options: AnalysisOptions | None = None) -> dict[str, float]:
    """Run every analysis on a checkpoint; returns (and writes as ``analyses.json``) the scalars."""
    o = options or AnalysisOptions()
    if o.n_examples < 10:
        raise BenchError(f"--n-examples must be at least 10 for the analyses, got {o.n_examples}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(o.device)
    bs = o.batch_size or default_batch_size(dev)
    ck = load_checkpoint(model_path, member=o.member)
    model = ck.model.to(dev).eval()
    spec = get_dataset(ck.dataset)
    train = spec.load("train", o.data_dir)
    test = spec.load("test", o.data_dir)
    xtr, _ = train.batch(class_balanced_indices(train.targets, o.n_examples))
    xte, yte = test.batch(class_balanced_indices(test.targets, o.n_examples))
    res: dict[str, float] = {"n_examples_train": float(len(xtr)), "n_examples_test": float(len(xte))}

    # ACT Fig. 3 left
    fro = frobenius_norms(model)
    _write_csv(out / "frobenius.csv", fro)
    res["frobenius_total"] = math.sqrt(sum(r["frobenius"] ** 2 for r in fro))
    res["frobenius_mean"] = sum(r["frobenius"] for r in fro) / len(fro)
    _figure(out / "frobenius.png", lambda ax: (ax.bar(range(len(fro)), [r["frobenius"] for r in fro]),
                                               ax.set_xlabel("weight layer"), ax.set_ylabel("Frobenius norm")))

    # ACT Fig. 4 and Fig. 3 right
    with frozen(model):
        logits_tr = _batched(model, xtr, bs, dev)
    res["posterior_entropy"] = posterior_entropy(logits_tr)
    ftr = features(model, xtr, batch_size=bs, device=dev)
    curve = random_label_fit(ftr, epochs=o.random_label_epochs, seed=o.seed)
    _write_csv(out / "random_labels.csv", [{"epoch": i + 1, "train_accuracy": a} for i, a in enumerate(curve)])
    res["random_label_final_accuracy"] = curve[-1]
    _figure(out / "random_labels.png", lambda ax: (ax.plot(range(1, len(curve) + 1), curve), ax.set_xlabel("epoch"),
                                                   ax.set_ylabel("train accuracy on random labels (%)")))

    # AFD 4.5
    fte = features(model, xte, batch_size=bs, device=dev)
    res.update(sparsity(fte))
    res["feature_dim"] = float(fte.shape[1])

    # ARREST Table 3
    if o.reference:
        ref = load_checkpoint(o.reference).model.to(dev).eval()
        h = features(model, xte, which="pre_pool", batch_size=bs, device=dev)
        h_ref = features(ref, xte, which="pre_pool", batch_size=bs, device=dev)
        if h.shape != h_ref.shape:
            raise BenchError(f"the reference's pre-pool representation has shape {tuple(h_ref.shape[1:])}, "
                             f"this model's {tuple(h.shape[1:])}; compare checkpoints of one architecture.")
        res["cosine_to_reference"] = mean_cosine(h, h_ref)

    # AFD Fig. 3a
    if ck.threat is None:
        logger.info("no threat model in %s; skipping the H-Delta-H analysis", model_path)
    else:
        rows = []
        g = make_generator(o.seed)
        with frozen(model):
            clean_pred = _batched(model, xte, bs, dev).argmax(1)
            for frac in o.eps_fractions:
                eps = ck.threat.eps * frac
                adv = torch.cat([pgd(model, xte[i:i + bs].to(dev), yte[i:i + bs].to(dev),
                                     norm=ck.threat.norm, eps=eps, steps=o.pgd_steps, step_size=default_step_size(eps, o.pgd_steps),
                                     early_stop=False, return_success=False, generator=g).x_adv.cpu()
                                 for i in range(0, len(xte), bs)])
                adv_pred = _batched(model, adv, bs, dev).argmax(1)
                fadv = features(model, adv, batch_size=bs, device=dev)
                clean_err = 100 * float((clean_pred != yte).float().mean())
                adv_err = 100 * float((adv_pred != yte).float().mean())
                rows.append({"eps": eps, "hdh_distance": domain_distance(fte, fadv, seed=o.seed),
                             "clean_error": clean_err, "adv_error": adv_err, "error_gap": adv_err - clean_err})
        _write_csv(out / "hdh.csv", rows)
        res["hdh_distance"] = rows[-1]["hdh_distance"]
        res["hdh_error_gap"] = rows[-1]["error_gap"]

        def draw(ax: Any) -> None:
            ax.plot([r["eps"] for r in rows], [r["hdh_distance"] for r in rows], "o-", label="H-Delta-H estimate")
            ax2 = ax.twinx()
            ax2.plot([r["eps"] for r in rows], [r["error_gap"] for r in rows], "s--", color="C1", label="error gap (%)")
            ax.set_xlabel("eps")
            ax.set_ylabel("d_HdH")
            ax2.set_ylabel("adversarial - clean error (%)")

        _figure(out / "hdh.png", draw)

    atomic_write_json(out / "analyses.json", res)
    return res
