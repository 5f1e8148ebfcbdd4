"""How members' predictions are combined, and how the combination is fitted on validation.

Every function here takes validation arrays only (members' logits ``[K][N, C]`` and the targets):
nothing in this module can see a test file.  A fitted method returns a :class:`Fit`, which
:func:`apply_fit` then applies to any split's logits.

* ``mean``: the mean of the members' probabilities; ``logit_mean``: the mean of their logits;
* ``weighted``: non-negative weights summing to 1 on the probabilities, fitted on validation:
  ``log_loss`` by L-BFGS on a softmax parametrisation, ``balanced_accuracy`` / ``macro_f1``
  (argmax, not differentiable) by scipy's differential evolution, seeded.  The uniform weights
  and every single member are candidates too, so the fit is never worse on validation than the
  best single member (ties go to the lower validation log-loss);
* ``greedy``: Caruana et al. (2004) forward selection with replacement: start empty, add the
  member that most improves the objective of the running average, keep the best ensemble along
  the path (its first step is the best single member);
* ``stacking``: a multinomial logistic regression (scikit-learn) on the members' validation
  log-probabilities; its validation predictions are cross-fitted (out of fold, stratified folds),
  its test predictions come from the model fitted on all of validation.

The objective scores below are the search's (numpy, from the confusion matrix, classes absent
from the targets left out); the metrics reported in ``ensemble.json`` are imbal.metrics'.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from imbal.errors import ImbalError

from imbal.ensemble import METHODS, OBJECTIVES  # noqa: E402,F401 - the names the command offers
#: methods that read validation predictions to fit anything
FITTED = ("weighted", "stacking", "greedy")
TINY = np.finfo(np.float64).tiny


@dataclass
class Fit:
    """What a method learnt: weights on the members (all but stacking) or a stacker."""

    method: str
    weights: np.ndarray | None = None
    stacker: Any = None
    val_log_probs: np.ndarray | None = None  # stacking: out-of-fold validation predictions
    info: dict[str, Any] = field(default_factory=dict)


# -- scores (higher is better) --------------------------------------------------------
def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def confusion(pred: np.ndarray, y: np.ndarray, c: int) -> np.ndarray:
    return np.bincount(y.astype(np.int64) * c + pred.astype(np.int64), minlength=c * c).reshape(c, c)


def cm_balanced_accuracy(cm: np.ndarray) -> float:
    support = cm.sum(axis=1)
    present = support > 0
    return float((np.diag(cm)[present] / support[present]).mean()) if present.any() else float("nan")


def cm_macro_f1(cm: np.ndarray) -> float:
    tp = np.diag(cm).astype(np.float64)
    fp, fn = cm.sum(axis=0) - tp, cm.sum(axis=1) - tp
    present = cm.sum(axis=1) > 0
    denom = 2 * tp + fp + fn
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return float(f1[present].mean()) if present.any() else float("nan")


def score(log_probs: np.ndarray, y: np.ndarray, objective: str) -> float:
    """The objective of log-probabilities ``[N, C]`` (higher is better: log-loss is negated)."""
    y = y.astype(np.int64)
    if objective == "log_loss":
        return -float(-log_probs[np.arange(len(y)), y].mean())
    cm = confusion(log_probs.argmax(axis=1), y, log_probs.shape[1])
    return cm_balanced_accuracy(cm) if objective == "balanced_accuracy" else cm_macro_f1(cm)


def mix_log_probs(probs: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``log(sum_k w_k p_k)`` of probabilities ``[K, N, C]``."""
    return np.log(np.maximum(np.tensordot(w, probs, axes=1), TINY))


# -- combining --------------------------------------------------------------------------
def combine(logits: list[np.ndarray], fit: Fit) -> np.ndarray:
    """The ensemble's logits (log-scores) of one split from the members' logits ``[K][N, C]``.

    A weight vector with one non-zero entry returns that member's logits unchanged, so the
    ensemble of one member scores exactly as the member.
    """
    if fit.method == "stacking":
        return stack_predict(fit.stacker, logits)
    w = np.asarray(fit.weights, dtype=np.float64)
    nonzero = np.flatnonzero(w > 0)
    if len(nonzero) == 1:
        return np.asarray(logits[int(nonzero[0])], dtype=np.float64)
    if fit.method == "logit_mean":
        return np.tensordot(w, np.stack(logits), axes=1)
    probs = np.exp(np.stack([log_softmax(z) for z in logits]))
    return mix_log_probs(probs, w)


# -- fitting ----------------------------------------------------------------------------
def _pick(cands: list[tuple[str, np.ndarray]], probs: np.ndarray, y: np.ndarray, objective: str):
    """The candidate weights with the best objective; ties: lower log-loss, then the earlier candidate."""
    best = None
    for pos, (label, w) in enumerate(cands):
        lp = mix_log_probs(probs, w)
        key = (score(lp, y, objective), score(lp, y, "log_loss"), -pos)
        if best is None or key > best[0]:
            best = (key, label, w)
    return best[1], best[2]


