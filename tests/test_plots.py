"""Per-run figures: files exist, are PNGs of the documented size, and the numbers behind them are right."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imbal.data.stats import DataStats
from imbal.metrics import expected_calibration_error, reliability_bins
from imbal.reporting.plots import confusion_matrix, confusion_size, png_size, write_run_plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COUNTS = [500, 200, 80, 30, 12]


def _multiclass(n_per_class: int = 40, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    c = len(COUNTS)
    targets = torch.arange(c).repeat_interleave(n_per_class)
    logits = torch.randn(len(targets), c, generator=g)
    logits[torch.arange(len(targets)), targets] += 2.0
    logits += torch.log(torch.tensor(COUNTS, dtype=torch.float))  # a head-biased model
    stats = DataStats("multiclass", c, COUNTS, [f"class{i}" for i in range(c)], "vector", (4,))
    recall = [float(x) for x in (logits.argmax(1) == targets).float().reshape(c, -1).mean(1)]
    summary = {
        "task": "multiclass",
        "data": "synthetic",
        "loss": "ce",
        "class_counts": COUNTS,
        "test": {"per_class_recall": recall},
        "posthoc": {"la": {"per_class_recall": [0.9, 0.8, 0.7, 0.6, 0.5], "tau": 1.0}},
    }
    outputs = {"test": {"features": torch.zeros(len(targets), 3), "logits": logits, "targets": targets}}
    return summary, outputs, stats


def _binary(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    targets = torch.cat([torch.zeros(300), torch.ones(60)])
    logits = torch.randn(360, generator=g) + 2.5 * targets - 1.0
    stats = DataStats("binary", 2, [900, 100], ["negative", "positive"], "vector", (4,))
    summary = {"task": "binary", "class_counts": [900, 100], "test": {"per_class_recall": [0.9, 0.6]}, "posthoc": {}}
    return summary, {"test": {"features": torch.zeros(360, 2), "logits": logits, "targets": targets}}, stats


def _check_png(path: Path, size: tuple[int, int]) -> None:
    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert png_size(path) == size
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.size == size
        # Not a blank canvas: many distinct colours.
        assert len(im.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50


def test_multiclass_plots_are_pngs_of_the_documented_size(tmp_path):
    summary, outputs, stats = _multiclass()
    paths = write_run_plots(tmp_path, summary, outputs, stats)
    assert [p.name for p in paths] == ["confusion_matrix.png", "recall_vs_frequency.png", "reliability.png"]
    assert all(p.parent == tmp_path / "plots" for p in paths)
    _check_png(paths[0], (800, 700))
    _check_png(paths[1], (1300, 550))  # raw + one post-hoc panel, 650 x 550 each
    _check_png(paths[2], (650, 750))


def test_binary_adds_a_pr_curve(tmp_path):
    summary, outputs, stats = _binary()
    paths = write_run_plots(tmp_path, summary, outputs, stats)
    assert [p.name for p in paths] == ["confusion_matrix.png", "recall_vs_frequency.png", "reliability.png", "pr_curve.png"]
    _check_png(paths[1], (650, 550))  # no post-hoc: one panel
    _check_png(paths[3], (650, 600))


def test_missing_inputs_skip_figures_instead_of_faking_them(tmp_path):
    summary, _, stats = _multiclass()
    # no test outputs: only the recall plot, which reads summary.json's numbers
    paths = write_run_plots(tmp_path, summary, {}, stats)
    assert [p.name for p in paths] == ["recall_vs_frequency.png"]
    seg = DataStats("segmentation", 2, None, ["bg", "ship"], "mask", (1, 8, 8))
    assert write_run_plots(tmp_path / "seg", {"task": "segmentation"}, {}, seg) == []


def test_confusion_size_grows_with_classes_and_is_capped():
    assert confusion_size(10) == (8.0, 7.0)
    assert confusion_size(20) == (12.5, 11.5)
    assert confusion_size(1000) == (20.0, 19.0)


def test_confusion_matrix_is_row_normalised():
    targets = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    preds = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    logits = torch.nn.functional.one_hot(preds, 3).float() * 5
    cm = confusion_matrix(logits, targets, "multiclass", 3)
    np.testing.assert_allclose(cm, [[0.75, 0.25, 0], [0, 0.5, 0.5], [0, 0, 1]])
    # binary [N] logits: sigmoid > 0.5 is class 1
    cm2 = confusion_matrix(torch.tensor([-3.0, 2.0, 2.0, 3.0]), torch.tensor([0.0, 0.0, 1.0, 1.0]), "binary", 2)
    np.testing.assert_allclose(cm2, [[0.5, 0.5], [0, 1]])


def test_reliability_bins_and_ece_by_hand():
    conf = torch.tensor([0.95, 0.95, 0.95, 0.95, 0.55, 0.55])
    correct = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    centres, acc, mean_conf, count, ece = reliability_bins(conf, correct, n_bins=10)
    assert count.tolist() == [0, 0, 0, 0, 0, 2, 0, 0, 0, 4]
    assert acc[9] == pytest.approx(0.75) and acc[5] == pytest.approx(0.5)
    assert mean_conf[9] == pytest.approx(0.95)
    # |0.75 - 0.95| * 4/6 + |0.5 - 0.55| * 2/6
    assert ece == pytest.approx(0.2 * 4 / 6 + 0.05 * 2 / 6)


@pytest.mark.parametrize("seed", [0, 1])
def test_drawn_bins_agree_with_torchmetrics_ece(seed):
    summary, outputs, _ = _multiclass(seed=seed)
    logits, targets = outputs["test"]["logits"], outputs["test"]["targets"]
    probs = torch.softmax(logits, -1)
    conf, pred = probs.max(-1)
    *_, ece_bins = reliability_bins(conf, (pred == targets).float())
    assert ece_bins == pytest.approx(expected_calibration_error(logits, targets, "multiclass"), abs=1e-5)
    assert 0.0 < ece_bins < 1.0


def test_figures_go_to_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

    summary, outputs, stats = _multiclass()
    tb = TensorBoardLogger(save_dir=str(tmp_path), name="tb", version="")
    write_run_plots(tmp_path, summary, outputs, stats, loggers=[tb])
    tb.finalize("success")
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={IMAGES: 0})
    acc.Reload()
    tags = sorted(acc.Tags()["images"])
    assert tags == ["plots/confusion_matrix", "plots/recall_vs_frequency", "plots/reliability"]
    img = acc.Images("plots/confusion_matrix")[0]
    assert (img.width, img.height) == (800, 700)
