"""Expected calibration error (ECE) and the reliability bins behind it: the one definition every layer uses.

Equal-width bins on [0, 1] (``[lo, hi)``, the last one closed); ECE is the
count-weighted mean of ``|accuracy - mean confidence|`` over the bins (Guo et
al. 2017, Eq. 3, l1 norm).  What is binned depends on the task kind:
multiclass: the top-label confidence and whether the top label is right;
binary and multilabel: each output's probability and its 0/1 truth.
:class:`CalibrationError` accumulates the bin sums as torchmetrics states (synced
across DDP ranks); :func:`expected_calibration_error` and :func:`reliability_bins`
compute the same sums at once, for figures.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from imbal.kinds import MULTICLASS

ECE_BINS = 15


def calibration_inputs(logits: Tensor, targets: Tensor, task: str) -> tuple[Tensor, Tensor]:
    """(confidence, correct) per binned item: top label for multiclass, every output for binary / multilabel."""
    logits = logits.detach().float()
    if task == MULTICLASS:
        confidence, pred = torch.softmax(logits, dim=-1).max(dim=-1)
        return confidence, (pred == targets.to(pred.device).long()).float()
    return torch.sigmoid(logits).reshape(-1), targets.detach().float().reshape(-1).to(logits.device)


def bin_sums(confidence: Tensor, correct: Tensor, n_bins: int = ECE_BINS) -> Tensor:
    """``[3, n_bins]``: items, summed confidence and summed correctness per equal-width bin."""
    confidence = confidence.float().reshape(-1)
    edges = torch.linspace(0, 1, n_bins + 1, device=confidence.device)
    idx = torch.clamp(torch.bucketize(confidence, edges, right=True) - 1, 0, n_bins - 1)
    sums = torch.zeros(3, n_bins, device=confidence.device)
    sums[0].scatter_add_(0, idx, torch.ones_like(confidence))
    sums[1].scatter_add_(0, idx, confidence)
    sums[2].scatter_add_(0, idx, correct.float().reshape(-1).to(confidence.device))
    return sums


def ece_from_sums(sums: Tensor) -> float:
    """ECE from :func:`bin_sums` (0 when nothing was binned)."""
    count, conf_sum, acc_sum = sums
    return float((acc_sum - conf_sum).abs().sum() / count.sum().clamp(min=1))


def reliability_bins(confidence: Tensor, correct: Tensor, n_bins: int = ECE_BINS):
    """Equal-width bins on [0, 1]: (bin centres, accuracy, mean confidence, count) per bin, and ECE."""
    sums = bin_sums(confidence, correct, n_bins).cpu()
    count = sums[0]
    safe = count.clamp(min=1)
    edges = torch.linspace(0, 1, n_bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    return centres.numpy(), (sums[2] / safe).numpy(), (sums[1] / safe).numpy(), count.numpy(), ece_from_sums(sums)


def expected_calibration_error(logits: Tensor, targets: Tensor, task: str, n_bins: int = ECE_BINS) -> float:
    """ECE of raw logits (see the module docstring for what is binned per task kind)."""
    return ece_from_sums(bin_sums(*calibration_inputs(logits, targets, task), n_bins))


class CalibrationError(Metric):
    """:func:`expected_calibration_error` accumulated over batches: ``update(logits, targets)``, ``compute()``."""

    full_state_update = False

    def __init__(self, task: str, n_bins: int = ECE_BINS):
        super().__init__()
        self.task, self.n_bins = task, int(n_bins)
        self.add_state("sums", default=torch.zeros(3, self.n_bins), dist_reduce_fx="sum")

    def update(self, logits: Tensor, targets: Tensor) -> None:
        self.sums += bin_sums(*calibration_inputs(logits, targets, self.task), self.n_bins).to(self.sums.device)

    def compute(self) -> Tensor:
        return torch.tensor(ece_from_sums(self.sums))
