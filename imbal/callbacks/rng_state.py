"""Every random number generator's state in each checkpoint, so a resumed run is the run it continues.

Lightning stores the loops' progress in a checkpoint but not the RNGs: a run resumed from
``last.ckpt`` (written at the end of an epoch) would start its next epoch from other random
numbers than the uninterrupted run (dropout masks, the DataLoader's base seed, a dataset's
``torch.randint`` crops).  :class:`RNGState` saves the states of torch (CPU and every CUDA
device), numpy's global generator and python's ``random`` as they are when the checkpoint is
written, and puts them back when the checkpoint is loaded.  The samplers, the on-device
augmentations and the training loaders' worker processes seed themselves from ``(seed, epoch)``
(imbal/data/samplers.py, loaders.py, on_device.py), so they need no state of their own.

The states are plain data (tensors, lists, ints), so a checkpoint still loads with
``weights_only=True``.  The runner adds the callback to every run (imbal/runner/build.py).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback


def capture() -> dict[str, Any]:
    """The RNG states of this process, as plain data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore(state: dict[str, Any]) -> None:
    """Put back states saved by :func:`capture` (a part the state lacks is left as it is)."""
    if "torch" in state:
        torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8).cpu())
    if "numpy" in state:
        n = state["numpy"]
        keys = np.asarray(torch.as_tensor(n["keys"]).cpu().numpy(), dtype=np.uint32)
        np.random.set_state((n["kind"], keys, int(n["pos"]), int(n["has_gauss"]), float(n["cached_gaussian"])))
    if "python" in state:
        p = state["python"]
        random.setstate((int(p["version"]), tuple(int(v) for v in p["internal"]), p["gauss_next"]))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all([torch.as_tensor(s, dtype=torch.uint8).cpu() for s in cuda])


class RNGState(Callback):
    """Saves the process's RNG states in every checkpoint and restores them when one is loaded.

    Lightning calls :meth:`state_dict` while it writes a checkpoint (``last.ckpt`` at the end
    of an epoch: after that epoch's validation, before the next epoch draws anything) and
    :meth:`load_state_dict` when ``fit(ckpt_path=...)`` restores the callbacks, before the
    resumed epoch's first draw (the sanity check runs inside Lightning's ``isolate_rng``).
    """

    def __init__(self):
        self._loaded: dict[str, Any] | None = None

    @property
    def state_key(self) -> str:
        return "RNGState"

    def state_dict(self) -> dict[str, Any]:
        return capture()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict:
            restore(state_dict)
            self._loaded = state_dict

    def on_train_start(self, trainer, pl_module) -> None:
        """A resumed fit builds its training iterator before it sets the sampler's epoch; with
        worker processes that iterator has already drawn indices (and started workers) for
        epoch 0.  Set the epoch and build it again, from the restored RNG state."""
        loaded, self._loaded = self._loaded, None
        loop = trainer.fit_loop
        combined, fetcher = getattr(loop, "_combined_loader", None), getattr(loop, "_data_fetcher", None)
        if loaded is None or combined is None or fetcher is None:
            return
        loaders = list(combined.flattened)
        if not any(int(getattr(dl, "num_workers", 0) or 0) > 0 for dl in loaders):
            return  # in-process loading draws its indices lazily, after set_epoch
        from lightning.fabric.utilities.data import _set_sampler_epoch

        for dl in loaders:
            _set_sampler_epoch(dl, loop.epoch_progress.current.processed)
        restore(loaded)  # the first iterator's draw (its base seed) happens again
        iter(fetcher)


class FlushCSVLogs(Callback):
    """Writes the CSV loggers' pending rows to ``metrics.csv`` when a checkpoint is saved and when an
    epoch starts, so a killed run's file holds every epoch its ``last.ckpt`` holds (CSVLogger
    itself writes every 100 steps); a resumed run keeps those rows (imbal/runner/resume.py)."""

    @staticmethod
    def _flush(trainer) -> None:
        from lightning.pytorch.loggers import CSVLogger

        for lg in trainer.loggers:
            if isinstance(lg, CSVLogger):
                lg.save()

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self._flush(trainer)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._flush(trainer)
