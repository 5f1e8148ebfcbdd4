"""Cost-sensitive cross-entropy from a cost matrix W[true, predicted]."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from imbal.errors import ImbalError
from imbal.kinds import MULTICLASS
from imbal.losses.base import ImbalanceLoss, check_reduction, fp32, no_autocast, reduce

MODES = ("argmax", "expected")


def cost_sensitive_loss(
    logits: Tensor, target: Tensor, costs: Tensor, *, mode: str = "argmax", reduction: str = "mean"
) -> Tensor:
    """``CE_i * W[y_i, argmax_j z_ij]`` (``argmax``) or ``CE_i * sum_j p_ij W[y_i, j]`` (``expected``).

    ``argmax`` is the seed's ``w_categorical_crossentropy`` (a Keras snippet that
    loops over every (true, predicted) class pair adding
    ``W[t, p] * [argmax = p] * [y = t]`` to a mask), as one gather: O(N) instead
    of O(N C^2).  The mask has no gradient.  A tie for the maximum takes the first
    index (the seed adds the costs of every tied class).  ``expected`` replaces the
    one-hot argmax by the probabilities, so the cost factor is differentiable.
    """
    x = fp32(logits)
    w = costs.to(device=x.device, dtype=x.dtype)
    ce = F.cross_entropy(x, target, reduction="none")
    if mode == "argmax":
        scale = w[target, x.detach().argmax(dim=-1)]
    else:
        scale = (F.softmax(x, dim=-1) * w[target]).sum(dim=-1)  # w[target]: [N, C] costs of the true class
    return reduce(ce * scale, reduction)


class CostSensitiveLoss(ImbalanceLoss):
    """Cross-entropy scaled by the cost of the current prediction, from a cost matrix ``W[true, pred]``.

    Args:
        costs: a C x C matrix of finite costs >= 0, row = true class, column =
            predicted class; ``None`` = all ones (plain cross-entropy).
        mode: ``argmax`` (the seed's semantics: CE times ``W[y, argmax p]``) or
            ``expected`` (CE times ``sum_j p_j W[y, j]``, differentiable in the costs).
        reduction: ``mean`` (over N) | ``sum`` | ``none``.

    Shape:
        logits ``[N, C]``, target ``[N]`` int64.

    Reference:
        Elkan. The Foundations of Cost-Sensitive Learning. IJCAI 2001; the seed's
        Keras ``w_categorical_crossentropy`` (keras-team/keras issue 2115).
    """

    tasks = (MULTICLASS,)

    def __init__(
        self,
        *,
        costs: Sequence[Sequence[float]] | None = None,
        mode: str = "argmax",
        reduction: str = "mean",
        num_classes: int | None = None,
    ):
        super().__init__()
        if mode not in MODES:
            raise ImbalError(f"loss 'cost_sensitive': mode '{mode}' is not one of {', '.join(MODES)}")
        if costs is None:
            if num_classes is None:
                raise ImbalError("loss 'cost_sensitive' needs costs or num_classes, got neither")
            w = torch.ones(num_classes, num_classes)
        else:
            try:
                w = torch.as_tensor([list(map(float, row)) for row in costs], dtype=torch.float32)
            except (TypeError, ValueError):
                raise ImbalError(
                    f"loss 'cost_sensitive': costs must be a C x C matrix of numbers, got {costs!r}"
                ) from None
            c = num_classes if num_classes is not None else w.shape[0]
            if w.shape != (c, c):
                raise ImbalError(
                    f"loss 'cost_sensitive': costs has shape {tuple(w.shape)}, expected ({c}, {c}) for {c} classes"
                )
            if not torch.isfinite(w).all() or (w < 0).any():
                raise ImbalError("loss 'cost_sensitive': costs must be finite and >= 0")
        self.mode = mode
        self.reduction = check_reduction(reduction)
        self.register_buffer("costs", w)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        with no_autocast(logits.device.type):
            return cost_sensitive_loss(logits, target, self.costs, mode=self.mode, reduction=self.reduction)
