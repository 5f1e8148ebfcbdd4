"""data=airbus and data=mask_folder: Kaggle layout, splits, sampling, augmentation, one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from imbal.data.segmentation import AirbusDataModule, EmptyShareSampler, SegTrainDataset, stratified_split
from imbal.data.segmentation.rle import rle_decode
from imbal.data.segmentation.synthetic import cached, generate
from imbal.errors import ImbalError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SMALL = dict(n_images=16, image_size=64, ship_image_share=0.5, seed=3, ship_length=(0.15, 0.3))


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("airbus") / "data", **SMALL)


def module(root, **kw):
    kw.setdefault("crop", 32)
    return AirbusDataModule(root=str(root), image_size=64, val_fraction=0.25, test_fraction=0.25, **kw)


def test_synthetic_set_is_in_kaggle_layout(synth):
    import pandas as pd

    df = pd.read_csv(synth / "train_ship_segmentations_v2.csv", keep_default_na=False)
    assert list(df.columns) == ["ImageId", "EncodedPixels"]
    assert df.ImageId.nunique() == 16
    assert all(len(i) == 13 and i.endswith(".jpg") for i in df.ImageId)
    with_ships = df[df.EncodedPixels != ""].ImageId.unique()
    assert 3 <= len(with_ships) <= 13
    # ships of an image are disjoint, non-empty, elongated
    for image_id in with_ships:
        masks = [rle_decode(r, (64, 64)) for r in df[df.ImageId == image_id].EncodedPixels]
        assert (sum(masks) <= 1).all() and all(m.sum() >= 8 for m in masks)
    assert sorted(p.name for p in (synth / "train_v2").iterdir()) == sorted(df.ImageId.unique())


def test_cache_generates_once(tmp_path):
    p1, gen1 = cached(tmp_path, **SMALL)
    mtime = (p1 / "train_ship_segmentations_v2.csv").stat().st_mtime_ns
    p2, gen2 = cached(tmp_path, **SMALL)
    assert (gen1, gen2) == (True, False) and p1 == p2
    assert (p2 / "train_ship_segmentations_v2.csv").stat().st_mtime_ns == mtime


def test_setup_split_counts_and_batches(synth):
    dm = module(synth)
    dm.setup()
    s = dm.stats
    assert s.task == "segmentation" and s.modality == "mask" and s.input_shape == (3, 32, 32)
    n_train = len(dm.split_idx["train"])
    ship_px = sum(dm.items[i].fg_pixels for i in dm.split_idx["train"])
    assert s.class_counts == [n_train * 64 * 64 - ship_px, ship_px] and ship_px > 0
    # counts equal the decoded masks of the training split
    decoded = sum(int(dm.load_instances(dm.items[i]).astype(bool).sum()) for i in dm.split_idx["train"])
    assert decoded == ship_px
    all_idx = np.concatenate(list(dm.split_idx.values()))
    assert len(all_idx) == len(set(all_idx.tolist())) == 16
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape[1:] == (3, 32, 32) and y.shape[1:] == (32, 32) and set(y.unique().tolist()) <= {0.0, 1.0}
    x, y, inst = next(iter(dm.val_dataloader()))
    assert x.shape[1:] == (3, 64, 64) and inst.dtype == torch.int32
    assert torch.equal(inst > 0, y > 0)


def test_stratified_split_is_seeded_and_keeps_both_strata():
    has = np.array([True] * 10 + [False] * 30)
    a = stratified_split(has, 0.2, 0.2, seed=1)
    b = stratified_split(has, 0.2, 0.2, seed=1)
    c = stratified_split(has, 0.2, 0.2, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])
    tr, va, te = a
    assert has[va].sum() == 2 and (~has[va]).sum() == 6 and has[te].sum() == 2 and has[tr].sum() == 6


def test_empty_share_sampler():
    has = [True] * 10 + [False] * 90
    s = EmptyShareSampler(has, 0.5, seed=0)
    idx = list(s)
    assert len(idx) == 20 and sum(has[i] for i in idx) == 10
    s.set_epoch(1)
    assert sorted(list(s)) != sorted(idx)  # a fresh draw of empties
    s = EmptyShareSampler(has, 0.25, seed=0, num_samples=40)
    idx = list(s)
    assert len(idx) == 40 and sum(not has[i] for i in idx) == 10
    with pytest.raises(ImbalError, match="empty_share must be in"):
        EmptyShareSampler(has, 1.0)


def test_augmentation_moves_image_and_mask_together():
    rng = np.random.default_rng(0)
    mask = (rng.random((48, 40)) < 0.1).astype(np.int32)
    img = np.zeros((48, 40, 3), np.uint8)
    img[..., 0] = 255 * mask  # the image's red channel is the mask
    img[..., 1] = np.arange(40)[None, :]  # and a gradient, so flips and rotations are visible
    ds = SegTrainDataset(lambda i: (img, mask), 1, crop=24, augment=True, fg_crop_p=0.5)
    torch.manual_seed(0)
    seen = set()
    for _ in range(30):
        x, y = ds[0]
        red = (x[0] > 0).float()
        assert torch.equal(red, y)
        seen.add(tuple(x[1, 0, :3].tolist()))
    assert len(seen) > 4  # different crops / orientations


def test_missing_csv(tmp_path):
    with pytest.raises(ImbalError, match=r"CSV .*train_ship_segmentations_v2.csv not found"):
        module(tmp_path).setup()


def test_missing_image_names_row_and_image_id(synth, tmp_path):
    import shutil

    root = tmp_path / "d"
    shutil.copytree(synth, root)
    victim = sorted((root / "train_v2").iterdir())[3]
    victim.unlink()
    with pytest.raises(ImbalError, match=rf"image .*{victim.name} for train_ship_segmentations_v2.csv row \d+ \(ImageId {victim.name}\) does not exist"):
        module(root).setup()


def test_corrupt_jpeg_names_the_file(synth, tmp_path):
    import shutil

    root = tmp_path / "d"
    shutil.copytree(synth, root)
    victim = sorted((root / "train_v2").iterdir())[0]
    good = victim.read_bytes()
    victim.write_bytes(good[:200])  # truncated: found by the index's header check
    with pytest.raises(ImbalError, match=rf"train_ship_segmentations_v2.csv row \d+: cannot read image .*{victim.name} "
                                         rf"\(truncated file\)") as exc:
        module(root, augment=False).setup()
    assert "\n" not in str(exc.value)
    victim.write_bytes(good)
    dm = module(root, augment=False)
    dm.setup()
    victim.write_bytes(good[:200])  # broken after the index: the decode names the file
    i = next(k for k, it in enumerate(dm.items) if it.image_id == victim.name)
    with pytest.raises(ImbalError, match=rf"cannot read image .*{victim.name}") as exc:
        dm._load(i)
    assert "\n" not in str(exc.value)


def test_bad_rle_row_and_wrong_image_size(synth, tmp_path):
    import shutil

    root = tmp_path / "d"
    shutil.copytree(synth, root)
    csv = root / "train_ship_segmentations_v2.csv"
    lines = csv.read_text().splitlines()
    image_id = lines[1].split(",")[0]
    lines.append(f"{image_id},5 3 2 1")
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(ImbalError, match=rf"row {len(lines)}: ImageId {image_id}: pair 2 \(2 1\) is not after pair 1"):
        module(root).setup()
    dm = AirbusDataModule(root=str(synth), image_size=768, crop=32)  # real size, but the files are 64px
    with pytest.raises(ImbalError, match=r"runs past the image|is 64x64, expected 768x768"):
        dm.setup()
        dm._load(0)


def test_empty_share_with_another_sampler_is_refused():
    with pytest.raises(ImbalError, match="set data.empty_share=null to use sampler class_balanced"):
        AirbusDataModule(empty_share=0.5, sampler={"name": "class_balanced"})


def _configured(make_cfg, *overrides: str) -> AirbusDataModule:
    """The data module ``python train.py data=airbus OVERRIDES`` builds (not set up)."""
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    node = OmegaConf.to_container(make_cfg("data=airbus", *overrides).data, resolve=True)
    node.pop("name")
    return get_class(node.pop("_target_"))(**node)


def test_default_config_picks_the_synthetic_run_size_and_honours_user_keys(make_cfg, tmp_path):
    dm = _configured(make_cfg)  # no data.root: the synthetic set, 64-px crops, 32 per epoch
    assert (dm.is_synthetic, dm.image_size, dm.crop, dm.samples_per_epoch) == (True, 128, 64, 32)
    dm = _configured(make_cfg, "data.crop=48", "data.samples_per_epoch=null")  # given keys are used as given
    assert (dm.crop, dm.samples_per_epoch) == (48, None)
    dm = _configured(make_cfg, f"data.root={tmp_path}")  # the Kaggle data: 768-px images, 256-px crops
    assert (dm.is_synthetic, dm.image_size, dm.crop, dm.samples_per_epoch) == (False, 768, 256, None)
    with pytest.raises(ImbalError, match=r"data.image_size=256 is not used without data.root: .* "
                                         r"set data.synthetic.image_size=256"):
        _configured(make_cfg, "data.image_size=256")
    assert _configured(make_cfg, "data.image_size=96", "data.synthetic.image_size=96").image_size == 96


def test_samples_per_epoch_with_another_sampler_is_refused(make_cfg):
    # the synthetic default draws 32 crops per epoch with the empty-share sampler: sampler= would do nothing
    with pytest.raises(ImbalError, match=r"^data.samples_per_epoch=32 and sampler=class_balanced both choose the "
                                         r"training images; set data.samples_per_epoch=null to use sampler "
                                         r"class_balanced$"):
        _configured(make_cfg, "data.empty_share=null", "sampler=class_balanced")
    with pytest.raises(ImbalError, match=r"data.empty_share=0.5 and data.samples_per_epoch=32 and "
                                         r"sampler=sqrt all choose .*; set data.empty_share=null "
                                         r"data.samples_per_epoch=null to use sampler sqrt"):
        _configured(make_cfg, "sampler=sqrt")


def test_sampler_draws_when_the_empty_share_sampler_is_off(synth):
    from imbal.data.samplers import ClassSampler

    dm = module(synth, empty_share=None, samples_per_epoch=None, sampler={"name": "class_balanced"})
    dm.setup()
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, ClassSampler)
    assert dm.labels("train").tolist() == [int(dm.items[i].has_fg) for i in dm.split_idx["train"]]


def test_synthetic_takes_only_generator_keys():
    with pytest.raises(ImbalError, match=r"data.synthetic got unknown key\(s\) \['crop'\]; .*"
                                         r"the crop and the samples per epoch of a run are data.crop"):
        AirbusDataModule(synthetic={"n_images": 10, "crop": 32})


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "airbus_ship_sample").is_dir(), reason="shared Airbus sample absent")
def test_real_sample_loads():
    dm = AirbusDataModule(root=str(SHARED / "airbus_ship_sample"))
    dm.setup()
    assert len(dm.items) == 46 and sum(it.has_fg for it in dm.items) == 14
    assert sum(it.fg_pixels for it in dm.items) == 33064
    x, y, inst = dm.eval_dataset("val")[0]
    assert x.shape == (3, 768, 768)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "isbi2012_membrane").is_dir(), reason="shared ISBI sample absent")
def test_mask_folder_on_isbi():
    from imbal.data.segmentation.mask_folder import MaskFolderDataModule

    dm = MaskFolderDataModule(root=str(SHARED / "isbi2012_membrane"), foreground=0, crop=128)
    dm.setup()
    share = dm.stats.class_counts[1] / sum(dm.stats.class_counts)
    assert 0.2 < share < 0.28  # SOURCE.md: 24.1% membrane
    with pytest.raises(ImbalError, match=r"holds values .* expected 0 and one foreground value"):
        dm2 = MaskFolderDataModule(root=str(SHARED / "isbi2012_membrane"), foreground=None)
        dm2.foreground = None
        dm2._binary(Path(SHARED / "isbi2012_membrane" / "image" / "0.png"))


def test_mask_folder_pairs_and_errors(tmp_path):
    from PIL import Image

    from imbal.data.segmentation.mask_folder import MaskFolderDataModule

    (tmp_path / "image").mkdir()
    (tmp_path / "label").mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8)).save(tmp_path / "image" / f"{i}.png")
        m = np.zeros((40, 40), np.uint8)
        m[5 : 10 + i, 5:20] = 255
        Image.fromarray(m).save(tmp_path / "label" / f"{i}.png")
    dm = MaskFolderDataModule(root=str(tmp_path), crop=32, val_fraction=0.2, test_fraction=0.2)
    dm.setup()
    n_fg = sum(15 * (5 + i) for i in dm.split_idx["train"])
    assert dm.stats.class_counts == [len(dm.split_idx["train"]) * 1600 - n_fg, n_fg]
    x, y, inst = next(iter(dm.val_dataloader()))
    assert x.shape[1:] == (3, 40, 40) and int(inst.max()) == 1
    (tmp_path / "label" / "5.png").unlink()
    with pytest.raises(ImbalError, match=r"image .*5.png has no mask"):
        MaskFolderDataModule(root=str(tmp_path)).setup()
    with pytest.raises(ImbalError, match="needs data.root"):
        MaskFolderDataModule()


def test_resize_scales_images_and_masks_for_training_and_evaluation(synth):
    native = module(synth, crop=None)
    native.setup("fit")
    dm = module(synth, crop=None, resize=32)
    dm.setup("fit")
    assert dm.stats.input_shape == (3, 32, 32) and dm.manifest["resize"] == 32
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape[1:] == (3, 32, 32) and y.shape[1:] == (32, 32)
    xv, yv, inst = next(iter(dm.val_dataloader()))
    assert xv.shape[2:] == (32, 32) and inst.shape[1:] == (32, 32)
    # each image: the mask is the nearest-neighbour 2x downsampling of the native one (64 -> 32)
    for i in range(len(dm.items)):
        img, lab = dm._load(i)
        img0, lab0 = native._load(i)
        assert img.shape == (32, 32, 3) and lab.shape == (32, 32)
        assert np.array_equal(lab > 0, lab0[1::2, 1::2] > 0) or np.array_equal(lab > 0, lab0[::2, ::2] > 0)
        # area resampling: every output pixel is the mean of a 2x2 block (to rounding)
        block = img0.reshape(32, 2, 32, 2, 3).astype(float).mean(axis=(1, 3))
        assert np.abs(img.astype(float) - block).max() <= 1.0
    with pytest.raises(ImbalError, match="data.resize"):
        module(synth, resize=2)


def test_predict_with_resize_returns_masks_of_the_original_size(synth):
    from imbal.predict.airbus_submission import predict_masks

    class Half(torch.nn.Module):  # "ship" wherever the red channel is bright
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x):
            assert x.shape[-2:] == (32, 32)
            return (x[:, :1] > 0).float() * 20 - 10

    paths = sorted((synth / "train_v2").glob("*.jpg"))[:3]
    out = list(predict_masks(Half(), paths, resize=32))
    assert [m.shape for _, m in out] == [(64, 64)] * 3
    assert all(set(np.unique(m)) <= {0, 1} for _, m in out)
