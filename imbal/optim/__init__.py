"""Optimizers that take more than one gradient per step: SAM and ImbSAM (imbal/optim/sam.py, imbsam.py).

Both run inside Lightning's automatic optimisation: Lightning hands ``optimizer.step`` a closure that
runs ``training_step`` and ``backward``, and the optimizer calls it once per gradient it needs.  The task
asks :func:`pass_loss` which loss a closure call back-propagates (ImbSAM: the head or the tail classes'
part) and whether it is the step's loss to record (the first call, at the unperturbed weights).
"""

from __future__ import annotations

import inspect
from typing import Any

#: the optimizer nodes' ``_target_`` of optimizer=sam and optimizer=imbsam
SAM_TARGETS = {"imbal.optim.sam.SAM": "sam", "imbal.optim.imbsam.ImbSAM": "imbsam"}


def pass_loss(task, logits, y, loss) -> tuple[Any, bool]:
    """(the loss this closure call back-propagates, whether it is the step's loss to record)."""
    trainer = task._trainer
    optimizers = trainer.optimizers if trainer is not None else []
    hook = getattr(optimizers[0], "closure_loss", None) if optimizers else None
    return (loss, True) if hook is None else hook(task.loss_fn, logits, y, loss)


def bind_stats(factory, stats):
    """The optimizer partial with the training split's ``class_counts`` bound when its class names them
    (ImbSAM's tail classes), checked now, before training."""
    import functools

    func = getattr(factory, "func", factory)
    try:
        names = inspect.signature(func).parameters
    except (TypeError, ValueError):  # a callable without a signature names nothing
        return factory
    if "class_counts" not in names or "class_counts" in getattr(factory, "keywords", {}):
        return factory
    check = getattr(func, "check_stats", None)
    if callable(check):
        check(stats)
    counts = None if stats.class_counts is None else [int(c) for c in stats.class_counts]
    return functools.partial(factory, class_counts=counts)
