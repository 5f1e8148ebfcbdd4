"""Logit-adjusted loss (Menon et al. 2021) and balanced softmax (Ren et al. 2020)."""

from __future__ import annotations

import math
from typing import Sequence

import torch.nn.functional as F
from torch import Tensor

from imbal.errors import ImbalError
from imbal.kinds import MULTICLASS
from imbal.losses.base import ImbalanceLoss, check_reduction, counts_tensor, fp32, log_prior, no_autocast


def logit_adjusted_loss(
    logits: Tensor, target: Tensor, log_prior_: Tensor, *, tau: float = 1.0, reduction: str = "mean"
) -> Tensor:
    """``CE(logits + tau * log pi, y)`` with pi the training class prior."""
    x = fp32(logits)
    return F.cross_entropy(x + tau * log_prior_.to(device=x.device, dtype=x.dtype), target, reduction=reduction)


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

    tasks = (MULTICLASS,)

    def __init__(self, *, tau: float = 1.0, reduction: str = "mean", class_counts: Sequence[int]):
        super().__init__()
        if not math.isfinite(float(tau)):
            raise ImbalError(f"loss 'logit_adjusted': tau must be a finite number, got {tau!r}")
        self.tau = float(tau)
        self.reduction = check_reduction(reduction)
        self.register_buffer("log_prior", log_prior(class_counts, loss="logit_adjusted"))

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        with no_autocast(logits.device.type):
            return logit_adjusted_loss(logits, target, self.log_prior, tau=self.tau, reduction=self.reduction)


def balanced_softmax_loss(logits: Tensor, target: Tensor, log_counts: Tensor, *, reduction: str = "mean") -> Tensor:
    """``CE(logits + log n_c, y)``: the softmax of ``n_c exp(z_c)``."""
    x = fp32(logits)
    return F.cross_entropy(x + log_counts.to(device=x.device, dtype=x.dtype), target, reduction=reduction)


class BalancedSoftmaxLoss(ImbalanceLoss):
    """Balanced softmax: cross-entropy of ``logits + log n_c``.

    Identical in value and gradient to ``logit_adjusted`` with ``tau=1``: the two
    shifts ``log n_c`` and ``log(n_c / n)`` differ by the constant ``log n``, which
    the softmax ignores.  Kept as its own name because the paper derives it
    differently (a Bayesian correction of the softmax for the label shift).

    Args:
        reduction: ``mean`` | ``sum`` | ``none``.

    Shape:
        logits ``[N, C]``, target ``[N]`` int64.

    Reference:
        Ren, Yu, Ma, Zhao, Yi, Li. Balanced Meta-Softmax for Long-Tailed Visual
        Recognition. NeurIPS 2020, Eq. 4.
    """

    tasks = (MULTICLASS,)

    def __init__(self, *, reduction: str = "mean", class_counts: Sequence[int]):
        super().__init__()
        self.reduction = check_reduction(reduction)
        counts = counts_tensor(class_counts, loss="balanced_softmax", positive=True)
        self.register_buffer("log_counts", counts.log().float())

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        with no_autocast(logits.device.type):
            return balanced_softmax_loss(logits, target, self.log_counts, reduction=self.reduction)
