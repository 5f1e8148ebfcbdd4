"""Shared pieces of every built-in loss: the base class, reductions, count checks."""

from __future__ import annotations

from typing import ClassVar, Sequence

import torch
from torch import Tensor, nn

from imbal.errors import ImbalError

REDUCTIONS = ("mean", "sum", "none")


class ImbalanceLoss(nn.Module):
    """Base class of the built-in losses (a plugin need not use it).

    The contract (DESIGN.md): ``forward(logits, target) -> scalar`` with the
    task shapes of DESIGN.md, a class attribute ``tasks`` naming the task kinds
    the loss supports, keyword-only hyper-parameters with the authors'
    defaults, and data-dependent inputs (``class_counts``, ``num_classes``,
    ``task``, ``test_prior``) asked for by name in ``__init__``.

    ``head`` tells the task which classifier layer the loss expects:
    ``"linear"`` (default) or ``"cosine"`` (a normalised classifier, as LDAM and
    AM-softmax need).  ``set_epoch`` is called by the task at the start of each
    training epoch (deferred re-weighting uses it).
    """

    tasks: ClassVar[tuple[str, ...]] = ("multiclass",)
    head: ClassVar[str] = "linear"

    def set_epoch(self, epoch: int) -> None:  # noqa: D401 - hook
        """Called by the task at the start of every training epoch."""


def check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ImbalError(f"reduction '{reduction}' is not one of {', '.join(REDUCTIONS)}")
    return reduction


def reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def counts_tensor(
    class_counts: Sequence[float] | None, *, loss: str, positive: bool = False, num_classes: int | None = None
) -> Tensor:
    """Class counts as a float64 tensor, validated.

    Args:
        positive: the formula takes ``log n`` (or divides by n), so a class with
            zero training samples is an error naming that class.
    """
    if class_counts is None:
        raise ImbalError(f"loss '{loss}' needs class_counts, but none were given")
    counts = torch.as_tensor(list(class_counts), dtype=torch.float64)
    if counts.ndim != 1 or counts.numel() == 0:
        raise ImbalError(f"loss '{loss}': class_counts must be a non-empty list, got {list(class_counts)!r}")
    if num_classes is not None and counts.numel() != num_classes:
        raise ImbalError(f"loss '{loss}': class_counts has {counts.numel()} entries, expected {num_classes}")
    if (counts < 0).any() or not torch.isfinite(counts).all():
        raise ImbalError(f"loss '{loss}': class_counts must be finite and >= 0, got {list(class_counts)!r}")
    if positive:
        zero = (counts == 0).nonzero().flatten().tolist()
        if zero:
            raise ImbalError(
                f"loss '{loss}' takes log of the class counts, but class {zero[0]} has zero training "
                f"samples (zero classes: {zero}); drop the class or use a loss without log n"
            )
    return counts


def log_prior(class_counts: Sequence[float], *, loss: str) -> Tensor:
    """log(n_c / n) in float32, erroring on an empty class."""
    counts = counts_tensor(class_counts, loss=loss, positive=True)
    return (counts / counts.sum()).log().float()


def as_elementwise(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Float32 logits and a float target of the same shape, for per-element (sigmoid) losses.

    Accepts the DESIGN.md shapes: binary ``[N]``/``[N]``, multilabel ``[N, C]``/``[N, C]``,
    binary segmentation logits ``[N, 1, H, W]`` with target ``[N, H, W]`` (or ``[N, 1, H, W]``).
    """
    x = logits.float()
    t = target.to(x.dtype)
    if t.shape != x.shape:
        if x.ndim == t.ndim + 1 and x.shape[1] == 1:
            t = t.unsqueeze(1)
        if t.shape != x.shape:
            raise ValueError(f"logits of shape {tuple(x.shape)} do not match target of shape {tuple(target.shape)}")
    return x, t
