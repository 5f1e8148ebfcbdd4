"""Shared pieces of every built-in loss: the base class, reductions, count checks."""

from __future__ import annotations

from typing import ClassVar, Sequence

import torch
from torch import Tensor, nn

from imbal.errors import ImbalError
from imbal.kinds import MULTICLASS

REDUCTIONS = ("mean", "sum", "none")


class ImbalanceLoss(nn.Module):
    """Base class of the built-in losses (a plugin need not use it).

    The contract (docs/design.md): ``forward(logits, target) -> scalar`` with the
    task shapes of imbal.kinds, a class attribute ``tasks`` naming the task kinds
    the loss supports, keyword-only hyper-parameters with the authors'
    defaults, and data-dependent inputs (``class_counts``, ``num_classes``,
    ``task``, ``test_prior``) asked for by name in ``__init__``.

    ``head`` tells the task which classifier layer the loss expects:
    ``"linear"`` (default) or ``"cosine"`` (a normalised classifier, as LDAM and
    AM-softmax need).  ``set_epoch`` is called by the task at the start of each
    training epoch (deferred re-weighting uses it).
    """

    tasks: ClassVar[tuple[str, ...]] = (MULTICLASS,)
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
    """Float32 logits (float64 stays float64) and a float target of the same shape, for per-element
    (sigmoid) losses.

    Accepts the imbal.kinds shapes: binary ``[N]``/``[N]``, multilabel ``[N, C]``/``[N, C]``,
    binary segmentation logits ``[N, 1, H, W]`` with target ``[N, H, W]`` (or ``[N, 1, H, W]``).
    """
    x = logits if logits.dtype == torch.float64 else logits.float()
    t = target.to(x.dtype)
    if t.shape != x.shape:
        if x.ndim == t.ndim + 1 and x.shape[1] == 1:
            t = t.unsqueeze(1)
        if t.shape != x.shape:
            raise ValueError(f"logits of shape {tuple(x.shape)} do not match target of shape {tuple(target.shape)}")
    return x, t


# -- shared helpers of the loss library ----------------------------------------------


def check_gamma(gamma: float, *, loss: str, name: str = "gamma") -> float:
    """A focusing exponent: a finite number >= 0."""
    try:
        value = float(gamma)
    except (TypeError, ValueError):
        raise ImbalError(f"loss '{loss}': {name} must be a number >= 0, got {gamma!r}") from None
    if not value >= 0 or value == float("inf"):
        raise ImbalError(f"loss '{loss}': {name} must be a finite number >= 0, got {gamma!r}")
    return value


def check_beta(beta: float, *, loss: str, name: str = "beta") -> float:
    """An effective-number beta (Cui et al. 2019): a number in [0, 1)."""
    try:
        value = float(beta)
    except (TypeError, ValueError):
        raise ImbalError(f"loss '{loss}': {name} must be a number in [0, 1), got {beta!r}") from None
    if not 0.0 <= value < 1.0:
        raise ImbalError(f"loss '{loss}': {name} must be in [0, 1), got {beta!r}")
    return value


def effective_number_weights(class_counts: Sequence[float], beta: float = 0.9999, *, loss: str) -> Tensor:
    """Class-balanced weights of Cui et al. 2019: ``(1 - beta) / (1 - beta^n_c)``, rescaled to sum to C.

    ``1 - beta^n`` is computed as ``-expm1(n * log(beta))`` in float64, exact for beta
    near 1 (0.9999^n in float32 loses most digits).  A class with zero training
    samples (weight 1/0) never occurs as a training target: its weight is 0, and the
    remaining weights are rescaled so that all C weights still sum to C.
    ``beta = 0`` gives uniform weights.
    """
    beta = check_beta(beta, loss=loss)
    counts = counts_tensor(class_counts, loss=loss)
    present = counts > 0
    if not present.any():
        raise ImbalError(f"loss '{loss}': every class has zero training samples, got {list(class_counts)!r}")
    # 1 - beta^n = -expm1(n log beta); beta = 0: log 0 = -inf, 1 - 0^n = 1 (uniform weights)
    eff = -torch.expm1(counts.clamp_min(1.0) * torch.tensor(beta, dtype=torch.float64).log())
    w = torch.where(present, (1.0 - beta) / eff, torch.zeros_like(eff))
    return (w * (counts.numel() / w.sum())).float()


def fp32(logits: Tensor) -> Tensor:
    """Float32 (or float64) logits: a loss is computed in full precision whatever the autocast dtype."""
    return logits if logits.dtype in (torch.float32, torch.float64) else logits.float()


def no_autocast(device_type: str):
    """Context that switches autocast off, so a loss written in fp32 stays in fp32 under bf16/fp16 autocast."""
    return torch.autocast(device_type=device_type, enabled=False)


class DeferredReweighting:
    """Deferred re-weighting (DRW, Cao et al. 2019), mixed into a loss with ``set_epoch``.

    Until ``drw_epoch`` the loss is unweighted; from epoch ``drw_epoch`` on (epochs
    count from 0, as Lightning's ``current_epoch``; the reference code's
    ``idx = epoch // 160`` switches at epoch 160) it uses the class-balanced
    weights of :func:`effective_number_weights` with ``drw_beta`` (paper: 0.9999).
    ``drw_epoch=None`` disables it.
    """

    drw_epoch: int | None
    epoch: int

    def init_drw(
        self, drw_epoch: int | None, drw_beta: float, class_counts: Sequence[float] | None, *, loss: str
    ) -> None:
        self.epoch = 0
        self.drw_epoch = None
        weight = None
        if drw_epoch is not None:
            if isinstance(drw_epoch, bool) or not isinstance(drw_epoch, int) or drw_epoch < 0:
                raise ImbalError(f"loss '{loss}': drw_epoch must be an integer >= 0 or None, got {drw_epoch!r}")
            if class_counts is None:
                raise ImbalError(f"loss '{loss}' with drw_epoch={drw_epoch} needs class_counts from the data")
            self.drw_epoch = int(drw_epoch)
            weight = effective_number_weights(class_counts, drw_beta, loss=loss)
        else:
            check_beta(drw_beta, loss=loss, name="drw_beta")
        self.register_buffer("drw_weight", weight)  # type: ignore[attr-defined]

    def set_epoch(self, epoch: int) -> None:
        """Called by the task at the start of every training epoch."""
        self.epoch = int(epoch)

    @property
    def drw_active(self) -> bool:
        return self.drw_epoch is not None and self.epoch >= self.drw_epoch

    def current_weight(self) -> Tensor | None:
        """The class weights in force at the current epoch (None before ``drw_epoch``)."""
        return self.drw_weight if self.drw_active else None  # type: ignore[attr-defined]


def elementwise(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`as_elementwise` that keeps float64 (for gradcheck) and raises :class:`ImbalError`.

    float16/bfloat16/float32 logits come back as float32, float64 stays float64;
    the target is cast to the logits' dtype and reshaped as in :func:`as_elementwise`.
    """
    try:
        return as_elementwise(logits, target)
    except ValueError as exc:
        raise ImbalError(str(exc)) from None
