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

LOCK_FILE = ".imbal.lock"
MANIFEST_FILE = "data_manifest.json"
CHECKPOINT_DIR = "checkpoints"


class RunDirLock:
    """Claims a run dir for one run (``.imbal.lock`` created exclusively, holding the pid).

    A second run pointed at a dir in use is refused in one line; a lock left by a
    killed run (its pid is gone) is taken over, so ``resume=auto`` works.  Extra DDP
    ranks (``LOCAL_RANK``/``RANK`` > 0) share their rank 0's claim.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self.owned = False

    def __enter__(self) -> "RunDirLock":
        if os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("RANK", "0") != "0":
            return self
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    pid = int(self.path.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and pid != os.getpid() and _pid_alive(pid):
                    raise ImbalError(
                        f"run dir {self.path.parent} is in use by another run (pid {pid}); "
                        "give this run its own hydra.run.dir"
                    ) from None
                self.path.unlink(missing_ok=True)  # stale: its run was killed
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            self.owned = True
            return self
        raise ImbalError(f"could not claim run dir {self.path.parent} (lock file {self.path.name})")

    def __exit__(self, *exc) -> None:
        if self.owned:
            self.path.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        last = Path(checkpoint_dir) / "last.ckpt"
        return str(last) if last.is_file() else None
    path = Path(str(resume))
    if not path.is_file():
        raise ImbalError(f"resume={resume}: no such checkpoint file (expected a .ckpt path or 'auto')")
    return str(path)


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
