"""Loggers: the configs compose, each logger writes what it should, wandb never prompts or hangs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from imbal.config import conf_dir, register_configs
from imbal.errors import ImbalError
from imbal.reporting.loggers import choose_mode, finish_loggers, has_api_key, sweep_group

REPO = Path(__file__).resolve().parents[1]


def _compose(tmp_path: Path, *overrides: str, hydra: bool = False):
    register_configs()
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        return compose("train", overrides=[f"run_dir={tmp_path}", *overrides], return_hydra_config=hydra)


# -- choosing the wandb mode -----------------------------------------------------
def test_mode_follows_the_api_key(tmp_path):
    no_netrc = tmp_path / "absent-netrc"
    assert choose_mode(None, {}, no_netrc) == "offline"
    assert choose_mode(None, {"WANDB_API_KEY": "  "}, no_netrc) == "offline"
    assert choose_mode(None, {"WANDB_API_KEY": "k" * 40}, no_netrc) == "online"


def test_a_wandb_login_in_netrc_counts_as_a_key(tmp_path):
    rc = tmp_path / "netrc"
    rc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    assert has_api_key({}, rc)
    assert choose_mode(None, {}, rc) == "online"
    # a key for another host is not one for this one
    assert choose_mode(None, {"WANDB_BASE_URL": "https://wandb.example.org"}, rc) == "offline"


def test_explicit_mode_wins_and_online_without_key_refuses(tmp_path):
    no_netrc = tmp_path / "absent-netrc"
    assert choose_mode("offline", {"WANDB_API_KEY": "k" * 40}, no_netrc) == "offline"
    assert choose_mode(None, {"WANDB_MODE": "disabled", "WANDB_API_KEY": "k"}, no_netrc) == "disabled"
    assert choose_mode(None, {"WANDB_MODE": "dryrun"}, no_netrc) == "offline"  # wandb's old name
    with pytest.raises(ImbalError, match=r"^logger.wandb.mode=online needs an API key: set WANDB_API_KEY"):
        choose_mode("online", {}, no_netrc)
    with pytest.raises(ImbalError, match=r"^WANDB_MODE='sometimes' is not a wandb mode; expected one of online"):
        choose_mode(None, {"WANDB_MODE": "sometimes"}, no_netrc)


def test_group_is_the_sweep_dir_in_a_multirun_only(tmp_path):
    from hydra.core.hydra_config import HydraConfig

    assert sweep_group() is None  # no Hydra run at all
    try:
        HydraConfig.instance().set_config(_compose(tmp_path, hydra=True))
        assert sweep_group() is None  # a single run
        cfg = _compose(tmp_path, hydra=True)
        cfg.hydra.mode = "MULTIRUN"
        cfg.hydra.sweep.dir = "/data/multirun/loss_cmp"
        HydraConfig.instance().set_config(cfg)
        assert sweep_group() == "multirun/loss_cmp"
    finally:
        HydraConfig.instance().cfg = None


# -- the configs -------------------------------------------------------------------
def test_many_composes_csv_tensorboard_and_wandb_into_the_run_dir(tmp_path):
    cfg = _compose(tmp_path, "logger=many", "loss=focal", "seed=3")
    nodes = OmegaConf.to_container(cfg.logger, resolve=True)
    assert sorted(nodes) == ["csv", "tensorboard", "wandb"]
    assert {n["save_dir"] for n in nodes.values()} == {str(tmp_path)}
    assert nodes["wandb"]["_target_"] == "imbal.reporting.loggers.wandb_logger"
    assert nodes["wandb"]["name"] == "digits_lt-small_cnn-focal-seed3"
    assert nodes["wandb"]["tags"] == ["digits_lt", "small_cnn", "focal"]
    assert nodes["wandb"]["group"] is None and nodes["wandb"]["mode"] is None
    single = OmegaConf.to_container(_compose(tmp_path, "logger=tensorboard").logger)
    assert list(single) == ["tensorboard"]


def test_csv_and_tensorboard_write_metrics_and_hparams(tmp_path):
    from hydra.utils import instantiate
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from imbal.reporting.loggers import log_config

    cfg = _compose(tmp_path, "logger=many")
    loggers = [instantiate(cfg.logger[k]) for k in ("csv", "tensorboard")]
    log_config(loggers, {"loss": {"name": "ce"}, "seed": 0})
    for step, value in enumerate([0.25, 0.5, 0.75]):
        for lg in loggers:
            lg.log_metrics({"val/balanced_accuracy": value}, step=step)
    for lg in loggers:
        lg.finalize("success")

    rows = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()
    assert rows[0].split(",") == ["step", "val/balanced_accuracy"]
    assert rows[1:] == ["0,0.25", "1,0.5", "2,0.75"]
    assert "name: ce" in (tmp_path / "csv" / "hparams.yaml").read_text()

    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    events = acc.Scalars("val/balanced_accuracy")
    assert [(e.step, e.value) for e in events] == [(0, 0.25), (1, 0.5), (2, 0.75)]
    assert "seed: 0" in (tmp_path / "tensorboard" / "hparams.yaml").read_text()


def test_finish_without_a_started_wandb_run_does_nothing(tmp_path):
    printed: list[str] = []
    assert finish_loggers([object()], print_fn=printed.append) == []
    assert printed == []


# -- wandb, offline, for real -----------------------------------------------------------
WANDB_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from imbal.config import conf_dir, register_configs
    from imbal.reporting.loggers import finish_loggers

    run_dir = Path(sys.argv[1])
    register_configs()
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[f"run_dir={run_dir}", "logger=wandb", "loss=ce", "seed=7", *sys.argv[2:]])
    logger = instantiate(cfg.logger.wandb)
    logger.log_metrics({"val/balanced_accuracy": 0.5}, step=0)
    logger.log_metrics({"val/balanced_accuracy": 0.75}, step=1)
    run = logger.experiment
    print("MODE", run.settings.mode, "NAME", run.name, "GROUP", run.group, "TAGS", ",".join(run.tags), flush=True)
    dirs = finish_loggers([logger])
    print("OFFLINE_DIRS", len(dirs), flush=True)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "key, overrides",
    [
        pytest.param(None, [], id="no-key-offline"),
        # a key but no server: online fails within init_timeout, the run logs offline instead
        pytest.param("a" * 40, ["logger.wandb.init_timeout=5"], id="key-but-no-network"),
    ],
)
def test_wandb_without_network_or_stdin_logs_offline_within_a_bound(tmp_path, key, overrides):
    script = tmp_path / "use_wandb.py"
    script.write_text(WANDB_SCRIPT)
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        HOME=str(home),  # no ~/.netrc login, no wandb settings
        # no network: every proxy and the wandb server point at a closed port
        http_proxy="http://127.0.0.1:9",
        https_proxy="http://127.0.0.1:9",
        HTTP_PROXY="http://127.0.0.1:9",
        HTTPS_PROXY="http://127.0.0.1:9",
        WANDB_BASE_URL="http://127.0.0.1:9",
        PYTHONUNBUFFERED="1",
    )
    if key:
        env["WANDB_API_KEY"] = key
    run_dir = tmp_path / "run"
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(script), str(run_dir), *overrides],
        stdin=subprocess.DEVNULL,  # a prompt would read EOF and fail, never wait
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=400,  # a hang never ends; a loaded shared CI machine can take minutes to import torch
    )
    elapsed = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "MODE offline NAME digits_lt-small_cnn-ce-seed7 GROUP  TAGS digits_lt,small_cnn,ce" in out
    assert "OFFLINE_DIRS 1" in out
    runs = list((run_dir / "wandb").glob("offline-run-*"))  # (a failed online attempt leaves a run-* dir of logs)
    assert len(runs) == 1
    records = list(runs[0].glob("run-*.wandb"))
    assert len(records) == 1 and records[0].stat().st_size > 1000
    # the sync command is printed exactly once, naming the run's directory
    sync_lines = [ln for ln in out.splitlines() if "wandb sync" in ln]
    assert sync_lines == [f"wandb: offline run saved in {runs[0]}; upload it with: wandb sync {runs[0]}"]
    assert "Enter your choice" not in out and "Paste an API key" not in out  # no login prompt
    if key:
        assert "could not start an online run" in out and f"logging offline into {run_dir} instead" in out
    assert elapsed < 400


# -- MLflow: a local file store in the run dir --------------------------------------
def test_mlflow_composes_a_file_store_in_the_run_dir(tmp_path):
    cfg = _compose(tmp_path, "logger=mlflow", "loss=focal", "seed=3")
    node = OmegaConf.to_container(cfg.logger, resolve=True)["mlflow"]
    assert node["_target_"] == "imbal.reporting.loggers.mlflow_logger"
    assert node["save_dir"] == str(tmp_path) and node["tracking_uri"] is None
    assert node["run_name"] == "digits_lt-small_cnn-focal-seed3"


def test_mlflow_run_leaves_metrics_plots_and_summary_in_the_store(make_cfg, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from imbal.runner import train

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_dir = tmp_path / "run"
    train(make_cfg("logger=mlflow", "data=gaussian_lt", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                   run_dir=run_dir))
    client = MlflowClient(tracking_uri=(run_dir / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("imbal")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["loss"] == "ce" and run.data.tags["mlflow.runName"].endswith("-ce-seed0")
    assert "val/balanced_accuracy" in run.data.metrics
    assert run.data.params["loss/name"] == "ce"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "summary.json" in artifacts
    summary = json.loads(Path(client.download_artifacts(run.info.run_id, "summary.json", str(tmp_path))).read_text())
    assert summary["loss"] == "ce" and summary["test"]["balanced_accuracy"] >= 0
    if (run_dir / "plots").is_dir():  # matplotlib installed
        plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
        assert "plots/confusion_matrix.png" in plots


def test_mlflow_without_mlflow_names_the_extra(tmp_path, monkeypatch):
    from imbal.extras import MissingExtraError, check_config

    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    cfg = _compose(tmp_path, "logger=mlflow")
    with pytest.raises(MissingExtraError, match=r"^logger=mlflow needs mlflow: pip install 'imbal\[mlflow\]'$"):
        check_config(cfg)
