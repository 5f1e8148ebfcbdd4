"""Decision-threshold tuning for binary tasks: the F-beta-optimal threshold on validation.

The positive-class score is the logit (``binary``, logits ``[N]``) or the
log-odds ``z_pos - z_neg`` of a two-class ``multiclass`` task (the same
quantity under softmax).  On the validation split every cut between two
consecutive distinct scores is a candidate (``sklearn.metrics.precision_recall_curve``
lists them); the one with the highest F-beta wins, placed half-way between
the two scores so that ties cannot flip a decision.  The test split is then
scored at that cut.

Config (``posthoc.threshold``)::

    beta: 1.0        # F-beta's beta (2 weighs recall higher)
    positive: 1      # index of the positive class (two-class multiclass; binary is always 1)

Result ``threshold``: the test logits shifted by ``-logit(t)`` so the usual 0.5
rule (argmax) decides at ``t``; ``ctx.info["threshold"]`` holds ``t`` (a
probability), its logit, the validation F-beta, and the test F-beta, precision
and recall at ``t`` and at the default 0.5.
"""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor

from imbal.errors import ImbalError
from imbal.kinds import BINARY, MULTICLASS
from imbal.posthoc import PosthocContext, register


def positive_scores(logits: Tensor, task: str, positive: int = 1) -> Tensor:
    """Log-odds of the positive class, ``[N]``."""
    z = logits.double()
    if task == BINARY:
        return z.reshape(-1)
    return z[:, positive] - z[:, 1 - positive]


def best_cut(scores: np.ndarray, y: np.ndarray, beta: float) -> tuple[float, float]:
    """(cut, F-beta on these scores) maximising F-beta of the rule ``score > cut``."""
    from sklearn.metrics import precision_recall_curve

    if y.sum() == 0:
        raise ImbalError("post-hoc threshold: the validation split has no positive example; F-beta is undefined")
    precision, recall, thresholds = precision_recall_curve(y, scores)
    p, r = precision[:-1], recall[:-1]  # the last point (recall 0) has no threshold
    b2 = beta * beta
    with np.errstate(invalid="ignore", divide="ignore"):
        f = np.where(p + r > 0, (1 + b2) * p * r / (b2 * p + r), 0.0)
    k = int(np.argmax(f))
    thr = thresholds[k]  # rule: score >= thr
    lower = scores[scores < thr]
    cut = (thr + lower.max()) / 2.0 if len(lower) else thr - 1.0  # half-way to the next lower score: rule score > cut
    return float(cut), float(f[k])


def prf(pred: np.ndarray, y: np.ndarray, beta: float) -> dict[str, float]:
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, _ = precision_recall_fscore_support(y, pred, beta=beta, average="binary", zero_division=0)
    return {"fbeta": float(f), "precision": float(p), "recall": float(r)}


@register("threshold", rules={"beta": (lambda v: v > 0, "a number > 0"), "positive": (lambda v: v in (0, 1), "0 or 1")})
def threshold_tuning(ctx: PosthocContext, *, beta: float = 1.0, positive: int = 1) -> dict[str, Tensor]:
    """F-beta-optimal decision threshold on validation, applied to test (binary or two-class tasks)."""
    task = ctx.stats.task
    if not (task == BINARY or (task == MULTICLASS and ctx.stats.num_classes == 2)):
        return {}
    if beta <= 0:
        raise ImbalError(f"post-hoc threshold: beta must be > 0, got {beta}")
    if positive not in (0, 1) or (task == BINARY and positive != 1):
        raise ImbalError(f"post-hoc threshold: positive must be 0 or 1 (binary tasks: 1), got {positive}")
    yv = (ctx.val_targets.reshape(-1).long() == positive).numpy().astype(int)
    yt = (ctx.test_targets.reshape(-1).long() == positive).numpy().astype(int)
    sv = positive_scores(ctx.val_logits, task, positive).numpy()
    st = positive_scores(ctx.test_logits, task, positive)
    cut, val_f = best_cut(sv, yv, beta)
    at_cut = prf((st.numpy() > cut).astype(int), yt, beta)
    at_half = prf((st.numpy() > 0).astype(int), yt, beta)
    ctx.info["threshold"] = {
        "beta": float(beta),
        "threshold": 1.0 / (1.0 + math.exp(-cut)),
        "threshold_logit": cut,
        "val_fbeta": val_f,
        "test_fbeta": at_cut["fbeta"],
        "test_precision": at_cut["precision"],
        "test_recall": at_cut["recall"],
        "test_fbeta_at_0.5": at_half["fbeta"],
        "test_precision_at_0.5": at_half["precision"],
        "test_recall_at_0.5": at_half["recall"],
    }
    if task == BINARY:
        shifted = ctx.test_logits.float() - cut
    else:
        shifted = ctx.test_logits.float().clone()
        shifted[:, positive] -= cut  # argmax picks `positive` iff z_pos - z_neg > cut
    return {"threshold": shifted}
