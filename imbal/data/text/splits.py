"""Validation and test splits cut from a training file: stratified by label, copies of a text together."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd

from imbal.data.text.readers import normalise_key
from imbal.errors import ImbalError
from imbal.kinds import SPLITS

#: ``{split: (texts, ys)}``: the texts (one tuple per sample) and label ids of every split
Splits = dict[str, tuple[list, list]]
#: ``(ys, texts, fraction, seed) -> (held-out, rest)`` indices
HoldOut = Callable[[list, list, float, int], tuple[np.ndarray, np.ndarray]]


def split_off(
    y: list, texts: list[tuple[str, ...]], fraction: float, seed: int, *, group_by: str, multilabel: bool,
    class_names: Sequence[str],
) -> tuple[np.ndarray, np.ndarray]:
    """(held-out, rest) indices: ``fraction`` of the rows, stratified by label, copies of a text together.

    The split is drawn over *groups* (distinct texts, or single rows with
    ``group_by=none``) with ``sklearn.model_selection.train_test_split``,
    stratified by each group's label (its first row's: copies of a text
    almost always share it).  scikit-learn's ``StratifiedGroupKFold`` does
    the same job but took 13 s on the 5,574 SMS messages (a Python loop per
    group), far too slow for Quora's 400k pairs.  Multilabel rows are not
    stratified (scikit-learn has no multilabel stratification).
    """
    from sklearn.model_selection import train_test_split

    n = len(texts)
    if group_by == "text":
        keys = ["\x1f".join(sorted(normalise_key(s) for s in t)) for t in texts]
        groups, uniques = pd.factorize(pd.Series(keys))
        n_groups = len(uniques)
    else:
        groups, n_groups = np.arange(n), n
    first = np.full(n_groups, -1, dtype=np.int64)
    first[groups[::-1]] = np.arange(n)[::-1]  # first row of every group
    strat = None
    if not multilabel:
        strat = np.asarray(y)[first]
        counts = np.bincount(strat)
        too_few = np.flatnonzero((counts > 0) & (counts < 2))
        if len(too_few):
            c = int(too_few[0])
            raise ImbalError(
                f"class '{class_names[c]}' has {counts[c]} distinct training text(s), too few for a "
                f"stratified {fraction:.2f} hold-out; give data.val_path/data.test_path or more rows"
            )
    try:
        _, held_groups = train_test_split(np.arange(n_groups), test_size=fraction, stratify=strat, random_state=seed)
    except ValueError as exc:
        raise ImbalError(f"cannot hold out {fraction:.2f} of {n_groups} texts stratified by class ({exc})") from exc
    in_held = np.zeros(n_groups, dtype=bool)
    in_held[held_groups] = True
    mask = in_held[groups]
    return np.flatnonzero(mask), np.flatnonzero(~mask)


def cut_splits(
    encoded: Splits, wheres: dict[str, str], hold_out: HoldOut, *, val_fraction: float, test_fraction: float,
    seed: int,
) -> tuple[Splits, dict[str, str]]:
    """Every split's ``(texts, ys)`` and source: one without its own file is cut from the training file.

    The test split is held out first (``test_fraction`` of the training file, ``seed``), then
    validation from the rest (``val_fraction`` of the file, ``seed + 1``).
    """
    train_where = wheres["train"]
    texts, ys = encoded["train"]
    split_info = {}
    pool = np.arange(len(texts))
    parts: dict[str, np.ndarray] = {}
    if "test" not in encoded:
        held, rest = hold_out([ys[i] for i in pool], [texts[i] for i in pool], test_fraction, seed)
        parts["test"], pool = pool[held], pool[rest]
        split_info["test"] = f"{test_fraction:g} of {train_where}"
    if "val" not in encoded:
        frac = val_fraction / (1.0 - (test_fraction if "test" in parts else 0.0))
        held, rest = hold_out([ys[i] for i in pool], [texts[i] for i in pool], min(frac, 0.5), seed + 1)
        parts["val"], pool = pool[held], pool[rest]
        split_info["val"] = f"{val_fraction:g} of {train_where}"
    parts["train"] = pool
    data: Splits = {}
    for split in SPLITS:
        if split in parts:
            data[split] = ([texts[i] for i in parts[split]], [ys[i] for i in parts[split]])
        else:
            data[split] = encoded[split]
            split_info[split] = wheres[split]
    for split in SPLITS:
        if not data[split][0]:
            raise ImbalError(f"data split '{split}' is empty after reading {split_info.get(split, train_where)}")
    return data, split_info
