"""Loss formulas against numbers worked by hand: ce, focal, weighted_ce (and sklearn's weights), logit_adjusted."""

import math

import pytest
import torch

from imbal import losses

STATS = {"task": "multiclass", "num_classes": 2, "class_counts": [8, 2]}


def test_ce_hand():
    # -log(e^2 / (e^2 + 2)) = log(1 + 2 e^-2)
    loss = losses.build("ce")(torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([0]))
    assert loss.item() == pytest.approx(math.log(1 + 2 * math.exp(-2)), abs=1e-6)
    assert loss.item() == pytest.approx(0.239545, abs=1e-6)


def test_focal_hand():
    p = math.exp(2) / (math.exp(2) + 2)
    loss = losses.build("focal", gamma=2.0)(torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([0]))
    assert loss.item() == pytest.approx((1 - p) ** 2 * -math.log(p), rel=1e-5)
    assert loss.item() == pytest.approx(0.010869, abs=2e-6)


def test_weighted_ce_balanced_hand():
    # counts [8, 2]: sklearn 'balanced' weights n / (C n_c) = [10/16, 10/4]
    loss_fn = losses.build("weighted_ce", stats=STATS)
    assert loss_fn.weight.tolist() == pytest.approx([0.625, 2.5])
    logits = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    loss = loss_fn(logits, torch.tensor([0, 1]))
    ce0, ce1 = math.log(1 + math.exp(-1)), math.log(1 + math.e)
    # weighted mean divides by the sum of the batch's weights (PyTorch convention)
    assert loss.item() == pytest.approx((0.625 * ce0 + 2.5 * ce1) / 3.125, rel=1e-6)
    assert loss.item() == pytest.approx(1.113262, abs=1e-6)


def test_weighted_ce_matches_sklearn():
    from sklearn.utils.class_weight import compute_class_weight
    import numpy as np

    counts = [50, 20, 5, 1]
    y = np.repeat(np.arange(4), counts)
    expected = compute_class_weight("balanced", classes=np.arange(4), y=y)
    got = losses.build("weighted_ce", stats={"task": "multiclass", "num_classes": 4, "class_counts": counts}).weight
    assert got.tolist() == pytest.approx(expected.tolist(), rel=1e-6)


def test_logit_adjusted_hand():
    # prior [0.75, 0.25]; zero logits + log prior -> p(y=1) = 0.25 -> loss log 4
    loss_fn = losses.build("logit_adjusted", stats={"task": "multiclass", "num_classes": 2, "class_counts": [3, 1]})
    loss = loss_fn(torch.zeros(1, 2), torch.tensor([1]))
    assert loss.item() == pytest.approx(math.log(4), abs=1e-6)
    # tau scales the adjustment: tau=0 is plain CE
    ce = losses.build("logit_adjusted", tau=0.0, stats={"task": "multiclass", "num_classes": 2, "class_counts": [3, 1]})
    assert ce(torch.zeros(1, 2), torch.tensor([1])).item() == pytest.approx(math.log(2), abs=1e-6)
