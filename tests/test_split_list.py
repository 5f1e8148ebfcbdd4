"""``data=split_list``: official-format list files over generated JPEG trees with sub-folders.

Class counts and shot groups with labels up to 8,141 (iNaturalist's range), every listing mistake as its
one-line message, paths escaping ``data.root``, the resize cache (built once, reused, close to the
uncached tensors), and a 1-epoch ``python train.py data=split_list`` run reporting the shot groups.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from imbal.data.paths import ListedTree
from imbal.data.resize_cache import resized_size
from imbal.data.split_list import SplitListDataModule
from imbal.errors import ImbalError
from imbal.metrics.shots import shot_groups

#: iNaturalist-like ids: a many-shot, a medium-shot and a few-shot class among 8,142
MANY, MEDIUM, FEW = 0, 4000, 8141
TRAIN_COUNTS = {MANY: 150, MEDIUM: 50, FEW: 5}


def write_jpeg(path: Path, seed: int, size=(12, 10)) -> None:
    """A small smooth RGB JPEG (a gradient plus a per-file offset: compresses faithfully)."""
    from PIL import Image

    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([xx * 200 // w + seed % 50, yy * 200 // h + (seed * 7) % 50, (xx + yy) * 100 // (w + h) + 60],
                   -1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, quality=95)


def write_split(root: Path, list_name: str, rows: list[tuple[str, int]], *, files: bool = True, size=(12, 10)) -> Path:
    """Images of ``rows`` (unless ``files`` is false) and the list file ``root/list_name`` in the official format."""
    for i, (rel, _) in enumerate(rows):
        if files and not (root / rel).exists():
            write_jpeg(root / rel, i, size)
    path = root / list_name
    path.write_text("".join(f"{rel} {label}\n" for rel, label in rows))
    return path


def inat_rows(folder: str, counts: dict[int, int]) -> list[tuple[str, int]]:
    return [(f"{folder}/Plantae/{k}/{k}_{i:04d}.jpg", k) for k, n in counts.items() for i in range(n)]


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """One generated tree: train 150 / 50 / 5 images of classes 0 / 4000 / 8141, val 2 and test 3 a class."""
    root = tmp_path_factory.mktemp("inat")
    write_split(root, "train.txt", inat_rows("train_val2018", TRAIN_COUNTS))
    write_split(root, "val.txt", inat_rows("val2018", {k: 2 for k in TRAIN_COUNTS}))
    write_split(root, "test.txt", inat_rows("test2018", {k: 3 for k in TRAIN_COUNTS}))
    return root


def module(root: Path, **kw) -> SplitListDataModule:
    args = dict(root=str(root), train_list="train.txt", val_list="val.txt", test_list="test.txt", num_classes=8142,
                allow_empty_classes=True, image_size=8, resize_size=10, batch_size=16, num_workers=0)
    return SplitListDataModule(**{**args, **kw})


def refused(root: Path, pattern: str, **kw) -> None:
    with pytest.raises(ImbalError) as info:
        module(root, **kw).setup("fit")
    msg = str(info.value)
    assert "\n" not in msg
    assert re.fullmatch(pattern, msg), msg


def test_class_counts_and_shot_groups_with_inaturalist_labels(tree):
    dm = module(tree)
    dm.setup("fit")
    s = dm.stats
    assert s.num_classes == 8142 and s.num_train == 205 and s.val_from == "val_list"
    assert {k: n for k, n in enumerate(s.class_counts) if n} == TRAIN_COUNTS
    groups = shot_groups(s.class_counts)
    assert MANY in groups["many_shot_accuracy"] and MANY not in groups["medium_shot_accuracy"]
    assert MEDIUM in groups["medium_shot_accuracy"] and FEW in groups["few_shot_accuracy"]
    assert len(groups["many_shot_accuracy"]) == 1 and len(groups["medium_shot_accuracy"]) == 1
    assert len(groups["few_shot_accuracy"]) == 8140  # class 8141 and the 8,139 empty classes
    assert [len(dm.splits[k]) for k in ("train", "val", "test")] == [205, 6, 9]
    assert dm.splits["test"].targets.tolist() == [MANY] * 3 + [MEDIUM] * 3 + [FEW] * 3
    assert dm.splits["train"].paths[150] == str(tree / "train_val2018/Plantae/4000/4000_0000.jpg")
    x, y = next(iter(dm.loader("test")))
    assert x.shape == (9, 3, 8, 8) and x.dtype == torch.float32 and y.tolist() == dm.splits["test"].targets.tolist()
    xt, _ = next(iter(dm.loader("train")))
    assert xt.shape == (16, 3, 8, 8)
    assert dm.manifest["lists"]["train"]["images"] == 205 and dm.manifest["class_counts"][FEW] == 5


def test_class_count_from_labels_and_names_file(tree, tmp_path):
    root = tmp_path / "small"
    write_split(root, "train.txt", [("a/x0.jpg", 0), ("a/x1.jpg", 1), ("b/x2.jpg", 2), ("b/x3.jpg", 2)])
    write_split(root, "test.txt", [("t/y0.jpg", 0), ("t/y1.jpg", 3)])
    (root / "names.txt").write_text("cat\ndog\nemu\nfox\n")
    kw = dict(val_list=None, val_per_class=0, num_classes=None, allow_empty_classes=False)
    dm = module(root, **{**kw, "allow_empty_classes": True}, class_names="names.txt")
    dm.setup()
    assert dm.stats.class_names == ["cat", "dog", "emu", "fox"] and dm.stats.num_classes == 4
    refused(root, r"1 of 4 classes have no training image in \S+/train.txt \(class ids 3\); .*", **kw,
            class_names="names.txt")
    (root / "names.txt").write_text("cat\ndog\n")
    refused(root, r"\S+/train.txt:3: label 2 is outside \[0, 2\) \(2 names in data.class_names\)", **kw,
            class_names="names.txt")
    refused(root, r"data.class_names=\S+/names.txt has 2 names but data.num_classes=4; expected one name a line "
                  r"for every class", **{**kw, "num_classes": 4}, class_names="names.txt")


def test_balanced_holdout_when_no_val_list(tree):
    dm = module(tree, val_list=None, val_per_class=2)
    dm.setup()
    assert dm.stats.val_from == "train" and dm.stats.num_train == 205 - 6
    assert sorted(dm.splits["val"].targets.tolist()) == [MANY] * 2 + [MEDIUM] * 2 + [FEW] * 2
    assert {k: n for k, n in enumerate(dm.stats.class_counts) if n} == {MANY: 148, MEDIUM: 48, FEW: 3}
    assert not set(dm.splits["val"].paths) & set(dm.splits["train"].paths)
    refused(tree, r"data.val_list=null holds out data.val_per_class=5 training images per class, but class 8141 has "
                  r"5 \(1 such classes\); give data.val_list or lower data.val_per_class", val_list=None,
            val_per_class=5)


def test_every_listing_mistake_is_one_line(tree, tmp_path):
    root = tmp_path / "bad"
    good = inat_rows("train_val2018", {0: 4, 1: 4})
    write_split(root, "test.txt", [("t/a.jpg", 0), ("t/b.jpg", 1)])
    kw = dict(val_list=None, val_per_class=1, num_classes=2, allow_empty_classes=False)

    def with_train(lines: str, **more):
        (root / "train.txt").write_text(lines)
        return {**kw, **more}

    write_split(root, "train.txt", good)
    module(root, **kw).setup()  # the good list passes
    text = "".join(f"{r} {k}\n" for r, k in good)
    refused(root, r"\S+/train.txt:3: malformed line 'train_val2018/Plantae/0/0_0002.jpg'; expected "
                  r"'relative/path.jpg <label>'", **with_train(text.replace("0_0002.jpg 0", "0_0002.jpg")))
    refused(root, r"\S+/train.txt:2: label 'cat' is not an integer; expected 'relative/path.jpg <label>' with an "
                  r"integer class id", **with_train(text.replace("0_0001.jpg 0", "0_0001.jpg cat")))
    refused(root, r"\S+/train.txt:2: label '1.0' is not an integer; .*",
            **with_train(text.replace("0_0001.jpg 0", "0_0001.jpg 1.0")))
    refused(root, r"\S+/train.txt:6: label 8141 is outside \[0, 2\) \(data.num_classes=2\)",
            **with_train(text.replace("1_0001.jpg 1", "1_0001.jpg 8141")))
    refused(root, r"\S+/train.txt:1: label -1 is outside \[0, 2\) \(data.num_classes=2\)",
            **with_train(text.replace("0_0000.jpg 0", "0_0000.jpg -1")))
    dup = text + f"{good[2][0]} 0\n{good[1][0]} 0\n{good[2][0]} 1\n"
    refused(root, r"\S+/train.txt:9: duplicate line: 'train_val2018/Plantae/0/0_0002.jpg' is already listed at line "
                  r"3 \(3 duplicate lines in train.txt\); list each image once", **with_train(dup))
    missing = text + "".join(f"train_val2018/Plantae/1/gone{i}.jpg 1\n" for i in range(5))
    refused(root, r"5 of the 13 files listed in \S+/train.txt are missing under data.root=\S+ \(first: "
                  r"train_val2018/Plantae/1/gone0.jpg, train_val2018/Plantae/1/gone1.jpg, "
                  r"train_val2018/Plantae/1/gone2.jpg\)", **with_train(missing))
    (root / "train.txt").write_text(text)
    refused(root, r"3 of 5 classes have no training image in \S+/train.txt \(class ids 2, 3, 4\); fix the list or "
                  r"data.num_classes, or set data.allow_empty_classes=true", **{**kw, "num_classes": 5})
    write_split(root, "test2.txt", [("t/a.jpg", 0), (good[3][0], 0)])
    refused(root, r"\S+/test2.txt:2: 'train_val2018/Plantae/0/0_0003.jpg' is also in the training list \S+/train.txt "
                  r"\(1 such lines\); the test images must not be trained on", **kw, test_list="test2.txt")
    refused(root, r"data.test_list=nope.txt: list file \S+/nope.txt not found \(a relative path is taken under "
                  r"data.root=\S+; give an absolute path for a list kept elsewhere\)", **kw, test_list="nope.txt")
    (root / "empty.txt").write_text("\n\n")
    refused(root, r"data.test_list: \S+/empty.txt lists no image; expected lines 'relative/path.jpg <label>'", **kw,
            test_list="empty.txt")
    # the usual mistake: data.root one level too deep (or too high)
    refused(root / "train_val2018", r"none of the 8 files of \S+/train.txt exists under data.root=\S+/train_val2018; "
                                    r"is data.root the folder that holds train_val2018/...\?",
            **kw, train_list=str(root / "train.txt"), test_list=str(root / "test.txt"))


@pytest.mark.parametrize("name", ["../outside.jpg", "/etc/x.jpg", "a/../../outside.jpg", "a//b.jpg", "./a.jpg"])
def test_a_path_escaping_root_is_refused(tmp_path, name):
    root = tmp_path / "root"
    write_split(root, "train.txt", [("a/x.jpg", 0), ("a/y.jpg", 0)])
    write_jpeg(tmp_path / "outside.jpg", 0)
    (root / "test.txt").write_text(f"{name} 0\n")
    refused(root, rf"data 'split_list': \S+/test.txt:1: path {re.escape(repr(name))} is not a relative path inside "
                  rf"\S+ \(expected e.g. a/x.jpg, without '..' or a leading '/'\)", val_list=None, val_per_class=1,
            num_classes=None)


def test_symlinks_may_not_leave_root(tmp_path):
    root, out = tmp_path / "root", tmp_path / "elsewhere"
    write_jpeg(root / "a/x.jpg", 0)
    write_jpeg(out / "y.jpg", 1)
    os.symlink(out, root / "linked")  # a folder link out of root
    os.symlink(out / "y.jpg", root / "a/y.jpg")  # a file link out of root
    os.symlink(root / "a", root / "inside")  # a folder link that stays inside
    tree = ListedTree(root)
    assert tree.join("inside/x.jpg", what="w") == str(root / "inside/x.jpg") and tree.is_file("inside/x.jpg")
    assert not tree.is_file("a/none.jpg") and not tree.is_file("none/x.jpg")
    for name, via in (("linked/y.jpg", "linked"), ("a/y.jpg", "a/y.jpg")):
        with pytest.raises(ImbalError, match=rf"^w '{name}': {re.escape(str(root / via))} leads through a symlink to "
                                             rf"{re.escape(str(out))}\S*, outside data.root={re.escape(str(root))}; "):
            tree.join(name, what="w")


def test_options_refused_in_one_line(tree):
    if not torch.cuda.is_available():
        refused(tree, r"data.decode=gpu needs CUDA; torch.cuda.is_available\(\) is false on this machine "
                      r"\(use data.decode=cpu\)", decode="gpu")
    refused(tree, r"data.cache_size=9 is below data.resize_size=10: evaluation would upsample the cached images; "
                  r"use cache_size >= resize_size", cache_size=9)
    refused(tree, r"data.image_size=12, data.resize_size=10: expected 8 <= image_size <= resize_size .*",
            image_size=12)


def test_resize_cache_is_built_once_and_matches_uncached(tree, tmp_path):
    assert resized_size(12, 10, 10) == (12, 10) and resized_size(10, 30, 7) == (7, 21)
    plain = module(tree)
    plain.setup()
    cached = module(tree, cache_dir=str(tmp_path / "cache"), cache_size=10)
    cached.setup()
    assert cached.cache_info["written"] == 205 + 6 + 9 and cached.cache_info["images"] == 220
    folder = cached.cache_root()
    assert folder.parent == tmp_path / "cache" and folder.name.startswith("split_list_")
    files = sorted(p for p in folder.rglob("*.jpg"))
    assert len(files) == 220 and not list(folder.rglob(".*tmp*"))
    assert cached.splits["test"].paths[0] == str(folder / "test2018/Plantae/0/0_0000.jpg")
    from PIL import Image

    with Image.open(files[0]) as im:
        assert im.format == "JPEG" and min(im.size) == 10
    # evaluation tensors: Resize(10) of the 12x10 source is the identity, so only JPEG q95 differs
    x0, y0 = next(iter(plain.loader("test")))
    x1, y1 = next(iter(cached.loader("test")))
    assert torch.equal(y0, y1)
    diff = (x1 - x0) * torch.tensor([0.229, 0.224, 0.225])[:, None, None] * 255  # in 8-bit pixel units
    assert diff.abs().mean() < 1.5 and diff.abs().max() < 8  # measured 1.1 and 6
    # a second data module (a later run, another rank) reuses the cache: nothing read, nothing rewritten
    mtimes = [p.stat().st_mtime_ns for p in files]
    again = module(tree, cache_dir=str(tmp_path / "cache"), cache_size=10)
    again.setup()
    assert again.cache_info["written"] == 0 and [p.stat().st_mtime_ns for p in files] == mtimes
    # a killed build left whole files only: the next one writes the missing ones, no more
    for p in files[:7]:
        p.unlink()
    for m in folder.glob("complete-*.json"):
        m.unlink()
    third = module(tree, cache_dir=str(tmp_path / "cache"), cache_size=10)
    third.setup()
    assert third.cache_info["written"] == 7


def test_one_epoch_run_reports_shot_groups(tmp_path):
    from tests.conftest import run_train

    root = tmp_path / "data"
    counts = {0: 120, 1: 40, 2: 8}
    write_split(root, "train.txt", inat_rows("train", counts))
    write_split(root, "test.txt", inat_rows("test", {k: 4 for k in counts}))
    out = tmp_path / "run"
    proc = run_train("data=split_list", f"data.root={root}", "data.train_list=train.txt", "data.test_list=test.txt",
                     "data.val_per_class=3", "data.image_size=8", "data.resize_size=10", "data.num_workers=0",
                     "data.batch_size=32", "model=small_cnn", "trainer=cpu", "trainer.max_epochs=1",
                     "trainer.enable_progress_bar=false", f"hydra.run.dir={out}", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test"]["num_samples"] == 12 and summary["val"]["num_samples"] == 9
    for key in ("many_shot_accuracy", "medium_shot_accuracy", "few_shot_accuracy"):
        assert 0.0 <= summary["test"][key] <= 1.0
    stats = json.loads((out / "data_stats.json").read_text())
    assert stats["class_counts"] == [117, 37, 5] and stats["val_from"] == "train"


def test_gpu_decode_path_on_the_cpu(tree, monkeypatch):
    """``decode: gpu`` with the device swapped for the CPU (no GPU here): the loader yields file bytes and
    ``on_before_batch_transfer`` decodes them (torchvision's libjpeg) and transforms them per image on the
    device; the evaluation batch equals the PIL path's within resize rounding."""
    import types

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    dm = module(tree, decode="gpu", pin_memory=False)
    dm.setup()
    raw, y = next(iter(dm.loader("test")))
    assert isinstance(raw, list) and len(raw) == 9 and raw[0].dtype == torch.uint8 and raw[0].dim() == 1
    assert raw[0].tolist()[:2] == [0xFF, 0xD8]  # a JPEG's start-of-image marker
    dm.trainer = types.SimpleNamespace(strategy=types.SimpleNamespace(root_device=torch.device("cpu")),
                                       training=False)
    x, y2 = dm.on_before_batch_transfer((raw, y), 0)
    assert torch.equal(y, y2) and x.shape == (9, 3, 8, 8)
    monkeypatch.undo()
    plain = module(tree)
    plain.setup()
    x0, _ = next(iter(plain.loader("test")))
    diff = (x - x0) * torch.tensor([0.229, 0.224, 0.225])[:, None, None] * 255
    assert diff.abs().mean() < 1.0 and diff.abs().max() < 4
    dm.trainer.training = True
    xt, _ = dm.on_before_batch_transfer((raw, y), 0)
    assert xt.shape == (9, 3, 8, 8) and not torch.equal(xt, x)  # random crops and flips


@pytest.mark.parametrize("preset, lists, classes, jitter, mean", [
    ("imagenet_lt", ("ImageNet_LT_train.txt", "ImageNet_LT_val.txt", "ImageNet_LT_test.txt"), 1000, 0.4, 0.485),
    ("places_lt", ("Places_LT_train.txt", "Places_LT_val.txt", "Places_LT_test.txt"), 365, 0.4, 0.485),
    ("inat2018", ("iNaturalist18_train.txt", "iNaturalist18_val.txt", "iNaturalist18_val.txt"), 8142, None, 0.466),
])
def test_presets_name_the_official_lists(make_cfg, preset, lists, classes, jitter, mean):
    cfg = make_cfg(f"data={preset}", "data.root=/data")
    d = cfg.data
    assert (d.name, d._target_) == (preset, "imbal.data.split_list.SplitListDataModule")
    assert (d.train_list, d.val_list, d.test_list) == lists and d.num_classes == classes
    assert (d.image_size, d.resize_size, d.color_jitter, d.cache_size, d.decode) == (224, 256, jitter, None, "cpu")
    assert d.mean[0] == mean and len(d.std) == 3
    assert cfg.model.name == "resnet50"


def test_value_rules(make_cfg):
    from imbal.runner.validate import validate_config

    base = ("data=split_list", "data.root=/data", "data.train_list=a.txt", "data.test_list=b.txt")
    validate_config(make_cfg(*base, "data.cache_size=256", "data.color_jitter=0.4", "data.decode=gpu"))
    for override, msg in (
        ("data.decode=tpu", "data.decode='tpu': expected cpu or gpu (torchvision.io.decode_jpeg on the CUDA device)"),
        ("data.cache_size=0", "data.cache_size=0: expected null (no resize cache) or an integer >= 8 (the cached "
                              "short side)"),
        ("data.color_jitter=2", "data.color_jitter=2: expected null or a number in [0, 1] (ColorJitter's brightness, "
                                "contrast and saturation)"),
    ):
        with pytest.raises(ImbalError) as info:
            validate_config(make_cfg(*base, override))
        assert str(info.value) == msg
