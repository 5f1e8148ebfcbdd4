"""Distribution-balanced loss (Wu et al. 2020) for long-tailed multi-label classification."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from imbal.errors import ImbalError
from imbal.kinds import MULTILABEL
from imbal.losses.base import ImbalanceLoss, check_gamma, check_reduction, counts_tensor, elementwise, no_autocast, reduce


def _number(value, *, name: str, lo: float | None = None, positive: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ImbalError(f"loss 'distribution_balanced': {name} must be a number, got {value!r}") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise ImbalError(f"loss 'distribution_balanced': {name} must be finite, got {value!r}")
    if positive and not v > 0:
        raise ImbalError(f"loss 'distribution_balanced': {name} must be > 0, got {value!r}")
    if lo is not None and v < lo:
        raise ImbalError(f"loss 'distribution_balanced': {name} must be >= {lo}, got {value!r}")
    return v


class DistributionBalancedLoss(ImbalanceLoss):
    """Distribution-balanced loss: re-balanced weights for label co-occurrence, negative-tolerant logits.

    Follows the authors' ``ResampleLoss`` (github.com/wutong16/DistributionBalancedLoss,
    ``mllt/models/losses/resample_loss.py``) with ``reweight_func='rebalance'``, ``focal=True``,
    ``logit_reg=dict(neg_scale, init_bias)`` and the map parameters of ``configs/coco/LT_resnet50_pfc_DB.py``
    lines 22-28 (the defaults below).  With ``n_i`` the training positives of class i, ``N`` the training
    images, ``y`` the ``[B, C]`` targets and ``z`` the logits:

    1. Re-balanced weighting (``rebalance_weight``, lines 163-168): ``r_ki = (1/n_i) / sum_j y_kj / n_j``
       (Wu et al.'s ``P^C_i / P^I(x^k)``; the same ``r`` weighs positives and negatives of row k), smoothed
       ``r^_ki = alpha + sigmoid(beta (r_ki - mu))``.  A row with no positive has ``sum = 0``, ``r = inf``
       and ``r^ = alpha + 1`` (the limit the authors' ``1/0`` reaches).
    2. Negative-tolerant regularisation (``__init__`` lines 84-91, ``logit_reg_functions`` lines 153-161):
       ``z' = z + init_bias * b^_i / neg_scale`` with ``b^_i = -log(N / n_i - 1)`` (``= -log(1/p_i - 1)``,
       ``p_i = n_i / N``: the logit of the class prior); then ``s = z'`` on positives and
       ``s = neg_scale * z'`` on negatives, and the weight ``w = r^`` on positives, ``r^ / neg_scale`` on
       negatives, so a negative's term is ``(r^ / lambda) log(1 + exp(lambda z'))`` (lambda = neg_scale).
       Note the code's shift is ``+ (kappa / lambda) b^``, not the paper's printed ``- kappa b^``; this is the code's.
    3. Focal term (``forward`` lines 115-124): ``loss = balance_param * (1 - p_t)^gamma * w * BCE(s, y)``
       with ``p_t = exp(-BCE(s, y))`` (gradient through ``p_t`` too, as the authors), times ``loss_weight``
       (line 129); ``focal=False`` drops ``balance_param * (1 - p_t)^gamma``.
    4. ``reduction="mean"`` averages over all ``B * C`` elements (the authors' focal path returns the
       element losses and mmcv's ``parse_losses`` takes ``.mean()``, ``mllt/apis/train.py`` line 28).

    Computed in float32 (float64 stays float64), autocast off.  Soft targets (mixup) are used as the
    authors' code uses them: ``y`` and ``1 - y`` interpolate the two branches.

    Zero counts: a class with no training positive would make ``1/n_i`` and ``b^_i`` infinite; its count
    is taken as 1 in ``1/n_i`` and ``p_i = clamp(n_i, 1, N - 1) / N`` (also for a class present in every
    image, ``p_i = 1``), so the loss stays finite.  ``imbal``'s multilabel image data refuses such a class
    before training anyway.

    Args:
        alpha, beta, mu: the smoothing ``alpha + sigmoid(beta (r - mu))`` (``map_param`` alpha, beta,
            gamma; COCO-MLT 0.1, 10, 0.2; VOC-MLT uses mu=0.3).
        neg_scale: lambda of the negative-tolerant regularisation (COCO-MLT 2.0; VOC-MLT 5.0).
        init_bias: kappa, the scale of the class-prior shift (both configs 0.05).
        focal: multiply by ``balance_param * (1 - p_t)^gamma`` (both configs: True).
        gamma, balance_param: the focal exponent (2) and factor (2.0).
        loss_weight: the overall factor (1.0).
        reduction: ``mean`` (over all elements) | ``sum`` | ``none``.

    Injected: ``class_counts`` (positives per class in the training split) and ``num_train`` (training
    images, ``DataStats.num_train``; the authors' ``class_freq[0] + neg_class_freq[0]``).

    Shape:
        logits and float targets ``[B, C]``.

    Reference:
        Wu, Huang, Liu, Wang, Lin. Distribution-Balanced Loss for Multi-Label Classification in
        Long-Tailed Datasets. ECCV 2020.
    """

    tasks = (MULTILABEL,)

    def __init__(
        self,
        *,
        alpha: float = 0.1,
        beta: float = 10.0,
        mu: float = 0.2,
        neg_scale: float = 2.0,
        init_bias: float = 0.05,
        focal: bool = True,
        gamma: float = 2.0,
        balance_param: float = 2.0,
        loss_weight: float = 1.0,
        reduction: str = "mean",
        class_counts: Sequence[int],
        num_train: int,
    ):
        super().__init__()
        self.alpha = _number(alpha, name="alpha")
        self.beta = _number(beta, name="beta")
        self.mu = _number(mu, name="mu")
        self.neg_scale = _number(neg_scale, name="neg_scale", positive=True)
        self.init_bias = _number(init_bias, name="init_bias")
        self.focal = bool(focal)
        self.gamma = check_gamma(gamma, loss="distribution_balanced")
        self.balance_param = _number(balance_param, name="balance_param")
        self.loss_weight = _number(loss_weight, name="loss_weight")
        self.reduction = check_reduction(reduction)
        counts = counts_tensor(class_counts, loss="distribution_balanced")
        if isinstance(num_train, bool) or not isinstance(num_train, int) or num_train < 2:
            raise ImbalError(f"loss 'distribution_balanced': num_train (training images) must be an integer >= 2, "
                             f"got {num_train!r}")
        if float(counts.max()) > num_train:
            raise ImbalError(f"loss 'distribution_balanced': a class has {int(counts.max())} training positives, "
                             f"more than num_train={num_train} training images")
        self.num_train = int(num_train)
        n = float(num_train)
        p = counts.clamp(1.0, n - 1.0) / n
        # 1/n_i of the re-balanced weights, and the class-prior shift init_bias * b^_i / neg_scale
        self.register_buffer("freq_inv", (1.0 / counts.clamp_min(1.0)).float())
        self.register_buffer("logit_shift", (-torch.log(1.0 / p - 1.0) * self.init_bias / self.neg_scale).float())

    def rebalance_weight(self, target: Tensor) -> Tensor:
        """``alpha + sigmoid(beta (r - mu))``, ``r_ki = (1/n_i) / sum_j y_kj / n_j``; ``[B, C]``."""
        freq_inv = self.freq_inv.to(target.dtype)
        repeat_rate = (target * freq_inv).sum(-1, keepdim=True)
        r = torch.where(repeat_rate > 0, freq_inv / repeat_rate.clamp_min(torch.finfo(target.dtype).tiny),
                        torch.full_like(repeat_rate, float("inf")))
        return self.alpha + torch.sigmoid(self.beta * (r - self.mu))

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        with no_autocast(logits.device.type):
            x, t = elementwise(logits, target)
            if x.ndim != 2 or x.shape[-1] != self.freq_inv.numel():
                raise ImbalError(f"loss 'distribution_balanced': expected logits [B, {self.freq_inv.numel()}], "
                                 f"got {list(x.shape)}")
            with torch.no_grad():
                r_hat = self.rebalance_weight(t)
            lam = self.neg_scale
            z = x + self.logit_shift.to(x.dtype)
            s = torch.lerp(lam * z, z, t)  # z' (1 - y) lambda + z' y, exact at y = 0 and y = 1
            w = torch.lerp(r_hat / lam, r_hat, t)
            bce = F.binary_cross_entropy_with_logits(s, t, reduction="none")
            loss = w * bce
            if self.focal:
                one_minus_pt = -torch.expm1(-bce)  # 1 - exp(-bce) without cancellation
                if self.gamma < 1:  # d(x^g)/dx finite at x = 0
                    one_minus_pt = one_minus_pt.clamp_min(torch.finfo(x.dtype).tiny)
                loss = self.balance_param * one_minus_pt.pow(self.gamma) * loss
            return reduce(self.loss_weight * loss, self.reduction)
