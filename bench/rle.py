"""RLE speed: imbal.data.segmentation.rle against the straightforward Kaggle-kernel decoder/encoder, same run.

    python bench/rle.py [--reps 7] [--masks 50] [--csv ../shared/data/airbus_ship_sample/train_ship_segmentations_v2.csv]

Baseline (the decoder of the public Kaggle kernels, tests/kaggle_rle.py): split the
string, a Python loop over runs assigning slices, reshape, transpose; its encoder pads
the column-major flattening and compares with a shifted copy (already NumPy).
Decoded masks are dropped after use, as a data loader does (keeping all of
them alive measures page faults of fresh memory, the same for both).  The
real-sample workloads: every ship decoded on its own, and the union mask of each
image (the kernels' ``masks_as_image``: decode each ship, OR into the image;
imbal: ``rle_decode_union``, every ship into one image).  Baseline and imbal
alternate in every repetition; reports medians and the median per-repetition
ratio baseline / imbal (> 1: imbal is faster).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: imbal and tests.kaggle_rle

from imbal.data.segmentation.rle import rle_decode, rle_decode_union, rle_encode  # noqa: E402
from tests.kaggle_rle import SHAPE, kaggle_decode, kaggle_encode, kaggle_masks_as_image  # noqa: E402


def each(fn, items):
    def run():
        for x in items:  # decode, use, drop: as a data loader does
            fn(x)
    return run


def _once(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def timed_pair(base, ours, reps: int, inner: int = 3) -> tuple[float, float, float]:
    """Medians of baseline and imbal times and of their per-repetition ratio.

    The two alternate within every repetition (best of ``inner`` runs each), so a
    load change on a shared machine hits both; the ratio is taken per repetition.
    """
    tb, to, ratios = [], [], []
    for _ in range(reps):
        b = min(_once(base) for _ in range(inner))
        o = min(_once(ours) for _ in range(inner))
        tb.append(b)
        to.append(o)
        ratios.append(b / o)
    return statistics.median(tb), statistics.median(to), statistics.median(ratios)


def random_masks(n: int, seed: int = 0) -> list[np.ndarray]:
    """Airbus-like masks: a few rotated ellipses of 10-80 px length, plus some dense random masks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    masks = []
    for i in range(n):
        if i % 5 == 4:  # dense noise: many short runs, the worst case for a loop over runs
            masks.append((rng.random(SHAPE) < 0.3).astype(np.uint8))
            continue
        m = np.zeros(SHAPE, np.uint8)
        for _ in range(rng.integers(1, 6)):
            cy, cx = rng.uniform(50, 718, 2)
            a, b, t = rng.uniform(5, 40), rng.uniform(2, 8), rng.uniform(0, np.pi)
            u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
            v = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
            m |= ((u / a) ** 2 + (v / b) ** 2 <= 1).astype(np.uint8)
        masks.append(m)
    return masks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = Path(__file__).resolve().parents[1]
    ap.add_argument("--csv", default=str(here.parent / "shared/data/airbus_ship_sample/train_ship_segmentations_v2.csv"))
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--masks", type=int, default=50)
    args = ap.parse_args()

    workloads = []
    csv = Path(args.csv)
    if csv.is_file():
        import pandas as pd

        df = pd.read_csv(csv, keep_default_na=False)
        rles = [r for r in df.EncodedPixels if r]
        for r in rles:  # the fast decoder must agree with the baseline first
            assert np.array_equal(rle_decode(r), kaggle_decode(r))
        per_image = [[r for r in g.EncodedPixels if r] for _, g in df.groupby("ImageId", sort=True)]
        for ships in per_image:
            assert np.array_equal(rle_decode_union(ships), kaggle_masks_as_image(ships))

        workloads += [
            (f"real sample: decode each ship ({len(rles)})", each(kaggle_decode, rles), each(rle_decode, rles)),
            (f"real sample: union mask per image ({len(per_image)})", each(kaggle_masks_as_image, per_image),
             each(rle_decode_union, per_image)),
        ]
    else:
        print(f"(no {csv}: real-sample workload skipped)")
    masks = random_masks(args.masks)
    enc = [kaggle_encode(m) for m in masks]
    assert enc == [rle_encode(m) for m in masks]
    for m, r in zip(masks, enc):
        assert np.array_equal(rle_decode(r), m)
    sparse = [r for i, r in enumerate(enc) if i % 5 != 4]
    dense = [r for i, r in enumerate(enc) if i % 5 == 4]
    workloads += [
        (f"decode random ship masks ({len(sparse)})", each(kaggle_decode, sparse), each(rle_decode, sparse)),
        (f"decode dense random masks ({len(dense)})", each(kaggle_decode, dense), each(rle_decode, dense)),
        (f"encode random masks ({len(masks)})", each(kaggle_encode, masks), each(rle_encode, masks)),
    ]
    print(f"median of {args.reps} interleaved repetitions, 768x768 masks; ratio = kaggle / imbal (> 1: imbal faster)")
    print(f"| {'workload':48s} | {'kaggle ms':>10s} | {'imbal ms':>10s} | {'ratio':>6s} |")
    print(f"| {'-' * 48} | {'-' * 9}: | {'-' * 9}: | {'-' * 5}: |")
    for name, base, ours in workloads:
        tb, to, ratio = timed_pair(base, ours, args.reps)
        print(f"| {name:48s} | {tb * 1e3:10.2f} | {to * 1e3:10.2f} | {ratio:5.2f}x |")


if __name__ == "__main__":
    main()
