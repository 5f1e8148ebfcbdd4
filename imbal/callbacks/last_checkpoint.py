"""``last.ckpt`` at the end of every training epoch, what ``resume=auto`` continues from.

Lightning 2.6's ``ModelCheckpoint(save_last=True)`` writes ``last.ckpt`` only in a step where
it also saved a top-k checkpoint (the monitored metric improved), and once more when training
ends: a run killed ten epochs after its best epoch would resume ten epochs back.  The runner
(imbal/runner/build.py) hands ``last.ckpt`` of the config's checkpoint callback to
:class:`LastCheckpoint`, which writes it after every training epoch (after that epoch's
validation and its epoch-end hooks: the state the next epoch starts from).
"""

from __future__ import annotations

import warnings

from lightning.pytorch.callbacks import ModelCheckpoint

# validate/test(ckpt_path="best") read the first checkpoint callback's best model, the config's own
# (LastCheckpoint is appended after it); Lightning's note that there are two is expected here
warnings.filterwarnings("ignore", message=r".*called with Trainer configured with multiple `ModelCheckpoint`")


class LastCheckpoint(ModelCheckpoint):
    """Writes ``<dirpath>/last.ckpt`` at the end of every training epoch (overwritten in place)."""

    def __init__(self, dirpath: str):
        super().__init__(dirpath=dirpath, filename=self.CHECKPOINT_NAME_LAST, monitor=None, save_top_k=1,
                         save_last=False, save_on_train_epoch_end=True, enable_version_counter=False,
                         auto_insert_metric_name=False)


def take_over_last(callbacks: list) -> None:
    """Move ``save_last=True`` of the first ModelCheckpoint in ``callbacks`` to a :class:`LastCheckpoint`
    in the same directory (appended, so the first checkpoint callback stays the one whose best
    model is tested)."""
    found = [c for c in callbacks if isinstance(c, ModelCheckpoint)]
    if not found or any(isinstance(c, LastCheckpoint) for c in found):
        return
    main = found[0]
    if main.save_last is True and main.dirpath:
        main.save_last = False
        callbacks.append(LastCheckpoint(main.dirpath))
