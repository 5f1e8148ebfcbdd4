"""Prediction with the model of a finished run: ``imbal predict RUN_DIR IMAGE_DIR OUT.csv``.

A run dir holds everything prediction needs: the config and best checkpoint
(``summary.json``) and the data's statistics (``data_stats.json``); the training data
is never read again.  The export is a Kaggle Airbus submission CSV
(:mod:`imbal.predict.airbus_submission`), optionally through the two-stage pipeline
(:mod:`imbal.predict.pipeline`: a ship-presence gate, TTA, instances); the same pipeline is
scored on a run's own split by :func:`predict_split` and tuned on validation by
:func:`imbal.predict.tune.tune_seg`::

    from imbal.predict import predict_run, predict_split
    predict_run("outputs/2026-01-01/12-00-00", "test_v2", "submission.csv")
    predict_split("outputs/mask_run", "test", "eval_out", gate="outputs/presence_run", tta="d4")
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported only once a model is built
    from torch import nn


def load_run_model(run_dir: str | Path, checkpoint: str | Path | None = None, *, trust_config: bool = False) -> "nn.Module":
    """The trained model of a run directory, in eval mode: its config, its stored data statistics
    and its best checkpoint (or ``checkpoint``).  Reads no training data (:func:`imbal.load_run`;
    ``trust_config`` as there)."""
    from imbal.api import load_run

    return load_run(run_dir, checkpoint, trust_config=trust_config).model


def _settings_and_gate(run_dir, threshold, min_size, gate, gate_threshold, tta, trust_config, device, use_tuning,
                       say):
    from imbal.predict.pipeline import load_gate, resolve_settings
    from imbal.predict.tta import check_mode

    check_mode(tta)
    settings = resolve_settings(run_dir, threshold, min_size, use_tuning=use_tuning)
    g = None
    if gate is not None:
        g = load_gate(gate, run_dir, threshold=gate_threshold, trust_config=trust_config, device=device,
                      use_tuning=use_tuning)
    elif gate_threshold is not None:
        from imbal.errors import ImbalError

        raise ImbalError("--gate-threshold needs --gate GATE_RUN_DIR (the ship-presence run it applies to)")
    if say:
        say(f"predict: {settings.describe()}, tta={tta}"
            + (f", gate threshold={g.threshold:.4g} ({g.source})" if g is not None else ""))
    return settings, g


def predict_run(run_dir: str | Path, image_dir: str | Path, out_csv: str | Path, *, trust_config: bool = False,
                threshold: float | None = None, min_size: int | None = None, gate: str | Path | None = None,
                gate_threshold: float | None = None, tta: str = "none", watershed: bool = False,
                device: str | None = None, use_tuning: bool = True, say=None, **kwargs) -> dict[str, int]:
    """:func:`~imbal.predict.airbus_submission.write_submission` with the model of a finished
    segmentation run (and its ``data.resize``); a run of another task kind is refused in one line.

    ``threshold`` / ``min_size``: None takes the run's ``seg_tuning.json`` (``imbal tune-seg``), else
    0.5 / 0.  ``gate``: a finished ship-presence run (:func:`imbal.predict.pipeline.load_gate`);
    ``tta``: ``none`` | ``flips`` | ``d4``; ``say``: called with one line naming the settings used.
    """
    from imbal.predict.pipeline import check_segmenter_run, load_segmenter

    check_segmenter_run(run_dir)
    settings, g = _settings_and_gate(run_dir, threshold, min_size, gate, gate_threshold, tta, trust_config, device,
                                     use_tuning, say)
    seg = load_segmenter(run_dir, trust_config=trust_config, device=device)
    kwargs.setdefault("resize", seg.resize)
    from imbal.predict.airbus_submission import write_submission

    return write_submission(seg.model, image_dir, out_csv, threshold=settings.threshold, min_size=settings.min_size,
                            device=seg.device, tta=tta, gate=g, watershed=watershed, **kwargs)


def predict_split(run_dir: str | Path, split: str, out_dir: str | Path, *, trust_config: bool = False,
                  threshold: float | None = None, min_size: int | None = None, gate: str | Path | None = None,
                  gate_threshold: float | None = None, tta: str = "none", watershed: bool = False,
                  device: str | None = None, use_tuning: bool = True, say=None) -> dict:
    """The pipeline scored on the run's own ``val`` or ``test`` split (:func:`imbal.predict.evaluate.evaluate_split`):
    ``out_dir/submission.csv`` and ``out_dir/summary.json`` (F2 with and without each step)."""
    from imbal.errors import ImbalError
    from imbal.predict.evaluate import SPLITS, evaluate_split
    from imbal.predict.pipeline import check_segmenter_run

    if split not in SPLITS:
        raise ImbalError(f"--split {split!r}: expected one of: {', '.join(SPLITS)}")
    check_segmenter_run(run_dir)
    settings, g = _settings_and_gate(run_dir, threshold, min_size, gate, gate_threshold, tta, trust_config, device,
                                     use_tuning, say)
    return evaluate_split(run_dir, split, out_dir, gate=g, tta=tta, settings=settings, watershed=watershed,
                          trust_config=trust_config, device=device)
