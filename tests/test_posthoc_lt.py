"""Post-hoc corrections: logit adjustment (fixed and tuned tau), tau-normalisation, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from imbal import posthoc as ph
from imbal.data.stats import DataStats
from imbal.errors import ImbalError
from imbal.models.heads import CosineHead
from imbal.posthoc.logit_adjust import TAU_GRID, adjust_logits
from imbal.posthoc.tau_norm import TAU_GRID as NORM_GRID


def stats(counts):
    return DataStats(task="multiclass", num_classes=len(counts), class_counts=counts,
                     class_names=[str(i) for i in range(len(counts))], modality="image")


def bal_acc(logits: np.ndarray, y: np.ndarray) -> float:
    pred = logits.argmax(1)
    return float(np.mean([(pred[y == c] == c).mean() for c in np.unique(y)]))


def ctx_for(counts, val_logits, val_y, test_logits, test_y, **kw):
    return ph.PosthocContext(stats=stats(counts), val_logits=torch.as_tensor(val_logits, dtype=torch.float32),
                             val_targets=torch.as_tensor(val_y), test_logits=torch.as_tensor(test_logits, dtype=torch.float32),
                             test_targets=torch.as_tensor(test_y), **kw)


def test_la_flips_a_majority_biased_prediction_as_the_formula_says():
    # prior (0.9, 0.1); the model prefers the head class by a margin of 0.5
    logits = torch.tensor([[2.0, 1.5]])
    ctx = ctx_for([900, 100], logits, [1], logits, [1])
    out = ph.apply({"la": {"tau": 1.0}}, ctx)["la"]
    # 2 - ln 0.9 = 2.1054, 1.5 - ln 0.1 = 3.8026: the tail class wins
    assert out[0].tolist() == pytest.approx([2 - math.log(0.9), 1.5 - math.log(0.1)], abs=1e-5)
    assert out.argmax(1).item() == 1 and logits.argmax(1).item() == 0
    # the flip happens exactly when tau > 0.5 / ln(0.9/0.1) = 0.2276
    prior = torch.tensor([0.9, 0.1])
    assert adjust_logits(logits, prior, 0.22).argmax(1).item() == 0
    assert adjust_logits(logits, prior, 0.235).argmax(1).item() == 1


def synthetic(counts, n_per_class, seed):
    """Scores of a model fit to the long-tailed training prior: log p(x|y) + log pi_y (Gaussian classes)."""
    rng = np.random.default_rng(seed)
    c = len(counts)
    means = rng.normal(0, 1.2, size=(c, 4))
    y = np.repeat(np.arange(c), n_per_class)
    x = means[y] + rng.normal(size=(len(y), 4))
    loglik = -0.5 * ((x[:, None, :] - means[None]) ** 2).sum(-1)
    prior = np.array(counts) / sum(counts)
    return loglik + np.log(prior), y, prior


def test_la_tuned_picks_the_grid_argmax_of_validation_balanced_accuracy():
    counts = [500, 150, 50, 15, 5]
    val, yv, prior = synthetic(counts, 60, 0)
    test, yt, _ = synthetic(counts, 60, 1)
    ctx = ctx_for(counts, val, yv, test, yt)
    out = ph.apply({"la_tuned": {}}, ctx)
    # independent: numpy over the same grid, ties to the value closest to 1
    scores = [bal_acc(val - t * np.log(prior), yv) for t in TAU_GRID]
    best = max(scores)
    tau = min((t for t, s in zip(TAU_GRID, scores) if s >= best - 1e-12), key=lambda t: (abs(t - 1), t))
    assert ctx.info["la_tuned"]["tau"] == pytest.approx(tau)
    assert ctx.info["la_tuned"]["val_balanced_accuracy"] == pytest.approx(best, abs=1e-6)
    assert out["la_tuned"].numpy() == pytest.approx(test - tau * np.log(prior), abs=1e-4)
    # on these Bayes scores the tuned tau is near the theory's 1 and beats no adjustment
    assert 0.5 <= tau <= 1.6 and best > bal_acc(val, yv) + 0.05


def test_la_tuned_bad_grid_and_missing_counts():
    with pytest.raises(ImbalError, match="grid is empty"):
        ph.apply({"la_tuned": {"grid": []}}, ctx_for([5, 5], [[0.0, 1.0]], [1], [[0.0, 1.0]], [1]))
    ctx = ctx_for([5, 0], [[0.0, 1.0]], [1], [[0.0, 1.0]], [1])
    with pytest.raises(ImbalError, match="class 1 has zero training samples"):
        ph.apply({"la_tuned": {}}, ctx)


def test_tau_norm_rescales_weights_and_tunes_tau():
    rng = np.random.default_rng(3)
    c, d = 4, 6
    w = rng.normal(size=(c, d)) * np.array([4.0, 2.0, 1.0, 0.5])[:, None]  # head class has the largest norm
    head = nn.Linear(d, c)
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(w))
        head.bias.fill_(3.0)  # dropped by tau-normalisation
    fv, ft = rng.normal(size=(200, d)), rng.normal(size=(120, d))
    yv = (fv @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T).argmax(1)  # labels of the normalised classifier
    yt = rng.integers(0, c, 120)
    ctx = ctx_for([400, 100, 25, 6], fv @ w.T, yv, ft @ w.T, yt, val_features=torch.as_tensor(fv, dtype=torch.float32),
                  test_features=torch.as_tensor(ft, dtype=torch.float32), head=head)
    out = ph.apply({"tau_norm": {}}, ctx)["tau_norm"]

    def norm_logits(f, t):
        return f @ (w / np.linalg.norm(w, axis=1, keepdims=True) ** t).T

    scores = [bal_acc(norm_logits(fv, t), yv) for t in NORM_GRID]
    best = max(scores)
    tau = min((t for t, s in zip(NORM_GRID, scores) if s >= best - 1e-12), key=lambda t: (abs(t - 1), t))
    assert best == 1.0 and ctx.info["tau_norm"]["tau"] == pytest.approx(tau) == pytest.approx(1.0)
    assert out.numpy() == pytest.approx(norm_logits(ft, tau), abs=1e-4)


def test_tau_norm_skips_a_cosine_head():
    ctx = ctx_for([10, 5], [[0.0, 1.0]], [1], [[0.0, 1.0]], [1], val_features=torch.zeros(1, 3),
                  test_features=torch.zeros(1, 3), head=CosineHead(3, 2))
    with pytest.warns(UserWarning, match="tau_norm' skipped"):
        assert ph.apply({"tau_norm": {}}, ctx) == {}
