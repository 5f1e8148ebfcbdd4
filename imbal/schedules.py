"""Learning-rate schedules as torch ``LambdaLR`` factors.

``warmup_step_lr``: linear warm-up over ``warmup_epochs`` epochs, then the
rate is multiplied by ``gamma`` at every milestone reached.  With the defaults
(5, [160, 180], 0.01) it is the LDAM / CB / LA CIFAR schedule: epoch ``e``
(0-based) trains at ``lr * (e + 1) / 5`` for ``e < 5``, ``lr`` until 159,
``lr * 0.01`` from 160 and ``lr * 1e-4`` from 180 (``adjust_learning_rate`` of
the LDAM reference code); stepped per epoch.

``warmup_cosine``: linear warm-up from 0 over ``warmup_steps`` steps, then a
half-cosine decay to 0 at ``total_steps`` (Hugging Face's
``get_cosine_schedule_with_warmup``); stepped per optimiser step
(``optimizer.scheduler_interval: step``), ``total_steps`` injected from
Lightning's ``trainer.estimated_stepping_batches``.

The factors are callable classes, not lambdas, so they pickle (``ddp_spawn``)
and their state is saved in checkpoints.
"""

from __future__ import annotations

import math
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


DECAYS = ("cosine", "linear")


class WarmupCosine:
    """LR factor of step ``s``: ``s / W`` for ``s < W``, then with ``p = (s - W) / (T - W)``:
    ``0.5 * (1 + cos(pi * p))`` (``decay="cosine"``) or ``1 - p`` (``decay="linear"``, Hugging Face's
    linear schedule); 0 after ``T``."""

    def __init__(self, total_steps: int, warmup_steps: int = 0, decay: str = "cosine"):
        self.total_steps, self.warmup_steps, self.decay = int(total_steps), int(warmup_steps), decay

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return step / max(1, self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        if self.decay == "linear":
            return max(0.0, 1.0 - progress)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int | float,
    warmup_steps: int | None = None,
    warmup_fraction: float | None = None,
    decay: str = "cosine",
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_steps`` (or ``warmup_fraction`` of ``total_steps``), then ``decay``
    (``cosine`` or ``linear``) to 0.

    ``total_steps`` is the run's number of optimiser steps (the task injects
    ``trainer.estimated_stepping_batches``).
    """
    if not math.isfinite(total_steps) or int(total_steps) < 1:
        raise ImbalError(
            f"optimizer.scheduler: warm-up cosine needs a finite number of steps, got {total_steps}; "
            f"set trainer.max_epochs or trainer.max_steps"
        )
    total = int(total_steps)
    if decay not in DECAYS:
        raise ImbalError(f"optimizer.scheduler.decay must be one of {', '.join(DECAYS)}, got {decay!r}")
    if warmup_steps is not None and warmup_fraction is not None:
        raise ImbalError("optimizer.scheduler: give warmup_steps or warmup_fraction, not both (set the other to null)")
    if warmup_fraction is not None:
        if not 0.0 <= float(warmup_fraction) < 1.0:
            raise ImbalError(f"optimizer.scheduler.warmup_fraction must be in [0, 1), got {warmup_fraction}")
        warmup = int(round(float(warmup_fraction) * total))
    else:
        warmup = int(warmup_steps or 0)
        if warmup < 0:
            raise ImbalError(f"optimizer.scheduler.warmup_steps must be >= 0, got {warmup_steps}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(total, warmup, decay))
