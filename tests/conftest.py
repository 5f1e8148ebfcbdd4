"""Shared fixtures: compose configs with Hydra's compose API, run dirs under tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one torch/OpenMP thread per xdist worker (and per run it starts): the workers share the
    # cores, and two threads per worker on a 2-core machine only make them wait for each other
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from imbal.config import conf_dir, register_configs

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def compose_train(run_dir: Path | str, *overrides: str, return_hydra_config: bool = False):
    """The ``train`` config composed with ``run_dir`` and ``overrides``, as ``python train.py`` would see it.

    For module-scoped fixtures, which cannot take :func:`make_cfg`; Hydra's global state is cleared after.
    """
    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return compose(config_name="train", overrides=[f"run_dir={run_dir}", *overrides],
                           return_hydra_config=return_hydra_config)
    finally:
        GlobalHydra.instance().clear()


@pytest.fixture
def make_cfg(tmp_path):
    """``make_cfg(*overrides)`` -> a composed DictConfig whose run dir is under tmp_path."""

    def _make(*overrides: str, run_dir: Path | None = None):
        return compose_train(run_dir or (tmp_path / "run"), *overrides)

    yield _make
    GlobalHydra.instance().clear()


def run_train(*args: str, cwd: Path = REPO, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python train.py ARGS`` in a subprocess (as a user would)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        stdin=subprocess.DEVNULL,
    )


def best_state(run_dir: Path) -> dict:
    """The state dict of a finished run's best checkpoint (``summary.json`` stores it relative to the run dir)."""
    import json

    import torch

    best = json.loads((run_dir / "summary.json").read_text())["best_checkpoint"]
    return torch.load(run_dir / best, map_location="cpu", weights_only=True)["state_dict"]
