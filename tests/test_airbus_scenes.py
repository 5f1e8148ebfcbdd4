"""data.group=scene: block signatures robust to JPEG re-encoding, scene groups, splits that never cut a group."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from imbal.data.segmentation import AirbusDataModule
from imbal.data.segmentation import scenes
from imbal.data.segmentation.rle import rle_encode
from imbal.errors import ImbalError

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "airbus_ship_sample"
B = 64          # block side of the generated scenes (tiles are 3 x 3 blocks)
TILE = 3 * B


def _jpeg(arr: np.ndarray, path: Path, quality: int = 90) -> None:
    from PIL import Image

    Image.fromarray(arr).save(path, "JPEG", quality=quality)


def _scene(seed: int, blocks: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """A textured ``blocks x blocks`` scene (land and water at several scales) with a few bright ships."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    side = blocks * B
    coarse = rng.uniform(30, 220, (blocks * 4, blocks * 4, 3)).astype(np.uint8)
    img = np.asarray(Image.fromarray(coarse).resize((side, side), Image.Resampling.BILINEAR)).astype(np.float64)
    img += rng.normal(0, 6, img.shape)
    ships = np.zeros((side, side), bool)
    for _ in range(3):
        r, c = rng.integers(4, side - 24, 2)
        ships[r:r + 5, c:c + 18] = True
    img[ships] = 250
    return img.clip(0, 255).astype(np.uint8), ships


def _sea(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (np.full((TILE, TILE, 3), (20, 50, 70), float) + rng.normal(0, 1.5, (TILE, TILE, 3))).clip(0, 255).astype(
        np.uint8)


def _write_set(root: Path) -> dict[str, str]:
    """Kaggle layout: 9 overlapping tiles of scene A, 4 of scene B, 4 unrelated tiles, 4 pure-sea tiles.

    Returns {ImageId: what it is}.
    """
    (root / "train_v2").mkdir(parents=True)
    rows, kinds = [], {}

    def add(name: str, kind: str, img: np.ndarray, ships: np.ndarray | None) -> None:
        _jpeg(img, root / "train_v2" / name)
        kinds[name] = kind
        rle = rle_encode(ships) if ships is not None and ships.any() else ""
        rows.append(f"{name},{rle}")

    for scene, offsets, tag in ((0, [(r, c) for r in range(3) for c in range(3)], "A"), (1, [(0, 0), (0, 1), (1, 1), (1, 0)], "B")):
        img, ships = _scene(scene)
        for k, (r, c) in enumerate(offsets):
            sl = np.s_[r * B:r * B + TILE, c * B:c * B + TILE]
            add(f"{tag}{k:02d}.jpg", tag, img[sl], ships[sl])
    for k in range(4):
        img, ships = _scene(100 + k, blocks=3)
        add(f"U{k:02d}.jpg", f"U{k}", img, ships)
    for k in range(4):
        add(f"S{k:02d}.jpg", f"S{k}", _sea(200 + k), None)
    (root / "train_ship_segmentations_v2.csv").write_text("ImageId,EncodedPixels\n" + "\n".join(rows) + "\n")
    return kinds


@pytest.fixture(scope="module")
def scene_set(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("scenes") / "data"
    return root, _write_set(root)


def _module(root: Path, **kw) -> AirbusDataModule:
    kw.setdefault("crop", None)
    kw.setdefault("group", "scene")
    return AirbusDataModule(root=str(root), image_size=TILE, val_fraction=0.2, test_fraction=0.2,
                            cache_dir=str(root.parent / "cache"), **kw)


def test_signatures_survive_jpeg_reencoding(tmp_path):
    """Two JPEG encodings of one tile: every textured block's signature within 0.5 grey levels (MAX_DIFF is 1.5)."""
    img, _ = _scene(7, blocks=3)
    worst = 0.0
    for q in (60, 95):
        _jpeg(img, tmp_path / "a.jpg", 90)
        _jpeg(img, tmp_path / "b.jpg", q)
        sa, da = scenes.tile_signatures(tmp_path / "a.jpg", TILE, B)
        sb, db = scenes.tile_signatures(tmp_path / "b.jpg", TILE, B)
        assert sa.shape == (9, 8, 8) and (da >= scenes.MIN_STD).all()
        worst = max(worst, float(np.sqrt(((sa - sb) ** 2).mean(axis=(1, 2))).max()))
        assert len(scenes.match_blocks(np.concatenate([sa, sb]))) >= 9  # each block matches its re-encoding
    assert worst < 0.5 * scenes.MAX_DIFF


def test_decode_scale():
    assert [scenes.decode_scale(b) for b in (256, 64, 32, 42, 12)] == [8, 8, 4, 2, 1]


def test_one_scene_one_group_unrelated_and_sea_apart(scene_set):
    root, kinds = scene_set
    dm = _module(root)
    dm.setup()
    names = [it.image_id for it in dm.items]
    groups, info = scenes.scene_groups([root / "train_v2" / n for n in names], TILE, block_size=B,
                                       cache_dir=root.parent / "cache2")
    by_kind: dict[str, set[int]] = {}
    for n, g in zip(names, groups):
        by_kind.setdefault(kinds[n], set()).add(int(g))
    assert len(by_kind["A"]) == 1 and len(by_kind["B"]) == 1 and by_kind["A"] != by_kind["B"]
    # 9 + 4 tiles in two groups; 4 unrelated and 4 pure-sea tiles alone
    assert info["groups"] == 2 + 4 + 4 and info["largest_group"] == 9 and info["tiles_in_multi_tile_groups"] == 13
    assert info["blocks"] == 21 * 9 and info["blocks_skipped_featureless"] == 4 * 9  # every sea block skipped
    assert dm.manifest["scene_groups"]["groups"] == 10 and dm.manifest["group"] == "scene"
    # the second call reads the cached signatures
    again = scenes.scene_groups([root / "train_v2" / n for n in names], TILE, block_size=B,
                                cache_dir=root.parent / "cache2")
    assert info["timing"]["signatures_cached"] is False and info["timing"]["images_per_second"] > 0
    assert again[1]["timing"]["signatures_cached"] is True and (again[0] == groups).all()
    assert "timing" not in dm.manifest["scene_groups"]  # resume compares the manifest: no timings in it
    assert dm.stats.extra["scene_signatures"]["signatures_cached"] is False


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_split_never_cuts_a_group(scene_set, seed):
    root, kinds = scene_set
    dm = _module(root, seed=seed)
    dm.setup()
    where = {}
    for split in ("train", "val", "test"):
        for i in dm.split_idx[split]:
            where.setdefault(kinds[dm.items[i].image_id], set()).add(split)
    assert all(len(v) == 1 for v in where.values()), where
    assert len(dm.split_idx["val"]) and len(dm.split_idx["test"])
    # the same split for both targets
    pres = _module(root, seed=seed, target="presence")
    pres.setup()
    assert pres.manifest["val_ids"] == dm.manifest["val_ids"] and pres.manifest["test_ids"] == dm.manifest["test_ids"]


def test_grouped_split_by_hand():
    # groups: 0 (3 ship tiles), 1..6 single empty tiles, 7 and 8 single ship tiles
    groups = np.array([0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8])
    has = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1], bool)
    for seed in range(6):
        tr, va, te = scenes.grouped_split(has, groups, 0.2, 0.2, seed)
        assert sorted(np.concatenate([tr, va, te]).tolist()) == list(range(11))
        # ship stratum: 5 tiles, round(0.2 * 5) = 1 each to val and test: groups 7 and 8, never the 3-tile group
        assert set(va.tolist()) & {9, 10} and set(te.tolist()) & {9, 10} and {0, 1, 2} <= set(tr.tolist())
        # empty stratum: 6 tiles, round(1.2) = 1 each
        assert len(va) == 2 and len(te) == 2
    with pytest.raises(ImbalError, match="val_fraction 0.6 and test_fraction 0.5"):
        scenes.grouped_split(has, groups, 0.6, 0.5, 0)


