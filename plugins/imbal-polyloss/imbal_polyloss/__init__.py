"""Poly-1 loss for imbal (an example third-party loss plugin)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Poly1Loss", "poly1_loss"]


def poly1_loss(logits: Tensor, target: Tensor, *, epsilon: float = 1.0, reduction: str = "mean") -> Tensor:
    """``CE(p_t) + epsilon * (1 - p_t)`` per sample, then reduced."""
    log_p = F.log_softmax(logits.float(), dim=-1)
    log_pt = log_p.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    loss = -log_pt + epsilon * (-torch.expm1(log_pt))  # 1 - p_t computed as -expm1(log p_t)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction '{reduction}' is not one of mean, sum, none")


class Poly1Loss(nn.Module):
    """Poly-1 loss: cross-entropy plus ``epsilon * (1 - p_t)``, the first polynomial term.

    Args:
        epsilon: coefficient of the first polynomial term (paper default 1.0;
            ``epsilon=0`` is cross-entropy, ``epsilon=-1`` removes the first term).
        reduction: ``mean`` | ``sum`` | ``none``.

    Shape:
        logits ``[N, C]``, target ``[N]`` int64 in ``[0, C)``.

    Reference:
        Leng et al. PolyLoss: A Polynomial Expansion Perspective of Classification
        Loss Functions. ICLR 2022, Eq. 3.
    """

    tasks = ("multiclass",)

    def __init__(self, *, epsilon: float = 1.0, reduction: str = "mean"):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction '{reduction}' is not one of mean, sum, none")
        self.epsilon = float(epsilon)
        self.reduction = reduction

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return poly1_loss(logits, target, epsilon=self.epsilon, reduction=self.reduction)
