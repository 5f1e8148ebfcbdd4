"""Post-hoc logit adjustment (Menon et al. 2021, Eq. 6): ``argmax_y f_y(x) - tau * log pi_y``.

``la``: a fixed ``tau`` (1 in the paper).  ``la_tuned``: ``tau`` chosen on the
validation split's balanced accuracy over a grid (the paper tunes tau on a
holdout; with ``data.val_from=test`` the "validation" split is the test set,
which ``ctx.info`` records through the data's ``val_from``).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from imbal.errors import ImbalError
from imbal.kinds import MULTICLASS
from imbal.posthoc import PosthocContext, register

#: Default tau grid of ``la_tuned``: 0, 0.1, ..., 3.0.
TAU_GRID = tuple(round(0.1 * i, 1) for i in range(31))


def adjust_logits(logits: Tensor, prior: Tensor, tau: float = 1.0) -> Tensor:
    """``logits - tau * log(prior)``; ``prior`` is the training class prior ``[C]``."""
    return logits.float() - tau * prior.to(logits.device, torch.float32).log()


def balanced_accuracy(logits: Tensor, targets: Tensor, num_classes: int) -> float:
    """Mean per-class recall of ``argmax`` predictions (classes absent from ``targets`` skipped)."""
    from torchmetrics.functional.classification import multiclass_recall

    recall = multiclass_recall(logits.argmax(-1), targets.long(), num_classes=num_classes, average="none")
    present = torch.bincount(targets.long(), minlength=num_classes) > 0
    return float(recall[present].mean())


def tune_on_val(score, grid: Sequence[float], default: float = 1.0) -> tuple[float, float]:
    """(best value, its score) over ``grid``; ties go to the value closest to ``default``."""
    if len(grid) == 0:
        raise ImbalError("post-hoc tuning grid is empty; give at least one value")
    scored = [(float(score(float(t))), float(t)) for t in grid]
    best = max(s for s, _ in scored)
    tied = [t for s, t in scored if s >= best - 1e-12]
    choice = min(tied, key=lambda t: (abs(t - default), t))
    return choice, best


def _prior(ctx: PosthocContext, name: str) -> Tensor:
    prior = ctx.stats.prior
    if prior is None:
        raise ImbalError(f"post-hoc '{name}' needs the training class counts, but the data provides none")
    p = torch.tensor(prior)
    if (p <= 0).any():
        zero = (p <= 0).nonzero().flatten().tolist()
        raise ImbalError(f"post-hoc '{name}' takes log of the prior, but class {zero[0]} has zero training samples")
    return p


@register("la")
def logit_adjustment(ctx: PosthocContext, *, tau: float = 1.0) -> dict[str, Tensor]:
    """Post-hoc logit adjustment with a fixed ``tau`` (multiclass only)."""
    if ctx.stats.task != MULTICLASS:
        return {}
    p = _prior(ctx, "la")
    ctx.info["la"] = {"tau": float(tau)}
    return {"la": adjust_logits(ctx.test_logits, p, tau)}


@register("la_tuned", rules={"grid": (lambda v: len(v) > 0, "a non-empty list of numbers (the tuning grid is empty)")})
def logit_adjustment_tuned(ctx: PosthocContext, *, grid: Sequence[float] = TAU_GRID) -> dict[str, Tensor]:
    """Post-hoc logit adjustment with ``tau`` maximising validation balanced accuracy over ``grid``."""
    if ctx.stats.task != MULTICLASS:
        return {}
    p = _prior(ctx, "la_tuned")
    c = ctx.stats.num_classes
    tau, val_bacc = tune_on_val(
        lambda t: balanced_accuracy(adjust_logits(ctx.val_logits, p, t), ctx.val_targets, c), list(grid)
    )
    ctx.info["la_tuned"] = {
        "tau": tau,
        "val_balanced_accuracy": val_bacc,
        "tuned_on": f"val (val_from={ctx.stats.val_from or 'data default'})",
    }
    return {"la_tuned": adjust_logits(ctx.test_logits, p, tau)}
