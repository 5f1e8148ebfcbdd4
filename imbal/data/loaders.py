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
    """The training sampler a ``sampler`` config names, or None for plain shuffling.

    ``none`` (instance-balanced), ``class_balanced``, ``sqrt`` and
    ``progressive`` (``epochs``: the T of Kang et al. Eq. 2, default the
    trainer's max_epochs in ``conf/sampler/progressive.yaml``); see
    :mod:`imbal.data.samplers`.  ``num_samples`` (draws per epoch) is optional.
    """
    from imbal.data.samplers import SAMPLERS, ClassSampler, ProgressiveSampler

    cfg = dict(sampler_cfg or {})
    name = cfg.pop("name", "none")
    if name in (None, "none"):
        return None
    num_samples = cfg.pop("num_samples", None)
    if name == "progressive":
        epochs = cfg.pop("epochs", None)
        sampler = ProgressiveSampler(labels, total_epochs=epochs, seed=seed, num_samples=num_samples)
    elif name in ("class_balanced", "sqrt"):
        sampler = ClassSampler(labels, q=0.0 if name == "class_balanced" else 0.5, seed=seed,
                               num_samples=num_samples, name=name)
    else:
        raise ImbalError(f"unknown sampler '{name}'; choose one of: {', '.join(SAMPLERS)}")
    if cfg:
        raise ImbalError(f"sampler '{name}' got unknown keys {sorted(cfg)}; it takes: num_samples"
                         + (", epochs" if name == "progressive" else ""))
    return sampler


class EpochShuffleSampler(Sampler[int]):
    """Plain shuffling whose order depends only on (seed, epoch).

    A DataLoader's own generator carries its state from epoch to epoch, so a
    run resumed from ``last.ckpt`` would see other batches than the run it
    continues; here Lightning's ``set_epoch`` (called on any sampler every
    epoch) fixes the order, as ``DistributedSampler`` does across ranks.
    """

    def __init__(self, n: int, seed: int = 0):
        self.n, self.seed, self.epoch = int(n), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())


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
    if sampler is None:
        sampler = EpochShuffleSampler(len(dataset), seed=seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        collate_fn=collate_fn,
    )


def eval_sampler(n: int) -> Sampler | None:
    """This rank's unpadded, in-order share of ``n`` evaluation samples under DDP; None on one process."""
    if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

        return UnrepeatedDistributedSampler(range(n), shuffle=False)
    return None


def eval_loader(
    dataset: Dataset, *, batch_size: int, num_workers: int = 0, collate_fn: Callable | None = None
) -> DataLoader:
    """Evaluation loader. Under DDP each rank gets a disjoint, unpadded share, so metrics synced
    across ranks count every sample exactly once (a plain DistributedSampler pads with repeats)."""
    sampler = eval_sampler(len(dataset))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        sampler=sampler,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        collate_fn=collate_fn,
    )
