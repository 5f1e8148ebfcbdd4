"""Region (overlap) losses for binary segmentation: Dice, Jaccard (soft IoU), Tversky, focal Tversky.

All four are the soft Tversky index of sigmoid probabilities ``p`` against the
0/1 target ``g``, summed over the pixels of the whole batch (default, as
segmentation-models-pytorch) or of each image (``per_image=True``)::

    TP = sum p g      FP = sum p (1 - g)      FN = sum (1 - p) g
    TI = (TP + s) / (TP + alpha FP + beta FN + s)

``alpha`` weights false positives and ``beta`` false negatives (Salehi et al.
2017; smp uses the same roles).  Dice is ``alpha = beta = 1/2`` (then TI =
(2TP + 2s) / (2TP + FP + FN + 2s)), Jaccard ``alpha = beta = 1``.  The loss is
``1 - TI``, computed as ``(alpha FP + beta FN + 0) / (TP + alpha FP + beta FN + s)``
so that a near-perfect prediction does not lose its value to the cancellation
in ``1 - TI`` (FP and FN themselves come from ``sum p - TP`` and ``sum g - TP``:
see :func:`tversky_terms` for their accuracy).

**Empty masks** (an all-background image with ``per_image=True``, or a batch
without foreground): ``TP = FN = 0`` and the loss is ``alpha FP / (alpha FP + s)``:
0 when nothing is predicted, growing to 1 as the predicted area exceeds the
smoothing ``s``; its gradient pulls every pixel's probability down.  This is
why ``smooth`` defaults to 1: with ``s = 0`` the loss is the constant 1 on an
empty mask with any prediction, and has no gradient.
**Deliberate difference from smp**: smp sets the loss of a class absent from
the target to 0 (no gradient at all from empty images); with ``smooth`` and a
non-empty target the values are the same (tested).
"""

from __future__ import annotations

import torch
from torch import Tensor

from imbal.errors import ImbalError
from imbal.kinds import BINARY, SEGMENTATION
from imbal.losses.base import ImbalanceLoss, as_elementwise, check_reduction, no_autocast, reduce

#: Floor of the denominators, and of ``1 - TI`` before a fractional power.
EPS = 1e-7
#: Floor of ``1 - TI`` before the fractional power of focal Tversky (loss floor POW_FLOOR^(1/gamma)).
POW_FLOOR = 1e-12


