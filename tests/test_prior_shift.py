"""Post-hoc prior shift (Saerens et al. 2002) and binary threshold tuning, against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from imbal import posthoc as ph
from imbal.data.stats import DataStats
from imbal.errors import ImbalError
from imbal.posthoc.prior_shift import em_prior, shift_posteriors
from imbal.posthoc.threshold import best_cut


def ctx_for(task, num_classes, counts, val_logits, val_y, test_logits, test_y, test_prior=None, num_train=None):
    stats = DataStats(
        task=task,
        num_classes=num_classes,
        class_counts=counts,
        class_names=[str(i) for i in range(num_classes)],
        modality="text",
        test_prior=test_prior,
        num_train=num_train,
    )
    return ph.PosthocContext(
        stats=stats, val_logits=val_logits, val_targets=val_y, test_logits=test_logits, test_targets=test_y
    )


def test_quora_binary_hand_computation():
    """Quora: 37 % duplicates in training, 16.5 % in test: a = 0.165/0.37, b = 0.835/0.63."""
    p = torch.tensor([0.05, 0.3, 0.5, 0.7, 0.95], dtype=torch.float64)
    logits = torch.log(p / (1 - p)).float()
    y = torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0])
    ctx = ctx_for("binary", 2, [630, 370], logits, y, logits, y, test_prior=[0.835, 0.165])
    out = ph.apply({"prior_shift": {"test_prior": None}}, ctx)
    a, b = 0.165 / 0.37, 0.835 / 0.63
    expected = a * p / (a * p + b * (1 - p))
    got = torch.sigmoid(out["prior_shift"].double())
    assert torch.allclose(got, expected, atol=1e-6)
    # p = 0.5 goes to a / (a + b) = 0.2517...
    assert got[2].item() == pytest.approx(0.25176, abs=1e-4)
    info = ctx.info["prior_shift"]
    assert info["train_prior"] == pytest.approx([0.63, 0.37])
    assert info["test_prior"] == pytest.approx([0.835, 0.165])
    # log-loss before and after, by hand
    before = -np.mean([math.log(1 - 0.05), math.log(1 - 0.3), math.log(0.5), math.log(0.7), math.log(0.95)])
    e = expected.numpy()
    after = -np.mean([math.log(1 - e[0]), math.log(1 - e[1]), math.log(e[2]), math.log(e[3]), math.log(e[4])])
    assert info["log_loss_before"] == pytest.approx(before, rel=1e-5)
    assert info["log_loss_after"] == pytest.approx(after, rel=1e-5)


def test_quora_two_class_multiclass_matches_binary():
    p1 = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    logits = torch.stack([torch.zeros(3), torch.log(p1 / (1 - p1))], dim=1).float()
    y = torch.tensor([0, 1, 1])
    ctx = ctx_for("multiclass", 2, [630, 370], logits, y, logits, y)
    out = ph.apply({"prior_shift": {"test_prior": [0.835, 0.165]}}, ctx)
    a, b = 0.165 / 0.37, 0.835 / 0.63
    expected = a * p1 / (a * p1 + b * (1 - p1))
    assert torch.allclose(out["prior_shift"].softmax(-1)[:, 1].double(), expected, atol=1e-6)


def test_multiclass_shift_is_renormalised_weighting():
    probs = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], dtype=torch.float64)
    tr = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)
    te = torch.tensor([1 / 3, 1 / 3, 1 / 3], dtype=torch.float64)
    q = shift_posteriors(probs, tr, te)
    w = np.array([1 / 3 / 0.7, 1 / 3 / 0.2, 1 / 3 / 0.1])
    row0 = np.array([0.6, 0.3, 0.1]) * w
    assert q[0].numpy() == pytest.approx(row0 / row0.sum())
    assert q.sum(1).numpy() == pytest.approx([1.0, 1.0])
    # the same prior on both sides changes nothing
    assert torch.allclose(shift_posteriors(probs, tr, tr), probs)


def synthetic_calibrated(n, prior_train, prior_test, seed):
    """Exactly calibrated posteriors: Gaussian classes, p(y|x) under the training prior, x drawn under the test prior."""
    rng = np.random.default_rng(seed)
    c = len(prior_train)
    means = np.arange(c) * 1.5
    y = rng.choice(c, size=n, p=prior_test)
    x = rng.normal(means[y], 1.0)
    loglik = -0.5 * (x[:, None] - means[None, :]) ** 2
    logpost = loglik + np.log(prior_train)[None, :]
    probs = np.exp(logpost - logpost.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    return torch.from_numpy(probs), torch.from_numpy(y), np.bincount(y, minlength=c) / n


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_em_recovers_shifted_prior(seed):
    prior_train = np.array([0.6, 0.3, 0.1])
    prior_test = np.array([0.2, 0.3, 0.5])
    probs, _, empirical = synthetic_calibrated(20000, prior_train, prior_test, seed)
    est, iters = em_prior(probs, torch.tensor(prior_train))
    assert np.abs(est.numpy() - prior_test).max() < 0.02
    assert np.abs(est.numpy() - empirical).max() < 0.02
    assert iters < 1000
    # the starting point (training prior) is far off: EM moved
    assert np.abs(prior_train - prior_test).max() > 0.3


def test_em_through_posthoc_binary_and_improves_log_loss():
    prior_train = np.array([0.63, 0.37])
    prior_test = np.array([0.835, 0.165])
    probs, y, _ = synthetic_calibrated(20000, prior_train, prior_test, seed=3)
    logits = torch.log(probs[:, 1] / probs[:, 0]).float()
    yt = y.float()
    ctx = ctx_for("binary", 2, [630, 370], logits, yt, logits, yt)
    assert ph.apply({"prior_shift": {"test_prior": None}}, ctx) == {}  # no prior known: off
    out = ph.apply({"prior_shift": {"test_prior": "em"}}, ctx)
    info = ctx.info["prior_shift_em"]
    assert info["test_prior"][1] == pytest.approx(0.165, abs=0.02)
    assert info["log_loss_after"] < info["log_loss_before"] - 0.02
    assert set(out) == {"prior_shift_em"}


def test_multilabel_per_label_shift():
    p = torch.tensor([[0.5, 0.2], [0.8, 0.6]], dtype=torch.float64)
    logits = torch.log(p / (1 - p)).float()
    y = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    ctx = ctx_for("multilabel", 2, [50, 10], logits, y, logits, y, num_train=100)
    out = ph.apply({"prior_shift": {"test_prior": [0.25, 0.1]}}, ctx)
    got = torch.sigmoid(out["prior_shift"].double())
    a0, b0 = 0.25 / 0.5, 0.75 / 0.5
    assert got[0, 0].item() == pytest.approx(a0 * 0.5 / (a0 * 0.5 + b0 * 0.5), abs=1e-6)
    # label 1: test rate 0.1 = train rate 10 / 100, so the odds ratio is 1 and nothing changes
    assert got[:, 1].numpy() == pytest.approx([0.2, 0.6], abs=1e-6)


def test_bad_prior_one_line_error():
    logits = torch.zeros(3, 3)
    y = torch.tensor([0, 1, 2])
    ctx = ctx_for("multiclass", 3, [5, 3, 2], logits, y, logits, y)
    with pytest.raises(ImbalError, match="must sum to 1"):
        ph.apply({"prior_shift": {"test_prior": [0.5, 0.5, 0.5]}}, ctx)
    with pytest.raises(ImbalError, match="3 positive numbers"):
        ph.apply({"prior_shift": {"test_prior": [0.5, 0.5]}}, ctx)
    with pytest.raises(ImbalError, match="'bogus'"):
        ph.apply({"prior_shift": {"test_prior": "bogus"}}, ctx)


# -- threshold ----------------------------------------------------------------
def fbeta_by_hand(pred, y, beta):
    tp = sum(1 for p, t in zip(pred, y) if p and t)
    fp = sum(1 for p, t in zip(pred, y) if p and not t)
    fn = sum(1 for p, t in zip(pred, y) if not p and t)
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    b2 = beta * beta
    return ((1 + b2) * prec * rec / (b2 * prec + rec) if prec + rec else 0.0), prec, rec


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_threshold_matches_brute_force(beta):
    rng = np.random.default_rng(7)
    n = 300
    yv = (rng.random(n) < 0.2).astype(int)
    sv = rng.normal(yv * 1.2, 1.0)
    yt = (rng.random(n) < 0.2).astype(int)
    st = rng.normal(yt * 1.2, 1.0)
    # brute force over every cut between sorted distinct scores
    u = np.sort(np.unique(sv))
    cuts = np.concatenate([[u[0] - 1], (u[:-1] + u[1:]) / 2])
    fs = [fbeta_by_hand(sv > c, yv, beta)[0] for c in cuts]
    best = max(fs)
    cut, f = best_cut(sv, yv, beta)
    assert f == pytest.approx(best, abs=1e-12)
    assert fbeta_by_hand(sv > cut, yv, beta)[0] == pytest.approx(best, abs=1e-12)

    ctx = ctx_for("binary", 2, [80, 20], torch.tensor(sv).float(), torch.tensor(yv).float(),
                  torch.tensor(st).float(), torch.tensor(yt).float())
    out = ph.apply({"threshold": {"beta": beta}}, ctx)
    info = ctx.info["threshold"]
    pred = (out["threshold"] > 0).numpy()  # the shifted logits decide at 0
    f_t, p_t, r_t = fbeta_by_hand(pred, yt, beta)
    assert info["test_fbeta"] == pytest.approx(f_t, abs=1e-6)
    assert info["test_precision"] == pytest.approx(p_t, abs=1e-6)
    assert info["test_recall"] == pytest.approx(r_t, abs=1e-6)
    assert info["threshold"] == pytest.approx(1 / (1 + math.exp(-info["threshold_logit"])))
    assert info["val_fbeta"] == pytest.approx(best, abs=1e-6)


def test_threshold_two_class_multiclass_and_skip_for_more_classes():
    sv = torch.tensor([-2.0, -1.0, 0.5, 1.0, 3.0])
    yv = torch.tensor([0, 0, 1, 0, 1])
    logits = torch.stack([torch.zeros(5), sv], 1)
    ctx = ctx_for("multiclass", 2, [60, 40], logits, yv, logits, yv)
    out = ph.apply({"threshold": {"beta": 1.0}}, ctx)
    # best F1 on these 5 points: predict positive for scores >= 0.5 (tp 2, fp 1): F1 = 0.8
    assert ctx.info["threshold"]["val_fbeta"] == pytest.approx(0.8)
    assert ctx.info["threshold"]["threshold_logit"] == pytest.approx((0.5 + -1.0) / 2)
    assert out["threshold"].argmax(1).tolist() == [0, 0, 1, 1, 1]
    ctx3 = ctx_for("multiclass", 3, [5, 3, 2], torch.zeros(3, 3), torch.tensor([0, 1, 2]),
                   torch.zeros(3, 3), torch.tensor([0, 1, 2]))
    assert ph.apply({"threshold": {"beta": 1.0}}, ctx3) == {}
