"""Post-hoc correction for a shift of the class prior between training and test.

With ``p(y|x)`` the model's posterior under the training prior ``pi_train`` and
``pi_test`` the test prior, Bayes' rule with an unchanged ``p(x|y)`` gives

    p'(y|x) = p(y|x) * w_y / sum_k p(k|x) * w_k,    w_y = pi_test(y) / pi_train(y)

(Saerens, Latinne, Decaestecker 2002, Eq. 2.4).  When ``pi_test`` is unknown it
is estimated from the unlabelled test predictions by their EM algorithm
(Section 2.3): start from ``pi_train``, then alternate the correction above
with ``pi_test(y) <- mean_x p'(y|x)`` until the prior stops moving.

Config (``posthoc.prior_shift``)::

    test_prior: null     # null: the data's stats.test_prior (nothing to do when it has none)
                         # [p_0, ..., p_{C-1}]: a known prior; em: estimate it by EM
    train_prior: counts  # counts (training-split frequencies) | uniform | a list

``uniform`` suits a model trained to be prior-free (class-balanced loss or
sampler).  Binary tasks (logits ``[N]``) are treated as two classes (negative,
positive); multilabel tasks are corrected label by label, with priors given per
label as positive rates.  The result is the corrected test log-posterior
(``prior_shift``, or ``prior_shift_em``); ``ctx.info`` records both priors and
the test log-loss before and after.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from imbal.errors import ImbalError
from imbal.kinds import CLASSIFICATION, MULTICLASS, MULTILABEL
from imbal.metrics import per_sample_log_loss
from imbal.posthoc import PosthocContext, register


def shift_posteriors(probs: Tensor, train_prior: Tensor, test_prior: Tensor) -> Tensor:
    """``p'(y|x) ∝ p(y|x) pi_test(y) / pi_train(y)``, renormalised over the last axis."""
    w = test_prior.to(probs) / train_prior.to(probs)
    q = probs * w
    return q / q.sum(dim=-1, keepdim=True)


def em_prior(
    probs: Tensor, train_prior: Tensor, *, max_iter: int = 1000, tol: float = 1e-8
) -> tuple[Tensor, int]:
    """EM estimate of the test prior from posteriors ``probs`` ``[N, C]`` (Saerens et al. 2002).

    Returns ``(prior, iterations)``.  Runs in float64; stops when no class's
    prior moves by more than ``tol``.
    """
    p = probs.double()
    pi_tr = train_prior.double()
    pi = pi_tr.clone()
    for it in range(1, max_iter + 1):
        q = shift_posteriors(p, pi_tr, pi)
        new = q.mean(dim=0)
        if (new - pi).abs().max() < tol:
            return new, it
        pi = new
    return pi, max_iter


def _probs_of(logits: Tensor, task: str) -> Tensor:
    """Posteriors as ``[N, C]`` rows summing to one (binary: ``[1 - p, p]``), or ``[N, L, 2]`` per label."""
    z = logits.double()
    if task == MULTICLASS:
        return torch.softmax(z, dim=-1)
    p = torch.sigmoid(z)
    return torch.stack([1 - p, p], dim=-1)


def _logits_of(probs: Tensor, task: str) -> Tensor:
    """Inverse of :func:`_probs_of`: log-posteriors (multiclass) or log-odds (binary, multilabel)."""
    eps = torch.finfo(torch.float64).tiny
    if task == MULTICLASS:
        return probs.clamp_min(eps).log().float()
    return (probs[..., 1].clamp_min(eps).log() - probs[..., 0].clamp_min(eps).log()).float()


def _prior_vector(value, c: int, task: str, what: str) -> Tensor:
    v = torch.as_tensor([float(x) for x in value], dtype=torch.float64)
    if task == MULTILABEL:
        if v.shape != (c,) or (v <= 0).any() or (v >= 1).any():
            raise ImbalError(f"post-hoc prior_shift: {what} must be {c} positive rates in (0, 1), got {list(value)}")
        return torch.stack([1 - v, v], dim=-1)  # [L, 2]
    if v.shape != (c,) or (v <= 0).any():
        raise ImbalError(f"post-hoc prior_shift: {what} must be {c} positive numbers (one per class), got {list(value)}")
    if abs(float(v.sum()) - 1.0) > 1e-3:
        raise ImbalError(f"post-hoc prior_shift: {what} must sum to 1, got {list(value)} (sum {float(v.sum()):.4f})")
    return v / v.sum()


