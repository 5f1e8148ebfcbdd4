"""``data.on_device=true``: a whole split as one tensor on the accelerator, augmented per batch there.

For the small in-memory image modules (``digits_lt``, ``cifar10_lt`` / ``cifar100_lt``,
``image_folder_lt``) the per-image CPU path (``Dataset.__getitem__`` -> torchvision
transform -> ``default_collate``, in DataLoader workers) costs far more than the
model on a GPU (bench/README.md, "Data loaders").  With ``on_device`` the split is
moved once to the device the Trainer uses (``trainer.strategy.root_device``; the
CPU outside a Trainer) and :class:`DeviceLoader` yields ``(x, y)`` batches cut
from it by index, with the augmentation applied to the whole batch on the device
(:class:`PadCropFlipNormalize`: pad, random crop, horizontal flip and normalise
by one ``gather``; no per-image Python loop, no workers).  ``data.augment`` policies
(autoaugment, randaugment, trivialaugment) run per image in a loop on the device and
``data.cutout`` per image, batched (:mod:`imbal.data.augment` says what is per sample).

What stays exactly as on the DataLoader path:

* the order of training indices: the same sampler objects
  (:func:`imbal.data.loaders.build_sampler`, else
  :class:`~imbal.data.loaders.EpochShuffleSampler`), seeded by ``(seed, epoch)``,
  cut into the same consecutive batches, so a resumed run sees the same batches;
* under DDP each rank's share: the sampler wrapped in Lightning's
  ``DistributedSamplerWrapper`` with the Trainer's ``distributed_sampler_kwargs``
  and ``shuffle=False``, exactly what Lightning injects into the training
  DataLoader (only when ``trainer.use_distributed_sampler`` is true, as there);
  evaluation splits use the unpadded share of :func:`imbal.data.loaders.eval_sampler`;
* evaluation inputs: the same float32 operations as ``ToDtype(scale=True)`` +
  ``Normalize`` of torchvision v2 (bit-identical on the CPU), no augmentation.

The augmentation draws from a generator on the device seeded by ``(seed, epoch,
rank)``, so it is reproducible too (the per-image path draws from the global RNG).
Lightning accepts the loader in place of a DataLoader: it is an iterable with
``__len__``, and it calls ``set_epoch`` on its ``sampler`` attribute every epoch
(``lightning.fabric.utilities.data._set_sampler_epoch``); it leaves
non-DataLoader iterables alone when injecting distributed samplers, hence the
explicit sharding here.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import Tensor

#: a batch transform: (batch on the device, generator on the device or None) -> model input
BatchTransform = Callable[[Tensor, "torch.Generator | None"], Tensor]


def normalize_uint8(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """torchvision v2 ``ToDtype(float32, scale=True)`` then ``Normalize(mean, std)``, the same float ops.

    ``mean``/``std`` are float32 ``[C, 1, 1]`` on ``x``'s device; works on ``[C, H, W]`` and ``[N, C, H, W]``.
    """
    return x.to(torch.float32).mul_(1.0 / 255).sub_(mean).div_(std)


def pad_crop_flip(x: Tensor, dy: Tensor, dx: Tensor, flip: Tensor, padding: int) -> Tensor:
    """Per-image crops of the zero-padded batch: output ``i`` is the ``H x W`` window at
    ``(dy[i], dx[i])`` of ``x[i]`` padded by ``padding`` on every side, mirrored left-right where ``flip[i]``.

    ``x``: ``[N, C, H, W]`` (any dtype); ``dy``, ``dx`` in ``[0, 2 * padding]``; one ``gather``, no loop.
    """
    n, c, h, w = x.shape
    p = int(padding)
    xp = torch.nn.functional.pad(x, (p, p, p, p)) if p else x
    wp = w + 2 * p
    rows = dy.view(n, 1) + torch.arange(h, device=x.device).view(1, h)  # [N, H]
    ar = torch.arange(w, device=x.device).view(1, w)
    cols = dx.view(n, 1) + torch.where(flip.view(n, 1), (w - 1) - ar, ar)  # [N, W]
    lin = (rows.view(n, h, 1) * wp + cols.view(n, 1, w)).view(n, 1, h * w).expand(n, c, h * w)
    return xp.reshape(n, c, -1).gather(2, lin).view(n, c, h, w)


class PadCropFlipNormalize:
    """Batch version of ``RandomCrop(H, padding) + RandomHorizontalFlip() + ToDtype + Normalize``.

    Same distribution as the per-image torchvision path: crop offsets uniform on
    ``{0, ..., 2 * padding}`` in each axis (zero padding), flip with probability
    1/2, independently per image.  ``augment=False``: no crop or flip (evaluation, ``data.augment=none``).
    ``policy`` (a v2 AutoAugment / RandAugment / TrivialAugmentWide) is applied per image after the
    crop, ``cutout`` (a side in pixels) after the normalisation, one hole per image
    (:mod:`imbal.data.augment`).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], *, padding: int = 4, augment: bool = True,
                 policy: Callable[[Tensor], Tensor] | None = None, cutout: int | None = None):
        self.mean = torch.tensor(list(mean), dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(list(std), dtype=torch.float32).view(-1, 1, 1)
        self.padding = int(padding)
        self.augment = bool(augment)
        self.policy, self.cutout = policy, (int(cutout) if cutout else None)
        self._dev: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def __repr__(self) -> str:
        return (f"PadCropFlipNormalize(padding={self.padding}, augment={self.augment}, policy={self.policy}, "
                f"cutout={self.cutout})")

    def _stats(self, device: torch.device) -> tuple[Tensor, Tensor]:
        if device not in self._dev:
            self._dev[device] = (self.mean.to(device), self.std.to(device))
        return self._dev[device]

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        # draws in this order: crop offsets, flips, the policy's seed, cutout centres (basic: the first two only)
        if self.augment:
            n, p = len(x), self.padding
            draws = torch.randint(0, 2 * p + 1, (2, n), device=x.device, generator=generator)
            flip = torch.rand(n, device=x.device, generator=generator) < 0.5
            x = pad_crop_flip(x, draws[0], draws[1], flip, p)
        if self.policy is not None:
            from imbal.data.augment import policy_per_sample

            x = policy_per_sample(self.policy, x, generator)
        x = normalize_uint8(x, *self._stats(x.device))
        if self.cutout:
            from imbal.data.augment import cutout_batch

            x = cutout_batch(x, self.cutout, generator)
        return x


def identity(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """The batch transform of data stored ready to use (digits: float, normalised, no augmentation)."""
    return x


def device_of(datamodule: Any) -> torch.device:
    """The device of the Trainer the data module is attached to (its strategy's root device), else the CPU."""
    trainer = getattr(datamodule, "trainer", None)
    if trainer is not None:
        return torch.device(trainer.strategy.root_device)
    return torch.device("cpu")


def _train_shard(datamodule: Any) -> dict[str, int] | None:
    """``{num_replicas, rank}`` when Lightning would shard a training DataLoader, else None."""
    trainer = getattr(datamodule, "trainer", None)
    if trainer is None:
        return None
    kwargs = trainer.distributed_sampler_kwargs  # None unless a parallel strategy
    # Lightning keeps trainer.use_distributed_sampler private; the runner copies it onto the data module
    uses = bool(getattr(datamodule, "use_distributed_sampler", True))
    if not (uses and kwargs) or int(kwargs.get("num_replicas", 1)) <= 1:
        return None
    return {"num_replicas": int(kwargs["num_replicas"]), "rank": int(kwargs["rank"])}


class DeviceLoader:
    """Batches ``(transform(x[idx]), y[idx])`` of tensors held on one device, indices from ``sampler``.

    Lightning takes it as a training/evaluation "dataloader": an iterable with
    ``__len__``; ``sampler.set_epoch`` is called by Lightning every epoch.

    Args:
        x, y: the split, already on the device.
        sampler: index sampler (sized, re-iterable; ``set_epoch`` optional).
        batch_size: batch size; the last batch is short unless ``drop_last``.
        transform: :data:`BatchTransform` applied to each batch of ``x`` on the device.
        seed: base seed of the augmentation generator (mixed with epoch and rank).
        rank: distinct augmentation streams per DDP rank.
    """

    #: Lightning reads it beside ``sampler`` (``_is_dataloader_shuffled``); batches are cut here
    batch_sampler = None

    def __init__(self, x: Tensor, y: Tensor, *, sampler, batch_size: int, transform: BatchTransform = identity,
                 seed: int = 0, rank: int = 0, drop_last: bool = False):
        self.x, self.y = x, y
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.transform = transform
        self.seed, self.rank = int(seed), int(rank)
        self.drop_last = bool(drop_last)
        self.device = x.device

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def indices(self) -> Tensor:
        """This epoch's indices (this rank's share), on the device."""
        return torch.as_tensor(list(iter(self.sampler)), dtype=torch.long).to(self.device, non_blocking=True)

    def _generator(self) -> torch.Generator | None:
        epoch = int(getattr(self.sampler, "epoch", 0))
        seed = (self.seed * 100_003 + epoch) * 1_009 + self.rank
        try:
            return torch.Generator(device=self.device).manual_seed(seed)
        except RuntimeError:  # a device without its own generators: draw on the CPU stream
            return None

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        idx = self.indices()
        gen = self._generator()
        stop = len(self) * self.batch_size if self.drop_last else len(idx)
        for i in range(0, stop, self.batch_size):
            b = idx[i:i + self.batch_size]
            yield self.transform(self.x.index_select(0, b), gen), self.y.index_select(0, b)


class DeviceSplits:
    """Splits moved to a device once (one copy per tensor object: val and test may share one)."""

    def __init__(self):
        self._cache: dict[tuple[int, torch.device], tuple[Tensor, Tensor, Tensor, Tensor]] = {}

    def get(self, x: Tensor, y: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
        key = (id(x), device)
        hit = self._cache.get(key)
        if hit is None or hit[0] is not x:
            self._cache[key] = hit = (x, y, x.to(device), y.to(device))
        return hit[2], hit[3]

    def clear(self) -> None:
        self._cache.clear()


def train_device_loader(datamodule: Any, x: Tensor, y: Tensor, transform: BatchTransform, *,
                        labels: Tensor | None = None, splits: DeviceSplits | None = None) -> DeviceLoader:
    """The training :class:`DeviceLoader` of a data module (``batch_size``, ``seed``, ``sampler_cfg``)."""
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

    from imbal.data.loaders import EpochShuffleSampler, build_sampler

    device = device_of(datamodule)
    xd, yd = (splits or DeviceSplits()).get(x, y, device)
    sampler = build_sampler(datamodule.sampler_cfg, y if labels is None else labels, seed=datamodule.seed)
    if sampler is None:
        sampler = EpochShuffleSampler(len(y), seed=datamodule.seed)
    shard = _train_shard(datamodule)
    rank = 0
    if shard is not None:
        # what Lightning's DataConnector puts in the training DataLoader (shuffle=False: our
        # DataLoaders are built with shuffle=False; the wrapped sampler does the shuffling)
        sampler = DistributedSamplerWrapper(sampler, shuffle=False, **shard)
        rank = shard["rank"]
    return DeviceLoader(xd, yd, sampler=sampler, batch_size=datamodule.batch_size, transform=transform,
                        seed=datamodule.seed, rank=rank)


def eval_device_loader(datamodule: Any, x: Tensor, y: Tensor, transform: BatchTransform, *,
                       splits: DeviceSplits | None = None) -> DeviceLoader:
    """An evaluation :class:`DeviceLoader`: in order, this rank's unpadded share (as :func:`eval_loader`)."""
    from imbal.data.loaders import eval_sampler

    xd, yd = (splits or DeviceSplits()).get(x, y, device_of(datamodule))
    sampler = eval_sampler(len(y)) or range(len(y))
    return DeviceLoader(xd, yd, sampler=sampler, batch_size=datamodule.batch_size, transform=transform)


def split_loader(datamodule: Any, split: str, x: Tensor, y: Tensor, transform: BatchTransform,
                 splits: DeviceSplits) -> DeviceLoader:
    """The :class:`DeviceLoader` of ``split`` of a data module: the training loader for
    ``"train"``, an evaluation loader otherwise.  ``splits`` (kept by the data module across
    calls) holds the device copies, so each split is moved once."""
    if split == "train":
        return train_device_loader(datamodule, x, y, transform, splits=splits)
    return eval_device_loader(datamodule, x, y, transform, splits=splits)
