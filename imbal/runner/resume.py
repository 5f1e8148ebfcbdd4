"""Resuming a run: the checkpoint must be of this run, and the CSV log keeps the epochs before it.

``resume=`` continues a run: the same data, model, loss, sampler, optimizer and seed, with
only the trainer's settings free to change (``trainer.max_epochs``: the usual reason to
resume).  :func:`check_resume_config` compares the config a checkpoint records
(``ImbalanceTask.set_rebuild_info``: ``hyper_parameters["config"]``) with this run's, key by
key under :data:`RUN_KEYS`, and refuses the first difference in one line; starting a new run
from a trained model's weights is ``init_from=``.  Keys present on one side only (a config
key added by a newer imbal) are not compared, nor the :data:`FREE_KEYS` (where the data is
read from, how many workers read it, and what follows ``trainer.max_epochs``).

Lightning's CSVLogger rewrites ``metrics.csv`` from scratch when a run starts;
:func:`read_csv_rows` and :func:`keep_csv_rows` put back the rows of the epochs the
checkpoint holds, so a resumed run's ``csv/metrics.csv`` has every epoch exactly once.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from imbal.errors import ImbalError

#: the parts of a config that define a run (a resumed run must keep them)
RUN_KEYS = ("seed", "data", "model", "loss", "sampler", "optimizer.optim", "mixing", "stage", "regularizer")
#: keys under RUN_KEYS that may change on resume
FREE_KEYS = frozenset({
    "data.num_workers", "data.root", "data.path", "data.train_path", "data.val_path", "data.test_path",
    "data.cache_dir", "data.sampler", "sampler.epochs", "mixing.until_epoch",
})


def read_checkpoint(ckpt_path: str | Path) -> dict[str, Any]:
    """A checkpoint's plain data (``weights_only=True``: loading it runs no code)."""
    import torch

    try:
        return torch.load(str(ckpt_path), map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # an old (non-zip) checkpoint cannot be memory-mapped
        return torch.load(str(ckpt_path), map_location="cpu", weights_only=True)


def _flat(node: Any, prefix: str) -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: node}


def _pick(config: dict, dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def first_difference(old: dict, new: dict) -> tuple[str, Any, Any] | None:
    """``(key, old value, new value)`` of the first key under :data:`RUN_KEYS` that differs."""
    for root in RUN_KEYS:
        a, b = _flat(_pick(old, root), root), _flat(_pick(new, root), root)
        for key in a:
            if key in b and a[key] != b[key] and not any(key == f or key.startswith(f + ".") for f in FREE_KEYS):
                return key, a[key], b[key]
    return None


def check_resume_config(cfg: DictConfig, ckpt_path: str | Path, checkpoint: dict | None = None) -> dict:
    """Refuse (one line) a resume whose config differs from the checkpoint's in what defines the run;
    returns the checkpoint's plain data."""
    ckpt = checkpoint if checkpoint is not None else read_checkpoint(ckpt_path)
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    old = hparams.get("config") if isinstance(hparams, dict) else None
    if not isinstance(old, dict):
        return ckpt  # a checkpoint that records no config: nothing to compare
    new = OmegaConf.to_container(cfg, resolve=True)
    diff = first_difference(old, new)
    if diff is not None:
        key, was, now = diff
        raise ImbalError(
            f"resume={cfg.get('resume')}: checkpoint {ckpt_path} is of another run: {key} was {was!r} there, "
            f"{now!r} here (a resumed run keeps data, model, loss, sampler, optimizer and seed; only trainer "
            f"settings such as trainer.max_epochs may change); to start a new run from its weights use "
            f"init_from={ckpt_path}"
        )
    return ckpt


def _csv_loggers(loggers: list[Any]) -> list[Any]:
    from lightning.pytorch.loggers import CSVLogger

    return [lg for lg in loggers if isinstance(lg, CSVLogger)]


def read_csv_rows(loggers: list[Any]) -> dict[int, list[dict[str, str]]]:
    """The rows of each CSV logger's ``metrics.csv`` as they are on disk, read before the logger
    starts (Lightning deletes the file then); keyed by the logger's position."""
    out: dict[int, list[dict[str, str]]] = {}
    for lg in _csv_loggers(loggers):
        path = Path(lg.log_dir) / "metrics.csv"
        if path.is_file():
            with path.open(newline="") as f:
                out[id(lg)] = [{k: v for k, v in row.items() if k and v not in ("", None)} for row in csv.DictReader(f)]
    return out


def _epoch_of(row: dict[str, str]) -> int | None:
    try:
        return int(float(row["epoch"]))
    except (KeyError, ValueError):
        return None


def keep_csv_rows(loggers: list[Any], rows: dict[int, list[dict[str, str]]], epoch: int) -> int:
    """Write back, before the resumed run logs anything, the rows of epochs ``<= epoch`` (the
    checkpoint's last complete epoch; rows of the epoch that was cut short are dropped, it runs
    again).  Returns the number of rows kept."""
    kept_total = 0
    for lg in _csv_loggers(loggers):
        old = rows.get(id(lg))
        if not old:
            continue
        kept = [r for r in old if (_epoch_of(r) is not None and _epoch_of(r) <= epoch)]
        if not kept:
            continue
        writer = lg.experiment
        writer.metrics = kept + list(writer.metrics)
        writer.save()
        kept_total += len(kept)
    return kept_total
