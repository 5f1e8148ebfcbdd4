"""Two gloo ranks (``trainer=ddp_cpu``) on a ``data=split_list`` long-tailed tree of 31 classes with the
class-balanced sampler and the resize cache: every test line is evaluated exactly once (93 lines shared
47 / 46 by the ranks, no padding duplicates) and the many / medium / few-shot accuracies are reported.

A subprocess (``python train.py``): Lightning's ``strategy=ddp`` inside pytest would re-run pytest.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from imbal.metrics.shots import shot_groups
from imbal.runner.predictions import read_predictions
from tests.conftest import run_train
from tests.test_split_list import write_split

CLASSES = 31
#: exp profile 150 -> 2: 3 many-shot (>100), 12 medium-shot (20-100) and 16 few-shot (<20) classes
COUNTS = [int(150 * (2 / 150) ** (k / (CLASSES - 1))) for k in range(CLASSES)]


@pytest.mark.slow  # 60-110 s wall at load 4.6-6.5 on the 2 cores (two processes starting torch + Lightning)
def test_ddp_split_list_counts_every_test_line_once(tmp_path):
    groups = shot_groups(COUNTS)
    assert [len(groups[g]) for g in ("many_shot_accuracy", "medium_shot_accuracy", "few_shot_accuracy")] == [3, 12, 16]
    root = tmp_path / "data"
    write_split(root, "lt_train.txt", [(f"train/c{k:02d}/{i}.jpg", k) for k in range(CLASSES) for i in range(COUNTS[k])])
    write_split(root, "lt_val.txt", [(f"val/c{k:02d}/{i}.jpg", k) for k in range(CLASSES) for i in range(2)])
    test_rows = [(f"test/{k * 3 + i:05d}.jpg", k) for k in range(CLASSES) for i in range(3)]
    write_split(root, "lt_test.txt", test_rows)
    out = tmp_path / "run"
    proc = run_train("trainer=ddp_cpu", "data=split_list", f"data.root={root}", "data.train_list=lt_train.txt",
                     "data.val_list=lt_val.txt", "data.test_list=lt_test.txt", "data.image_size=8",
                     "data.resize_size=10", "data.cache_size=10", f"data.cache_dir={tmp_path / 'cache'}",
                     "data.num_workers=0", "data.batch_size=64", "sampler=class_balanced", "model=small_cnn",
                     "trainer.max_epochs=1", "trainer.enable_progress_bar=false", f"hydra.run.dir={out}", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test"]["num_samples"] == len(test_rows) == 93 and summary["val"]["num_samples"] == 62
    for key in ("many_shot_accuracy", "medium_shot_accuracy", "few_shot_accuracy"):
        assert 0.0 <= summary["test"][key] <= 1.0
    test = read_predictions(out, "test")
    assert test["index"].tolist() == list(range(93))  # each line once, in list order
    assert np.array_equal(test["targets"], [k for _, k in test_rows])
    stats = json.loads((out / "data_stats.json").read_text())
    assert stats["class_counts"] == COUNTS and stats["num_classes"] == CLASSES
    cache = list((tmp_path / "cache").glob("split_list_*/complete-*.json"))
    assert len(cache) == 1 and json.loads(cache[0].read_text())["images"] == sum(COUNTS) + 62 + 93
