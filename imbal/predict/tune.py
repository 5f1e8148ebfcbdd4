"""``imbal tune-seg RUN_DIR [--gate G] [--tta d4]``: the pipeline's threshold and minimum size, tuned on validation.

On the run's VALIDATION split only (never test), a grid search of the probability
threshold (:data:`THRESHOLDS`), the minimum instance size in pixels (:data:`MIN_SIZES`, of
the images at their own size, as written to a submission) and, with ``--gate``, the gate's
threshold (every midpoint between consecutive distinct gate probabilities on the validation
images, plus accept-all and reject-all) for the mean Airbus F2.  Ties go to the threshold
nearest 0.5, then the smallest minimum size, then the gate threshold nearest 0.5.  The
choice and its validation F2 go to ``RUN_DIR/seg_tuning.json`` (atomic write), which
``imbal predict`` reads as its defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from imbal.errors import ImbalError

THRESHOLDS = tuple(round(0.3 + 0.05 * i, 2) for i in range(11))  # 0.30, 0.35, ..., 0.80
MIN_SIZES = (0, 10, 20, 50, 100)


def grid_scores(prob: np.ndarray, truth: list[np.ndarray], thresholds: Sequence[float] = THRESHOLDS,
                min_sizes: Sequence[int] = MIN_SIZES, *, watershed: bool = False) -> np.ndarray:
    """The Airbus F2 of one image for every (threshold, min size): ``[len(thresholds), len(min_sizes)]``."""
    from imbal.predict.evaluate import image_f2
    from imbal.predict.instances import drop_small, instances

    out = np.zeros((len(thresholds), len(min_sizes)))
    prob = np.asarray(prob)
    top = float(prob.max()) if prob.size else 0.0
    for i, t in enumerate(thresholds):
        if top <= t:  # nothing predicted (most Kaggle images): the empty prediction's score
            out[i] = 0.0 if truth else 1.0
            continue
        lab, n = instances(prob, threshold=t, watershed=watershed)
        for j, m in enumerate(min_sizes):
            out[i, j] = image_f2(*drop_small(lab, n, m), truth)
    return out


def gate_candidates(probs: np.ndarray) -> np.ndarray:
    """Midpoints between consecutive distinct probabilities, one below the lowest, one above the highest."""
    u = np.unique(np.asarray(probs, dtype=np.float64))
    return np.concatenate([[u[0] / 2], (u[1:] + u[:-1]) / 2, [(u[-1] + 1) / 2]])


def choose(scores: np.ndarray, empty: np.ndarray, thresholds: Sequence[float] = THRESHOLDS,
           min_sizes: Sequence[int] = MIN_SIZES, gate_probs: np.ndarray | None = None) -> dict[str, Any]:
    """The best cell of the grid.

    Args:
        scores: ``[images, thresholds, min sizes]`` F2 of each image (:func:`grid_scores`).
        empty: ``[images]`` the F2 of predicting nothing (1 for an image without ships, else 0),
            the score of an image the gate rejects.
        gate_probs: ``[images]`` P(ship) of the gate, or None without a gate.
    """
    scores = np.asarray(scores, dtype=np.float64)
    empty = np.asarray(empty, dtype=np.float64)
    gates = [None] if gate_probs is None else list(gate_candidates(gate_probs))
    best = None
    for g in gates:
        if g is None:
            mean = scores.mean(0)
        else:
            ok = np.asarray(gate_probs) > g
            mean = np.where(ok[:, None, None], scores, empty[:, None, None]).mean(0)
        for i, t in enumerate(thresholds):
            for j, m in enumerate(min_sizes):
                key = (-round(float(mean[i, j]), 12), abs(t - 0.5), m, 0.0 if g is None else abs(g - 0.5))
                if best is None or key < best[0]:
                    best = (key, {"threshold": float(t), "min_size": int(m), "gate_threshold": g,
                                  "val_f2": float(mean[i, j])})
    return best[1]


def tune_seg(run_dir: str | Path, *, gate_dir: str | Path | None = None, tta: str = "none", watershed: bool = False,
             thresholds: Sequence[float] = THRESHOLDS, min_sizes: Sequence[int] = MIN_SIZES,
             trust_config: bool = False, device: str | None = None, write: bool = True) -> dict[str, Any]:
    """Tune on the run's validation split; write and return ``seg_tuning.json``'s content."""
    from imbal.io import write_json_atomic
    from imbal.predict.evaluate import iter_split, split_datamodule
    from imbal.predict.instances import check_min_size, check_probability
    from imbal.predict.pipeline import TUNING_FILE, load_gate, load_segmenter
    from imbal.predict.tta import check_mode

    check_mode(tta)
    for t in thresholds:
        check_probability(t, "threshold grid value")
    for m in min_sizes:
        check_min_size(m, "min-size grid value")
    if not thresholds or not min_sizes:
        raise ImbalError("tune-seg: the threshold and min-size grids need at least one value each")
    run_dir = Path(run_dir)
    seg = load_segmenter(run_dir, trust_config=trust_config, device=device)
    # the gate's own threshold is searched here: 0.5 is a placeholder, never used
    gate = None if gate_dir is None else load_gate(gate_dir, run_dir, threshold=0.5, trust_config=trust_config,
                                                   device=device)
    dm = split_datamodule(run_dir, "val")
    scores, empty, gprobs, default = [], [], [], []
    for im in iter_split(dm, "val"):
        prob, _ = seg.probs(im.image, tta, image_id=im.image_id)
        scores.append(grid_scores(prob, im.truth, thresholds, min_sizes, watershed=watershed))
        default.append(grid_scores(prob, im.truth, (0.5,), (0,), watershed=watershed)[0, 0])
        empty.append(0.0 if im.truth else 1.0)
        if gate is not None:
            gprobs.append(gate.prob(im.image))
    best = choose(np.stack(scores), np.asarray(empty), thresholds, min_sizes,
                  None if gate is None else np.asarray(gprobs))
    result = {
        "threshold": best["threshold"],
        "min_size": best["min_size"],
        "val_f2": best["val_f2"],
        "gate": None if gate is None else {"run_dir": str(Path(gate_dir).resolve()),
                                           "threshold": best["gate_threshold"]},
        "tta": tta,
        "watershed": watershed,
        "split": "val",
        "images": len(empty),
        "images_with_ships": int(len(empty) - sum(empty)),
        "val_f2_untuned": float(np.mean(default)),  # threshold 0.5, min size 0, no gate
        "all_background_f2": float(np.mean(empty)),
        "grid": {"thresholds": [float(t) for t in thresholds], "min_sizes": [int(m) for m in min_sizes]},
    }
    if write:
        write_json_atomic(run_dir / TUNING_FILE, result)
    return result
