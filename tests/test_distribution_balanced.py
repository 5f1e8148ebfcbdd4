"""loss=distribution_balanced (Wu et al. 2020) against a NumPy hand computation of the authors' formulas."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from imbal import losses
from imbal.errors import ImbalError
from imbal.losses import build

COUNTS = [120, 40, 5]  # head / medium / tail positives
N_TRAIN = 150
STATS = {"class_counts": COUNTS, "num_train": N_TRAIN, "num_classes": 3, "task": "multilabel"}
Z = np.array([[2.0, -1.0, 0.5], [-0.3, 1.5, -2.0], [0.7, 0.2, 3.0], [-1.2, 0.4, -0.1]])
Y = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])  # last row: all negative


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def softplus(v):
    return np.logaddexp(0.0, v)


def hand(z, y, *, alpha=0.1, beta=10.0, mu=0.2, lam=2.0, kappa=0.05, gamma=2.0, balance=2.0, focal=True):
    """Value and d(loss)/dz of the DB loss, written out from the formulas (mean over B*C elements)."""
    n = np.asarray(COUNTS, float)
    rows = []
    for k in range(len(y)):
        pi = (y[k] / n).sum()
        r = (1 / n) / pi if pi > 0 else np.full(3, np.inf)  # P^C_i / P^I_k = (1/(C n_i)) / ((1/C) sum 1/n_j)
        rows.append(alpha + sigmoid(beta * (r - mu)))
    r_hat = np.array(rows)
    b_hat = -np.log(N_TRAIN / n - 1)  # -log(1/p_i - 1), p_i = n_i / N
    zp = z + kappa * b_hat / lam  # the authors' shift
    loss = np.zeros_like(z)
    grad = np.zeros_like(z)
    for (k, i), yk in np.ndenumerate(y):
        if yk == 1:  # r^ softplus(-z'), focal q = 1 - p_t = sigmoid(-z')
            s, ds = zp[k, i], 1.0
            bce, dbce, q = softplus(-s), -sigmoid(-s), sigmoid(-s)
            dq = -q * (1 - q)
            w = r_hat[k, i]
        else:  # (r^ / lambda) softplus(lambda z'), q = sigmoid(lambda z')
            s, ds = lam * zp[k, i], lam
            bce, dbce, q = softplus(s), sigmoid(s), sigmoid(s)
            dq = q * (1 - q)
            w = r_hat[k, i] / lam
        if focal:
            f, df = balance * q**gamma, balance * gamma * q ** (gamma - 1) * dq
        else:
            f, df = 1.0, 0.0
        loss[k, i] = w * f * bce
        grad[k, i] = w * (df * bce + f * dbce) * ds
    return loss.mean(), grad / z.size


@pytest.mark.parametrize("kw,hand_kw", [
    ({}, {}),
    ({"focal": False}, {"focal": False}),
    ({"mu": 0.3, "neg_scale": 5.0}, {"mu": 0.3, "lam": 5.0}),  # the VOC-MLT config
    ({"alpha": 0.5, "beta": 3.0, "init_bias": 0.2, "gamma": 1.0, "balance_param": 1.5},
     {"alpha": 0.5, "beta": 3.0, "kappa": 0.2, "gamma": 1.0, "balance": 1.5}),
])
def test_value_and_gradient_match_hand_computation(kw, hand_kw):
    loss = build("distribution_balanced", stats=STATS, **kw)
    z = torch.tensor(Z, dtype=torch.float64, requires_grad=True)
    value = loss(z, torch.tensor(Y))
    value.backward()
    want, want_grad = hand(Z, Y, **hand_kw)
    # the class constants (1/n_i, the prior shift) are float32 buffers: agreement to ~1e-8
    assert value.item() == pytest.approx(want, rel=1e-7)
    np.testing.assert_allclose(z.grad.numpy(), want_grad, rtol=1e-6, atol=1e-12)
    assert torch.autograd.gradcheck(lambda t: loss(t, torch.tensor(Y)), (torch.tensor(Z, requires_grad=True),))


def test_hand_numbers_worked_out():
    """One element by hand: the all-negative row's r^ is alpha + 1; the tail positive's weight."""
    n = np.asarray(COUNTS, float)
    # row 0: positives 0 and 2 -> sum 1/120 + 1/5; class 2's r = (1/5) / (1/120 + 1/5) = 24/25
    r = (1 / 5) / (1 / 120 + 1 / 5)
    assert r == pytest.approx(24 / 25)
    r_hat = 0.1 + sigmoid(10 * (24 / 25 - 0.2))
    zp = 0.5 + 0.05 * -np.log(150 / 5 - 1) / 2
    want = 2.0 * sigmoid(-zp) ** 2 * r_hat * softplus(-zp)
    loss = build("distribution_balanced", stats=STATS, reduction="none")
    got = loss(torch.tensor(Z), torch.tensor(Y))
    assert got[0, 2].item() == pytest.approx(want, rel=1e-6)
    # the all-negative row: r^ = 0.1 + 1, weight (r^ / lambda) on every element
    zp3 = Z[3] + 0.05 * -np.log(150 / n - 1) / 2
    want3 = 2.0 * sigmoid(2 * zp3) ** 2 * (1.1 / 2) * softplus(2 * zp3)
    np.testing.assert_allclose(got[3].numpy(), want3, rtol=1e-6)


def test_defaults_are_the_authors_coco_config():
    """configs/coco/LT_resnet50_pfc_DB.py: focal(balance_param=2, gamma=2), logit_reg(neg_scale=2, init_bias=0.05),
    map_param(alpha=0.1, beta=10, gamma=0.2), loss_weight=1; the mean over all elements."""
    cls = losses.get("distribution_balanced")
    defaults = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items() if k != "self"}
    assert defaults == {"alpha": 0.1, "beta": 10.0, "mu": 0.2, "neg_scale": 2.0, "init_bias": 0.05, "focal": True,
                        "gamma": 2.0, "balance_param": 2.0, "loss_weight": 1.0, "reduction": "mean",
                        "class_counts": inspect.Parameter.empty, "num_train": inspect.Parameter.empty}
    assert losses.describe("distribution_balanced")["injected"] == ("class_counts", "num_train")
    assert losses.describe("distribution_balanced")["tasks"] == ("multilabel",)


def test_sum_and_loss_weight():
    loss = build("distribution_balanced", stats=STATS, reduction="sum", loss_weight=3.0)
    want, _ = hand(Z, Y)
    assert loss(torch.tensor(Z), torch.tensor(Y)).item() == pytest.approx(3.0 * want * Z.size, rel=1e-6)


def test_zero_count_class_and_extreme_logits_are_finite():
    stats = {**STATS, "class_counts": [150, 40, 0]}  # class 0 in every image, class 2 in none
    loss = build("distribution_balanced", stats=stats)
    # clamped: p_0 = 149/150, p_2 = 1/150; 1/n_2 taken as 1
    np.testing.assert_allclose(loss.logit_shift.numpy(),
                               -np.log(150 / np.array([149, 40, 1]) - 1) * 0.05 / 2, rtol=1e-6)
    for dtype in (torch.float32, torch.float64):
        z = torch.tensor([[1e4, -1e4, 1e4], [-1e4, 1e4, -1e4], [0.0, 0.0, 0.0]], dtype=dtype, requires_grad=True)
        y = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]], dtype=dtype)
        value = loss(z, y)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(z.grad).all()
        assert value.item() > 1e3  # the wrong-sided 1e4 logits cost about 1e4 each


def test_refusals_one_line():
    with pytest.raises(ImbalError, match=r"^loss 'distribution_balanced' needs 'num_train' from the data, but the data "
                                         r"module provides none$"):
        build("distribution_balanced", stats={"class_counts": COUNTS, "num_classes": 3, "task": "multilabel"})
    with pytest.raises(ImbalError, match=r"^loss 'distribution_balanced' does not support task 'multiclass'"):
        build("distribution_balanced", stats={**STATS, "task": "multiclass"})
    with pytest.raises(ImbalError, match=r"^loss 'distribution_balanced': a class has 120 training positives, more than "
                                         r"num_train=100 training images$"):
        build("distribution_balanced", stats={**STATS, "num_train": 100})
    with pytest.raises(ImbalError, match=r"^loss 'distribution_balanced': neg_scale must be > 0, got 0$"):
        build("distribution_balanced", stats=STATS, neg_scale=0)
