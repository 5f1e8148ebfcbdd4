"""ImbSAM (Zhou et al. 2023): SAM's sharpness step on the tail classes' loss only.

The batch loss splits by class into the head classes' part ``L_h`` and the tail classes' part ``L_t``
(tail: fewer than ``tail_max_count`` training samples; each part is the loss of its samples times their
share of the batch, so ``L_h + L_t`` is the batch mean for a mean-reduced loss, as the authors' code).
One step calls the closure three times:

1. ``g_h = grad L_h(w)``, kept;
2. ``g_t = grad L_t(w)``; ``e_w`` from ``g_t`` as SAM's (``rho``, ``adaptive``), ``w <- w + e_w``;
3. ``g_t' = grad L_t(w + e_w)``; ``w`` restored;

and the base optimizer steps with ``g_h + g_t'``.  A batch without tail samples has ``g_t = 0``, so
``e_w = 0`` and the step uses ``g_h``; every rank makes the same three calls (DDP all-reduces each).
With no tail class at all the step is the base optimizer's (one closure call).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from imbal.errors import ImbalError
from imbal.optim.sam import SAM


class ImbSAM(SAM):
    """SAM's arguments plus ``tail_max_count`` (the authors' ``eta``: 20) and the injected ``class_counts``."""

    def __init__(self, params, *, class_counts: list[int] | None = None, tail_max_count: int = 20, **kwargs: Any):
        if class_counts is None:
            raise ImbalError("optimizer=imbsam needs the training split's class counts (a multiclass task)")
        super().__init__(params, **kwargs)
        self.tail_max_count = int(tail_max_count)
        self.tail_classes = [i for i, c in enumerate(class_counts) if c < self.tail_max_count]
        self._tail = torch.tensor(self.tail_classes, dtype=torch.long)

    @staticmethod
    def check_stats(stats) -> None:
        """Before training: ImbSAM splits a batch by its single class per sample."""
        from imbal.kinds import MULTICLASS

        if stats.task != MULTICLASS or stats.class_counts is None:
            raise ImbalError(f"optimizer=imbsam: expected a multiclass task (one class per sample to split the "
                             f"batch into head and tail classes), got a {stats.task} task")

    def closure_loss(self, loss_fn, logits, y, loss):
        """Call 0: the head classes' part (the full loss recorded); calls 1 and 2: the tail classes' part."""
        if not self.tail_classes:
            return loss, True
        tail = torch.isin(y, self._tail.to(y.device))
        mask = ~tail if self._pass == 0 else tail
        k = int(mask.sum())
        part = logits.sum() * 0.0 if k == 0 else loss_fn(logits[mask], y[mask]) * (k / y.shape[0])
        return part, self._pass == 0

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None):
        if closure is None:
            return super().step(closure)  # its one line on the missing closure
        if not self.tail_classes:  # the base optimizer's step, as it would run alone
            loss = self._call(closure, 0)
            if loss is not None:
                self.base_optimizer.step()
            return loss
        loss = self._call(closure, 0)
        if loss is None:
            return None
        head = {p: p.grad.clone() for group in self.param_groups for p in group["params"] if p.grad is not None}
        self.zero_grad(set_to_none=True)
        if self._call(closure, 1) is None:
            return loss
        self._perturb()
        self.zero_grad(set_to_none=True)
        second = self._call(closure, 2)
        self._restore()
        if second is None:
            return loss
        for p, g in head.items():
            if p.grad is None:
                p.grad = g
            else:
                p.grad.add_(g)
        self.base_optimizer.step()
        return loss
