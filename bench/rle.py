"""RLE speed: imbal.data.rle against the straightforward Kaggle-kernel decoder/encoder, same run.

    python bench/rle.py [--reps 7] [--masks 50] [--csv ../shared/data/airbus_ship_sample/train_ship_segmentations_v2.csv]

Baseline (the decoder of the public Kaggle kernels): split the string, a
Python loop over runs assigning slices, reshape, transpose; its encoder pads
the column-major flattening and compares with a shifted copy (already NumPy).
Reports the median over ``--reps`` repetitions of each workload and the
ratio baseline / imbal (> 1: imbal is faster).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from imbal.data.rle import rle_decode, rle_encode

SHAPE = (768, 768)


def kaggle_decode(mask_rle: str, shape=SHAPE) -> np.ndarray:
    s = mask_rle.split()
    starts, lengths = [np.asarray(x, dtype=int) for x in (s[0:][::2], s[1:][::2])]
    starts -= 1
    ends = starts + lengths
    img = np.zeros(shape[0] * shape[1], dtype=np.uint8)
    for lo, hi in zip(starts, ends):
        img[lo:hi] = 1
    return img.reshape(shape).T


def kaggle_encode(img: np.ndarray) -> str:
    pixels = img.T.flatten()
    pixels = np.concatenate([[0], pixels, [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return " ".join(str(x) for x in runs)


def timed(fn, reps: int) -> float:
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


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

        rles = [r for r in pd.read_csv(csv, keep_default_na=False).EncodedPixels if r]
        for r in rles:  # the fast decoder must agree with the baseline first
            assert np.array_equal(rle_decode(r), kaggle_decode(r))
        workloads.append((f"decode real sample CSV ({len(rles)} ships)", lambda: [kaggle_decode(r) for r in rles],
                          lambda: [rle_decode(r) for r in rles]))
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
        (f"decode random ship masks ({len(sparse)})", lambda: [kaggle_decode(r) for r in sparse], lambda: [rle_decode(r) for r in sparse]),
        (f"decode dense random masks ({len(dense)})", lambda: [kaggle_decode(r) for r in dense], lambda: [rle_decode(r) for r in dense]),
        (f"encode random masks ({len(masks)})", lambda: [kaggle_encode(m) for m in masks], lambda: [rle_encode(m) for m in masks]),
    ]
    print(f"median of {args.reps} repetitions, 768x768 masks")
    print(f"{'workload':45s} {'kaggle ms':>10s} {'imbal ms':>10s} {'ratio':>7s}")
    for name, base, ours in workloads:
        tb, to = timed(base, args.reps), timed(ours, args.reps)
        print(f"{name:45s} {tb * 1e3:10.2f} {to * 1e3:10.2f} {tb / to:7.2f}")


if __name__ == "__main__":
    main()