def test_group_null_is_the_image_level_split(scene_set):
    from imbal.data.segmentation import stratified_split

    root, _ = scene_set
    dm = AirbusDataModule(root=str(root), image_size=TILE, crop=None, val_fraction=0.2, test_fraction=0.2, seed=3)
    dm.setup()
    has = np.array([it.has_fg for it in dm.items])
    tr, va, te = stratified_split(has, 0.2, 0.2, 3)
    assert (dm.split_idx["val"] == va).all() and (dm.split_idx["test"] == te).all()
    assert dm.manifest["group"] is None and "scene_groups" not in dm.manifest


def test_bad_group_and_block_size(scene_set):
    root, _ = scene_set
    with pytest.raises(ImbalError, match=r"^data.group='scenes': expected null .* or scene"):
        _module(root, group="scenes")
    with pytest.raises(ImbalError, match=r"^data.block_size=400: expected auto or a side in \[8, 192\]"):
        _module(root, block_size=400)


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/data/airbus_ship_sample absent")
def test_real_sample_groups(tmp_path):
    """The 46 real tiles (the first ImageIds of Kaggle's training set): no two share a block."""
    import pandas as pd

    ids = sorted(pd.read_csv(REAL / "train_ship_segmentations_v2.csv").ImageId.unique())
    paths = [REAL / "train_v2" / i for i in ids]
    groups, info = scenes.scene_groups(paths, 768, block_size=256, cache_dir=tmp_path)
    assert len(ids) == 46 and info["blocks"] == 46 * 9
    assert info["groups"] == 46 and info["largest_group"] == 1
    # measured: 215 of the 414 blocks have less texture than MIN_STD (open sea)
    assert info["blocks_skipped_featureless"] == 215
    json.dumps(info)  # the manifest records it



def test_gradients_are_featureless_and_stay_apart(tmp_path):
    """Two unrelated tiles of smooth haze (a plane plus faint noise) share no group, however alike."""
    yy, xx = np.mgrid[0:TILE, 0:TILE]
    rng = np.random.default_rng(0)
    paths = []
    for k in range(2):
        plane = 60 + 0.4 * yy + 0.2 * xx + rng.normal(0, 1.0, (TILE, TILE))
        _jpeg(np.repeat(plane.clip(0, 255).astype(np.uint8)[..., None], 3, axis=2), tmp_path / f"g{k}.jpg")
        paths.append(tmp_path / f"g{k}.jpg")
    sigs, stds = zip(*(scenes.tile_signatures(p, TILE, B) for p in paths))
    assert max(float(d.max()) for d in stds) < scenes.MIN_STD  # the plane is removed before the deviation
    groups, info = scenes.groups_from_signatures(np.stack(sigs), np.stack(stds))
    assert groups.tolist() == [0, 1] and info["blocks_skipped_featureless"] == 18


def test_match_blocks_finds_copies_among_many():
    """4000 textured signatures and 400 copies with JPEG-like noise: every copy found, no other pair."""
    rng = np.random.default_rng(1)
    base = rng.uniform(20, 230, (4000, 8, 8)).astype(np.float32)
    copies = base[:400] + rng.normal(0, 0.3, (400, 8, 8)).astype(np.float32)
    st: dict = {}
    pairs = scenes.match_blocks(np.concatenate([base, copies]), stats=st)
    assert sorted(map(tuple, pairs.tolist())) == [(i, 4000 + i) for i in range(400)]
    assert st["blocks_in_crowded_cells"] == 0 and st["candidate_pairs_checked"] >= 400
