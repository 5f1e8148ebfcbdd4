"""MaxNorm weight balancing (Alshammari et al. 2022, "Long-tailed recognition via weight balancing").

After every optimiser step each class's row of the classifier weight (the task's ``head``) is projected
onto the L2 ball of radius ``thresh`` (projected gradient descent): ``w_c <- w_c * min(1, thresh / ||w_c||)``.
The bias is left as it is (the authors' PGD gives it an infinite threshold).  ``thresh`` is absolute here;
the authors' ``MaxNorm_via_PGD`` reads its ``thresh`` as a fraction between the smallest and the largest
class norm at the first projection.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from imbal.errors import ImbalError


def project_rows(weight: torch.Tensor, thresh: float) -> None:
    """In place: every row of ``weight`` to L2 norm ``<= thresh``."""
    with torch.no_grad():
        norms = weight.detach().flatten(1).norm(p=2, dim=1)
        scale = torch.clamp(thresh / norms.clamp_min(1e-12), max=1.0)
        weight.mul_(scale.view(-1, *([1] * (weight.ndim - 1))).to(weight.dtype))


def classifier_weight(pl_module: Any) -> torch.Tensor:
    """The weight ``[C, D]`` of the task's classifier head (one row per class)."""
    head = getattr(pl_module, "head", None)
    weight = getattr(head, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.ndim < 2:
        kind = type(head).__name__ if head is not None else "none"
        raise ImbalError(f"regularizer=maxnorm: the model's classifier head ({kind}) has no per-class weight "
                         "to project (a backbone that outputs its logits itself has no head); use regularizer=none")
    return weight


class MaxNorm(L.Callback):
    """Project the classifier's per-class weight norms to ``<= thresh`` after each optimiser step."""

    def __init__(self, thresh: float = 0.1):
        if isinstance(thresh, bool) or not isinstance(thresh, (int, float)) or not thresh > 0:
            raise ImbalError(f"regularizer.thresh={thresh}: expected a number > 0 (the largest class weight norm)")
        self.thresh = float(thresh)
        self._steps = -1

    def setup(self, trainer, pl_module, stage: str) -> None:
        classifier_weight(pl_module)  # refused before training when there is nothing to project

    def on_fit_start(self, trainer, pl_module) -> None:
        self._steps = trainer.global_step
        project_rows(classifier_weight(pl_module), self.thresh)  # the constraint holds from the first step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step != self._steps:  # a step was taken (not an accumulating or a skipped batch)
            self._steps = trainer.global_step
            project_rows(classifier_weight(pl_module), self.thresh)
