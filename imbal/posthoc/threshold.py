"""Decision-threshold tuning for binary and multilabel tasks: the F-beta-optimal threshold on validation.

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

Multilabel tasks: one global threshold for every class, the one maximising the validation
*macro* F-beta (the mean over the classes with a validation positive; per-class thresholds
would be fitted to the handful of validation positives a tail class has).  Every distinct
validation score is a candidate (rule ``score >= candidate``, placed half-way down to the next
lower score).  The post-hoc result's ``macro_f1`` / ``micro_f1`` are the test F1s at ``t``
(at the 0.5 rule they are the raw ``test`` metrics); ``ctx.info`` records ``t``, its logit,
the validation macro F-beta, and the test macro and micro F-beta at ``t`` and at 0.5.
"""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor

from imbal.errors import ImbalError
from imbal.kinds import BINARY, MULTICLASS, MULTILABEL
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


def best_global_cut(scores: np.ndarray, y: np.ndarray, beta: float) -> tuple[float, float]:
    """(cut, validation macro F-beta) of the one rule ``score > cut`` for all columns of ``[N, C]`` ``scores``
    maximising the mean F-beta over the columns with a positive in ``y``."""
    present = y.sum(0) > 0
    if not present.any():
        raise ImbalError("post-hoc threshold: the validation split has no positive label; F-beta is undefined")
    cands = np.unique(scores)  # rule score >= cands[j]
    b2 = beta * beta
    total = np.zeros(len(cands))
    for c in np.flatnonzero(present):
        pos, every = np.sort(scores[y[:, c] == 1, c]), np.sort(scores[:, c])
        tp = len(pos) - np.searchsorted(pos, cands, side="left")
        predicted = len(every) - np.searchsorted(every, cands, side="left")
        total += (1 + b2) * tp / (b2 * len(pos) + predicted)  # F-beta = (1+b2) tp / (b2 P + predicted)
    k = int(np.argmax(total))
    cut = (cands[k] + cands[k - 1]) / 2.0 if k > 0 else cands[0] - 1.0
    return float(cut), float(total[k] / present.sum())


def multilabel_fbeta(pred: np.ndarray, y: np.ndarray, beta: float) -> dict[str, float]:
    """Macro F-beta over the classes with a positive in ``y``, and micro F-beta over all label cells."""
    b2 = beta * beta
    tp, positives, predicted = (pred * y).sum(0), y.sum(0), pred.sum(0)
    present = positives > 0
    per_class = (1 + b2) * tp[present] / (b2 * positives[present] + predicted[present])
    pooled = b2 * positives.sum() + predicted.sum()
    return {"macro_fbeta": float(per_class.mean()) if present.any() else float("nan"),
            "micro_fbeta": float((1 + b2) * tp.sum() / pooled) if pooled > 0 else float("nan")}


def multilabel_threshold(ctx: PosthocContext, beta: float) -> dict[str, Tensor]:
    """One global threshold tuned on the validation macro F-beta (see the module docstring)."""
    yv = ctx.val_targets.numpy().astype(np.int64)
    yt = ctx.test_targets.numpy().astype(np.int64)
    st = ctx.test_logits.double().numpy()
    cut, val_f = best_global_cut(ctx.val_logits.double().numpy(), yv, beta)
    at_cut = multilabel_fbeta((st > cut).astype(np.int64), yt, beta)
    at_half = multilabel_fbeta((st > 0).astype(np.int64), yt, beta)
    ctx.info["threshold"] = {
        "beta": float(beta),
        "threshold": 1.0 / (1.0 + math.exp(-cut)) if cut > -700 else 0.0,
        "threshold_logit": cut,
        "val_macro_fbeta": val_f,
        "test_macro_fbeta": at_cut["macro_fbeta"],
        "test_micro_fbeta": at_cut["micro_fbeta"],
        "test_macro_fbeta_at_0.5": at_half["macro_fbeta"],
        "test_micro_fbeta_at_0.5": at_half["micro_fbeta"],
    }
    return {"threshold": ctx.test_logits.float() - cut}


@register("threshold", rules={"beta": (lambda v: v > 0, "a number > 0"), "positive": (lambda v: v in (0, 1), "0 or 1")})
def threshold_tuning(ctx: PosthocContext, *, beta: float = 1.0, positive: int = 1) -> dict[str, Tensor]:
    """F-beta-optimal decision threshold on validation, applied to test (binary, two-class and multilabel tasks)."""
    task = ctx.stats.task
    if task == MULTILABEL:
        if beta <= 0:
            raise ImbalError(f"post-hoc threshold: beta must be > 0, got {beta}")
        return multilabel_threshold(ctx, beta)
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
