"""The batch-level pieces of mixing: the mixing weight, the pair, the mixed inputs and labels, the mixed loss.

Pure functions of tensors (the caller draws from torch's global RNG, which Lightning seeds and
``RNGState`` checkpoints, so a resumed run mixes as the uninterrupted one would):

* :func:`sample_lam`: ``lam ~ Beta(alpha, alpha)`` (Zhang et al. 2018).
* :func:`pair_index`: the second sample of each pair, a permutation of the batch or a
  class-balanced draw from it (``mixing.pair_sampler``).
* :func:`cutmix_box` / :func:`cutmix`: Yun et al. (2019)'s box, cut from the image and, for
  segmentation, from the mask at the same place.
* :func:`remix_label_weights`: Remix's label rule (Chou et al. 2020).
* :func:`mixed_loss`: ``lam * L(logits, y_a) + (1 - lam) * L(logits, y_b)`` for any loss, with a
  per-sample label weight (Remix) folded into the two targets.

torchvision.transforms.v2 ``MixUp`` / ``CutMix`` are not used: they pair each sample with the
rolled batch (no class-balanced pair), return only soft one-hot labels (so neither the loss mixing
every registered loss needs nor Remix's per-pair rule, which needs ``lam`` and both classes, can
be built on them), do not cut a segmentation mask with its image, and torchvision is not a core
dependency.  The box and ``lam`` correction follow the same formula (Yun et al. 2019, Alg. A1).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor


def sample_lam(alpha: float) -> float:
    """``lam ~ Beta(alpha, alpha)`` from torch's global RNG, as a Python float."""
    a = torch.tensor(float(alpha))
    return float(torch.distributions.Beta(a, a).sample())


def pair_index(y: Tensor | None, n: int, sampler: str = "none") -> Tensor:
    """Index of the second sample of each pair (on the CPU).

    ``none``: a random permutation of the batch (mixup's ``x[randperm]``).  ``class_balanced``:
    drawn with replacement with probability ``1 / (count of its class in the batch)``, so every
    class present in the batch is equally likely to be the partner's class (a class-balanced draw
    restricted to the batch: a class absent from the batch cannot be drawn).
    """
    if sampler == "none" or y is None:
        return torch.randperm(n)
    labels = y.detach().cpu().long().reshape(n, -1)[:, 0] if y.ndim > 1 else y.detach().cpu().long()
    _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    weights = 1.0 / counts[inverse].double()
    return torch.multinomial(weights, n, replacement=True)


def mix_tensors(a: Tensor, b: Tensor, lam: float) -> Tensor:
    """``lam * a + (1 - lam) * b``."""
    return a * lam + b * (1.0 - lam)


def cutmix_box(h: int, w: int, lam: float, cy: int | None = None, cx: int | None = None) -> tuple[int, int, int, int]:
    """``(y1, y2, x1, x2)`` of Yun et al. (2019)'s box: sides ``H sqrt(1 - lam)``, ``W sqrt(1 - lam)``
    around a uniform centre, clipped to the image (``cy``/``cx`` given: that centre)."""
    ratio = math.sqrt(max(0.0, 1.0 - lam))
    cut_h, cut_w = int(h * ratio), int(w * ratio)
    cy = int(torch.randint(h, ())) if cy is None else int(cy)
    cx = int(torch.randint(w, ())) if cx is None else int(cx)
    y1, y2 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
    x1, x2 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
    if cut_h == 0 or cut_w == 0:
        return 0, 0, 0, 0
    return y1, y2, x1, x2


