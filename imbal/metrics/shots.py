"""The many / medium / few-shot class groups of long-tail evaluation (no heavy imports: reports read it)."""

from __future__ import annotations

from typing import Sequence

#: Shot groups of Liu et al. (2019, OLTR) / Kang et al. (2020): name -> (min, max) training samples, inclusive.
SHOT_GROUPS = {"many_shot_accuracy": (101, None), "medium_shot_accuracy": (20, 100), "few_shot_accuracy": (0, 19)}
#: Where the groups meet: few < MEDIUM_MIN <= medium <= MEDIUM_MAX < many (training samples of a class).
MEDIUM_MIN, MEDIUM_MAX = SHOT_GROUPS["medium_shot_accuracy"]


def shot_groups(class_counts: Sequence[int]) -> dict[str, list[int]]:
    """Class ids of each non-empty shot group (many: >100, medium: 20-100, few: <20 training samples)."""
    out = {}
    for name, (lo, hi) in SHOT_GROUPS.items():
        ids = [i for i, n in enumerate(class_counts) if n >= lo and (hi is None or n <= hi)]
        if ids:
            out[name] = ids
    return out
