"""Run-length encoding in the Kaggle convention: round trip, bounds, validation errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import imbal.data.segmentation.rle as rle_mod
from imbal.data.segmentation.rle import check_rle, rle_decode, rle_decode_instances, rle_decode_union, rle_encode
from imbal.errors import ImbalError
from tests.kaggle_rle import kaggle_decode

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "airbus_ship_sample"


def test_known_small_mask_column_major():
    # 3 rows x 4 columns; column-major numbering 1..12 top to bottom then left to right
    m = np.array([[1, 0, 0, 1], [1, 0, 1, 0], [0, 0, 1, 1]], dtype=np.uint8)
    # pixels (1-based, column-major): col0 -> 1,2 ; col2 -> 8,9 ; col3 -> 10,12
    assert rle_encode(m) == "1 2 8 3 12 1"
    np.testing.assert_array_equal(rle_decode("1 2 8 3 12 1", (3, 4)), m)


@pytest.mark.parametrize("seed", range(5))
def test_round_trip_random_masks_with_edge_pixels(seed):
    rng = np.random.default_rng(seed)
    h, w = (768, 768) if seed < 2 else (37, 53)
    m = (rng.random((h, w)) < [0.001, 0.3, 0.5, 0.02, 0.9][seed]).astype(np.uint8)
    m[0, 0] = m[-1, -1] = 1  # first and last pixel
    m[-1, 0] = m[0, -1] = 1  # ends of the first column, start of the last
    rle = rle_encode(m)
    assert rle.split()[0] == "1"
    last_start, last_len = map(int, rle.split()[-2:])
    assert last_start + last_len - 1 == h * w
    out = rle_decode(rle, (h, w))
    assert out.dtype == np.uint8 and out.shape == (h, w)
    np.testing.assert_array_equal(out, m)
    np.testing.assert_array_equal(out, kaggle_decode(rle, (h, w)))


def test_empty_and_full_masks():
    assert rle_encode(np.zeros((5, 7), np.uint8)) == ""
    assert rle_decode("", (5, 7)).sum() == 0
    assert rle_decode(float("nan"), (5, 7)).sum() == 0
    assert rle_decode(None, (5, 7)).sum() == 0
    assert rle_encode(np.ones((5, 7), bool)) == "1 35"
    assert rle_decode("1 35", (5, 7)).all()


def test_touching_runs_decode_as_their_union():
    assert rle_decode("1 2 3 2", (2, 3)).ravel(order="F").tolist() == [1, 1, 1, 1, 0, 0]


@pytest.mark.parametrize(
    "rle, needle",
    [
        ("1 2 3", "3 numbers (odd)"),
        ("0 2", "pair 1 (0 2) has start < 1"),
        ("5 0", "pair 1 (5 0) has non-positive length"),
        ("5 -3", "pair 1 (5 -3) has non-positive length"),
        ("1 2 11 3", "pair 2 (11 3) runs past the image (ends at pixel 13, image 3x4 has 12"),
        ("6 2 1 2", "pair 2 (1 2) is not after pair 1 (6 2)"),
        ("1 5 4 2", "pair 2 (4 2) overlaps pair 1 (1 5)"),
        ("1 x", "token 'x' is not an integer"),
        ("1 9223372036854775807", "runs past the image"),
        ("9223372036854775807 1", "runs past the image"),
    ],
)
@pytest.mark.parametrize("loop_runs", [0, 10_000])  # both validation paths: array reductions, Python loop
def test_each_validation_error_names_image_and_pair(rle, needle, monkeypatch, loop_runs):
    monkeypatch.setattr(rle_mod, "_LOOP_RUNS", loop_runs)
    with pytest.raises(ImbalError) as exc:
        rle_decode(rle, (3, 4), image_id="abc.jpg")
    msg = str(exc.value)
    assert "ImageId abc.jpg" in msg and needle in msg and "\n" not in msg
    with pytest.raises(ImbalError):
        check_rle(rle, (3, 4), image_id="abc.jpg")


def test_encode_refuses_non_binary_or_not_2d():
    with pytest.raises(ImbalError, match=r"mask value 2 at \(row 1, column 0\); expected 0 or 1"):
        rle_encode(np.array([[0, 1], [2, 0]]))
    with pytest.raises(ImbalError, match="expected a 2-D"):
        rle_encode(np.zeros((2, 2, 2)))


def test_instances_label_image():
    lab = rle_decode_instances(["1 2", "", "7 3"], (3, 4))
    assert lab.ravel(order="F").tolist() == [1, 1, 0, 0, 0, 0, 2, 2, 2, 0, 0, 0]


@pytest.mark.slow
@pytest.mark.skipif(not SAMPLE.is_dir(), reason="shared Airbus sample absent (fresh clone)")
def test_every_row_of_the_real_sample_decodes_in_bounds_and_round_trips():
    import pandas as pd

    df = pd.read_csv(SAMPLE / "train_ship_segmentations_v2.csv", keep_default_na=False)
    assert len(df) == 67
    total = 0
    for image_id, rle in zip(df.ImageId, df.EncodedPixels):
        m = rle_decode(rle, image_id=image_id)
        assert m.shape == (768, 768)
        if rle:
            np.testing.assert_array_equal(m, kaggle_decode(rle))
            assert rle_encode(m) == rle  # Kaggle's own strings are canonical
        total += int(m.sum())
    assert total == 33064  # SOURCE.md: ship pixels of the 46 images


@pytest.mark.parametrize("loop_runs", [0, 10_000])
def test_slice_loop_and_pixel_index_fills_agree(monkeypatch, loop_runs):
    """Both fill strategies (a slice per run for few runs, one pixel index for many) give the same mask."""
    monkeypatch.setattr(rle_mod, "_LOOP_RUNS", loop_runs)
    rng = np.random.default_rng(3)
    for density in (0.001, 0.05, 0.5):
        m = (rng.random((37, 29)) < density).astype(np.uint8)
        m[0, 0], m[-1, -1] = 1, 1  # first and last pixel
        assert np.array_equal(rle_decode(rle_encode(m), m.shape), m)


def test_union_of_ships_is_their_or_and_bad_ship_is_named():
    rng = np.random.default_rng(4)
    ships = [(rng.random((20, 30)) < 0.1).astype(np.uint8) for _ in range(3)]
    rles = [rle_encode(s) for s in ships] + [""]
    union = rle_decode_union(rles, (20, 30))
    assert union.dtype == np.uint8
    assert np.array_equal(union, np.maximum.reduce(ships))
    assert np.array_equal(union, (rle_decode_instances(rles, (20, 30)) > 0).astype(np.uint8))
    with pytest.raises(ImbalError, match=r"ImageId x\.jpg: pair 1 \(0 3\)"):
        rle_decode_union(["1 2", "0 3"], (20, 30), image_id="x.jpg")
