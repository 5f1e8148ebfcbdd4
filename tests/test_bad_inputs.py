"""The bad-input matrix: each user mistake exits 2 with one line naming what is wrong, and leaves no summary.json.

Each case runs ``train.py`` in-process (as ``python train.py ARGS`` would, through
``runpy``) so the matrix stays fast; ``tests/test_e2e.py`` checks the same error
path in real subprocesses.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO


def run_inprocess(args: list[str], capsys) -> tuple[int, str]:
    old = sys.argv
    sys.argv = [str(REPO / "train.py"), *args]
    try:
        runpy.run_path(str(REPO / "train.py"), run_name="__main__")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = old
    return code, capsys.readouterr().err


# --- data builders: each writes a broken input in the real format and returns the args to use ---

def npz_label_out_of_range(tmp: Path) -> list[str]:
    r = np.random.default_rng(0)
    y = np.r_[np.zeros(20, int), np.ones(5, int)]
    np.savez(tmp / "d.npz", x_train=r.normal(size=(25, 3)), y_train=y, x_val=r.normal(size=(4, 3)),
             y_val=np.array([0, 1, 0, 1]), x_test=r.normal(size=(4, 3)), y_test=np.array([0, 1, 7, 1]))
    return ["data=tensors", f"data.path={tmp / 'd.npz'}", "data.num_classes=2"]


CASES = {
    # name: (args or builder, expected fragment of the one-line message)
    "unknown loss": (["loss=nope"], "unknown loss 'nope'; choose one of:"),
    "unknown data": (["data=nope"], "unknown data 'nope'; choose one of:"),
    "unknown model": (["model=nope"], "unknown model 'nope'; choose one of:"),
    "incompatible data x model": (["model=mlp"], "model 'mlp' accepts vector inputs, but data 'digits_lt' gives image"),
    "label index >= num_classes": (npz_label_out_of_range, "y_test row 2 has label 7, expected a class id in [0, 2)"),
    "zero-sample class for a log-n loss": (
        ["data.n_max=5", "data.ratio=100", "loss=logit_adjusted"],
        "loss 'logit_adjusted' takes log of the class counts, but class 4 has zero training samples",
    ),
    "cost matrix of the wrong shape": (
        ["loss=cost_sensitive", "loss.costs=[[0,1],[1,0]]"], "loss 'cost_sensitive': costs has shape (2, 2), expected (10, 10)",
    ),
    "negative imbalance ratio": (["data.ratio=-5"], "imbalance ratio must be a number >= 1 (n_max / n_min), got -5"),
    "unwritable output dir": (["hydra.run.dir=/etc/hostname/run"], "cannot create output dir /etc/hostname/run"),
    "missing required config value": (["data=tensors"], "missing value for data.path"),
    "loss on a task it does not support": (["loss=dice"], "loss 'dice' does not support task 'multiclass'"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, tmp_path, capsys):
    spec, expected = CASES[name]
    args = spec(tmp_path) if callable(spec) else list(spec)
    run_dir = tmp_path / "run"
    if not any(a.startswith("hydra.run.dir=") for a in args):
        args.append(f"hydra.run.dir={run_dir}")
    code, err = run_inprocess([*args, "trainer.max_epochs=1", "trainer.enable_progress_bar=false"], capsys)
    lines = [ln for ln in err.splitlines() if ln.startswith("imbal: error:")]
    assert code == 2, err[-2000:]
    assert len(lines) == 1, err[-2000:]
    assert expected in lines[0], lines[0]
    assert "Traceback" not in err
    assert not (run_dir / "summary.json").exists()