def cutmix(x: Tensor, idx: Tensor, box: tuple[int, int, int, int], mask: Tensor | None = None
           ) -> tuple[Tensor, Tensor | None, float]:
    """Paste ``x[idx]``'s box into ``x`` (and ``mask[idx]``'s into ``mask``, the same box: the mask is
    cut with its image); returns (images, masks, lam) with ``lam = 1 - box area / image area``."""
    y1, y2, x1, x2 = box
    h, w = x.shape[-2], x.shape[-1]
    out = x.clone()
    out[..., y1:y2, x1:x2] = x[idx][..., y1:y2, x1:x2]
    cut = None
    if mask is not None:
        if tuple(mask.shape[-2:]) != (h, w):
            raise ValueError(f"cutmix: mask of shape {list(mask.shape)} does not match images of shape {list(x.shape)}")
        cut = mask.clone()
        cut[..., y1:y2, x1:x2] = mask[idx][..., y1:y2, x1:x2]
    return out, cut, 1.0 - (y2 - y1) * (x2 - x1) / float(h * w)


def remix_label_weights(lam: float, n_a: Tensor, n_b: Tensor, kappa: float = 3.0, tau: float = 0.5) -> Tensor:
    """Remix's label weight of ``y_a`` per pair (Chou et al. 2020, "Remix: Rebalanced Mixup", Eq. 8).

    The input is mixed with ``lam`` (``x = lam x_a + (1 - lam) x_b``); the label is
    ``lam_y y_a + (1 - lam_y) y_b`` with, for training-set class counts ``n_a``, ``n_b``::

        lam_y = 0    if n_a / n_b >= kappa   and lam < tau       (a is the majority, the image mostly b)
        lam_y = 1    if n_a / n_b <= 1/kappa and 1 - lam < tau   (b is the majority, the image mostly a)
        lam_y = lam  otherwise

    so a mixed sample that is mostly the minority class's image keeps the minority label
    (paper defaults kappa = 3, tau = 0.5).
    """
    ratio = n_a.double() / n_b.double()
    out = torch.full(ratio.shape, float(lam), dtype=torch.float64)
    out[(ratio >= kappa) & (lam < tau)] = 0.0
    out[(ratio <= 1.0 / kappa) & (1.0 - lam < tau)] = 1.0
    return out


def mixed_loss(loss_fn: Callable[[Tensor, Tensor], Tensor], logits: Tensor, y_a: Tensor, y_b: Tensor,
               lam: float, label_weight: Tensor | None = None) -> Tensor:
    """``lam * L(logits, y_a) + (1 - lam) * L(logits, y_b)``; exact for a loss that is a mean of
    per-sample terms linear in the one-hot target (cross-entropy and its weighted forms).

    ``label_weight`` (Remix: per pair ``0``, ``1`` or ``lam``) is folded into the targets: a pair
    whose weight is 0 takes ``y_b`` in both terms, one whose weight is 1 takes ``y_a`` in both, so
    each sample's loss is ``w L(y_a) + (1 - w) L(y_b)`` with its own ``w`` and the loss is still
    called on the whole batch (batch-level normalisations see the batch they would see unmixed).
    A term of weight 0 is not computed (``0 * inf`` would be NaN).
    """
    if label_weight is not None:
        to_a, to_b = (label_weight == 1.0).to(y_a.device), (label_weight == 0.0).to(y_a.device)
        shape = (-1,) + (1,) * (y_a.ndim - 1)
        y_a, y_b = (torch.where(to_b.view(shape), y_b, y_a), torch.where(to_a.view(shape), y_a, y_b))
    terms = []
    if lam != 0.0:
        terms.append(loss_fn(logits, y_a) * lam)
    if lam != 1.0:
        terms.append(loss_fn(logits, y_b) * (1.0 - lam))
    return terms[0] if len(terms) == 1 else terms[0] + terms[1]


def soft_targets(y_a: Tensor, y_b: Tensor, lam: float, num_classes: int, label_weight: Tensor | None = None) -> Tensor:
    """``w onehot(y_a) + (1 - w) onehot(y_b)`` per sample (``w = lam`` or Remix's weight), float ``[N, C]``."""
    w = torch.full((len(y_a),), float(lam)) if label_weight is None else label_weight
    w = w.float().to(y_a.device)[:, None]
    oh = torch.nn.functional.one_hot
    return w * oh(y_a.long(), num_classes).float() + (1.0 - w) * oh(y_b.long(), num_classes).float()