def tversky_terms(logits: Tensor, target: Tensor, *, per_image: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Soft ``(TP, FP, FN)`` of sigmoid probabilities: shape ``[N]`` per image, or ``[1]`` for the batch.

    ``FP = sum p - TP`` and ``FN = sum g - TP``: one ``[N, H*W]`` product instead of five
    temporaries (2.5x faster forward + backward on ``[16, 1, 768, 768]``), with the same
    gradient.  The sums are float32 cascade sums (accurate to a few ulps of ``sum p``):
    only when FP or FN is below ~1e-6 of TP (a loss value below ~1e-6) is their
    relative error larger than that of the three separate sums.
    """
    x, t = as_elementwise(logits, target)
    p = torch.sigmoid(x)
    if per_image and x.ndim >= 2:
        p, t = p.reshape(p.shape[0], -1), t.reshape(t.shape[0], -1)
    else:
        p, t = p.reshape(1, -1), t.reshape(1, -1)
    tp = (p * t).sum(1)
    fp = p.sum(1) - tp
    fn = t.sum(1) - tp
    return tp, fp, fn


def tversky_loss(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float,
    beta: float,
    smooth: float = 1.0,
    gamma: float = 1.0,
    per_image: bool = False,
    log_loss: bool = False,
    reduction: str = "mean",
) -> Tensor:
    """``(1 - TI)^(1/gamma)`` (or ``-log TI`` with ``log_loss``) per image or for the batch.

    Args:
        alpha: weight of false positives; beta: weight of false negatives.
        smooth: additive smoothing ``s`` of numerator and denominator.
        gamma: focal Tversky parameter; the loss is raised to ``1/gamma``.
        per_image: one index per image, then ``reduction`` over images; else one for the batch.
    """
    tp, fp, fn = tversky_terms(logits, target, per_image=per_image)
    wrong = alpha * fp + beta * fn
    denom = (tp + wrong + smooth).clamp_min(EPS)
    if log_loss:
        loss = -torch.log(((tp + smooth) / denom).clamp_min(EPS))
    else:
        loss = wrong / denom
        if gamma != 1.0:
            # d/dx x^(1/gamma) is unbounded at 0 for gamma > 1: floor x first (no NaN when x underflows to 0)
            loss = loss.clamp_min(POW_FLOOR).pow(1.0 / gamma)
    if per_image:
        return reduce(loss, reduction)
    return loss if reduction == "none" else loss.squeeze(0)  # one value for the batch


class _RegionLoss(ImbalanceLoss):
    tasks = (SEGMENTATION, BINARY)
    _name = "region"

    def _check(self, *, smooth: float, reduction: str) -> None:
        if smooth < 0:
            raise ImbalError(f"loss '{self._name}': smooth must be >= 0, got {smooth}")
        self.reduction = check_reduction(reduction)

    def _forward(self, logits: Tensor, target: Tensor, **kw) -> Tensor:
        if logits.ndim == 4 and logits.shape[1] != 1:
            raise ImbalError(
                f"loss '{self._name}' is binary: expected logits [N, 1, H, W], got {tuple(logits.shape)}"
            )
        with no_autocast(logits.device.type):  # float32 sums whatever the autocast dtype
            return tversky_loss(
                logits, target, smooth=self.smooth, per_image=self.per_image, reduction=self.reduction, **kw
            )


class DiceLoss(_RegionLoss):
    """Soft Dice loss: ``1 - (TP + s) / (TP + (FP + FN)/2 + s)`` of sigmoid probabilities.

    Args:
        smooth: additive smoothing (default 1; see the empty-mask rule in the module docstring).
        per_image: Dice per image, averaged (else one Dice over the batch's pixels, smp's default).
        log_loss: ``-log(Dice)`` instead of ``1 - Dice`` (for recipes such as ``10 focal - log dice``).
        reduction: over images when ``per_image``: ``mean`` | ``sum`` | ``none``.

    Shape:
        logits ``[N, 1, H, W]`` (or ``[N]`` for binary), target ``[N, H, W]`` 0/1.

    Reference:
        Milletari, Navab, Ahmadi. V-Net. 3DV 2016 (with the linear denominator of
        Sudre et al., Generalised Dice overlap, DLMIA 2017).
    """

    _name = "dice"

    def __init__(self, *, smooth: float = 1.0, per_image: bool = False, log_loss: bool = False, reduction: str = "mean"):
        super().__init__()
        self._check(smooth=smooth, reduction=reduction)
        self.smooth, self.per_image, self.log_loss = float(smooth), bool(per_image), bool(log_loss)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return self._forward(logits, target, alpha=0.5, beta=0.5, log_loss=self.log_loss)


class JaccardLoss(_RegionLoss):
    """Soft Jaccard (IoU) loss: ``1 - (TP + s) / (TP + FP + FN + s)`` of sigmoid probabilities.

    Args, Shape: as :class:`DiceLoss`.

    Reference:
        Rahman, Wang. Optimizing Intersection-Over-Union in Deep Neural Networks
        for Image Segmentation. ISVC 2016.
    """

    _name = "jaccard"

    def __init__(self, *, smooth: float = 1.0, per_image: bool = False, log_loss: bool = False, reduction: str = "mean"):
        super().__init__()
        self._check(smooth=smooth, reduction=reduction)
        self.smooth, self.per_image, self.log_loss = float(smooth), bool(per_image), bool(log_loss)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return self._forward(logits, target, alpha=1.0, beta=1.0, log_loss=self.log_loss)


class TverskyLoss(_RegionLoss):
    """Tversky loss: ``1 - (TP + s) / (TP + alpha FP + beta FN + s)``.

    Args:
        alpha: weight of **false positives** (paper's best: 0.3).
        beta: weight of **false negatives** (paper's best: 0.7); beta > alpha
            favours recall, the remedy for small foreground.
        smooth, per_image, log_loss, reduction: as :class:`DiceLoss`.

    Shape: as :class:`DiceLoss`.

    Reference:
        Salehi, Erdogmus, Gholipour. Tversky loss function for image
        segmentation using 3D fully convolutional deep networks. MLMI 2017.
    """

    _name = "tversky"

    def __init__(
        self,
        *,
        alpha: float = 0.3,
        beta: float = 0.7,
        smooth: float = 1.0,
        per_image: bool = False,
        log_loss: bool = False,
        reduction: str = "mean",
    ):
        super().__init__()
        self._check(smooth=smooth, reduction=reduction)
        if alpha < 0 or beta < 0 or alpha + beta == 0:
            raise ImbalError(f"loss '{self._name}': alpha and beta must be >= 0, not both 0; got {alpha}, {beta}")
        self.alpha, self.beta = float(alpha), float(beta)
        self.smooth, self.per_image, self.log_loss = float(smooth), bool(per_image), bool(log_loss)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return self._forward(logits, target, alpha=self.alpha, beta=self.beta, log_loss=self.log_loss)


class FocalTverskyLoss(_RegionLoss):
    """Focal Tversky loss: ``(1 - TI)^(1/gamma)``, TI the Tversky index.

    Args:
        alpha: weight of false positives (0.3).  The paper writes
            ``TI = TP / (TP + a FN + b FP)`` with a = 0.7: its FN weight is our ``beta``.
        beta: weight of false negatives (0.7).
        gamma: focal parameter (paper: 4/3, so the exponent is 3/4); gamma = 1 is Tversky.
        smooth, per_image, reduction: as :class:`DiceLoss`.

    Shape: as :class:`DiceLoss`.

    Reference:
        Abraham, Khan. A Novel Focal Tversky loss function with improved
        Attention U-Net for lesion segmentation. ISBI 2019.
    """

    _name = "focal_tversky"

    def __init__(
        self,
        *,
        alpha: float = 0.3,
        beta: float = 0.7,
        gamma: float = 4.0 / 3.0,
        smooth: float = 1.0,
        per_image: bool = False,
        reduction: str = "mean",
    ):
        super().__init__()
        self._check(smooth=smooth, reduction=reduction)
        if alpha < 0 or beta < 0 or alpha + beta == 0:
            raise ImbalError(f"loss '{self._name}': alpha and beta must be >= 0, not both 0; got {alpha}, {beta}")
        if gamma <= 0:
            raise ImbalError(f"loss '{self._name}': gamma must be > 0, got {gamma}")
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)
        self.smooth, self.per_image = float(smooth), bool(per_image)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return self._forward(logits, target, alpha=self.alpha, beta=self.beta, gamma=self.gamma)