def _fit_log_loss(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    from scipy.optimize import minimize

    q = probs[:, np.arange(len(y)), y.astype(np.int64)]  # [K, N]: each member's probability of the truth

    def f(a):
        w = np.exp(a - a.max())
        w /= w.sum()
        mix = np.maximum(w @ q, TINY)
        g = -(q / mix).mean(axis=1)  # d loss / d w
        return -np.log(mix).mean(), w * (g - w @ g)

    res = minimize(f, np.zeros(len(q)), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    w = np.exp(res.x - res.x.max())
    return w / w.sum()


def _fit_search(probs: np.ndarray, y: np.ndarray, objective: str, seed: int) -> np.ndarray:
    from scipy.optimize import differential_evolution

    k = len(probs)
    if k == 1:
        return np.ones(1)

    def loss(v):
        s = v.sum()
        return -score(mix_log_probs(probs, v / s if s > 0 else np.full(k, 1.0 / k)), y, objective)

    rng = np.random.default_rng(seed)
    size = max(15 * k, k + 5)
    init = np.vstack([np.eye(k), np.full((1, k), 1.0 / k), rng.random((size - k - 1, k))])
    res = differential_evolution(loss, [(0.0, 1.0)] * k, init=init, seed=seed, maxiter=100, tol=1e-6,
                                 polish=False, updating="deferred", workers=1)
    v = np.clip(res.x, 0.0, None)
    return v / v.sum() if v.sum() > 0 else np.full(k, 1.0 / k)


def fit_weighted(logits: list[np.ndarray], y: np.ndarray, objective: str, seed: int) -> Fit:
    probs = np.exp(np.stack([log_softmax(z) for z in logits]))
    k = len(logits)
    w = _fit_log_loss(probs, y) if objective == "log_loss" else _fit_search(probs, y, objective, seed)
    cands = [("fitted", w), ("uniform", np.full(k, 1.0 / k))] + [(f"member {i}", np.eye(k)[i]) for i in range(k)]
    label, w = _pick(cands, probs, y, objective)
    return Fit("weighted", weights=np.asarray(w, dtype=np.float64), info={"chosen_candidate": label})


def fit_greedy(logits: list[np.ndarray], y: np.ndarray, objective: str, rounds: int) -> Fit:
    """Caruana et al. (2004): forward selection with replacement, best ensemble along the path kept."""
    if rounds < 1:
        raise ImbalError(f"ensemble: --rounds must be >= 1, got {rounds}")
    probs = np.exp(np.stack([log_softmax(z) for z in logits]))
    k = len(logits)
    counts = np.zeros(k, dtype=np.int64)
    total = np.zeros_like(probs[0])
    best = None
    path = []
    for t in range(1, rounds + 1):
        step = None
        for i in range(k):
            lp = np.log(np.maximum((total + probs[i]) / t, TINY))
            key = (score(lp, y, objective), score(lp, y, "log_loss"), -i)
            if step is None or key > step[0]:
                step = (key, i)
        i = step[1]
        counts[i] += 1
        total = total + probs[i]
        path.append(int(i))
        if best is None or step[0][:2] > best[0]:
            best = (step[0][:2], counts.copy(), t)
    _, chosen, size = best
    return Fit("greedy", weights=chosen / chosen.sum(),
               info={"rounds": rounds, "selected": path[:size], "counts": chosen.tolist(), "best_round": size})


def _features(logits: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([log_softmax(z) for z in logits], axis=1)


def _full_log_proba(model, x: np.ndarray, c: int) -> np.ndarray:
    """The model's log-probabilities over all ``c`` classes (classes it never saw get ~0 probability)."""
    out = np.full((len(x), c), np.log(TINY))
    out[:, model.classes_.astype(np.int64)] = model.predict_log_proba(x)
    return out


def fit_stacking(logits: list[np.ndarray], y: np.ndarray, seed: int, folds: int, c_reg: float = 1.0) -> Fit:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    x, y = _features(logits), y.astype(np.int64)
    c = logits[0].shape[1]
    present = np.bincount(y, minlength=c)
    smallest = int(present[present > 0].min())
    n_folds = min(int(folds), smallest)
    if n_folds < 2:
        raise ImbalError(f"ensemble: stacking cross-fits on {folds} validation folds, but a class has only "
                         f"{smallest} validation sample; use --method weighted or greedy")

    def model():
        return LogisticRegression(C=c_reg, solver="newton-cg", max_iter=1000, random_state=seed)

    oof = np.empty((len(y), c))
    for train, held in StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(x, y):
        oof[held] = _full_log_proba(model().fit(x[train], y[train]), x[held], c)
    final = model().fit(x, y)
    final.n_classes_total = c
    return Fit("stacking", stacker=final, val_log_probs=oof,
               info={"folds": n_folds, "C": c_reg, "coef": final.coef_.tolist(), "intercept": final.intercept_.tolist(),
                     "classes": final.classes_.tolist()})


def stack_predict(stacker, logits: list[np.ndarray]) -> np.ndarray:
    return _full_log_proba(stacker, _features(logits), stacker.n_classes_total)


def fit(method: str, logits: list[np.ndarray], y: np.ndarray, *, objective: str = "log_loss", seed: int = 0,
        rounds: int = 50, folds: int = 5) -> Fit:
    """Fit ``method`` on validation logits ``[K][N, C]`` and targets ``[N]`` (nothing else is given)."""
    if method not in METHODS:
        raise ImbalError(f"ensemble: --method '{method}' unknown; expected one of: {', '.join(METHODS)}")
    if objective not in OBJECTIVES:
        raise ImbalError(f"ensemble: --objective '{objective}' unknown; expected one of: {', '.join(OBJECTIVES)}")
    k = len(logits)
    if method in ("mean", "logit_mean"):
        return Fit(method, weights=np.full(k, 1.0 / k))
    if method == "weighted":
        return fit_weighted(logits, y, objective, seed)
    if method == "greedy":
        return fit_greedy(logits, y, objective, rounds)
    return fit_stacking(logits, y, seed, folds)
