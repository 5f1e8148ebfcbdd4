"""The Airbus F2 score against hand-worked images, and the split-level segmentation metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imbal.metrics import SegmentationMetrics, airbus_f2


def box(r0, r1, c0, c1, shape=(40, 40)):
    m = np.zeros(shape, np.uint8)
    m[r0:r1, c0:c1] = 1
    return m


def test_empty_truth_empty_prediction_scores_one():
    assert airbus_f2(np.zeros((40, 40)), []) == 1.0


def test_any_prediction_on_a_ship_free_image_scores_zero():
    assert airbus_f2(box(0, 1, 0, 1), []) == 0.0


def test_no_prediction_on_a_ship_image_scores_zero():
    assert airbus_f2(np.zeros((40, 40)), [box(5, 15, 5, 25)]) == 0.0


def test_perfect_prediction_scores_one():
    assert airbus_f2(box(5, 15, 5, 25), [box(5, 15, 5, 25)]) == 1.0


def test_one_ship_matched_at_iou_0_6():
    # truth 10x20 = 200 px; prediction 10x12 inside it: IoU = 120/200 = 0.6.
    # IoU > t holds for t = 0.50, 0.55 only (0.6 is not above 0.6): 2 of 10 thresholds
    # give TP=1 (F2 = 1); the other 8 give TP=0, FN=1, FP=1 (F2 = 0).
    assert airbus_f2(box(5, 15, 5, 17), [box(5, 15, 5, 25)]) == pytest.approx(0.2)


def test_split_prediction():
    # truth 10x20 = 200 px.  Prediction: a 10x15 part of it (IoU 150/200 = 0.75) plus a
    # separate 2x2 blob elsewhere.  Thresholds 0.50..0.70 (5 of them): TP=1, FN=0, FP=1
    # -> F2 = 5/(5+0+1) = 5/6.  Thresholds 0.75..0.95: TP=0, FN=1, FP=2 -> 0.
    pred = box(5, 15, 5, 20) | box(30, 32, 30, 32)
    assert airbus_f2(pred, [box(5, 15, 5, 25)]) == pytest.approx(0.5 * 5 / 6)


def test_ship_split_in_two_halves_matches_nothing():
    # each half (100 px, a one-column gap between) has IoU 100/210 < 0.5 with the ship
    pred = box(5, 15, 5, 15) | box(5, 15, 16, 26)
    assert airbus_f2(pred, [box(5, 15, 5, 26)]) == 0.0


def test_two_ships_one_found_exactly():
    # thresholds all: TP=1, FN=1, FP=0 -> 5/(5+4) = 5/9
    a, b = box(2, 6, 2, 12), box(20, 24, 20, 30)
    assert airbus_f2(a, [a, b]) == pytest.approx(5 / 9)


def test_diagonally_touching_pixels_form_one_predicted_ship():
    pred = np.zeros((10, 10), np.uint8)
    pred[2, 2] = pred[3, 3] = 1  # one 8-connected component of 2 px
    truth = pred.copy()
    assert airbus_f2(pred, [truth]) == 1.0


def test_split_metrics_counts_and_instances():
    m = SegmentationMetrics()
    target = torch.zeros(2, 40, 40)
    target[0, 5:15, 5:25] = 1  # image 0: one ship, 200 px
    logits = torch.full((2, 1, 40, 40), -20.0)
    logits[0, 0, 5:15, 5:17] = 20.0  # 120 px predicted inside the ship
    logits[1, 0, 0, 0] = 20.0  # a false pixel on the ship-free image
    inst = target.long()
    m.update(logits, target, inst)
    r = m.compute()
    tp, fp, fn = 120, 1, 80
    assert r["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert r["iou"] == pytest.approx(tp / (tp + fp + fn))
    assert r["airbus_f2"] == pytest.approx((0.2 + 0.0) / 2)
    assert r["image_accuracy"] == pytest.approx(0.5)
    tn = 2 * 1600 - tp - fp - fn
    assert r["balanced_accuracy"] == pytest.approx(0.5 * (tp / (tp + fn) + tn / (tn + fp)))
    m.reset()
    m.update(torch.full((1, 1, 8, 8), -5.0), torch.zeros(1, 8, 8))  # no instances given
    r = m.compute()
    assert r["airbus_f2"] == 1.0 and r["dice"] == 1.0 and r["image_accuracy"] == 1.0


def test_dice_and_iou_agree_with_torchmetrics():
    # pixel Dice over the split is the binary F1 score of all pixels
    from torchmetrics.functional.classification import binary_f1_score, binary_jaccard_index

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 1, 16, 16, generator=g)
    target = (torch.rand(3, 16, 16, generator=g) > 0.7).float()
    m = SegmentationMetrics()
    m.update(logits, target)
    r = m.compute()
    pred = (logits[:, 0] > 0).long()
    assert r["iou"] == pytest.approx(float(binary_jaccard_index(pred, target.long())), abs=1e-6)
    assert r["dice"] == pytest.approx(float(binary_f1_score(pred, target.long())), abs=1e-6)
