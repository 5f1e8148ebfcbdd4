"""data=airbus data.target=presence: image-level ship labels on the mask task's images and split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from imbal.data.segmentation import AirbusDataModule
from imbal.data.segmentation.airbus import presence_input
from imbal.data.segmentation.presence import d4_augment
from imbal.data.segmentation.synthetic import generate
from imbal.data.segmentation.transforms import read_rgb, resize_image, to_tensor_image
from imbal.errors import ImbalError

SMALL = dict(n_images=20, image_size=64, ship_image_share=0.4, seed=5, ship_length=(0.15, 0.3))


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("airbus_presence") / "data", **SMALL)


def module(root, **kw) -> AirbusDataModule:
    return AirbusDataModule(root=str(root), image_size=64, val_fraction=0.2, test_fraction=0.2, **kw)


def test_labels_are_has_an_rle_row(synth):
    import pandas as pd

    df = pd.read_csv(synth / "train_ship_segmentations_v2.csv", keep_default_na=False)
    ships = set(df[df.EncodedPixels.str.strip() != ""].ImageId)
    dm = module(synth, target="presence", presence_size=32)
    dm.setup()
    for split in ("train", "val", "test"):
        ids = dm.split_ids(split)
        ds = dm.eval_dataset(split)
        assert [float(ds[j][1]) for j in range(len(ds))] == [float(i in ships) for i in ids]
        assert dm.labels(split).tolist() == [int(i in ships) for i in ids]
    s = dm.stats
    n_train = len(dm.split_ids("train"))
    n_ship = sum(i in ships for i in dm.split_ids("train"))
    assert (s.task, s.modality, s.num_classes, s.input_shape) == ("binary", "image", 2, (3, 32, 32))
    assert s.class_counts == [n_train - n_ship, n_ship] and s.class_names == ["no_ship", "ship"]
    assert s.num_train == n_train and 0 < n_ship < n_train
    assert dm.manifest["class_counts"] == s.class_counts and dm.manifest["presence_size"] == 32


@pytest.mark.parametrize("max_images", [None, 14])
def test_same_split_as_the_mask_task(synth, max_images):
    mask = module(synth, crop=32, max_images=max_images, seed=4)
    pres = module(synth, target="presence", max_images=max_images, seed=4)
    mask.setup()
    pres.setup()
    for key in ("val_ids", "test_ids", "split", "group"):
        assert mask.manifest[key] == pres.manifest[key], key
    assert (mask.manifest["target"], pres.manifest["target"]) == ("mask", "presence")
    assert pres.manifest["split"] == {"seed": 4, "val_fraction": 0.2, "test_fraction": 0.2, "max_images": max_images,
                                      "group": None}
    assert len(pres.manifest["val_ids"]) + len(pres.manifest["test_ids"]) + len(pres.split_ids("train")) == (
        max_images or 20)


def test_presence_input_is_the_eval_tensor(synth):
    dm = module(synth, target="presence", presence_size=24)
    dm.setup()
    ds = dm.eval_dataset("val")
    for j, image_id in enumerate(dm.split_ids("val")):
        img = read_rgb(synth / "train_v2" / image_id, where="test")
        x = presence_input(img, 24)
        assert x.shape == (3, 24, 24) and x.dtype == torch.float32
        assert torch.equal(x, ds[j][0])
        # area resize, then the mask task's normalisation
        assert torch.equal(x, to_tensor_image(resize_image(img, 24)))
    assert torch.equal(presence_input(img, None), to_tensor_image(img))


def test_training_items_are_d4_views_and_batches_binary(synth):
    dm = module(synth, target="presence", presence_size=16, batch_size=4)
    dm.setup()
    ds = dm.train_dataset()
    torch.manual_seed(0)
    seen = set()
    for j in range(len(ds)):
        x, y = ds[j]
        base = dm.eval_dataset("train")[j][0].numpy()
        views = [np.rot90(v, k, axes=(1, 2)) for v in (base, base[:, :, ::-1]) for k in range(4)]
        match = [k for k, v in enumerate(views) if np.array_equal(v, x.numpy())]
        assert match and float(y) == float(dm.items[dm.split_idx["train"][j]].has_fg)
        seen.add(match[0])
    assert len(seen) >= 3  # the draws vary
    xb, yb = next(iter(dm.loader("train")))
    assert xb.shape == (4, 3, 16, 16) and yb.shape == (4,) and yb.dtype == torch.float32
    xv, yv = next(iter(dm.loader("val")))
    assert xv.shape[1:] == (3, 16, 16) and yv.ndim == 1
    rng = np.random.default_rng(0)
    a = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    assert d4_augment(a, rng).shape == (2, 2, 3)


def test_class_balanced_sampler_is_honoured(synth):
    dm = module(synth, target="presence", presence_size=16, sampler={"name": "class_balanced"})
    dm.setup()
    sampler = dm.loader("train").sampler
    assert type(sampler).__name__ == "ClassSampler"
    labels = dm.labels("train")
    assert torch.equal(sampler.labels, labels)
    # each class drawn with probability 1/2: a ship image weighs n_empty / n_ship times an empty one
    w = sampler.weights / sampler.weights.sum()
    assert float(w[labels == 1].sum()) == pytest.approx(0.5) and float(w[labels == 0].sum()) == pytest.approx(0.5)
    assert len(list(iter(sampler))) == len(labels)


@pytest.mark.parametrize("key,value,hint", [
    ("crop", 32, "data.presence_size"), ("resize", 48, "data.presence_size"),
    ("empty_share", 0.5, "sampler=class_balanced"), ("samples_per_epoch", 8, "sampler=class_balanced"),
])
def test_mask_only_options_refused_with_presence(synth, key, value, hint):
    with pytest.raises(ImbalError, match=rf"^data.{key}={value} applies to data.target=mask; .*{hint}"):
        module(synth, target="presence", **{key: value})
    module(synth, target="presence", **{key: None})  # null is what presence does anyway


def test_presence_size_refused_with_mask_and_bad_target(synth):
    with pytest.raises(ImbalError, match=r"^data.presence_size=64 applies to data.target=presence"):
        module(synth, presence_size=64)
    with pytest.raises(ImbalError, match=r"^data.target='ships': expected one of mask, presence"):
        module(synth, target="ships")


def test_config_follows_the_target(make_cfg):
    from imbal.runner.validate import validate_config

    pres = make_cfg("data=airbus", "data.target=presence", "model=resnet18")
    assert pres.callbacks.model_checkpoint.monitor == "val/balanced_accuracy"
    assert pres.optimized_metric == "val/balanced_accuracy" and pres.loss.name == "bce"
    validate_config(pres)
    mask = make_cfg("data=airbus")
    assert mask.callbacks.model_checkpoint.monitor == "val/dice" and mask.optimized_metric == "val/dice"
    with pytest.raises(ImbalError, match=r"^data=airbus data.target=presence classifies whole images, but model "
                                         r"'unet' accepts mask: use an image model, e.g. model=resnet18 or model=timm"):
        validate_config(make_cfg("data=airbus", "data.target=presence"))
    with pytest.raises(ImbalError, match=r"^data.target='ship': expected mask .* or presence"):
        validate_config(make_cfg("data=airbus", "data.target=ship", "model=resnet18"))


def test_presence_run_end_to_end(make_cfg, tmp_path, monkeypatch):
    """1 epoch of ``data=airbus data.target=presence model=resnet18`` on a small synthetic set."""
    from imbal.runner import train

    monkeypatch.setenv("IMBAL_CACHE", str(tmp_path / "cache"))
    run_dir = tmp_path / "run"
    train(make_cfg(
        "data=airbus", "data.target=presence", "model=resnet18", "trainer=cpu", "trainer.max_epochs=1",
        "data.synthetic.n_images=16", "data.synthetic.image_size=48", "data.synthetic.ship_image_share=0.5",
        "data.presence_size=32", "data.val_fraction=0.25", "data.test_fraction=0.25",
        "data.batch_size=8", "data.eval_batch_size=8", "trainer.enable_progress_bar=false", "logger=csv",
        run_dir=run_dir,
    ))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["task"] == "binary" and summary["class_names"] == ["no_ship", "ship"]
    for split in ("val", "test"):
        assert {"balanced_accuracy", "macro_f1", "accuracy", "log_loss"} <= set(summary[split])
    assert summary["config"]["callbacks"]["model_checkpoint"]["monitor"] == "val/balanced_accuracy"
    best = run_dir / summary["best_checkpoint"]
    ckpt = torch.load(best, map_location="cpu", weights_only=False)
    states = [v for k, v in ckpt["callbacks"].items() if k.startswith("ModelCheckpoint")]
    assert states and states[0]["monitor"] == "val/balanced_accuracy"
    manifest = json.loads((run_dir / "data_manifest.json").read_text())
    assert manifest["target"] == "presence" and manifest["presence_size"] == 32 and manifest["group"] is None
    assert not (run_dir / "overlays").exists()  # the overlay callback draws no masks for image labels
