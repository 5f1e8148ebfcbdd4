"""Prediction with the model of a finished run: ``imbal predict RUN_DIR IMAGE_DIR OUT.csv``.

A run dir holds everything prediction needs: the config and best checkpoint
(``summary.json``) and the data's statistics (``data_stats.json``); the training data
is never read again.  Today's export is a Kaggle Airbus submission CSV
(:mod:`imbal.predict.airbus_submission`)::

    from imbal.predict import predict_run
    predict_run("outputs/2026-01-01/12-00-00", "test_v2", "submission.csv")
"""

from __future__ import annotations

from pathlib import Path

from torch import nn


def load_run_model(run_dir: str | Path, checkpoint: str | Path | None = None) -> nn.Module:
    """The trained model of a run directory, in eval mode: its config, its stored data statistics
    and its best checkpoint (or ``checkpoint``).  Reads no training data (:func:`imbal.load_run`)."""
    from imbal.api import load_run

    return load_run(run_dir, checkpoint).model


def predict_run(run_dir: str | Path, image_dir: str | Path, out_csv: str | Path, **kwargs) -> dict[str, int]:
    """:func:`~imbal.predict.airbus_submission.write_submission` with the model of a finished run
    (and its ``data.resize``)."""
    from imbal.predict.airbus_submission import write_submission
    from imbal.runner import RunSummary

    if "resize" not in kwargs:
        kwargs["resize"] = (RunSummary.read(run_dir).config.get("data") or {}).get("resize")
    return write_submission(load_run_model(run_dir), image_dir, out_csv, **kwargs)
