"""Long-tail metrics: many/medium/few-shot accuracy and expected calibration error, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imbal.data.stats import DataStats
from imbal.metrics import ClassificationMetrics, shot_groups


def stats(counts):
    return DataStats(task="multiclass", num_classes=len(counts), class_counts=counts,
                     class_names=[str(i) for i in range(len(counts))], modality="image")


def test_shot_group_boundaries():
    # >100 many, 20..100 medium, <20 few (Liu et al. 2019)
    g = shot_groups([500, 101, 100, 20, 19, 1])
    assert g == {"many_shot_accuracy": [0, 1], "medium_shot_accuracy": [2, 3], "few_shot_accuracy": [4, 5]}
    assert "few_shot_accuracy" not in shot_groups([500, 200])


def test_shot_accuracies_are_group_mean_recalls():
    counts = [1000, 300, 50, 30, 10, 5]
    m = ClassificationMetrics(stats(counts))
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(6), 20)
    pred = np.where(rng.random(len(y)) < np.array([0.9, 0.8, 0.6, 0.5, 0.3, 0.1])[y], y, (y + 1) % 6)
    logits = torch.nn.functional.one_hot(torch.as_tensor(pred), 6).float() * 5
    m.update(logits, torch.as_tensor(y))
    r = m.compute()
    recall = np.array([(pred[y == c] == c).mean() for c in range(6)])
    assert r["many_shot_accuracy"] == pytest.approx(recall[:2].mean())
    assert r["medium_shot_accuracy"] == pytest.approx(recall[2:4].mean())
    assert r["few_shot_accuracy"] == pytest.approx(recall[4:].mean())
    assert r["balanced_accuracy"] == pytest.approx(recall.mean(), abs=1e-6)
    # the existing names are still there
    assert {"accuracy", "balanced_accuracy", "macro_f1", "log_loss", "per_class_recall"} <= set(r)


def ece_by_hand(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """Guo et al. 2017, Eq. 3: sum_b |B_b|/n * |acc(B_b) - conf(B_b)|, equal-width bins (lo, hi]."""
    conf, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inb = (conf > lo) & (conf <= hi)
        if inb.any():
            total += inb.mean() * abs((pred[inb] == y[inb]).mean() - conf[inb].mean())
    return total


def test_ece_matches_definition():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, size=(400, 5))
    y = rng.integers(0, 5, 400)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = ClassificationMetrics(stats([100, 80, 60, 40, 20]))
    for part in np.array_split(np.arange(400), 3):  # accumulates over batches
        m.update(torch.as_tensor(logits[part]), torch.as_tensor(y[part]))
    assert m.compute()["ece"] == pytest.approx(ece_by_hand(probs, y), abs=1e-5)
    m.reset()
    # a confident, always-right model is perfectly calibrated
    m.update(torch.eye(5)[y] * 50, torch.as_tensor(y))
    assert m.compute()["ece"] == pytest.approx(0.0, abs=1e-6)


def test_no_counts_no_shot_metrics():
    s = DataStats(task="multiclass", num_classes=3, class_counts=None, class_names=list("abc"), modality="image")
    m = ClassificationMetrics(s)
    m.update(torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2]))
    r = m.compute()
    assert not any(k.endswith("_shot_accuracy") for k in r) and "ece" in r


@pytest.mark.parametrize("task", ["multiclass", "binary"])
def test_ece_is_torchmetrics_calibration_error_and_one_definition(task):
    """The summary's ``ece`` (accumulated over batches), the figure's ECE and torchmetrics' l1 ECE agree."""
    from torchmetrics.functional.classification import binary_calibration_error, multiclass_calibration_error

    from imbal.metrics import expected_calibration_error, reliability_bins
    from imbal.metrics.calibration import calibration_inputs

    g = torch.Generator().manual_seed(3)
    if task == "multiclass":
        targets = torch.randint(0, 4, (300,), generator=g)
        logits = torch.randn(300, 4, generator=g) * 2
        logits[torch.arange(300), targets] += 1.0
        s = stats([400, 100, 30, 8])
        reference = multiclass_calibration_error(torch.softmax(logits, -1), targets, num_classes=4, n_bins=15)
    else:
        targets = (torch.rand(300, generator=g) < 0.2).long()
        logits = torch.randn(300, generator=g) * 2 + 2.0 * targets - 1.0
        s = DataStats(task="binary", num_classes=2, class_counts=[240, 60], class_names=["neg", "pos"],
                      modality="vector")
        reference = binary_calibration_error(torch.sigmoid(logits), targets, n_bins=15)
    m = ClassificationMetrics(s)
    for part in torch.arange(300).chunk(4):
        m.update(logits[part], targets[part])
    ece = m.compute()["ece"]
    assert ece == pytest.approx(float(reference), abs=1e-5)
    assert expected_calibration_error(logits, targets, task) == pytest.approx(ece, abs=1e-6)
    *_, drawn = reliability_bins(*calibration_inputs(logits, targets, task))
    assert drawn == pytest.approx(ece, abs=1e-6)


