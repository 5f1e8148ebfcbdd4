"""A resumed run is exactly the run it continues; a run dir has one owner; SIGTERM is not success.

The kill-resume runs stop a run part-way (SIGKILL in a real process, or an exception in-process
for the fast case), resume it with ``resume=auto`` in the same dir and compare it with an
uninterrupted run: the same summary metrics, the same final weights (torch.equal) and the same
``csv/metrics.csv`` (every epoch exactly once).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from tests.conftest import run_train
from tests.test_bad_inputs import run_inprocess

KILL = "+callbacks.kill._target_=tests.test_resume_equivalence.KillAt"


class Interrupted(RuntimeError):
    """What :class:`KillAt` raises in-process (``signal="raise"``): a run stopped part-way."""


class KillAt(Callback):
    """Test-only: at the start of the batch with global step ``step``, sends this process ``signal``
    (``SIGKILL``, ``SIGTERM``) or, with ``signal="raise"``, raises :class:`Interrupted`.

    Injected with ``+callbacks.kill._target_=tests.test_resume_equivalence.KillAt +callbacks.kill.step=N``.
    """

    def __init__(self, step: int, signal: str = "SIGKILL"):
        self.step, self.signal, self.sent = int(step), signal, False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step and not self.sent:
            self.sent = True
            if self.signal == "raise":
                raise Interrupted(f"stopped at step {self.step}")
            os.kill(os.getpid(), getattr(signal, self.signal))


# 16 steps per epoch, 3 epochs; the kills land in the second epoch (step 20)
SMALL = ["data=gaussian_lt", "data.n_max=200", "data.val_per_class=30", "data.test_per_class=30",
         "data.batch_size=32", "trainer.max_epochs=3", "trainer.enable_progress_bar=false"]
DROPOUT_BALANCED = [*SMALL, "sampler=class_balanced", "model.dropout=0.3"]


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def assert_same_run(ref: Path, run: Path) -> None:
    """``run`` (interrupted, resumed) is ``ref`` (uninterrupted): metrics, weights, metrics.csv."""
    want, got = _summary(ref), _summary(run)
    assert (got["epochs_completed"], got["global_step"]) == (want["epochs_completed"], want["global_step"])
    for split in ("val", "test"):
        assert got[split] == want[split], split  # exactly: the same numbers, not approximately
    a = torch.load(ref / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    b = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    ref_csv = (ref / "csv" / "metrics.csv").read_text()
    assert (run / "csv" / "metrics.csv").read_text() == ref_csv
    lines = ref_csv.splitlines()
    header = lines[0].split(",")
    epochs = [row.split(",")[header.index("epoch")] for row in lines[1:]]
    loss_col = header.index("train/loss")
    train_rows = [row.split(",")[0] for row in lines[1:] if row.split(",")[loss_col]]
    assert train_rows == [str(e) for e in range(want["epochs_completed"])]  # every epoch exactly once
    assert len(epochs) == len(lines) - 1


# the fast in-process case: 8 steps per epoch, 2 epochs, stopped in the second (step 12)
TINY = ["data=gaussian_lt", "data.n_max=100", "data.val_per_class=20", "data.test_per_class=20",
        "data.batch_size=32", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
        "sampler=class_balanced", "model.dropout=0.3"]


def test_interrupted_and_resumed_in_process_is_the_uninterrupted_run(tmp_path, capsys, monkeypatch):
    """Fast case: dropout + class-balanced sampler, stopped by an exception in epoch 2, resumed."""
    from imbal.runner import flow

    monkeypatch.setattr(flow, "write_plots", lambda *a, **k: [])  # figures are not what this compares
    ref, run = tmp_path / "ref", tmp_path / "run"
    code, err = run_inprocess([*TINY, f"hydra.run.dir={ref}"], capsys)
    assert code == 0, err[-2000:]
    code, err = run_inprocess([*TINY, f"hydra.run.dir={run}", KILL, "+callbacks.kill.step=12",
                               "+callbacks.kill.signal=raise"], capsys)
    assert code == 1 and "stopped at step 12" in err
    assert not (run / "summary.json").exists() and (run / "checkpoints" / "last.ckpt").is_file()
    code, err = run_inprocess([*TINY, f"hydra.run.dir={run}", "resume=auto"], capsys)
    assert code == 0, err[-2000:]
    assert_same_run(ref, run)

    # resuming the same checkpoint with another loss into a new dir: refused, one line naming loss
    other = tmp_path / "other"
    ckpt = run / "checkpoints" / "last.ckpt"
    code, err = run_inprocess([*TINY, "loss=focal", f"hydra.run.dir={other}", f"resume={ckpt}"], capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("imbal: error: "), err
    assert f"checkpoint {ckpt} is of another run: loss.name was 'ce' there, 'focal' here" in lines[0]
    assert f"init_from={ckpt}" in lines[0]
    assert not (other / "summary.json").exists()


def _kill_resume(tmp_path: Path, args: list[str], step: int) -> None:
    ref, run = tmp_path / "ref", tmp_path / "run"
    proc = run_train(*args, f"hydra.run.dir={ref}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run_train(*args, f"hydra.run.dir={run}", KILL, f"+callbacks.kill.step={step}")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not (run / "summary.json").exists() and (run / "checkpoints" / "last.ckpt").is_file()
    proc = run_train(*args, f"hydra.run.dir={run}", "resume=auto")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert_same_run(ref, run)


@pytest.mark.slow
def test_sigkill_and_resume_default_run(tmp_path):
    _kill_resume(tmp_path, SMALL, step=20)


@pytest.mark.slow
def test_sigkill_and_resume_dropout_class_balanced(tmp_path):
    _kill_resume(tmp_path, DROPOUT_BALANCED, step=20)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_sigkill_and_resume_cifar_augmented(tmp_path, workers):
    """Random crops and flips of the training images (torchvision), in the main process or in workers."""
    from tests.cifar_fixture import write_cifar10

    root = write_cifar10(tmp_path / "data", per_class_train=20, per_class_test=4)
    args = ["data=cifar10_lt", f"data.root={root}", "data.ratio=10", f"data.num_workers={workers}", "data.batch_size=16",
            "data.augment=true", "model.blocks=1", "trainer.max_epochs=3", "trainer.enable_progress_bar=false"]
    _kill_resume(tmp_path, args, step=7)


@pytest.mark.slow
def test_sigterm_exits_143_and_resume_completes(tmp_path):
    run = tmp_path / "run"
    proc = run_train(*SMALL, f"hydra.run.dir={run}", KILL, "+callbacks.kill.step=20", "+callbacks.kill.signal=SIGTERM")
    assert proc.returncode == 143, proc.stderr[-2000:]
    assert "imbal: run stopped by SIGTERM before it completed" in proc.stderr and "Traceback" not in proc.stderr
    assert not (run / "summary.json").exists() and (run / "checkpoints" / "last.ckpt").is_file()
    assert not (run / ".imbal.lock").exists()
    proc = run_train(*SMALL, f"hydra.run.dir={run}", "resume=auto")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _summary(run)["epochs_completed"] == 3


# --- the run-dir lock ---------------------------------------------------------------------------

@pytest.fixture
def sleeper():
    p = subprocess.Popen(["sleep", "60"])
    yield p
    p.kill()
    p.wait()


def test_refused_second_run_leaves_the_running_runs_hydra_files_alone(tmp_path, capsys, sleeper):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    files = {name: f"recorded by the first run: {name}\n".encode() for name in ("config.yaml", "overrides.yaml", "hydra.yaml")}
    for name, body in files.items():
        (run / ".hydra" / name).write_bytes(body)
    (run / ".imbal.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": sleeper.pid, "time": time.time()}))
    code, err = run_inprocess([*SMALL, "loss=focal", f"hydra.run.dir={run}"], capsys)
    assert code == 2 and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines == [f"imbal: error: run dir {run} is in use by another run (pid {sleeper.pid}); "
                     "give this run its own hydra.run.dir"]
    for name, body in files.items():
        assert (run / ".hydra" / name).read_bytes() == body, name
    assert sorted(p.name for p in run.iterdir()) == [".hydra", ".imbal.lock"]  # no train.log either


def test_lock_is_json_written_whole_and_released(tmp_path):
    from imbal.runlock import RunDirLock, read_lock

    with RunDirLock(tmp_path) as lock:
        owner = json.loads((tmp_path / ".imbal.lock").read_text())
        assert lock.owned and owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        assert read_lock(tmp_path / ".imbal.lock")["pid"] == os.getpid()
        with RunDirLock(tmp_path) as inner:  # this process's own claim (taken before Hydra) is shared
            assert not inner.owned
        assert (tmp_path / ".imbal.lock").is_file()
    assert sorted(tmp_path.iterdir()) == []  # no lock, no temp file left


def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_empty_lock_file_is_live_while_young_and_stale_when_old(tmp_path):
    from imbal.errors import ImbalError
    from imbal.runlock import RunDirLock

    lock_file = tmp_path / ".imbal.lock"
    lock_file.write_text("")
    refused = r"in use by another run \(its lock file \.imbal\.lock is being written, 0 s old\); give this run its own"
    with pytest.raises(ImbalError, match=refused):
        RunDirLock(tmp_path).__enter__()
    _age(lock_file, 60)
    with RunDirLock(tmp_path) as lock:
        assert lock.owned and json.loads(lock_file.read_text())["pid"] == os.getpid()


def test_lock_of_another_host_is_live_until_its_heartbeat_is_stale(tmp_path):
    from imbal.errors import ImbalError
    from imbal.runlock import STALE_S, RunDirLock

    lock_file = tmp_path / ".imbal.lock"
    lock_file.write_text(json.dumps({"host": "node-7", "pid": 4242, "time": time.time() - 3600}))
    _age(lock_file, 5)
    with pytest.raises(ImbalError, match=r"in use by another run \(pid 4242 on host node-7, lock touched 5 s ago\)"):
        RunDirLock(tmp_path).__enter__()
    _age(lock_file, STALE_S + 1)
    with RunDirLock(tmp_path) as lock:
        assert lock.owned and json.loads(lock_file.read_text())["host"] == socket.gethostname()


def test_owner_touches_its_lock_file(tmp_path, monkeypatch):
    from imbal import runlock

    monkeypatch.setattr(runlock, "HEARTBEAT_S", 0.05)
    with runlock.RunDirLock(tmp_path):
        _age(tmp_path / ".imbal.lock", 500)
        time.sleep(0.5)
        assert time.time() - (tmp_path / ".imbal.lock").stat().st_mtime < 5


def test_plain_pid_lock_of_older_versions_is_read(tmp_path, sleeper):
    from imbal.errors import ImbalError
    from imbal.runlock import RunDirLock

    (tmp_path / ".imbal.lock").write_text(str(sleeper.pid))
    with pytest.raises(ImbalError, match=rf"in use by another run \(pid {sleeper.pid}\)"):
        RunDirLock(tmp_path).__enter__()


def test_claim_before_hydra_skips_multirun_and_unresolved_dirs(tmp_path):
    from imbal.runlock import claim_from_argv

    assert claim_from_argv({"-m": ""}, [f"hydra.run.dir={tmp_path}"]) is None
    assert claim_from_argv({}, ["hydra.run.dir=outputs/${now:%H}"]) is None
    assert claim_from_argv({}, ["loss=focal"]) is None
    lock = claim_from_argv({}, [f"hydra.run.dir={tmp_path / 'new'}"])
    assert lock.owned and (tmp_path / "new" / ".imbal.lock").is_file()
    lock.release()
    assert not (tmp_path / "new").exists()  # created for the claim, left empty: removed


def test_resume_config_comparison_names_the_first_differing_key():
    from imbal.runner.resume import first_difference

    old = {"seed": 0, "data": {"name": "g", "root": "/a", "num_workers": 0}, "loss": {"name": "ce"},
           "optimizer": {"optim": {"lr": 0.1}, "scheduler": {"T_max": 3}}, "trainer": {"max_epochs": 3},
           "sampler": {"name": "progressive", "epochs": 3}}
    new = {**old, "data": {"name": "g", "root": "/b", "num_workers": 4}, "trainer": {"max_epochs": 9},
           "optimizer": {"optim": {"lr": 0.1}, "scheduler": {"T_max": 9}}, "sampler": {"name": "progressive", "epochs": 9}}
    assert first_difference(old, new) is None  # paths, workers and what follows max_epochs may change
    assert first_difference(old, {**new, "loss": {"name": "focal", "gamma": 2.0}}) == ("loss.name", "ce", "focal")
    assert first_difference(old, {**new, "optimizer": {"optim": {"lr": 0.2}}}) == ("optimizer.optim.lr", 0.1, 0.2)
    assert first_difference(old, {**new, "seed": 1}) == ("seed", 0, 1)
