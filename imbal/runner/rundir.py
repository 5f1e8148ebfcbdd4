"""A run directory: who owns it (lock), what it resumes from, and the data facts stored in it.

Files a run dir holds (docs/design.md, "Run dir"): ``.imbal.lock`` while a run owns it,
``data_manifest.json`` (the data's identity, compared on resume), ``data_stats.json``
(:class:`~imbal.data.stats.DataStats`, what prediction needs instead of the training data),
``checkpoints/``, ``summary.json`` (:class:`~imbal.runner.summary.RunSummary`, written last).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from imbal.data.stats import STATS_FILE, DataStats
from imbal.errors import ImbalError
from imbal.io import read_json_object, write_json_atomic
from imbal.runlock import LOCK_FILE, RunDirLock  # noqa: F401 - the lock lives in imbal/runlock.py

MANIFEST_FILE = "data_manifest.json"
CHECKPOINT_DIR = "checkpoints"


def resume_checkpoint(resume, checkpoint_dir: Path) -> str | None:
    """The checkpoint ``fit`` resumes from: ``resume=auto`` -> ``last.ckpt`` in ``checkpoint_dir`` if
    present, ``resume=<path>`` -> that checkpoint (which must exist), ``null`` -> none."""
    if resume in (None, False, "null", "none") and os.environ.get("SUBMITIT_EXECUTOR") == "slurm":
        # submitit owns pre-emption: a requeued job re-runs this function in the same
        # run dir, and must continue from its last checkpoint rather than start over.
        resume = "auto"
    if resume in (None, False, "null", "none"):
        return None
    if resume == "auto":
        path = Path(checkpoint_dir) / "last.ckpt"
        if not path.is_file():
            return None
    else:
        path = Path(str(resume))
        if not path.is_file():
            raise ImbalError(f"resume={resume}: no such checkpoint file (expected a .ckpt path or 'auto')")
    _check_resumable(path, resume)
    return str(path)


def _check_resumable(path: Path, resume) -> None:
    """Read the checkpoint once (``weights_only=True``): an unreadable or weights-only file is one line
    here rather than a traceback from inside ``fit``."""
    from imbal.runner.rebuild import read_checkpoint

    what = "a training checkpoint of this run (checkpoints/last.ckpt)"
    try:
        ckpt = read_checkpoint(path, what=what)
    except ImbalError as exc:
        raise ImbalError(f"resume={resume}: {exc}") from None
    if "optimizer_states" not in ckpt:
        raise ImbalError(f"resume={resume}: checkpoint {path} holds model weights only (no optimizer state); "
                         f"expected {what}")


def write_manifest(datamodule, run_dir: Path, *, resuming: bool) -> None:
    """Save the data manifest; when resuming, refuse data that differs from the run's first start.

    The manifest (class counts, seed, hash of the training indices, ...) is written to
    a scratch dir first and compared key by key with the run's ``data_manifest.json``,
    so changed data is refused rather than silently mixed into a resumed run.
    """
    if not hasattr(datamodule, "save_manifest"):
        return
    old_path = run_dir / MANIFEST_FILE
    with tempfile.TemporaryDirectory() as tmp:
        new = json.loads(Path(datamodule.save_manifest(tmp)).read_text())
    if resuming and old_path.is_file():
        old = json.loads(old_path.read_text())
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if changed:
            k = changed[0]
            raise ImbalError(
                f"refusing to resume {run_dir}: the data changed since the run started "
                f"({old_path.name} key '{k}' was {old.get(k)!r}, now {new.get(k)!r})"
            )
    datamodule.save_manifest(run_dir)


def write_stats(stats: DataStats, run_dir: Path) -> Path:
    """``data_stats.json``: the data's statistics, so prediction never reads the training data."""
    return write_json_atomic(Path(run_dir) / STATS_FILE, stats.to_dict())


def read_stats(run_dir: Path) -> DataStats:
    """The :class:`DataStats` a run stored; one line naming the file when it is missing or malformed."""
    path = Path(run_dir) / STATS_FILE
    data = read_json_object(path, expected="expected the directory of a run started by this imbal version")
    return DataStats.from_dict(data, where=str(path))
