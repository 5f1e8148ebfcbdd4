"""Killed runs lose nothing: SIGKILL mid-run, resume=auto, same result as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, run_train

ARGS = ["data=gaussian_lt", "data.n_max=6000", "trainer.max_epochs=6", "trainer.deterministic=true",
        "trainer.enable_progress_bar=false", "seed=3"]


@pytest.mark.slow
def test_kill_and_resume_matches_uninterrupted(tmp_path):
    ref = tmp_path / "ref"
    proc = run_train(*ARGS, f"hydra.run.dir={ref}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    expected = json.loads((ref / "summary.json").read_text())

    run = tmp_path / "killed"
    p = subprocess.Popen([sys.executable, str(REPO / "train.py"), *ARGS, f"hydra.run.dir={run}"],
                         cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # into the next epoch
    assert p.poll() is None, "the run finished before it could be killed; make it longer"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not (run / "summary.json").exists()  # a killed run never looks complete

    proc = run_train(*ARGS, f"hydra.run.dir={run}", "resume=auto")
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads((run / "summary.json").read_text())
    assert got["epochs_completed"] == expected["epochs_completed"] == 6
    assert got["global_step"] == expected["global_step"]
    for split in ("val", "test"):
        for key in ("balanced_accuracy", "accuracy", "macro_f1", "log_loss"):
            assert got[split][key] == pytest.approx(expected[split][key], abs=1e-6), (split, key)


def test_resume_refuses_changed_data(tmp_path, capsys):
    from tests.test_bad_inputs import run_inprocess

    run = tmp_path / "run"
    code, err = run_inprocess(["trainer.max_epochs=1", "trainer.enable_progress_bar=false", f"hydra.run.dir={run}"], capsys)
    assert code == 0, err[-2000:]
    # another data config: the checkpoint's recorded config says so first
    code, err = run_inprocess(["trainer.max_epochs=2", "data.ratio=50", f"hydra.run.dir={run}", "resume=auto"], capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("imbal: error:"), err[-2000:]
    assert "is of another run: data.ratio was 10 there, 50 here" in lines[0]
    # the same config reading other data (here: the manifest the run recorded no longer matches)
    manifest = run / "data_manifest.json"
    data = json.loads(manifest.read_text())
    data["class_counts"] = [1] * len(data["class_counts"])
    manifest.write_text(json.dumps(data))
    code, err = run_inprocess(["trainer.max_epochs=2", f"hydra.run.dir={run}", "resume=auto"], capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("imbal: error:"), err[-2000:]
    assert "the data changed since the run started" in lines[0] and "'class_counts'" in lines[0]


def test_resume_path_must_exist(tmp_path):
    proc = run_train("trainer.max_epochs=1", f"hydra.run.dir={tmp_path / 'r'}", "resume=/nonexistent/last.ckpt")
    assert proc.returncode == 2
    assert "resume=/nonexistent/last.ckpt: no such checkpoint file" in proc.stderr


def test_run_dir_lock_refuses_a_live_owner_and_takes_over_a_dead_one(tmp_path):
    from imbal.errors import ImbalError
    from imbal.runner.rundir import RunDirLock

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / ".imbal.lock").write_text(str(sleeper.pid))
        with pytest.raises(ImbalError, match=rf"is in use by another run \(pid {sleeper.pid}\)"):
            with RunDirLock(tmp_path):
                pass
    finally:
        sleeper.kill()
        sleeper.wait()
    with RunDirLock(tmp_path) as lock:  # the owner is dead: stale lock taken over
        owner = json.loads((tmp_path / ".imbal.lock").read_text())
        assert lock.owned and owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
    assert not (tmp_path / ".imbal.lock").exists()
