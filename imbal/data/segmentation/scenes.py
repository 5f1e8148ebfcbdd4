"""Leak-free splits of overlapping tiles (``data.group=scene``): block signatures, scene groups, grouped splits.

Kaggle's Airbus 768 px tiles were cut from larger scenes with overlaps on a 256 px grid, so two
tiles of one scene share whole aligned 256 px blocks, each tile JPEG-encoded on its own.  A
random image-level split puts such tiles in train and in test: the test score then measures
memory, not ships.

* Each tile is decoded once, in grey at a reduced scale (PIL ``draft``: the JPEG decoder's own
  DCT scaling, 1/8 for 256 px blocks: a 768 px tile becomes 96 px in ~1 ms).
* Each aligned ``block_size`` block gets a signature: its 8x8 grey means (0-255).
* Featureless blocks (grey standard deviation below ``min_std`` once the best-fitting plane is
  removed: open sea, haze, a smooth gradient) are not matched: they would join unrelated scenes.
* Two blocks match when their signatures are near-equal: root-mean-square difference at most
  ``max_diff`` grey levels and correlation of the 8x8 patterns at least ``min_corr``.  An exact
  hash (the 64 sign bits of the means against their mean) is brittle at its quantisation
  boundaries (on the real sample 19 % of re-encoded blocks flip a bit), so candidates are blocks
  whose 4x4 means share a cell in any of several shifted grids (a cell boundary splits a pair in
  one grid, rarely in all), then checked on the 8x8 means.
* Tiles that share a matching block are unioned (connected components): the groups.

:func:`grouped_split` then sends each group whole to one split, stratified by ship presence
over groups.  Signatures are cached per image list (paths, sizes, mtimes) and settings under
``data.cache_dir`` or imbal's cache folder (``$IMBAL_CACHE``, ``~/.cache/imbal``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from imbal.errors import ImbalError

#: ``data.group`` value that groups tiles by shared blocks
SCENE = "scene"
#: default ``data.block_min_std``: blocks flatter than this (grey levels, reduced scale) are not matched
MIN_STD = 4.0
#: two signatures match when their 8x8 means differ by at most this much (root mean square, grey levels) ...
MAX_DIFF = 1.5
#: ... and their patterns correlate at least this much
MIN_CORR = 0.9
#: signature side (means per block side) and the side of the coarser means candidates are bucketed by
SIG, COARSE = 8, 4
#: candidate search: seeded grids with random offsets, of cells this many grey levels wide, over the 4x4
#: means; cells holding more than BUCKET_CAP blocks are not searched
GRIDS, CELL, BUCKET_CAP = 12, 4.0, 32
#: candidate pairs checked at a time (memory)
CHUNK = 1 << 18
VERSION = 1


def decode_scale(block_size: int) -> int:
    """The JPEG decoder's reduction (8, 4, 2 or 1) that keeps a block whole and at least 8 px wide."""
    for scale in (8, 4, 2, 1):
        if block_size % scale == 0 and block_size // scale >= SIG:
            return scale
    return 1


