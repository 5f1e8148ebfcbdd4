"""The run-dir lock: one run owns a run directory at a time (``<run_dir>/.imbal.lock``).

The lock file holds JSON ``{"host": ..., "pid": ..., "time": ...}``, written whole: it is
written to a temporary file first and hard-linked to the lock name, which fails when the
lock exists, so no reader ever sees a half-written lock.  Who owns a lock:

* on this host: the pid, while it is alive (a killed run's lock is taken over, so
  ``resume=auto`` works);
* on another host (a shared file system): the owner touches the lock file every
  :data:`HEARTBEAT_S` seconds from a daemon thread; the lock is live until its mtime is
  :data:`STALE_S` seconds old;
* an empty or unreadable lock file (an older writer between its create and its write) is
  live while it is younger than :data:`YOUNG_S` seconds;
* a lock of older imbal versions (the pid alone) reads as a pid on this host.

The lock is taken before Hydra writes ``<run_dir>/.hydra/`` when the run dir is named on the
command line (imbal/train.py), and again, re-entrantly, by the run itself (imbal/runner/flow.py);
extra DDP ranks (``LOCAL_RANK``/``RANK`` > 0) share their rank 0's claim.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

from imbal.errors import ImbalError

LOCK_FILE = ".imbal.lock"
#: seconds between the owner's touches of its lock file
HEARTBEAT_S = 30.0
#: a lock of another host whose file was not touched for this long is stale
STALE_S = 120.0
#: an empty or unreadable lock file younger than this is a run that is writing it
YOUNG_S = 10.0


def _host() -> str:
    return socket.gethostname()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def read_lock(path: Path) -> dict | None:
    """The lock's owner ``{host, pid, time}``; a plain pid (older versions) is a pid on this host;
    None when the file is empty or unreadable."""
    try:
        text = Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    if text.isdigit():
        return {"host": _host(), "pid": int(text), "time": None}
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("pid"), int) or not isinstance(data.get("host"), str):
        return None
    return data


def _age(path: Path) -> float | None:
    try:
        return max(0.0, time.time() - path.stat().st_mtime)
    except OSError:
        return None


def holder(path: Path) -> str | None:
    """Why the lock at ``path`` is live (the owner, in words), or None when it is free, stale or ours."""
    age = _age(path)
    if age is None:
        return None
    owner = read_lock(path)
    if owner is None:
        if age < YOUNG_S:
            return f"its lock file {path.name} is being written, {age:.0f} s old"
        return None
    pid, host = owner["pid"], owner["host"]
    if host == _host():
        if pid == os.getpid() or not _pid_alive(pid):
            return None
        return f"pid {pid}"
    if age < STALE_S:
        return f"pid {pid} on host {host}, lock touched {age:.0f} s ago"
    return None


class RunDirLock:
    """Claims a run dir for one run; a second run pointed at a dir in use is refused in one line.

    Re-entrant within a process: a claim this process already holds (taken before Hydra
    started) is shared, and released by its first owner.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self.owned = False
        self.created_dir = False
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def __enter__(self) -> "RunDirLock":
        if os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("RANK", "0") != "0":
            return self
        for _ in range(3):
            owner = read_lock(self.path)
            if owner is not None and owner["pid"] == os.getpid() and owner["host"] == _host():
                return self  # this process holds it already: shared, released by its first owner
            if self._create():
                self.owned = True
                self._start_heartbeat()
                return self
            live = holder(self.path)
            if live is not None:
                raise ImbalError(
                    f"run dir {self.path.parent} is in use by another run ({live}); give this run its own hydra.run.dir"
                )
            self.path.unlink(missing_ok=True)  # stale: its run was killed
        raise ImbalError(f"could not claim run dir {self.path.parent} (lock file {self.path.name})")

    def _create(self) -> bool:
        """Write the lock whole (a temp file hard-linked to the lock name); False when it exists."""
        body = json.dumps({"host": _host(), "pid": os.getpid(), "time": time.time()})
        tmp = self.path.with_name(f"{LOCK_FILE}.{_host()}.{os.getpid()}.tmp")
        tmp.write_text(body)
        try:
            os.link(tmp, self.path)
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: exclusive create, then the write
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as f:
                f.write(body)
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def _start_heartbeat(self) -> None:
        def beat() -> None:
            while not self._stop.wait(HEARTBEAT_S):
                try:
                    os.utime(self.path)
                except OSError:
                    return

        self._beat = threading.Thread(target=beat, name="imbal-lock-heartbeat", daemon=True)
        self._beat.start()

    def release(self) -> None:
        self._stop.set()
        if self.owned:
            owner = read_lock(self.path)
            if owner is not None and owner["pid"] == os.getpid() and owner["host"] == _host():
                self.path.unlink(missing_ok=True)
            self.owned = False
            if self.created_dir:  # claimed before Hydra, which then stopped before writing anything
                _remove_if_empty(self.path.parent)

    def __exit__(self, *exc) -> None:
        self.release()


def claim_from_argv(flags: dict[str, str], overrides: list[str]) -> RunDirLock | None:
    """The lock of a single run whose ``hydra.run.dir=`` the command line names, taken before Hydra
    writes ``.hydra/`` there (a refused run must leave the running run's recorded config alone).

    None for a multirun (each job locks its own dir), for ``--help``/``--cfg``/``--info`` and
    for a run dir Hydra still has to resolve (``${...}``: the run locks it itself).
    """
    if any(f in flags for f in ("-m", "--multirun", "--cfg", "-h", "--help", "--hydra-help", "--info",
                                "-sc", "--shell-completion", "--experimental-rerun")):
        return None
    run_dir = None
    for arg in overrides:
        key, eq, value = arg.lstrip("+~").partition("=")
        if key == "hydra.run.dir" and eq:
            run_dir = value
        elif key in ("hydra.mode", "hydra/sweeper", "hydra/launcher") and "multirun" in value.lower():
            return None
    if not run_dir or "${" in run_dir or "," in run_dir:
        return None
    path = Path(run_dir).expanduser().absolute()
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    lock = RunDirLock(path)
    try:
        lock.__enter__()
    finally:
        if created and not lock.owned:
            _remove_if_empty(path)
    lock.created_dir = created
    return lock


def _remove_if_empty(path: Path) -> None:
    try:
        path.rmdir()  # only when empty: a refused command leaves no directory behind
    except OSError:
        pass
