"""DataLoaders shared by every data module, with the sampler chosen in ``conf/sampler/``.

The training sampler is picked by the ``sampler`` config group (``name: none``
is plain shuffling).  Data modules receive that node as their ``sampler``
argument and call :func:`train_loader`, so every data domain gets every sampler.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from imbal.errors import ImbalError


def build_sampler(sampler_cfg: Mapping[str, Any] | None, labels: Sequence[int] | torch.Tensor, *, seed: int) -> Sampler | None:
    """The training sampler a ``sampler`` config names, or None for plain shuffling."""
    cfg = dict(sampler_cfg or {})
    name = cfg.pop("name", "none")
    if name in (None, "none"):
        return None
    raise ImbalError(f"unknown sampler '{name}'; choose one of: none")


def train_loader(
    dataset: Dataset,
    *,
    labels: Sequence[int] | torch.Tensor | None,
    batch_size: int,
    seed: int,
    sampler_cfg: Mapping[str, Any] | None = None,
    num_workers: int = 0,
    collate_fn: Callable | None = None,
    drop_last: bool = False,
) -> DataLoader:
    sampler = build_sampler(sampler_cfg, labels, seed=seed) if labels is not None else None
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=num_workers,
        generator=generator if sampler is None else None,
        persistent_workers=num_workers > 0,
        collate_fn=collate_fn,
    )


def eval_loader(
    dataset: Dataset, *, batch_size: int, num_workers: int = 0, collate_fn: Callable | None = None
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        collate_fn=collate_fn,
    )
