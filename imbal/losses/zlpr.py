"""ZLPR: multilabel categorical cross-entropy (Su Jianlin; Su et al. 2022)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from imbal.errors import ImbalError
from imbal.kinds import MULTILABEL
from imbal.losses.base import ImbalanceLoss, check_reduction, fp32, no_autocast, reduce


def zlpr_loss(logits: Tensor, target: Tensor, *, reduction: str = "mean") -> Tensor:
    """``log(1 + sum_{j in neg} e^{s_j}) + log(1 + sum_{j in pos} e^{-s_j})`` per sample.

    ``x`` is ``[N, C]``.  Each sum runs over a subset of the labels, written as a
    logsumexp over all labels with the others masked by ``-inf`` (in float32 or float64, never bf16),
    plus a 0 logit for the "1 +": exact at any logit.  The authors' code masks with
    ``s - 1e12``, a finite stand-in that fails for logits of that order (and is inf in
    fp16); -inf is exact at every logit.
    """
    x = fp32(logits)
    pos = target.to(x.dtype) > 0.5
    zero = x.new_zeros(x.shape[:-1] + (1,))
    neg_logits = torch.cat([zero, x.masked_fill(pos, float("-inf"))], dim=-1)
    pos_logits = torch.cat([zero, (-x).masked_fill(~pos, float("-inf"))], dim=-1)
    # logsumexp([0, a]) = CE([0, a], class 0): F.cross_entropy's fused log-softmax is
    # 2x faster than torch.logsumexp on -inf-masked rows, and as exact.
    first = torch.zeros(x.shape[:-1], dtype=torch.long, device=x.device)
    loss = F.cross_entropy(neg_logits, first, reduction="none") + F.cross_entropy(pos_logits, first, reduction="none")
    return reduce(loss, reduction)


class ZLPRLoss(ImbalanceLoss):
    """ZLPR (zero-bounded log-sum-exp & pairwise rank-based) multilabel loss.

    Pushes every positive label's logit above 0 and every negative's below 0,
    jointly (a softmax-CE generalisation to several targets), so the decision
    threshold is 0 and no per-label balancing is needed.  Targets are read as
    ``target > 0.5``.

    Args:
        reduction: ``mean`` (over samples) | ``sum`` | ``none`` (``[N]``).

    Shape:
        logits ``[N, C]``, target ``[N, C]`` in {0, 1}.

    Reference:
        Su, Zhu, Wen, Zhang, Wang, Ye, Liu. ZLPR: A Novel Loss for Multi-label
        Classification. arXiv 2208.02955, Eq. 7; Su Jianlin's blog post 7359 (2020).
    """

    tasks = (MULTILABEL,)

    def __init__(self, *, reduction: str = "mean"):
        super().__init__()
        self.reduction = check_reduction(reduction)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if logits.shape != target.shape or logits.ndim != 2:
            raise ImbalError(
                f"loss 'zlpr': logits {tuple(logits.shape)} and target {tuple(target.shape)} must both be [N, C]"
            )
        with no_autocast(logits.device.type):
            return zlpr_loss(logits, target, reduction=self.reduction)
