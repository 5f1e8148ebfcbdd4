"""tau-normalisation of the classifier weights (Kang et al. 2020, Section 4.2, Eq. 3).

Each class's weight vector is rescaled by its norm to the power ``tau``:
``w_i <- w_i / ||w_i||^tau``, and the logits are recomputed from the stored
features, ``f(x)^T w_i`` (no bias, as in the paper: the rescaled classifier
has none).  ``tau = 1`` is full L2 normalisation, ``tau = 0`` the raw weights
without bias.  ``tau`` is chosen on the validation split's balanced accuracy
over a grid (the paper's 0..1 search extended to 2 by default).

Only a linear head has weight norms to balance: with a cosine head (LDAM,
AM-softmax) the weights are normalised already and the correction is skipped.

Reference:
    Kang, Xie, Rohrbach, Yan, Gordo, Feng, Kalantidis. Decoupling representation
    and classifier for long-tailed recognition. ICLR 2020.
"""

from __future__ import annotations

import warnings
from typing import Sequence

from torch import Tensor, nn

from imbal.kinds import MULTICLASS
from imbal.posthoc import PosthocContext, register
from imbal.posthoc.logit_adjust import balanced_accuracy, tune_on_val

#: Default tau grid: 0, 0.1, ..., 2.0.
TAU_GRID = tuple(round(0.1 * i, 1) for i in range(21))


def tau_normalised_logits(features: Tensor, weight: Tensor, tau: float) -> Tensor:
    """``features @ (W / ||W||_row^tau)^T``: features ``[N, D]``, weight ``[C, D]``."""
    w = weight.detach().float().cpu()
    norms = w.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return features.float().cpu() @ (w / norms.pow(tau)).T


@register("tau_norm", rules={"grid": (lambda v: len(v) > 0, "a non-empty list of numbers (the tuning grid is empty)")})
def tau_normalisation(ctx: PosthocContext, *, grid: Sequence[float] = TAU_GRID) -> dict[str, Tensor]:
    """tau-normalised classifier with ``tau`` tuned on validation balanced accuracy (multiclass only)."""
    if ctx.stats.task != MULTICLASS:
        return {}
    if not isinstance(ctx.head, nn.Linear) or ctx.val_features is None or ctx.test_features is None:
        warnings.warn(
            f"post-hoc 'tau_norm' skipped: it needs a linear head and stored features "
            f"(head is {type(ctx.head).__name__})",
            stacklevel=2,
        )
        return {}
    w = ctx.head.weight
    c = ctx.stats.num_classes
    tau, val_bacc = tune_on_val(
        lambda t: balanced_accuracy(tau_normalised_logits(ctx.val_features, w, t), ctx.val_targets, c),
        list(grid),
    )
    ctx.info["tau_norm"] = {
        "tau": tau,
        "val_balanced_accuracy": val_bacc,
        "tuned_on": f"val (val_from={ctx.stats.val_from or 'data default'})",
    }
    return {"tau_norm": tau_normalised_logits(ctx.test_features, w, tau)}
