"""Choices come from Hydra's own search path (a user's --config-dir YAMLs are valid in every group),
and the checkpoint callback's monitor and mode are set from the ``callbacks`` config group."""

from __future__ import annotations

import csv
import json
import textwrap

import pytest

from imbal.config import check_choices, config_search
from imbal.errors import ImbalError
from tests.conftest import run_train

USER_MODEL = '''
import torch
from torch import nn


class TinyMLP(nn.Module):
    """A user's own backbone: features [N, hidden], out_features set, in_shape injected by name."""

    def __init__(self, *, in_shape, hidden: int = 16):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(in_shape).prod()), hidden), nn.ReLU())
        self.out_features = hidden

    def forward(self, x):
        return self.net(x)
'''


@pytest.fixture
def user_conf(tmp_path):
    conf = tmp_path / "userconf"
    (conf / "model").mkdir(parents=True)
    (conf / "model" / "my_mlp.yaml").write_text(textwrap.dedent("""\
        name: my_mlp
        accepts: [vector]
        _target_: my_models.TinyMLP
        hidden: 32
        """))
    (tmp_path / "my_models.py").write_text(USER_MODEL)
    return conf


def test_user_yaml_is_a_valid_choice_in_its_group(user_conf):
    argv = ["--config-dir", str(user_conf), "model=my_mlp"]
    assert "my_mlp" in config_search(argv).options("model")
    assert "mlp" in config_search(argv).options("model")  # imbal's own stay
    check_choices(argv)  # no error
    with pytest.raises(ImbalError) as err:
        check_choices([f"--config-dir={user_conf}", "model=my_mpl"])
    msg = str(err.value)
    assert msg.startswith("unknown model 'my_mpl'; choose one of: ") and "my_mlp" in msg and "\n" not in msg
    # without the user's dir the name is unknown, and the listing does not offer it
    with pytest.raises(ImbalError, match="unknown model 'my_mlp'") as err:
        check_choices(["model=my_mlp"])
    assert "my_mlp" not in str(err.value).partition("choose one of:")[2]


def test_hydra_searchpath_override_adds_choices(user_conf):
    argv = [f"hydra.searchpath=[file://{user_conf}]", "model=my_mlp"]
    assert "my_mlp" in config_search(argv).options("model")
    check_choices(argv)


def test_user_model_from_config_dir_trains(user_conf, tmp_path):
    """``python train.py --config-dir DIR model=my_mlp``: the user's class is built and learns."""
    run_dir = tmp_path / "run"
    res = run_train(
        "--config-dir", str(user_conf), "data=gaussian_lt", "data.ratio=10", "model=my_mlp", "trainer.max_epochs=6",
        f"hydra.run.dir={run_dir}", "trainer.enable_progress_bar=false", "logger=csv",
        env={"PYTHONPATH": str(tmp_path)}, timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["model"] == "my_mlp" and s["config"]["model"]["_target_"] == "my_models.TinyMLP"
    # 10 Gaussian classes (chance 0.10), ratio 10; the Bayes-optimal balanced accuracy is ~0.88
    assert s["test"]["balanced_accuracy"] > 0.4, s["test"]


def test_unknown_choice_with_config_dir_is_one_line(user_conf):
    res = run_train("--config-dir", str(user_conf), "model=nope", timeout=120)
    assert res.returncode == 2
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("imbal: error: unknown model 'nope'; choose one of: ")
    assert "my_mlp" in err[0]


def _val_metric_per_epoch(run_dir, key):
    rows = []
    for path in sorted(run_dir.rglob("metrics.csv")):
        with path.open() as f:
            rows += [r for r in csv.DictReader(f) if r.get(key)]
    return [float(r[key]) for r in rows]


def test_checkpoint_mode_min_keeps_the_lowest_loss(make_cfg, tmp_path):
    """monitor=val/log_loss mode=min: the best checkpoint is the epoch with the lowest validation
    log-loss (with the old fixed mode=max it would be the highest)."""
    import torch

    from imbal.runner import train

    run_dir = tmp_path / "run"
    cfg = make_cfg(
        "data=gaussian_lt", "trainer.max_epochs=5", "trainer.enable_progress_bar=false",
        "callbacks.model_checkpoint.monitor=val/log_loss", "callbacks.model_checkpoint.mode=min",
        "callbacks.model_checkpoint.save_top_k=1", run_dir=run_dir,
    )
    train(cfg)
    losses = _val_metric_per_epoch(run_dir, "val/log_loss")[:5]
    assert len(losses) == 5 and max(losses) - min(losses) > 1e-3, losses
    summary = json.loads((run_dir / "summary.json").read_text())
    best = torch.load(run_dir / summary["best_checkpoint"], map_location="cpu", weights_only=True)
    assert best["epoch"] == losses.index(min(losses)), (best["epoch"], losses)
    cb = [v for k, v in best["callbacks"].items() if k.startswith("ModelCheckpoint")][0]
    assert cb["best_model_score"].item() == pytest.approx(min(losses), rel=1e-5)


def test_checkpoint_defaults_come_from_the_callbacks_group(make_cfg):
    cfg = make_cfg()
    assert cfg.callbacks.model_checkpoint.monitor == "val/balanced_accuracy"
    assert cfg.callbacks.model_checkpoint.mode == "max"
    seg = make_cfg("data=airbus")
    assert seg.callbacks.model_checkpoint.monitor == "val/dice" and seg.callbacks.model_checkpoint.mode == "max"
    assert "seg_overlay" in seg.callbacks and "checkpoint_monitor" not in seg
