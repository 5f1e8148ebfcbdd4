"""Learning-rate schedules of the long-tail papers, as torch ``LambdaLR`` factors (stepped per epoch).

``warmup_step_lr``: linear warm-up over ``warmup_epochs`` epochs, then the
rate is multiplied by ``gamma`` at every milestone reached.  With the defaults
(5, [160, 180], 0.01) it is the LDAM / CB / LA CIFAR schedule: epoch ``e``
(0-based) trains at ``lr * (e + 1) / 5`` for ``e < 5``, ``lr`` until 159,
``lr * 0.01`` from 160 and ``lr * 1e-4`` from 180 (``adjust_learning_rate`` of
the LDAM reference code).  A callable class, not a lambda, so it pickles
(``ddp_spawn``) and its state is saved in checkpoints.
"""

from __future__ import annotations

from typing import Sequence

import torch

from imbal.errors import ImbalError


class WarmupStep:
    """LR factor of epoch ``e``: ``(e + 1) / warmup`` during warm-up, else ``gamma ** #{m <= e}``."""

    def __init__(self, warmup_epochs: int = 5, milestones: Sequence[int] = (160, 180), gamma: float = 0.01):
        if int(warmup_epochs) < 0:
            raise ImbalError(f"optimizer.scheduler.warmup_epochs must be >= 0, got {warmup_epochs}")
        ms = [int(m) for m in milestones]
        if ms != sorted(ms):
            raise ImbalError(f"optimizer.scheduler.milestones must be increasing, got {list(milestones)}")
        if not 0 < float(gamma):
            raise ImbalError(f"optimizer.scheduler.gamma must be > 0, got {gamma}")
        self.warmup_epochs, self.milestones, self.gamma = int(warmup_epochs), ms, float(gamma)

    def __call__(self, epoch: int) -> float:
        if epoch < self.warmup_epochs:
            return (epoch + 1) / self.warmup_epochs
        return self.gamma ** sum(epoch >= m for m in self.milestones)


def warmup_step_lr(
    optimizer: torch.optim.Optimizer, *, warmup_epochs: int = 5, milestones: Sequence[int] = (160, 180), gamma: float = 0.01
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then step decay (see the module docstring)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupStep(warmup_epochs, milestones, gamma))
