"""A finished run in Python: ``imbal.load_run(run_dir)``.

::

    import imbal

    run = imbal.load_run("outputs/2026-01-01/12-00-00")
    run.summary.test["balanced_accuracy"]      # summary.json (RunSummary)
    logits = run.model(x)                      # the best checkpoint's ImbalanceTask, in eval mode
    pred = run.predictions("test")             # predictions/test.npz: index, targets, logits, posthoc_*
                                               # (segmentation: predictions/test.jsonl, one record per image)

The run dir's ``summary.json`` (config, best checkpoint) and ``data_stats.json`` are all it reads;
the training data is never read again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imbal.errors import ImbalError

if TYPE_CHECKING:
    import numpy as np

    from imbal.data.stats import DataStats
    from imbal.runner.summary import RunSummary
    from imbal.task import ImbalanceTask


@dataclass
class Run:
    """A finished run: its model (eval mode), data statistics, resolved config and summary."""

    run_dir: Path
    model: "ImbalanceTask"
    stats: "DataStats"
    config: dict[str, Any]
    summary: "RunSummary"
    checkpoint: Path

    def predictions(self, split: str = "test") -> "dict[str, np.ndarray] | list[dict[str, Any]]":
        """``predictions/<split>.npz`` as a dict of arrays (``index``, ``targets``, ``logits``,
        ``posthoc_<name>`` for test) plus ``class_names`` and ``task``.

        A segmentation run: ``predictions/<split>.jsonl`` as a list of per-image dicts in split order,
        ``index``, ``image_id``, ``shape`` ``[H, W]``, ``pred`` (Kaggle RLE of the thresholded predicted
        mask the metrics scored) and ``true_instances`` (one RLE per true instance); decode them with
        ``imbal.data.segmentation.rle.rle_decode(rle, shape)``."""
        from imbal.runner.predictions import read_predictions

        return read_predictions(self.run_dir, split)


def run_checkpoint(run_dir: str | Path, summary: "RunSummary", checkpoint: str | Path | None = None) -> Path:
    """``checkpoint`` if given, else the run's best checkpoint (``summary.json`` stores it relative
    to the run dir; an absolute path of an older summary is also found in ``checkpoints/`` of a
    moved run dir), else ``checkpoints/last.ckpt``."""
    from imbal.runner.rundir import CHECKPOINT_DIR

    run_dir = Path(run_dir)
    if checkpoint is not None:
        ckpt = Path(checkpoint)
    elif summary.best_checkpoint:
        ckpt = Path(summary.best_checkpoint)
        if not ckpt.is_absolute():
            ckpt = run_dir / ckpt
        moved = run_dir / CHECKPOINT_DIR / ckpt.name
        if not ckpt.is_file() and moved.is_file():
            ckpt = moved
    else:
        ckpt = run_dir / CHECKPOINT_DIR / "last.ckpt"
    if not ckpt.is_file():
        raise ImbalError(f"predict: checkpoint {ckpt} not found")
    return ckpt


def load_run(run_dir: str | Path, checkpoint: str | Path | None = None, *, trust_config: bool = False) -> Run:
    """The finished run in ``run_dir``, its model rebuilt from the best checkpoint (or ``checkpoint``).

    The checkpoint's own record of config and data stats rebuilds the model; a checkpoint
    written before tasks recorded them is rebuilt from the run dir's ``summary.json`` config and
    ``data_stats.json``.  A run dir is data, not code: only imbal's own models and registered
    losses are built from it, and any other ``_target_`` in either config is refused in one line
    (:mod:`imbal.runner.rebuild`); ``trust_config=True`` (or ``IMBAL_TRUST_CONFIG=1``) builds
    whatever the config names, for a run you made yourself with your own backbone class.
    """
    from imbal.runner.rebuild import check_config, trusted
    from imbal.runner.rundir import read_stats
    from imbal.runner.summary import SUMMARY_FILE, RunSummary

    run_dir = Path(run_dir)
    summary = RunSummary.read(run_dir)
    if not trusted(trust_config):
        check_config(summary.config, where=f"run dir {run_dir} ({SUMMARY_FILE})")
    from imbal.task import ImbalanceTask  # imports torch and Lightning: after the checks
    stats = read_stats(run_dir)
    ckpt = run_checkpoint(run_dir, summary, checkpoint)
    model = ImbalanceTask.load_from_checkpoint(ckpt, config=summary.config, stats=stats.to_dict(),
                                               trust_config=trust_config)
    return Run(run_dir=run_dir, model=model.eval(), stats=stats, config=summary.config, summary=summary,
               checkpoint=ckpt)
