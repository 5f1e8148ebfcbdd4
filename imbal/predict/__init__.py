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
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported only once a model is built
    from torch import nn


def load_run_model(run_dir: str | Path, checkpoint: str | Path | None = None, *, trust_config: bool = False) -> "nn.Module":
    """The trained model of a run directory, in eval mode: its config, its stored data statistics
    and its best checkpoint (or ``checkpoint``).  Reads no training data (:func:`imbal.load_run`;
    ``trust_config`` as there)."""
    from imbal.api import load_run

    return load_run(run_dir, checkpoint, trust_config=trust_config).model


def predict_run(run_dir: str | Path, image_dir: str | Path, out_csv: str | Path, *, trust_config: bool = False,
                **kwargs) -> dict[str, int]:
    """:func:`~imbal.predict.airbus_submission.write_submission` with the model of a finished
    segmentation run (and its ``data.resize``); a run of another task kind is refused in one line."""
    from imbal.errors import ImbalError
    from imbal.kinds import SEGMENTATION
    from imbal.runner import RunSummary
    from imbal.runner.rundir import read_stats

    task = read_stats(Path(run_dir)).task
    if task != SEGMENTATION:
        raise ImbalError(f"predict: run dir {run_dir} is a {task} run (data_stats.json task '{task}'); "
                         f"imbal predict writes mask submissions and needs a {SEGMENTATION} run (data=airbus, "
                         "data=mask_folder); for other runs use imbal.load_run(run_dir).model")
    model = load_run_model(run_dir, trust_config=trust_config)
    if "resize" not in kwargs:
        data = RunSummary.read(run_dir).config.get("data")
        resize = data.get("resize") if isinstance(data, dict) else None
        if resize is not None and (isinstance(resize, bool) or not isinstance(resize, int) or resize < 1):
            raise ImbalError(f"predict: run dir {run_dir}: summary.json config.data.resize={resize!r}; "
                             "expected a positive integer or null")
        kwargs["resize"] = resize
    from imbal.predict.airbus_submission import write_submission

    return write_submission(model, image_dir, out_csv, **kwargs)
