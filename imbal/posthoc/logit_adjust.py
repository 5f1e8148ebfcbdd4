"""Post-hoc logit adjustment (Menon et al. 2021, Eq. 6): ``argmax_y f_y(x) - tau * log pi_y``."""

from __future__ import annotations

import torch
from torch import Tensor

from imbal.errors import ImbalError
from imbal.posthoc import PosthocContext, register


def adjust_logits(logits: Tensor, prior: Tensor, tau: float = 1.0) -> Tensor:
    """``logits - tau * log(prior)``; ``prior`` is the training class prior ``[C]``."""
    return logits.float() - tau * prior.to(logits.device, torch.float32).log()


@register("la")
def logit_adjustment(ctx: PosthocContext, *, tau: float = 1.0) -> dict[str, Tensor]:
    """Post-hoc logit adjustment with a fixed ``tau`` (multiclass only)."""
    if ctx.stats.task != "multiclass":
        return {}
    prior = ctx.stats.prior
    if prior is None:
        raise ImbalError("post-hoc 'la' needs the training class counts, but the data provides none")
    p = torch.tensor(prior)
    if (p <= 0).any():
        zero = (p <= 0).nonzero().flatten().tolist()
        raise ImbalError(f"post-hoc 'la' takes log of the prior, but class {zero[0]} has zero training samples")
    ctx.info["la"] = {"tau": float(tau)}
    return {"la": adjust_logits(ctx.test_logits, p, tau)}