def _train_prior(ctx: PosthocContext, train_prior) -> Tensor:
    stats = ctx.stats
    c = stats.num_classes
    if isinstance(train_prior, str):
        if train_prior == "uniform":
            if stats.task == MULTILABEL:
                raise ImbalError("post-hoc prior_shift: train_prior=uniform is undefined for multilabel; give rates")
            return torch.full((c,), 1.0 / c, dtype=torch.float64)
        if train_prior != "counts":
            raise ImbalError(f"post-hoc prior_shift: train_prior '{train_prior}' is not counts, uniform or a list")
        if stats.class_counts is None:
            raise ImbalError("post-hoc prior_shift needs the training class counts, but the data provides none")
        counts = torch.as_tensor(stats.class_counts, dtype=torch.float64)
        if stats.task == MULTILABEL:
            n = float(ctx.stats.num_train or 0) or None
            if n is None:
                raise ImbalError("post-hoc prior_shift on multilabel data needs train_prior as positive rates")
            return _prior_vector((counts / n).tolist(), c, MULTILABEL, "train_prior")
        if (counts <= 0).any():
            raise ImbalError(f"post-hoc prior_shift: class {int((counts <= 0).nonzero()[0])} has no training samples")
        return counts / counts.sum()
    return _prior_vector(train_prior, c, stats.task, "train_prior")


def mean_log_loss(logits: Tensor, targets: Tensor, task: str) -> float:
    return float(per_sample_log_loss(logits, targets, task).mean())


@register("prior_shift", rules={
    "test_prior": (lambda v: not isinstance(v, str) or v == "em", "null, em or a list of class priors"),
    "train_prior": (lambda v: not isinstance(v, str) or v in ("counts", "uniform"), "counts, uniform or a list of class priors"),
    "max_iter": (lambda v: v >= 1, "an integer >= 1"),
    "tol": (lambda v: v > 0, "a number > 0"),
})
def prior_shift(
    ctx: PosthocContext,
    *,
    test_prior: str | Sequence[float] | None = None,
    train_prior: str | Sequence[float] = "counts",
    max_iter: int = 1000,
    tol: float = 1e-8,
) -> dict[str, Tensor]:
    """Correct the test posteriors for a known or EM-estimated test prior (see the module docstring)."""
    task = ctx.stats.task
    if task not in CLASSIFICATION:
        return {}
    if test_prior is None:
        test_prior = ctx.stats.test_prior
    if test_prior is None:
        return {}  # nothing known about the test prior, and EM not asked for
    pi_tr = _train_prior(ctx, train_prior)
    probs = _probs_of(ctx.test_logits, task)
    c = ctx.stats.num_classes
    name = "prior_shift"
    info: dict = {}
    if isinstance(test_prior, str):
        if test_prior != "em":
            raise ImbalError(f"post-hoc prior_shift: test_prior '{test_prior}' is not 'em', null or a list of {c}")
        name = "prior_shift_em"
        if task == MULTILABEL:
            ests = [em_prior(probs[:, j], pi_tr[j], max_iter=max_iter, tol=tol) for j in range(c)]
            pi_te = torch.stack([e[0] for e in ests])
            info["em_iterations"] = max(e[1] for e in ests)
        else:
            pi_te, info["em_iterations"] = em_prior(probs, pi_tr, max_iter=max_iter, tol=tol)
    else:
        pi_te = _prior_vector(test_prior, c, task, "test_prior")
    shifted = shift_posteriors(probs, pi_tr, pi_te)
    corrected = _logits_of(shifted, task)
    report = (lambda t: t[:, 1].tolist()) if task == MULTILABEL else (lambda t: t.tolist())
    info.update(
        train_prior=report(pi_tr),
        test_prior=report(pi_te),
        log_loss_before=mean_log_loss(ctx.test_logits, ctx.test_targets, task),
        log_loss_after=mean_log_loss(corrected, ctx.test_targets, task),
    )
    ctx.info[name] = info
    return {name: corrected}
