"""A LightningDataModule over in-memory tensors: the base of the small built-in data sets."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import lightning as L
import numpy as np
import torch
from torch.utils.data import TensorDataset

from imbal.data.loaders import eval_loader, train_loader
from imbal.data.stats import DataStats
from imbal.errors import ImbalError
from imbal.io import write_json_atomic
from imbal.kinds import MULTICLASS, VECTOR


def check_labels(y: torch.Tensor, num_classes: int, *, where: str) -> None:
    """Refuse labels outside ``[0, num_classes)`` with the first offending row."""
    bad = ((y < 0) | (y >= num_classes)).nonzero().flatten()
    if len(bad):
        i = int(bad[0])
        raise ImbalError(
            f"{where}: label {int(y[i])} at row {i} is outside [0, {num_classes}) "
            f"({len(bad)} such rows)"
        )


class DataModuleBase(L.LightningDataModule):
    """What every imbal data module shares: ``stats`` after ``setup()``, and its manifest in the run dir.

    Subclasses set ``self._stats`` in ``setup()`` and fill ``self.manifest`` (class counts,
    seed, index hashes, ...); the runner saves it and compares it on resume.
    """

    name = "data"
    _stats: DataStats | None = None
    #: ``trainer.use_distributed_sampler`` (copied by the runner): False keeps on-device loaders unsharded
    use_distributed_sampler: bool = True

    @property
    def stats(self) -> DataStats:
        if self._stats is None:
            raise RuntimeError("call setup() before reading the data module's stats")
        return self._stats

    # -- loaders: one hook --------------------------------------------------
    def device_transform(self, split: str):
        """The batch transform of ``split`` on the device (``on_device``): tensors stored ready by default."""
        from imbal.data.on_device import identity

        return identity

    def device_tensors(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, labels) of ``split`` as whole tensors, for ``on_device``."""
        return self.splits[split].tensors[0], self.splits[split].tensors[1]

    def labels(self, split: str) -> torch.Tensor:
        """Integer labels of ``split`` (what a class-aware sampler weighs)."""
        return self.splits[split].tensors[1]

    def loader(self, split: str):
        """A DataLoader (or, with ``on_device``, a device batch iterator) over ``split``; shared by every
        module that keeps ``self.splits`` and a ``batch_size``."""
        if getattr(self, "on_device", False):
            from imbal.data.on_device import DeviceSplits, split_loader

            if getattr(self, "_device_splits", None) is None:
                self._device_splits = DeviceSplits()
            x, y = self.device_tensors(split)
            return split_loader(self, split, x, y, self.device_transform(split), self._device_splits)
        if split == "train":
            return train_loader(self.splits["train"], labels=self.labels("train"), batch_size=self.batch_size,
                                seed=self.seed, sampler_cfg=self.sampler_cfg, num_workers=self.num_workers)
        return eval_loader(self.splits[split], batch_size=self.batch_size, num_workers=self.num_workers)

    def train_dataloader(self) -> Iterable:
        return self.loader("train")

    def val_dataloader(self) -> Iterable:
        return self.loader("val")

    def test_dataloader(self) -> Iterable:
        return self.loader("test")

    def save_manifest(self, run_dir: str | Path) -> Path:
        manifest = getattr(self, "manifest", {}) or {}
        return write_json_atomic(Path(run_dir) / "data_manifest.json", {"data": self.name, "seed": self.seed, **manifest})


class InMemoryDataModule(DataModuleBase):
    """Train/val/test splits held as tensors; subclasses fill ``self.splits`` in ``build()``.

    Args:
        batch_size: training batch size (evaluation uses the same).
        num_workers: DataLoader workers (0: the data is already in memory).
        seed: seed of every random choice the data module makes.
        sampler: the ``sampler`` config node (see :func:`imbal.data.loaders.build_sampler`).
        on_device: hold every split as one tensor on the Trainer's device and augment whole
            batches there (:mod:`imbal.data.on_device`; no DataLoader, no workers). Subclasses
            give the batch version of their transform in :meth:`device_transform`.
    """

    name = "in_memory"
    modality = VECTOR
    task = MULTICLASS

    def __init__(
        self, *, batch_size: int = 64, num_workers: int = 0, seed: int = 0, sampler: Any = None,
        on_device: bool = False,
    ):
        super().__init__()
        self.on_device = bool(on_device)
        self._device_splits = None
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.sampler_cfg = sampler
        self.splits: dict[str, TensorDataset] = {}
        self.class_names: list[str] = []
        self.manifest: dict[str, Any] = {}
        self.extra: dict[str, Any] = {}
        #: typed DataStats fields a subclass knows (val_from, num_train, test_prior)
        self.stats_fields: dict[str, Any] = {}
        self._stats: DataStats | None = None

    # -- to implement --------------------------------------------------
    def build(self) -> None:
        """Fill ``self.splits`` ('train', 'val', 'test'), ``self.class_names`` and ``self.manifest``."""
        raise NotImplementedError

    # -- Lightning ------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        self.build()
        c = len(self.class_names)
        for split, ds in self.splits.items():
            check_labels(ds.tensors[1], c, where=f"data '{self.name}' {split} split")
        y = self.splits["train"].tensors[1]
        counts = torch.bincount(y, minlength=c).tolist()
        self._stats = DataStats(
            task=self.task,
            num_classes=c,
            class_counts=counts,
            class_names=list(self.class_names),
            modality=self.modality,
            input_shape=tuple(self.splits["train"].tensors[0].shape[1:]),
            extra=dict(self.extra),
            **{"num_train": len(y), **self.stats_fields},
        )
        self.manifest.setdefault("class_counts", counts)


def balanced_holdout(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (held-out with ``per_class`` of every class, rest)."""
    held, rest = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        if len(idx) <= per_class:
            raise ImbalError(f"class {c} has {len(idx)} samples; cannot hold out {per_class} per class")
        held.append(idx[:per_class])
        rest.append(idx[per_class:])
    return np.sort(np.concatenate(held)), np.sort(np.concatenate(rest))
