"""Logit-adjusted loss (Menon et al. 2021)."""

from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor

from imbal.losses.base import ImbalanceLoss, check_reduction, log_prior


def logit_adjusted_loss(
    logits: Tensor, target: Tensor, log_prior_: Tensor, *, tau: float = 1.0, reduction: str = "mean"
) -> Tensor:
    """``CE(logits + tau * log pi, y)`` with pi the training class prior."""
    return F.cross_entropy(logits.float() + tau * log_prior_.to(logits.device), target, reduction=reduction)


class LogitAdjustedLoss(ImbalanceLoss):
    """Logit-adjusted softmax cross-entropy: ``CE(logits + tau * log pi_y)``.

    Training with the prior added to the logits makes the plain ``argmax`` of
    the raw logits at test time approximate the balanced-error Bayes classifier.

    Args:
        tau: scaling of the log prior (paper: 1).
        reduction: ``mean`` | ``sum`` | ``none``.

    Shape:
        logits ``[N, C]``, target ``[N]`` int64.

    Reference:
        Menon, Jayasumana, Rawat, Jain, Veit, Kumar. Long-tail learning via logit
        adjustment. ICLR 2021, Eq. 10.
    """

    tasks = ("multiclass",)

    def __init__(self, *, tau: float = 1.0, reduction: str = "mean", class_counts: Sequence[int]):
        super().__init__()
        self.tau = float(tau)
        self.reduction = check_reduction(reduction)
        self.register_buffer("log_prior", log_prior(class_counts, loss="logit_adjusted"))

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return logit_adjusted_loss(logits, target, self.log_prior, tau=self.tau, reduction=self.reduction)
