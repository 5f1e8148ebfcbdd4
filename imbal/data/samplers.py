"""Re-sampling of the training set by class: class-balanced, square-root, progressive.

All three are the class-level sampling family of Kang et al. (2020, Eq. 1):
class ``j`` is drawn with probability

    p_j = n_j^q / sum_i n_i^q

and an instance uniformly within the class, so a sample ``i`` of class ``y_i``
carries the weight ``p_{y_i} / n_{y_i}``.  ``q = 1`` is instance-balanced
(plain shuffling), ``q = 0`` class-balanced, ``q = 1/2`` square-root.
Progressive-balanced (Eq. 2) interpolates over training epochs ``t`` of ``T``:

    p_j(t) = (1 - t/T) * p_j^IB + (t/T) * p_j^CB

The samplers are :class:`torch.utils.data.WeightedRandomSampler` (draws with
replacement, ``len(dataset)`` per epoch) with a generator re-seeded from
``(seed, epoch)`` at every ``__iter__``.  That makes every DDP rank produce the
*same* sequence, which Lightning's ``DistributedSamplerWrapper`` then shards
into distinct per-rank shares; Lightning calls ``set_epoch`` on the sampler
(directly, or forwarded by its wrapper) at the start of every training epoch.

The samplers a config names (``conf/sampler/``) are registered in
:data:`SAMPLERS` (an :class:`imbal.registry.Registry`) as factories
``fn(*, labels, seed, **params) -> Sampler | None``; ``none`` gives None (plain
shuffling).  A user's sampler needs no registration: a ``_target_`` node names
its class (see :func:`imbal.data.loaders.build_sampler`).

Reference:
    Kang, Xie, Rohrbach, Yan, Gordo, Feng, Kalantidis. Decoupling representation
    and classifier for long-tailed recognition. ICLR 2020, Section 4.1.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch.utils.data import WeightedRandomSampler

from imbal.errors import ImbalError
from imbal.kinds import BINARY, MULTICLASS
from imbal.registry import Registry


def class_probabilities(counts: Sequence[int] | torch.Tensor, q: float) -> torch.Tensor:
    """``p_j = n_j^q / sum_i n_i^q`` over the classes present (absent classes get 0)."""
    n = torch.as_tensor(counts, dtype=torch.float64)
    present = n > 0
    p = torch.zeros_like(n)
    p[present] = n[present] ** q
    return p / p.sum()


def progressive_probabilities(counts: Sequence[int] | torch.Tensor, epoch: int, total_epochs: int) -> torch.Tensor:
    """Kang et al. Eq. 2: ``(1 - t/T) p^IB + (t/T) p^CB`` with ``t/T`` clipped to [0, 1]."""
    frac = min(max(epoch / float(total_epochs), 0.0), 1.0)
    return (1.0 - frac) * class_probabilities(counts, 1.0) + frac * class_probabilities(counts, 0.0)


def _labels_tensor(labels: Sequence[int] | torch.Tensor, where: str) -> torch.Tensor:
    y = torch.as_tensor(labels).flatten()
    if y.numel() == 0:
        raise ImbalError(f"sampler '{where}': the training split is empty")
    if y.dtype.is_floating_point or (y < 0).any():
        raise ImbalError(f"sampler '{where}' needs integer class ids >= 0 per training sample ({MULTICLASS} or {BINARY} data)")
    return y.long()


class ClassSampler(WeightedRandomSampler):
    """Draws ``num_samples`` indices with replacement so classes follow ``p_j`` of the epoch.

    Args:
        labels: class id of every training sample.
        q: class-frequency exponent (0 class-balanced, 0.5 square-root, 1 instance).
        seed: base seed; epoch ``e`` draws with seed ``seed * 100003 + e`` (same on every rank).
        num_samples: draws per epoch (default: the training-set size).
    """

    def __init__(self, labels: Sequence[int] | torch.Tensor, *, q: float = 0.0, seed: int = 0,
                 num_samples: int | None = None, name: str = "class_balanced"):
        self.name = name
        self.labels = _labels_tensor(labels, name)
        self.counts = torch.bincount(self.labels)
        self.q = float(q)
        self.seed = int(seed)
        self.epoch = 0
        super().__init__(self._weights(), int(num_samples or len(self.labels)), replacement=True)

    def class_probs(self) -> torch.Tensor:
        """Class probabilities of the current epoch."""
        return class_probabilities(self.counts, self.q)

    def _weights(self) -> torch.Tensor:
        # per-sample weight p_{y_i} / n_{y_i}: multinomial over samples then
        # draws class j with probability p_j, uniformly within the class
        per_class = self.class_probs() / self.counts.clamp(min=1).double()
        return per_class[self.labels]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.weights = self._weights()

    def __iter__(self) -> Iterator[int]:
        # seed and epoch mixed so that (seed, epoch + 1) never repeats (seed + 1, epoch)
        self.generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return super().__iter__()


class ProgressiveSampler(ClassSampler):
    """Progressive-balanced sampling (Kang et al. 2020, Eq. 2) over ``total_epochs`` epochs."""

    def __init__(self, labels: Sequence[int] | torch.Tensor, *, total_epochs: int, seed: int = 0,
                 num_samples: int | None = None):
        if not isinstance(total_epochs, int) or total_epochs < 1:
            raise ImbalError(f"sampler 'progressive': epochs must be an integer >= 1, got {total_epochs!r}")
        self.total_epochs = total_epochs
        super().__init__(labels, q=1.0, seed=seed, num_samples=num_samples, name="progressive")

    def class_probs(self) -> torch.Tensor:
        return progressive_probabilities(self.counts, self.epoch, self.total_epochs)


#: Samplers by config name, in the order listings show them.
SAMPLERS: Registry = Registry("sampler")


@SAMPLERS.register("none")
def instance_balanced(*, labels=None, seed: int = 0, **ignored) -> None:
    """Instance-balanced: plain shuffling, which the loaders do themselves (keys are ignored)."""
    return None


@SAMPLERS.register("class_balanced")
def class_balanced(*, labels: Sequence[int] | torch.Tensor, seed: int, num_samples: int | None = None) -> ClassSampler:
    """Every class equally likely (q = 0)."""
    return ClassSampler(labels, q=0.0, seed=seed, num_samples=num_samples, name="class_balanced")


@SAMPLERS.register("sqrt")
def square_root(*, labels: Sequence[int] | torch.Tensor, seed: int, num_samples: int | None = None) -> ClassSampler:
    """Class ``j`` drawn with probability proportional to ``sqrt(n_j)`` (q = 1/2)."""
    return ClassSampler(labels, q=0.5, seed=seed, num_samples=num_samples, name="sqrt")


@SAMPLERS.register("progressive")
def progressive(*, labels: Sequence[int] | torch.Tensor, seed: int, num_samples: int | None = None,
                epochs: int | None = None) -> ProgressiveSampler:
    """Progressive-balanced over ``epochs`` epochs (the T of Eq. 2)."""
    return ProgressiveSampler(labels, total_epochs=epochs, seed=seed, num_samples=num_samples)
