"""The tests a plugin author should copy: the loss by hand, and its registration in imbal."""

import math

import pytest
import torch
import torch.nn.functional as F

import imbal.losses
from imbal_polyloss import Poly1Loss


def test_hand_computation():
    # p_t = e^2 / (e^2 + 2); loss = -log p_t + 1 * (1 - p_t)
    p = math.exp(2) / (math.exp(2) + 2)
    loss = Poly1Loss()(torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([0]))
    assert loss.item() == pytest.approx(-math.log(p) + (1 - p), rel=1e-6)


def test_epsilon_zero_is_cross_entropy():
    torch.manual_seed(0)
    logits, target = torch.randn(64, 7), torch.randint(0, 7, (64,))
    assert torch.allclose(Poly1Loss(epsilon=0.0)(logits, target), F.cross_entropy(logits, target))


def test_finite_at_extreme_logits():
    logits = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]], requires_grad=True)
    loss = Poly1Loss()(logits, torch.tensor([1, 1]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_registered_in_imbal():
    assert "poly1" in imbal.losses.available(refresh=True)
    d = imbal.losses.describe("poly1")
    assert d["package"] == "imbal-polyloss" and d["hparams"] == {"epsilon": 1.0, "reduction": "mean"}
    loss = imbal.losses.build("poly1", stats={"task": "multiclass", "num_classes": 3, "class_counts": [5, 3, 1]}, epsilon=2.0)
    assert isinstance(loss, Poly1Loss) and loss.epsilon == 2.0
