"""Pre-tokenised text splits (:class:`TextDataset`) and length-bucketed training batches."""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from imbal.data.text.tokenize import pad_batch

class TextDataset(Dataset):
    """Pre-tokenised texts (or pairs) and their targets; padding happens in :meth:`collate`."""

    def __init__(self, a: list[np.ndarray], b: list[np.ndarray] | None, y: torch.Tensor, pad_id: int, min_length: int = 1):
        self.a, self.b, self.y = a, b, y
        self.pad_id = pad_id
        self.min_length = min_length

    def __len__(self) -> int:
        return len(self.a)

    def __getitem__(self, i: int):
        return i

    def lengths(self) -> np.ndarray:
        la = np.fromiter((len(s) for s in self.a), dtype=np.int64, count=len(self.a))
        if self.b is not None:
            la = la + np.fromiter((len(s) for s in self.b), dtype=np.int64, count=len(self.b))
        return la

    def collate(self, idx: list[int]):
        ids, mask = pad_batch([self.a[i] for i in idx], self.pad_id, min_length=self.min_length)
        x = {"input_ids": ids, "attention_mask": mask}
        if self.b is not None:
            ids_b, mask_b = pad_batch([self.b[i] for i in idx], self.pad_id, min_length=self.min_length)
            x.update(input_ids_b=ids_b, attention_mask_b=mask_b)
        return x, self.y[torch.as_tensor(idx)]


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar length, drawn from the configured sampler's index stream.

    Indices come from ``sampler`` (the ``sampler`` config's choice) or a seeded
    permutation; every ``batch_size * pool`` consecutive indices are sorted by
    length and cut into batches, and the batches are shuffled.  Which samples
    are drawn (and how often) is the sampler's; only their grouping changes.
    """

    def __init__(self, sampler: Sampler | None, lengths: np.ndarray, batch_size: int, *, pool: int = 50, seed: int = 0):
        self.sampler, self.lengths = sampler, lengths
        self.batch_size, self.pool, self.seed = int(batch_size), int(pool), int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.sampler) if self.sampler is not None else len(self.lengths)
        return math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning every epoch; passed on to an epoch-aware sampler (progressive)."""
        self.epoch = int(epoch)
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        # the order depends only on (seed, epoch); without set_epoch calls it advances by itself
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        order = list(self.sampler) if self.sampler is not None else rng.permutation(len(self.lengths)).tolist()
        chunk = self.batch_size * self.pool
        batches = []
        for s in range(0, len(order), chunk):
            part = sorted(order[s : s + chunk], key=lambda i: self.lengths[i])
            batches += [part[k : k + self.batch_size] for k in range(0, len(part), self.batch_size)]
        for j in rng.permutation(len(batches)):
            yield batches[j]
