"""Cross-entropy and class-weighted cross-entropy."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from imbal.errors import ImbalError
from imbal.kinds import MULTICLASS
from imbal.losses.base import (
    DeferredReweighting,
    ImbalanceLoss,
    check_reduction,
    counts_tensor,
    effective_number_weights,
    fp32,
    no_autocast,
)

WEIGHT_MODES = ("balanced", "inverse", "inverse_sqrt", "effective_number")


class CrossEntropy(DeferredReweighting, ImbalanceLoss):
    """Cross-entropy with optional label smoothing (the baseline), and optional DRW.

    Args:
        label_smoothing: epsilon of Szegedy et al. 2016, in [0, 1).
        drw_epoch: deferred re-weighting (Cao et al. 2019): from this epoch on
            (0-based) the loss is weighted by the class-balanced weights of Cui et
            al. with ``drw_beta``; ``None`` (default) never re-weights.  Needs class_counts.
        drw_beta: beta of the DRW weights (paper: 0.9999).
        reduction: ``mean`` | ``sum`` | ``none``.  With DRW weights in force,
            ``mean`` divides by the sum of the batch's target weights, as
            ``F.cross_entropy(weight=...)`` and the LDAM-DRW reference code.

    Shape:
        logits ``[N, C]``, target ``[N]`` int64 in ``[0, C)``.

    Reference:
        ``torch.nn.functional.cross_entropy``; Cao, Wei, Gaidon, Arechiga, Ma.
        Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss.
        NeurIPS 2019 (DRW schedule).
    """

    tasks = (MULTICLASS,)

    def __init__(
        self,
        *,
        label_smoothing: float = 0.0,
        drw_epoch: int | None = None,
        drw_beta: float = 0.9999,
        reduction: str = "mean",
        class_counts: Sequence[int] | None = None,
    ):
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ImbalError(f"loss 'ce': label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        self.reduction = check_reduction(reduction)
        self.init_drw(drw_epoch, drw_beta, class_counts, loss="ce")

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        with no_autocast(logits.device.type):
            return F.cross_entropy(
                fp32(logits),
                target,
                weight=self.current_weight(),
                label_smoothing=self.label_smoothing,
                reduction=self.reduction,
            )


def class_weights(
    class_counts: Sequence[float], mode: str | Sequence[float] = "balanced", *, beta: float = 0.9999
) -> Tensor:
    """Per-class weights from training counts.

    Modes (n = total, C = classes, n_c = count of class c):
        ``balanced``: n / (C * n_c), as ``sklearn.utils.class_weight.compute_class_weight``.
        ``inverse``: 1 / n_c, rescaled to sum to C.
        ``inverse_sqrt``: 1 / sqrt(n_c), rescaled to sum to C.
        ``effective_number``: (1 - beta) / (1 - beta^n_c) (Cui et al. 2019), rescaled to sum to C.
        a list: used as given.

    A class with zero training samples never occurs as a training target; its
    weight is set to 0 rather than infinity (so no NaN reaches validation).
    """
    counts = counts_tensor(class_counts, loss="weighted_ce")
    c = counts.numel()
    if not isinstance(mode, str):
        w = torch.as_tensor(list(mode), dtype=torch.float64)
        if w.shape != (c,):
            raise ImbalError(f"loss 'weighted_ce': weights has {w.numel()} entries, expected {c} (one per class)")
        if (w < 0).any() or not torch.isfinite(w).all():
            raise ImbalError(f"loss 'weighted_ce': weights must be finite and >= 0, got {list(mode)!r}")
        return w.float()
    present = counts > 0
    safe = counts.clamp_min(1.0)
    if mode == "balanced":
        w = counts.sum() / (c * safe)
    elif mode == "inverse":
        w = 1.0 / safe
    elif mode == "inverse_sqrt":
        w = safe.rsqrt()
    elif mode == "effective_number":
        w = effective_number_weights(counts.tolist(), beta, loss="weighted_ce").to(counts.dtype)
    else:
        raise ImbalError(
            f"loss 'weighted_ce': weights '{mode}' is not one of {', '.join(WEIGHT_MODES)} or a list"
        )
    w = torch.where(present, w, torch.zeros_like(w))
    if mode != "balanced":
        w = w * (int(present.sum()) / w.sum())
    return w.float()


class WeightedCrossEntropy(ImbalanceLoss):
    """Class-weighted cross-entropy.

    Args:
        weights: ``balanced`` (n / (C n_c), as scikit-learn), ``inverse``,
            ``inverse_sqrt``, ``effective_number`` or an explicit list of C weights.
        beta: for ``effective_number``.
        label_smoothing: as in :class:`CrossEntropy`.
        reduction: ``mean`` divides by the sum of the batch's target weights,
            as ``torch.nn.functional.cross_entropy(weight=...)`` does.

    Shape:
        logits ``[N, C]``, target ``[N]`` int64.

    Reference:
        King & Zeng 2001; scikit-learn ``compute_class_weight('balanced')``.
    """

    tasks = (MULTICLASS,)

    def __init__(
        self,
        *,
        weights: str | Sequence[float] = "balanced",
        beta: float = 0.9999,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
        class_counts: Sequence[int] | None = None,
        num_classes: int | None = None,
    ):
        super().__init__()
        if isinstance(weights, str) and class_counts is None:
            raise ImbalError(f"loss 'weighted_ce' with weights '{weights}' needs class_counts from the data")
        if class_counts is None:
            class_counts = [1] * len(weights)
        self.register_buffer("weight", class_weights(class_counts, weights, beta=beta))
        if num_classes is not None and self.weight.numel() != num_classes:
            raise ImbalError(
                f"loss 'weighted_ce': {self.weight.numel()} weights for {num_classes} classes"
            )
        self.label_smoothing = float(label_smoothing)
        self.reduction = check_reduction(reduction)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        with no_autocast(logits.device.type):
            return F.cross_entropy(
                fp32(logits),
                target,
                weight=self.weight,
                label_smoothing=self.label_smoothing,
                reduction=self.reduction,
            )
