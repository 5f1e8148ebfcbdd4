"""Label-aware smoothing (MiSLAS): label smoothing whose strength depends on the class's training count."""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from imbal.errors import ImbalError
from imbal.kinds import MULTICLASS
from imbal.losses.base import ImbalanceLoss, check_reduction, counts_tensor, fp32, no_autocast, reduce

SHAPES = ("concave", "linear", "convex", "exp")


def smoothing_factors(class_counts: Sequence[float], smooth_head: float, smooth_tail: float,
                      shape: str = "concave", power: float | None = None) -> Tensor:
    """Per-class smoothing ``eps_y`` (float64), from ``smooth_tail`` (fewest samples) to ``smooth_head`` (most).

    With ``r_y = (N_y - N_min) / (N_max - N_min)`` in [0, 1] (Zhong et al. 2021, Eq. 6):

    * ``concave``: ``eps_tail + (eps_head - eps_tail) * sin(pi / 2 * r_y)``
    * ``linear``:  ``eps_tail + (eps_head - eps_tail) * r_y``
    * ``convex``:  ``eps_head + (eps_head - eps_tail) * sin(3 pi / 2 + pi / 2 * r_y)``
    * ``exp``:     ``eps_tail + (eps_head - eps_tail) * r_y ** power``

    Every class has the same count (no head, no tail): ``r_y = 1`` (every class is a head class).
    A class with zero training samples is the tail (``r_y = 0``): no division by zero, no NaN.
    """
    counts = counts_tensor(class_counts, loss="label_aware_smoothing")
    lo, hi = counts.min(), counts.max()
    r = (counts - lo) / (hi - lo) if hi > lo else torch.ones_like(counts)
    head, tail = float(smooth_head), float(smooth_tail)
    if shape == "concave":
        return tail + (head - tail) * torch.sin(r * math.pi / 2)
    if shape == "linear":
        return tail + (head - tail) * r
    if shape == "convex":
        return head + (head - tail) * torch.sin(1.5 * math.pi + r * math.pi / 2)
    return tail + (head - tail) * r.pow(float(power))


class LabelAwareSmoothing(ImbalanceLoss):
    """Cross-entropy against a label-smoothed target whose epsilon depends on the true class's count.

    ``loss = (1 - eps_y) * (-log p_y) + eps_y * mean_c(-log p_c)``: the target puts ``1 - eps_y``
    on the true class plus ``eps_y / C`` on every class, with ``eps_y`` from
    :func:`smoothing_factors` (more smoothing for the head classes, whose predictions are
    over-confident; less for the tail).

    Args:
        smooth_head: epsilon of the class with the most training samples (authors' default 0.3).
        smooth_tail: epsilon of the class with the fewest (authors' default 0.0).
        shape: ``concave`` (default, as the authors' code) | ``linear`` | ``convex`` | ``exp``.
        power: the exponent of ``shape=exp`` (needed there, unused otherwise).
        reduction: ``mean`` | ``sum`` | ``none``.

    Shape:
        logits ``[N, C]``, target ``[N]`` int64 in ``[0, C)``.

    Reference:
        Zhong, Cui, Liu, Jia. Improving Calibration for Long-Tailed Recognition. CVPR 2021;
        defaults from github.com/dvlab-research/MiSLAS (``LabelAwareSmoothing``, shape
        ``concave``; config/cifar10/cifar10_imb001_stage2_mislas.yaml: smooth_head 0.3,
        smooth_tail 0.0 for CIFAR-10-LT at imbalance ratio 100).
    """

    tasks = (MULTICLASS,)

    def __init__(
        self,
        *,
        smooth_head: float = 0.3,
        smooth_tail: float = 0.0,
        shape: str = "concave",
        power: float | None = None,
        reduction: str = "mean",
        class_counts: Sequence[int] | None = None,
        num_classes: int | None = None,
    ):
        super().__init__()
        name = "loss 'label_aware_smoothing'"
        for key, value in (("smooth_head", smooth_head), ("smooth_tail", smooth_tail)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ImbalError(f"{name}: {key}={value!r}: expected a number in [0, 1)")
        if shape not in SHAPES:
            raise ImbalError(f"{name}: shape={shape!r}: expected one of {', '.join(SHAPES)}")
        if shape == "exp" and (isinstance(power, bool) or not isinstance(power, (int, float))
                               or not 0 < power < float("inf")):
            raise ImbalError(f"{name}: shape='exp' needs power=<a finite number > 0>, got power={power!r}")
        if class_counts is None:
            raise ImbalError(f"{name} needs class_counts from the data (the smoothing of a class depends on its count)")
        counts = counts_tensor(class_counts, loss="label_aware_smoothing", num_classes=num_classes)
        self.smooth_head, self.smooth_tail, self.shape, self.power = float(smooth_head), float(smooth_tail), shape, power
        self.reduction = check_reduction(reduction)
        eps = smoothing_factors(counts.tolist(), smooth_head, smooth_tail, shape, power)
        self.register_buffer("smoothing", eps.float())

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        with no_autocast(logits.device.type):
            logp = F.log_softmax(fp32(logits), dim=-1)
            eps = self.smoothing.to(logp.device)[target]
            nll = -logp.gather(1, target.unsqueeze(1)).squeeze(1)
            uniform = -logp.mean(dim=-1)
            return reduce((1.0 - eps) * nll + eps * uniform, self.reduction)