def _means(a: np.ndarray, side: int) -> np.ndarray:
    """``a`` (float [h, w]) averaged into ``side`` x ``side`` cells (area resampling)."""
    h, w = a.shape
    if h % side == 0 and w % side == 0:
        return a.reshape(side, h // side, side, w // side).mean(axis=(1, 3))
    from PIL import Image

    return np.asarray(Image.fromarray(a.astype(np.float32), mode="F").resize((side, side), Image.Resampling.BOX))


def tile_signatures(path: Path, image_size: int, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(signatures float32 [B, 8, 8], texture float32 [B]) of the aligned blocks of one tile.

    The texture is the grey standard deviation left after removing the block's best-fitting plane.

    ``B = (image_size // block_size) ** 2`` blocks, row by row; the tile is decoded once in grey
    at 1/:func:`decode_scale` scale.
    """
    from PIL import Image

    scale = decode_scale(block_size)
    side = image_size // scale
    with Image.open(path) as im:
        if im.size != (image_size, image_size):
            raise ImbalError(f"data.group=scene: image {path} is {im.size[1]}x{im.size[0]}, expected "
                             f"{image_size}x{image_size}")
        im.draft("L", (side, side))  # JPEG: DCT-domain scaling, the cheap path; others ignore it
        grey = im.convert("L")
        if grey.size != (side, side):
            grey = grey.resize((side, side), Image.Resampling.BOX)
        a = np.asarray(grey, dtype=np.float32)
    b = block_size // scale
    n = image_size // block_size
    yy, xx = np.mgrid[0:b, 0:b].astype(np.float32)
    design = np.stack([np.ones(b * b, np.float32), yy.ravel(), xx.ravel()], axis=1)
    sigs = np.empty((n * n, SIG, SIG), np.float32)
    stds = np.empty(n * n, np.float32)
    for r in range(n):
        for c in range(n):
            blk = a[r * b:(r + 1) * b, c * b:(c + 1) * b]
            sigs[r * n + c] = _means(blk, SIG)
            # texture left once the best plane is removed: a smooth gradient (sun glint, haze) is no feature
            coef = np.linalg.lstsq(design, blk.ravel(), rcond=None)[0]
            stds[r * n + c] = (blk.ravel() - design @ coef).std()
    return sigs, stds


def _cache_key(paths: Sequence[Path], image_size: int, block_size: int) -> str:
    h = hashlib.sha256(json.dumps({"version": VERSION, "image_size": image_size, "block_size": block_size}).encode())
    for p in paths:
        st = os.stat(p)
        h.update(f"{Path(p).resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def all_signatures(paths: Sequence[Path], image_size: int, block_size: int, *, cache_dir: str | Path | None = None,
                   workers: int | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Signatures ``[T, B, 8, 8]`` and deviations ``[T, B]`` of every tile, cached; plus timing facts."""
    from imbal.cache import cache_root

    base = Path(cache_dir) if cache_dir else cache_root()
    path = base / "airbus_scenes" / f"signatures_{_cache_key(paths, image_size, block_size)}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                return z["sigs"], z["stds"], {"signatures_cached": True, "signature_file": str(path)}
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache file is recomputed
    t0 = time.perf_counter()
    from concurrent.futures import ThreadPoolExecutor

    n_workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(n_workers) as pool:  # PIL decodes with the GIL released
        out = list(pool.map(lambda p: tile_signatures(Path(p), image_size, block_size), paths))
    seconds = time.perf_counter() - t0
    sigs = np.stack([o[0] for o in out]) if out else np.zeros((0, 0, SIG, SIG), np.float32)
    stds = np.stack([o[1] for o in out]) if out else np.zeros((0, 0), np.float32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.npz")
        np.savez(tmp, sigs=sigs, stds=stds)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs the speed-up
    return sigs, stds, {"signatures_cached": False, "signature_seconds": round(seconds, 3),
                        "images_per_second": round(len(paths) / seconds, 1) if seconds > 0 else None,
                        "signature_file": str(path)}


def _pairs_in_runs(order: np.ndarray, keys: np.ndarray, cap: int) -> tuple[np.ndarray, int]:
    """All index pairs within runs of equal ``keys[order]`` of 2..``cap`` members; and the members of larger runs."""
    k = keys[order]
    bounds = np.flatnonzero(np.r_[True, k[1:] != k[:-1], True])
    starts, sizes = bounds[:-1], np.diff(bounds)
    out = []
    for size in np.unique(sizes[(sizes >= 2) & (sizes <= cap)]):
        s0 = starts[sizes == size]
        i, j = np.triu_indices(int(size), 1)
        out.append(np.stack([order[(s0[:, None] + i).ravel()], order[(s0[:, None] + j).ravel()]], axis=1))
    pairs = np.concatenate(out) if out else np.zeros((0, 2), np.int64)
    return pairs, int(sizes[sizes > cap].sum())


def match_blocks(sigs: np.ndarray, *, max_diff: float = MAX_DIFF, min_corr: float = MIN_CORR,
                 stats: dict | None = None) -> np.ndarray:
    """Pairs ``[P, 2]`` (``i < j``) of indices into ``sigs`` (``[M, 8, 8]``) whose signatures match (module doc).

    Candidates share a cell of one of :data:`GRIDS` seeded, shifted grids of side :data:`CELL` grey
    levels over the 4x4 means (a re-encoded block moves them by ~0.1-0.3: the same cell in most
    grids); cells of more than :data:`BUCKET_CAP` blocks (near-identical flat blocks) are left out and
    counted in ``stats["blocks_in_crowded_cells"]``.  Cost: ``GRIDS`` sorts of ``M`` keys plus at most
    ``M * BUCKET_CAP`` checks.
    """
    m = len(sigs)
    if m < 2:
        return np.zeros((0, 2), np.int64)
    flat = sigs.reshape(m, -1).astype(np.float32)
    z = flat - flat.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    unit = z / np.where(norm > 0, norm, 1.0)
    del z
    coarse = flat.reshape(m, COARSE, SIG // COARSE, COARSE, SIG // COARSE).mean(axis=(2, 4)).reshape(m, -1)
    rng = np.random.default_rng(12345)  # fixed: the same blocks meet in the same cells on every machine
    mix = rng.integers(1, 2**62, COARSE * COARSE, dtype=np.int64) | 1
    found, crowded, checked = [], 0, 0
    for _ in range(GRIDS):
        cells = np.floor((coarse + rng.uniform(0, CELL, COARSE * COARSE)) / CELL).astype(np.int64)
        keys = (cells * mix).sum(axis=1)  # wraps modulo 2**64: a hash; a collision is only a wasted check
        order = np.argsort(keys, kind="stable")
        pairs, big = _pairs_in_runs(order, keys, BUCKET_CAP)
        crowded, checked = max(crowded, big), checked + len(pairs)
        for c0 in range(0, len(pairs), CHUNK):  # bounded memory: CHUNK pairs of 64 means at a time
            pc = pairs[c0:c0 + CHUNK]
            a, b = flat[pc[:, 0]], flat[pc[:, 1]]
            diff = np.sqrt(((a - b) ** 2).mean(axis=1))
            corr = np.einsum("ij,ij->i", unit[pc[:, 0]], unit[pc[:, 1]])
            hit = pc[(diff <= max_diff) & (corr >= min_corr)]
            if len(hit):
                found.append(np.sort(hit, axis=1))
    if stats is not None:
        stats.update({"blocks_in_crowded_cells": crowded, "candidate_pairs_checked": int(checked)})
    if not found:
        return np.zeros((0, 2), np.int64)
    return np.unique(np.concatenate(found), axis=0).astype(np.int64)


def groups_from_signatures(sigs: np.ndarray, stds: np.ndarray, *, min_std: float = MIN_STD,
                           max_diff: float = MAX_DIFF, min_corr: float = MIN_CORR) -> tuple[np.ndarray, dict]:
    """Group id per tile (``[T]``, 0..G-1, numbered by first tile) from block signatures, and facts to record."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    t, nb = stds.shape
    keep = stds >= min_std
    tile_of = np.repeat(np.arange(t), nb)[keep.ravel()]
    search: dict = {}
    pairs = match_blocks(sigs.reshape(t * nb, SIG, SIG)[keep.ravel()], max_diff=max_diff, min_corr=min_corr,
                         stats=search)
    edges = tile_of[pairs] if len(pairs) else np.zeros((0, 2), np.int64)
    edges = edges[edges[:, 0] != edges[:, 1]]
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(t, t))
    _, labels = connected_components(graph, directed=False)
    _, first = np.unique(labels, return_index=True)  # renumber groups by their first tile: stable ids
    order = np.argsort(first)
    renum = np.empty_like(order)
    renum[order] = np.arange(len(order))
    groups = renum[labels]
    sizes = np.bincount(groups)
    info = {
        "groups": int(len(sizes)),
        "largest_group": int(sizes.max()) if len(sizes) else 0,
        "tiles_in_multi_tile_groups": int(sizes[sizes > 1].sum()),
        "blocks": int(t * nb),
        "blocks_skipped_featureless": int((~keep).sum()),
        "matched_block_pairs": int(len(pairs)),
        **search,
    }
    return groups.astype(np.int64), info


def scene_groups(paths: Sequence[Path], image_size: int, *, block_size: int, min_std: float = MIN_STD,
                 cache_dir: str | Path | None = None, where: str = "data") -> tuple[np.ndarray, dict]:
    """Group id per tile of ``paths`` (tiles sharing a block, transitively) and the facts the manifest records
    (``timing``: whether the signatures came from the cache, seconds and images per second; not part of the
    data's identity)."""
    if image_size // block_size < 1:
        raise ImbalError(f"{where}: data.block_size={block_size} is larger than the images ({image_size} px)")
    sigs, stds, timing = all_signatures(paths, image_size, block_size, cache_dir=cache_dir)
    groups, info = groups_from_signatures(sigs, stds, min_std=min_std)
    timing.pop("signature_file", None)
    return groups, {**info, "block_size": block_size, "min_std": min_std, "max_diff": MAX_DIFF,
                    "min_corr": MIN_CORR, "timing": timing}


def grouped_split(has_fg: np.ndarray, groups: np.ndarray, val_fraction: float, test_fraction: float,
                  seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (train, val, test) with every group whole in one split, stratified by ship presence over groups.

    A group is a "ship" group when any of its tiles has foreground.  Per stratum the groups are
    taken in a seeded random order; a group joins val while it fits in val's share of the
    stratum's tiles (``round(val_fraction * n)``), else test while it fits in test's, else train,
    so no split overshoots its share and the largest groups tend to train.  A stratum of at least
    3 groups gives at least one group to val and to test (the smallest in train when none fitted).
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ImbalError(
            f"val_fraction {val_fraction} and test_fraction {test_fraction} must be in [0, 1) with a sum below 1"
        )
    has_fg = np.asarray(has_fg, bool)
    groups = np.asarray(groups, np.int64)
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    sizes = np.bincount(groups, minlength=n_groups)
    ship_group = np.bincount(groups, weights=has_fg.astype(float), minlength=n_groups) > 0
    rng = np.random.default_rng(seed)
    where = np.full(n_groups, 0)  # 0 train, 1 val, 2 test
    for value in (True, False):
        gs = rng.permutation(np.flatnonzero(ship_group == value))
        n = int(sizes[gs].sum())
        left = {1: int(round(val_fraction * n)), 2: int(round(test_fraction * n))}
        for g in gs:
            for k in (1, 2):
                if sizes[g] <= left[k]:
                    where[g] = k
                    left[k] -= int(sizes[g])
                    break
        if len(gs) >= 3:
            for k, frac in ((1, val_fraction), (2, test_fraction)):
                if frac > 0 and not (where[gs] == k).any():
                    train = gs[where[gs] == 0]
                    if len(train) > 1:
                        where[train[np.argmin(sizes[train])]] = k
    split = where[groups]
    return tuple(np.flatnonzero(split == k).astype(np.int64) for k in (0, 1, 2))
