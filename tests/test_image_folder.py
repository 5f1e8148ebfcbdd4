"""data=image_folder_lt: class folders, held-out splits, long-tail subsampling, errors, one run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from imbal.data.image_folder import ImageFolderLTDataModule
from imbal.data.profile import longtail_counts
from imbal.errors import ImbalError

CLASSES = ["ant", "bee", "cow", "dog"]


def make_tree(root, per_class=(14, 14, 14, 14), size=(20, 26)):
    rng = np.random.default_rng(0)
    for k, (c, n) in enumerate(zip(CLASSES, per_class)):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = np.clip(rng.normal(40 + 50 * k, 30, size=(*size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / c / f"{i:03d}.{'png' if i % 2 else 'jpg'}")
    return root


def test_holdout_and_longtail_counts(tmp_path):
    root = make_tree(tmp_path / "imgs")
    dm = ImageFolderLTDataModule(root=str(root), val_per_class=2, test_per_class=3, ratio=6, image_size=16, num_workers=0)
    dm.setup()
    # 14 - 3 - 2 = 9 left per class; exp profile from 9 down to 9/6
    assert dm.stats.class_counts == longtail_counts(9, 4, 6) == [9, 4, 2, 1]
    assert dm.stats.class_names == CLASSES and dm.stats.input_shape == (3, 16, 16)
    assert torch.bincount(dm.splits["val"].targets).tolist() == [2] * 4
    assert torch.bincount(dm.splits["test"].targets).tolist() == [3] * 4
    files = [set(s.indices.tolist()) for s in dm.splits.values()]
    assert not (files[0] & files[1]) and not (files[0] & files[2]) and not (files[1] & files[2])
    x, y = dm.splits["test"][0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    m = json.loads(dm.save_manifest(tmp_path).read_text())
    assert m["class_counts"] == [9, 4, 2, 1] and m["classes"] == CLASSES and len(m["train_indices_hash"]) == 16


def test_natural_counts_and_separate_test_tree(tmp_path):
    root = make_tree(tmp_path / "train", per_class=(12, 8, 5, 4))
    test = make_tree(tmp_path / "test", per_class=(2, 2, 2, 2))
    dm = ImageFolderLTDataModule(root=str(root), test_root=str(test), val_per_class=1, ratio=None, image_size=8, num_workers=0)
    dm.setup()
    assert dm.stats.class_counts == [11, 7, 4, 3] and len(dm.splits["test"]) == 8
    assert dm.manifest["test"] == str(test)


def test_empty_class_folder_one_line(tmp_path):
    root = make_tree(tmp_path / "imgs")
    (root / "eel").mkdir()
    (root / "eel" / "notes.txt").write_text("no images here")
    with pytest.raises(ImbalError, match=r"class folder .*/imgs/eel has no image \(expected files ending in .*\.jpg.*\.png") as e:
        ImageFolderLTDataModule(root=str(root)).setup()
    assert "\n" not in str(e.value)


def test_other_errors_one_line(tmp_path):
    with pytest.raises(ImbalError, match=r"data.root=.*/nowhere is not a directory; expected a tree"):
        ImageFolderLTDataModule(root=str(tmp_path / "nowhere")).setup()
    with pytest.raises(ImbalError, match=r"imbalance ratio must be a number >= 1 \(n_max / n_min\), got 0.1"):
        ImageFolderLTDataModule(root=str(tmp_path), ratio=0.1).setup()
    root = make_tree(tmp_path / "few", per_class=(3, 3, 3, 3))
    with pytest.raises(ImbalError, match=r"class folder .*/few/ant has 3 images left, not more than data.test_per_class=10"):
        ImageFolderLTDataModule(root=str(root)).setup()
    other = make_tree(tmp_path / "other")
    (other / "zebra").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(other / "zebra" / "z.png")
    with pytest.raises(ImbalError, match=r"data.val_root=.* has class folders .* both trees must have the same class folders"):
        ImageFolderLTDataModule(root=str(make_tree(tmp_path / "main")), val_root=str(other), test_per_class=2).setup()


def test_image_folder_end_to_end(make_cfg, tmp_path):
    from imbal.runner import train

    root = make_tree(tmp_path / "imgs")
    rd = tmp_path / "run"
    cfg_args = ("data=image_folder_lt", f"data.root={root}", "data.ratio=6", "data.image_size=16", "data.val_per_class=2",
                "data.test_per_class=3", "data.num_workers=0", "data.batch_size=8", "trainer.max_epochs=1",
                "trainer.enable_progress_bar=false", f"hydra.run.dir={rd}")
    cfg = make_cfg(*cfg_args, run_dir=rd)
    assert cfg.model.name == "resnet18"  # the data config's default backbone
    cfg = make_cfg(*cfg_args, "model=resnet32", "model.blocks=1", run_dir=rd)  # a smaller one for CPU speed
    train(cfg)
    s = json.loads((rd / "summary.json").read_text())
    assert s["class_counts"] == [9, 4, 2, 1] and s["class_names"] == CLASSES and s["data"] == "image_folder_lt"
    assert 0 <= s["test"]["balanced_accuracy"] <= 1 and "few_shot_accuracy" in s["test"]
    assert json.loads((rd / "data_manifest.json").read_text())["class_counts"] == [9, 4, 2, 1]