def test_shot_group_edges_are_shared():
    from imbal.metrics import MEDIUM_MAX, MEDIUM_MIN, SHOT_GROUPS

    assert (MEDIUM_MIN, MEDIUM_MAX) == (20, 100)
    assert SHOT_GROUPS["few_shot_accuracy"][1] == MEDIUM_MIN - 1
    assert SHOT_GROUPS["many_shot_accuracy"][0] == MEDIUM_MAX + 1


def test_macro_metrics_average_over_the_classes_present():
    """Class 2 has no test sample but is predicted once: recalls 1.0 and 0.5 give 0.75 (torchmetrics 1.9's
    ``MulticlassRecall(average="macro")`` counts the predicted absent class as 0 and gives 0.5)."""
    from imbal.metrics import absent_classes

    targets, preds = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 0, 1, 2])
    m = ClassificationMetrics(stats([10, 10, 10]))
    m.update(torch.nn.functional.one_hot(preds, 3).float() * 5, targets)
    r = m.compute()
    assert r["balanced_accuracy"] == pytest.approx(0.75)
    assert r["accuracy"] == pytest.approx(0.75)
    # F1: class 0 = 1.0, class 1 = 2*1/(2+1) = 2/3; the absent class 2 is not averaged in
    assert r["macro_f1"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert r["per_class_recall"][:2] == [1.0, 0.5] and np.isnan(r["per_class_recall"][2])
    assert r["few_shot_accuracy"] == pytest.approx(0.75)  # the shot group's mean skips the absent class too
    assert absent_classes(r["per_class_recall"], ["a", "b", "c"]) == ["c"]
    assert absent_classes([1.0, None, 0.5], ["a", "b", "c"]) == ["b"]  # read back from summary.json


def test_shot_group_with_only_absent_classes_is_left_out():
    m = ClassificationMetrics(stats([500, 300, 10]))  # class 2 alone is few-shot
    m.update(torch.eye(3)[[0, 1, 1]] * 5, torch.tensor([0, 1, 0]))
    r = m.compute()
    assert r["many_shot_accuracy"] == pytest.approx(0.75) and "few_shot_accuracy" not in r


def test_multilabel_macro_metrics_skip_labels_without_positives():
    s = DataStats(task="multilabel", num_classes=3, class_counts=[5, 5, 5], class_names=list("abc"), modality="text")
    m = ClassificationMetrics(s)
    targets = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 1, 0]]).float()
    preds = torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 0]]).float()
    m.update(preds * 10 - 5, targets)
    r = m.compute()
    assert r["accuracy"] == pytest.approx(7 / 9)  # micro over the 9 label cells, as before
    assert r["balanced_accuracy"] == pytest.approx(0.75)  # recalls 1.0, 0.5; label c has no positive
    assert r["macro_f1"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert np.isnan(r["per_class_recall"][2])


def test_macro_metrics_without_absent_classes_match_torchmetrics():
    from torchmetrics.functional.classification import multiclass_f1_score, multiclass_recall

    g = torch.Generator().manual_seed(0)
    targets = torch.arange(5).repeat(20)
    logits = torch.randn(100, 5, generator=g)
    m = ClassificationMetrics(stats([50, 40, 30, 20, 10]))
    m.update(logits, targets)
    r = m.compute()
    preds = logits.argmax(-1)
    assert r["balanced_accuracy"] == pytest.approx(float(multiclass_recall(preds, targets, num_classes=5)), abs=1e-6)
    assert r["macro_f1"] == pytest.approx(float(multiclass_f1_score(preds, targets, num_classes=5)), abs=1e-6)
