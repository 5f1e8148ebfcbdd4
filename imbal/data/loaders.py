"""DataLoaders shared by every data module, with the sampler chosen in ``conf/sampler/``.

The training sampler is picked by the ``sampler`` config group (``name: none``
is plain shuffling; a user's own sampler class is named by ``_target_``).  Data modules receive that node as their ``sampler``
argument and call :func:`train_loader`, so every data domain gets every sampler.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from imbal.errors import ImbalError


def build_sampler(sampler_cfg: Any, labels: Sequence[int] | torch.Tensor, *, seed: int) -> Sampler | None:
    """The training sampler a ``sampler`` config names, or None for plain shuffling.

    ``sampler_cfg`` is one of:

    * None, or a node with ``name: none`` (or ``name: null``): plain shuffling (None).
    * A node with ``name`` registered in :data:`imbal.data.samplers.SAMPLERS`:
      ``class_balanced``, ``sqrt`` and ``progressive`` (``epochs``: the T of
      Kang et al. Eq. 2, default the trainer's max_epochs in
      ``conf/sampler/progressive.yaml``); ``num_samples`` (draws per epoch) is
      optional.  A key the sampler does not take is refused in one line.
    * A node with ``_target_``: a user's sampler, no registration needed, e.g.
      ``{name: mine, _target_: mypkg.MySampler, alpha: 2}``.  The contract:
      ``_target_`` is the dotted path (``pkg.module.Class`` or
      ``pkg.module:Class``) of a :class:`torch.utils.data.Sampler` subclass, or
      of a function returning one (or None for plain shuffling).  It is called as
      ``Class(labels=labels, seed=seed, **rest)`` where ``labels`` is a 1-D
      integer tensor, the class id of every training sample; ``seed`` is the
      run's seed; ``rest`` is every other key of the node (``name`` only labels
      the node in messages; Hydra's ``_partial_``/``_recursive_``/``_convert_``
      are dropped).  A key its signature does not take, a path that cannot be
      imported, or an object that is not a sampler is refused in one line.
      The indices it yields are what the DataLoader loads; under DDP Lightning
      shards them across ranks (so every rank must yield the same sequence:
      seed from ``seed``, not from the process) and calls ``set_epoch(epoch)``
      on it, when it has one, at the start of every training epoch.
    * A callable: what Hydra makes of a ``_target_`` node with ``_partial_: true``
      (a data module instantiated by Hydra directly); called with ``labels=...,
      seed=...`` as above.  The runner passes the ``sampler`` node to the data
      module as plain data, so a config file needs no ``_partial_``.

    See :mod:`imbal.data.samplers`.
    """
    from imbal.data.samplers import SAMPLERS

    if sampler_cfg is None:
        return None
    if callable(sampler_cfg) and not isinstance(sampler_cfg, Mapping):
        label = getattr(getattr(sampler_cfg, "func", sampler_cfg), "__qualname__", "sampler")
        sampler = sampler_cfg(labels=torch.as_tensor(labels), seed=seed)
    elif isinstance(sampler_cfg, Mapping) and "_target_" in sampler_cfg:
        label = str(sampler_cfg.get("name") or sampler_cfg["_target_"])
        sampler = SAMPLERS.build(dict(sampler_cfg), labels=torch.as_tensor(labels), seed=seed)
    else:
        cfg = dict(sampler_cfg)
        name = cfg.setdefault("name", "none")
        label = str(name)
        sampler = SAMPLERS.build({**cfg, "name": "none" if name is None else name}, labels=labels, seed=seed)
    if sampler is not None and not (isinstance(sampler, Sampler) or hasattr(sampler, "__iter__")):
        raise ImbalError(f"sampler '{label}' gave a {type(sampler).__name__}, not a torch.utils.data.Sampler "
                         "(an iterable of dataset indices)")
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


class EpochWorkerSeed:
    """``worker_init_fn`` of a training DataLoader: seeds a worker's torch, numpy and ``random`` from
    ``(seed, epoch, rank, worker id)``, not from the main process's RNG stream.

    Training loaders start fresh workers every epoch (no ``persistent_workers``), so each
    epoch's augmentations depend only on that epoch: a run resumed from ``last.ckpt`` draws
    the ones of the run it continues.  ``epoch`` is the sampler's (Lightning calls its
    ``set_epoch`` before the epoch's workers start).
    """

    def __init__(self, seed: int, sampler: Any):
        self.seed, self.sampler = int(seed), sampler
        dist = torch.distributed
        self.rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0

    def __call__(self, worker_id: int) -> None:
        import random

        import numpy as np

        epoch = int(getattr(self.sampler, "epoch", 0))
        seq = np.random.SeedSequence([self.seed, epoch, self.rank, int(worker_id)])
        words = seq.generate_state(2, dtype=np.uint64)
        torch.manual_seed(int(words[0]))
        random.seed(int(words[1]))
        np.random.seed(seq.generate_state(4))


def train_loader(
    dataset: Dataset,
    *,
    labels: Sequence[int] | torch.Tensor | None,
    batch_size: int,
    seed: int,
    sampler_cfg: Any = None,
    num_workers: int = 0,
    collate_fn: Callable | None = None,
    drop_last: bool = False,
    pin_memory: bool = False,
) -> DataLoader:
    sampler = build_sampler(sampler_cfg, labels, seed=seed) if labels is not None else None
    if sampler is None:
        sampler = EpochShuffleSampler(len(dataset), seed=seed)
    # workers seeded by (seed, epoch) and started afresh each epoch (see EpochWorkerSeed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=num_workers,
        persistent_workers=False,
        worker_init_fn=EpochWorkerSeed(seed, sampler) if num_workers > 0 else None,
        collate_fn=collate_fn,
        pin_memory=pin_memory,
    )


def eval_sampler(n: int) -> Sampler | None:
    """This rank's unpadded, in-order share of ``n`` evaluation samples under DDP; None on one process."""
    if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

        return UnrepeatedDistributedSampler(range(n), shuffle=False)
    return None


def eval_loader(
    dataset: Dataset, *, batch_size: int, num_workers: int = 0, collate_fn: Callable | None = None,
    pin_memory: bool = False,
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
        pin_memory=pin_memory,
    )
