"""Sweeps (Hydra multirun, basic and submitit launchers), DDP on CPU, and the SLURM launcher config."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from tests.conftest import run_train


def _summaries(sweep_dir):
    return sorted(sweep_dir.glob("*/summary.json"))


def test_multirun_2x2_basic_launcher(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_train("-m", "loss=ce,focal", "seed=0,1", "trainer.fast_dev_run=true", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    dirs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert dirs == [
        "0_loss=ce,seed=0,trainer.fast_dev_run=True",
        "1_loss=ce,seed=1,trainer.fast_dev_run=True",
        "2_loss=focal,seed=0,trainer.fast_dev_run=True",
        "3_loss=focal,seed=1,trainer.fast_dev_run=True",
    ]
    got = {(json.loads(p.read_text())["loss"], json.loads(p.read_text())["seed"]) for p in _summaries(sweep)}
    assert got == {("ce", 0), ("ce", 1), ("focal", 0), ("focal", 1)}


@pytest.mark.slow
def test_multirun_2x2_submitit_local(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_train("-m", "hydra/launcher=submitit_local", "loss=ce,focal", "seed=0,1",
                     "trainer.fast_dev_run=true", f"hydra.sweep.dir={sweep}", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(_summaries(sweep)) == 4


def test_ddp_in_local_multirun_is_refused(tmp_path):
    proc = run_train("-m", "trainer=ddp_cpu", "loss=ce", f"hydra.sweep.dir={tmp_path / 's'}")
    assert proc.returncode == 2
    err = [ln for ln in proc.stderr.splitlines() if ln.startswith("imbal: error:")]
    assert len(err) == 1 and "use trainer.strategy=ddp_spawn" in err[0], proc.stderr[-2000:]


@pytest.mark.slow
def test_ddp_cpu_counts_every_test_sample_once(tmp_path):
    out = tmp_path / "run"
    proc = run_train("trainer=ddp_cpu", "trainer.max_epochs=2", f"hydra.run.dir={out}", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    # 10 classes x 40 test images, split over 2 ranks without padding
    assert summary["test"]["num_samples"] == 400
    assert summary["val"]["num_samples"] == 300
    assert not list(out.glob("summary*.json"))[1:]  # written once, by rank 0


def test_slurm_launcher_config(make_cfg):
    """The generated SLURM job: one task per GPU, nodes from the trainer, partition from the environment."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from imbal.config import conf_dir

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2", "run_dir=x"],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    OmegaConf.resolve(cfg)
    assert (launcher.tasks_per_node, launcher.gpus_per_node, launcher.nodes) == (4, 4, 2)
    GlobalHydra.instance().clear()


def test_optuna_sweep_maximises_returned_metric(tmp_path):
    sweep = tmp_path / "opt"
    proc = run_train("hparams_search=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.n_startup_trials=2",
                     "trainer.fast_dev_run=true", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = OmegaConf.load(sweep / "optimization_results.yaml")
    vals = [json.loads(p.read_text())["val"]["balanced_accuracy"] for p in _summaries(sweep)]
    assert len(vals) == 2
    assert results.best_value == pytest.approx(max(vals))
    assert 0.0 <= results.best_params["loss.gamma"] <= 5.0
