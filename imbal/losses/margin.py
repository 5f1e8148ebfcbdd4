"""Margin losses on a cosine classifier: LDAM (Cao et al. 2019) and AM-softmax (Wang et al. 2018)."""

from __future__ import annotations

import math
from typing import Sequence

import torch.nn.functional as F
from torch import Tensor

from imbal.errors import ImbalError
from imbal.kinds import MULTICLASS
from imbal.losses.base import DeferredReweighting, ImbalanceLoss, check_reduction, counts_tensor, fp32, no_autocast


def _positive(value: float, *, loss: str, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ImbalError(f"loss '{loss}': {name} must be a number > 0, got {value!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise ImbalError(f"loss '{loss}': {name} must be a finite number > 0, got {value!r}")
    return v


def margin_cross_entropy(
    logits: Tensor, target: Tensor, margins: Tensor, *, s: float, weight: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    """``CE(s * (z - m_y e_y), y)``: the target logit lowered by its class margin, then scaled.

    ``margins`` is ``[C]`` (per-class, LDAM) or a 0-d tensor (one margin, AM-softmax).
    ``weight`` as in ``F.cross_entropy`` (``mean`` divides by the batch's weight sum).
    """
    x = fp32(logits)
    m = margins.to(device=x.device, dtype=x.dtype)
    m_y = m[target] if m.ndim else m.expand(target.shape)
    # s * z, then -s * m_y added at the target in place: one [N, C] temporary
    # (mul's backward does not need its output, so the in-place add is safe for autograd).
    z = x * s
    z = z.scatter_add_(-1, target.unsqueeze(-1), (-s * m_y).unsqueeze(-1))
    return F.cross_entropy(z, target, weight=weight, reduction=reduction)


def ldam_margins(class_counts: Sequence[float], max_m: float = 0.5) -> Tensor:
    """``m_c = C / n_c^(1/4)`` with C chosen so the largest margin is ``max_m`` (Cao et al., Eq. 13)."""
    counts = counts_tensor(class_counts, loss="ldam", positive=True)
    m = counts.pow(-0.25)
    return (m * (max_m / m.max())).float()


class LDAMLoss(DeferredReweighting, ImbalanceLoss):
    """Label-distribution-aware margin loss: ``CE(s (z - m_y e_y))`` with ``m_y ∝ n_y^(-1/4)``.

    Expects cosine logits in [-1, 1] (``head = "cosine"``: the task builds the
    NormedLinear head of the reference code).  A class with zero training samples
    has an infinite margin: an error naming it.

    Args:
        max_m: the largest margin, given to the rarest class (paper: 0.5).
        s: logit scale (paper code: 30).
        drw_epoch: deferred re-weighting: from this epoch on (0-based) the loss is
            weighted by the class-balanced weights with ``drw_beta``, ``mean``
            dividing by the batch's weight sum as ``F.cross_entropy(weight=)`` in the
            reference code (LDAM-DRW: 160 of 200 CIFAR epochs).  ``None``: never.
        drw_beta: beta of the DRW weights (paper: 0.9999).
        reduction: ``mean`` | ``sum`` | ``none``.

    Shape:
        logits ``[N, C]`` (cosines), target ``[N]`` int64.

    Reference:
        Cao, Wei, Gaidon, Arechiga, Ma. Learning Imbalanced Datasets with
        Label-Distribution-Aware Margin Loss. NeurIPS 2019 (code: kaidic/LDAM-DRW, ``LDAMLoss``).
    """

    tasks = (MULTICLASS,)
    head = "cosine"

    def __init__(
        self,
        *,
        max_m: float = 0.5,
        s: float = 30.0,
        drw_epoch: int | None = None,
        drw_beta: float = 0.9999,
        reduction: str = "mean",
        class_counts: Sequence[int],
    ):
        super().__init__()
        self.max_m = _positive(max_m, loss="ldam", name="max_m")
        self.s = _positive(s, loss="ldam", name="s")
        self.reduction = check_reduction(reduction)
        self.register_buffer("margins", ldam_margins(class_counts, self.max_m))
        self.init_drw(drw_epoch, drw_beta, class_counts, loss="ldam")

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        with no_autocast(logits.device.type):
            return margin_cross_entropy(
                logits, target, self.margins, s=self.s, weight=self.current_weight(), reduction=self.reduction
            )


class AMSoftmaxLoss(ImbalanceLoss):
    """Additive margin softmax: ``CE(s (cos_theta - m e_y))``.

    Expects cosine logits (``head = "cosine"``).

    Args:
        s: logit scale (paper: 30).
        m: additive margin (paper: 0.35).
        reduction: ``mean`` | ``sum`` | ``none``.

    Shape:
        logits ``[N, C]`` (cosines), target ``[N]`` int64.

    Reference:
        Wang, Cheng, Liu, Liu. Additive Margin Softmax for Face Verification. IEEE SPL 2018, Eq. 6.
    """

    tasks = (MULTICLASS,)
    head = "cosine"

    def __init__(self, *, s: float = 30.0, m: float = 0.35, reduction: str = "mean"):
        super().__init__()
        self.s = _positive(s, loss="am_softmax", name="s")
        if not (0.0 <= float(m) and math.isfinite(float(m))):
            raise ImbalError(f"loss 'am_softmax': m must be a finite number >= 0, got {m!r}")
        self.m = float(m)
        self.reduction = check_reduction(reduction)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        with no_autocast(logits.device.type):
            x = fp32(logits)
            return margin_cross_entropy(
                x, target, x.new_tensor(self.m), s=self.s, reduction=self.reduction
            )
