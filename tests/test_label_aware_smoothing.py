"""Label-aware smoothing (MiSLAS, Zhong et al. 2021) against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from imbal.errors import ImbalError
from imbal.losses import build

STATS = {"class_counts": [100, 10, 1], "num_classes": 3, "task": "multiclass"}


def las(**kw):
    return build("label_aware_smoothing", stats=kw.pop("stats", STATS), **kw)


def hand_loss(logits: list[float], target: int, eps: float) -> float:
    """(1 - eps) * (-log p_y) + eps * mean_c(-log p_c), with plain math."""
    lse = math.log(sum(math.exp(z) for z in logits))
    nll = [lse - z for z in logits]
    return (1 - eps) * nll[target] + eps * sum(nll) / len(logits)


def test_registered_with_the_authors_defaults():
    from imbal import losses

    assert "label_aware_smoothing" in losses.available()
    loss = las()
    assert (loss.smooth_head, loss.smooth_tail, loss.shape) == (0.3, 0.0, "concave")


@pytest.mark.parametrize("shape,middle", [
    # r = (10 - 1) / (100 - 1) = 1/11 for the middle class
    ("concave", 0.3 * math.sin(math.pi / 2 / 11)),
    ("linear", 0.3 / 11),
    ("convex", 0.3 + 0.3 * math.sin(1.5 * math.pi + math.pi / 2 / 11)),
    ("exp", 0.3 * (1 / 11) ** 2),
])
def test_per_class_epsilon_by_hand(shape, middle):
    loss = las(shape=shape, power=2.0 if shape == "exp" else None)
    assert loss.smoothing.tolist() == pytest.approx([0.3, middle, 0.0], abs=1e-7)


def test_loss_by_hand():
    loss = las(smooth_head=0.2, smooth_tail=0.1, shape="linear")
    eps = [0.2, 0.1 + 0.1 / 11, 0.1]
    logits = [[2.0, 0.0, -1.0], [0.5, 1.5, -0.5], [0.0, 0.0, 3.0]]
    target = [0, 1, 2]
    got = loss(torch.tensor(logits), torch.tensor(target))
    expected = sum(hand_loss(z, t, eps[t]) for z, t in zip(logits, target)) / 3
    assert got.item() == pytest.approx(expected, rel=1e-6)
    none = build("label_aware_smoothing", stats=STATS, smooth_head=0.2, smooth_tail=0.1, shape="linear",
                 reduction="none")(torch.tensor(logits), torch.tensor(target))
    assert none.tolist() == pytest.approx([hand_loss(z, t, eps[t]) for z, t in zip(logits, target)], rel=1e-6)


def test_zero_smoothing_is_cross_entropy():
    logits, target = torch.randn(8, 3, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 0] * 2)
    got = las(smooth_head=0.0, smooth_tail=0.0)(logits, target)
    assert got.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, target).item(), rel=1e-6)


def test_a_class_with_zero_samples_gives_no_nan():
    loss = las(stats={"class_counts": [5, 0, 3], "num_classes": 3, "task": "multiclass"})
    # r = (n - 0) / 5: the empty class is the tail, epsilon = smooth_tail = 0
    assert loss.smoothing.tolist() == pytest.approx([0.3, 0.0, 0.3 * math.sin(math.pi / 2 * 3 / 5)], abs=1e-7)
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 1.0]], requires_grad=True)
    value = loss(logits, torch.tensor([1, 0]))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()


def test_equal_counts_smooth_every_class_as_the_head():
    loss = las(stats={"class_counts": [7, 7, 7], "num_classes": 3, "task": "multiclass"})
    assert loss.smoothing.tolist() == pytest.approx([0.3, 0.3, 0.3])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_extreme_logits(dtype):
    loss = las()
    logits = torch.tensor([[1e4, -1e4, 0.0]], dtype=dtype) if dtype == torch.float32 else \
        torch.tensor([[6e4, -6e4, 0.0]], dtype=dtype)
    big = float(logits[0, 0])
    # -log p = [0, 2 big, big]; target 2 (the tail, eps 0): loss = big; target 0 (eps 0.3): 0.3 * mean = 0.3 * big
    assert loss(logits, torch.tensor([2])).item() == pytest.approx(big, rel=1e-6)
    assert loss(logits, torch.tensor([0])).item() == pytest.approx(0.3 * big, rel=1e-6)
    logits = logits.float().requires_grad_(True)
    loss(logits, torch.tensor([1])).backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("kw,message", [
    ({"shape": "wavy"}, "loss 'label_aware_smoothing': shape='wavy': expected one of concave, linear, convex, exp"),
    ({"smooth_head": 1.0}, "loss 'label_aware_smoothing': smooth_head=1.0: expected a number in [0, 1)"),
    ({"smooth_tail": -0.1}, "loss 'label_aware_smoothing': smooth_tail=-0.1: expected a number in [0, 1)"),
    ({"shape": "exp"}, "loss 'label_aware_smoothing': shape='exp' needs power=<a finite number > 0>, got power=None"),
    ({"stats": {"num_classes": 3, "task": "multiclass"}}, "loss 'label_aware_smoothing' needs class_counts"),
])
def test_bad_hyper_parameters_are_one_line(kw, message):
    with pytest.raises(ImbalError) as err:
        las(**kw)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_trains_through_the_config(tmp_path, capsys, monkeypatch):
    from imbal.runner import flow
    from tests.test_bad_inputs import run_inprocess
    from tests.test_stages import TINY

    monkeypatch.setattr(flow, "write_plots", lambda *a, **k: [])  # figures are not what this tests
    run_dir = tmp_path / "run"
    code, err = run_inprocess([*TINY, "loss=label_aware_smoothing", "loss.smooth_head=0.2", "posthoc=null",
                               f"hydra.run.dir={run_dir}"], capsys)
    assert code == 0, err
    import json

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["loss"] == "label_aware_smoothing"
    assert summary["loss_hparams"] == {"smooth_head": 0.2, "smooth_tail": 0.0, "shape": "concave", "power": None,
                                       "reduction": "mean"}
