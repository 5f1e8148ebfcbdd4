"""Lightning's tqdm progress bar, redrawn at most every ``min_interval`` seconds.

Written here because Lightning's ``TQDMProgressBar`` redraws on every
``refresh_rate``-th batch whatever the time (an explicit ``tqdm.refresh()`` plus
``set_postfix``, which bypass tqdm's own ``mininterval``): at the default
``refresh_rate=1`` a step of a few milliseconds pays ~1 ms of terminal writes
(``bench/overhead.py``: 2.2x the plain loop with the bar, 1.6x without, on
digits-mlp).  A larger ``refresh_rate`` would fix fast steps but leave a slow
step (a ResNet on the CPU) showing nothing for minutes; a time limit suits both.
tqdm's own default, 0.1 s, is kept.  The last batch of a loop is always drawn.
"""

from __future__ import annotations

import time

from lightning.pytorch.callbacks import TQDMProgressBar


class ProgressBar(TQDMProgressBar):
    """``TQDMProgressBar`` (same arguments) that skips redraws less than ``min_interval`` s apart."""

    def __init__(self, refresh_rate: int = 1, process_position: int = 0, leave: bool = False,
                 min_interval: float = 0.1):
        super().__init__(refresh_rate=refresh_rate, process_position=process_position, leave=leave)
        if min_interval < 0:
            raise ValueError(f"ProgressBar min_interval={min_interval!r}; expected seconds >= 0")
        self.min_interval = float(min_interval)
        self._last_draw = float("-inf")

    def _due(self, n: int, total) -> bool:
        if total is not None and n >= total:
            return True  # the last batch: the bar ends full
        now = time.monotonic()
        if now - self._last_draw < self.min_interval:
            return False
        self._last_draw = now
        return True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._due(batch_idx + 1, self.train_progress_bar.total):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._due(batch_idx + 1, self.val_progress_bar.total):
            super().on_validation_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._due(batch_idx + 1, self.test_progress_bar.total):
            super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._due(batch_idx + 1, self.predict_progress_bar.total):
            super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
