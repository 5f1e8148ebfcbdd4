"""A run dir is data, not code: a crafted summary.json or checkpoint never runs anything.

``imbal.load_run``, ``imbal predict`` and ``ImbalanceTask.load_from_checkpoint`` build only imbal's
own models and registered losses from a run dir (imbal/runner/rebuild.py); bad checkpoints, given
to load_run or ``resume=``, are one line naming the file; a moved run dir still loads.
"""

from __future__ import annotations

import builtins
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import imbal
from imbal.config import conf_dir, register_configs
from imbal.errors import ImbalError
from imbal.models import MLP
from imbal.runner.rebuild import KNOWN_MODEL_TARGETS, TRUST_ENV
from tests.conftest import REPO
from tests.test_bad_inputs import run_inprocess

COMMON = ("trainer=cpu", "trainer.enable_progress_bar=false", "logger={}")
GAUSS = ("data=gaussian_lt", "data.num_classes=3", "data.n_max=60", "data.ratio=5", "data.val_per_class=10",
         "data.test_per_class=10", "data.batch_size=32", "trainer.max_epochs=1")
SEG = ("data=airbus", "data.synthetic.n_images=8", "data.synthetic.image_size=32", "data.crop=32",
       "data.samples_per_epoch=4", "data.synthetic.ship_image_share=0.5", "data.val_fraction=0.25",
       "data.test_fraction=0.25", "model.depth=2", "model.base_width=4", "trainer.max_epochs=1")
NO_SUGGESTION = "weights_only=False"


class Payload:
    """Pickled, it is a call of ``open(marker, "w")``: loading it with full unpickling creates the marker."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


class MyBackbone(MLP):
    """A user's own backbone class (outside imbal): built from a run dir only when trusted."""


def _train(tmp: Path, *overrides: str) -> Path:
    from imbal.runner import train

    register_configs()
    GlobalHydra.instance().clear()
    run_dir = tmp / "run"
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"run_dir={run_dir}", *COMMON, *overrides])
    GlobalHydra.instance().clear()
    train(cfg)
    return run_dir


@pytest.fixture(scope="module")
def gauss_run(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("gauss"), *GAUSS)


def _copy(run_dir: Path, tmp_path: Path, name: str = "copy") -> Path:
    dst = tmp_path / name
    shutil.copytree(run_dir, dst)
    return dst


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def _edit_summary_config(run_dir: Path, node: str, value) -> None:
    s = _summary(run_dir)
    s["config"][node] = value
    (run_dir / "summary.json").write_text(json.dumps(s))


def _checkpoint(run_dir: Path) -> Path:
    return run_dir / _summary(run_dir)["best_checkpoint"]


def _edit_checkpoint_config(ckpt: Path, node: str, value) -> None:
    """Rewrite the config a checkpoint records (plain data, so weights_only=True still reads it)."""
    data = torch.load(ckpt, map_location="cpu", weights_only=True)
    data["hyper_parameters"]["config"][node] = value
    torch.save(data, ckpt)


def _payloads(tmp_path: Path) -> dict[str, tuple[str, dict, Path]]:
    """name -> (node, value, marker the payload would create)."""
    pt, m1, m2, m3, m4 = (tmp_path / n for n in ("payload.pt", "m_torchload", "m_open", "m_nested", "m_loss"))
    torch.save(Payload(m1), pt)
    open_node = {"_target_": "builtins.open", "file": str(m2), "mode": "w"}
    nested = {"_target_": "imbal.models.MLP", "hidden": [8], "dropout": {"_target_": "builtins.open",
                                                                          "file": str(m3), "mode": "w"}}
    return {
        "torch_load": ("model", {"_target_": "torch.load", "f": str(pt), "weights_only": False}, m1),
        "open": ("model", open_node, m2),
        "nested": ("model", nested, m3),
        "loss_hparam": ("loss", {"name": "ce", "label_smoothing": {"_target_": "builtins.open", "file": str(m4),
                                                                   "mode": "w"}}, m4),
    }


EXPECTED_KEY = {
    "torch_load": "config.model._target_='torch.load'",
    "open": "config.model._target_='builtins.open'",
    "nested": "config.model.dropout._target_='builtins.open'",
    "loss_hparam": "config.loss.label_smoothing._target_='builtins.open'",
}


def _one_line(err: BaseException) -> str:
    msg = str(err)
    assert "\n" not in msg and NO_SUGGESTION not in msg
    return msg


def test_payload_is_live(tmp_path):
    """The payload the tests use does run when unpickled fully: the refusals below are what stops it."""
    payload = _payloads(tmp_path)["torch_load"]
    torch.load(payload[1]["f"], weights_only=False)
    assert payload[2].is_file()


@pytest.mark.parametrize("name", sorted(EXPECTED_KEY))
def test_crafted_summary_config_is_refused(gauss_run, tmp_path, name):
    run_dir = _copy(gauss_run, tmp_path)
    node, value, marker = _payloads(tmp_path)[name]
    _edit_summary_config(run_dir, node, value)
    with pytest.raises(ImbalError) as info:
        imbal.load_run(run_dir)
    msg = _one_line(info.value)
    assert msg.startswith(f"run dir {run_dir} (summary.json): refusing to build {EXPECTED_KEY[name]} from a run dir (")
    assert "--trust-config" in msg and TRUST_ENV in msg
    assert not marker.exists()


@pytest.mark.parametrize("name", sorted(EXPECTED_KEY))
def test_crafted_checkpoint_config_is_refused(gauss_run, tmp_path, name):
    run_dir = _copy(gauss_run, tmp_path)
    node, value, marker = _payloads(tmp_path)[name]
    ckpt = _checkpoint(run_dir)
    _edit_checkpoint_config(ckpt, node, value)
    with pytest.raises(ImbalError) as info:
        imbal.load_run(run_dir)
    assert _one_line(info.value).startswith(f"checkpoint {ckpt}: refusing to build {EXPECTED_KEY[name]} from a run dir (")
    assert not marker.exists()
    from imbal.task import ImbalanceTask

    with pytest.raises(ImbalError, match="refusing to build"):
        ImbalanceTask.load_from_checkpoint(ckpt)
    assert not marker.exists()


@pytest.mark.parametrize(("target", "why"), [
    ("imbal.task.torch.load", "not an imbal torch.nn.Module class"),  # an imbal. path that leads out of imbal
    ("imbal.task.nn.Linear", "not an imbal torch.nn.Module class"),
    ("os.system", "not a known imbal model"),
    ("not a path", "not a dotted path of an imbal model"),
])
def test_other_model_targets_are_refused(gauss_run, tmp_path, target, why):
    run_dir = _copy(gauss_run, tmp_path)
    _edit_summary_config(run_dir, "model", {"_target_": target})
    with pytest.raises(ImbalError) as info:
        imbal.load_run(run_dir)
    assert f"refusing to build config.model._target_={target!r} from a run dir ({why};" in _one_line(info.value)


def test_optimizer_and_data_nodes_are_never_built(gauss_run, tmp_path):
    """Prediction reads only the model and loss nodes: a payload elsewhere is not built at all."""
    run_dir = _copy(gauss_run, tmp_path)
    marker = tmp_path / "m_optim"
    ckpt = _checkpoint(run_dir)
    node = {"_target_": "builtins.open", "file": str(marker), "mode": "w"}
    for edit in (_edit_checkpoint_config, lambda p, k, v: _edit_summary_config(run_dir, k, v)):
        edit(ckpt, "data", node)
        edit(ckpt, "optimizer", {"optim": node, "scheduler": node})
    run = imbal.load_run(run_dir)
    assert not marker.exists() and not run.model.training
    with pytest.raises(ImbalError, match="a task rebuilt from a run dir predicts; it has no optimizer"):
        run.model.optimizer_factory(params=[])


def test_trusted_opt_in_builds_a_users_backbone(gauss_run, tmp_path, monkeypatch):
    run_dir = _copy(gauss_run, tmp_path)
    model = dict(_summary(run_dir)["config"]["model"], _target_=f"{__name__}.MyBackbone")
    _edit_summary_config(run_dir, "model", model)
    _edit_checkpoint_config(_checkpoint(run_dir), "model", model)
    with pytest.raises(ImbalError) as info:
        imbal.load_run(run_dir)
    assert f"refusing to build config.model._target_='{__name__}.MyBackbone' from a run dir (not a known imbal model;" \
        in _one_line(info.value)
    run = imbal.load_run(run_dir, trust_config=True)
    assert type(run.model.backbone) is MyBackbone
    monkeypatch.setenv(TRUST_ENV, "1")
    assert type(imbal.load_run(run_dir).model.backbone) is MyBackbone


def test_known_targets_are_the_conf_models():
    import yaml

    targets = {yaml.safe_load(p.read_text())["_target_"] for p in (REPO / "conf" / "model").glob("*.yaml")}
    assert targets == set(KNOWN_MODEL_TARGETS)


def _bad_checkpoints(good: Path, tmp: Path) -> dict[str, Path]:
    raw = good.read_bytes()
    out = {n: tmp / f"{n}.ckpt" for n in ("truncated", "random", "pickle", "other_arch")}
    out["truncated"].write_bytes(raw[: len(raw) // 2])
    out["random"].write_bytes(os.urandom(4096))
    torch.save({"state_dict": Payload(tmp / "m_ckpt")}, out["pickle"])
    data = torch.load(good, map_location="cpu", weights_only=True)
    sd = data["state_dict"]
    sd["backbone.net.1.weight"] = torch.zeros(5, 7)
    sd["backbone.extra.weight"] = torch.zeros(2)
    torch.save(data, out["other_arch"])
    return out


BAD_CKPT_REASON = {
    "truncated": "cannot be read (not a complete torch checkpoint: truncated, or a file of another format); "
                 "expected a",
    "random": "cannot be read (not a complete torch checkpoint: truncated, or a file of another format); expected a",
    "pickle": "cannot be read (it holds pickled objects (io.open), not plain tensors and data)",
    "other_arch": "the file does not fit the model its recorded config builds",
}


def test_bad_checkpoints_given_to_load_run(gauss_run, tmp_path):
    assert "backbone.net.1.weight" in torch.load(_checkpoint(gauss_run), weights_only=True)["state_dict"]
    for name, path in _bad_checkpoints(_checkpoint(gauss_run), tmp_path).items():
        with pytest.raises(ImbalError) as info:
            imbal.load_run(gauss_run, checkpoint=path)
        msg = _one_line(info.value)
        assert str(path) in msg and BAD_CKPT_REASON[name] in msg, (name, msg)
    assert not (tmp_path / "m_ckpt").exists()
    with pytest.raises(ImbalError, match=r"unexpected backbone.extra.weight; shape mismatch backbone.net.1.weight"):
        imbal.load_run(gauss_run, checkpoint=tmp_path / "other_arch.ckpt")


@pytest.mark.parametrize("name", ["truncated", "random", "pickle", "other_arch", "weights_only"])
def test_bad_checkpoints_given_to_resume(gauss_run, tmp_path, capsys, name):
    bad = _bad_checkpoints(_checkpoint(gauss_run), tmp_path)
    if name == "weights_only":
        data = torch.load(_checkpoint(gauss_run), map_location="cpu", weights_only=True)
        bad[name] = tmp_path / "weights.ckpt"
        torch.save({"state_dict": data["state_dict"]}, bad[name])
    rd = tmp_path / "r"
    code, err = run_inprocess([*COMMON, *GAUSS, f"hydra.run.dir={rd}", f"resume={bad[name]}"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("imbal: error: "), err
    assert str(bad[name]) in lines[0] and NO_SUGGESTION not in err and "Traceback" not in err
    expected = {**BAD_CKPT_REASON, "weights_only": "holds model weights only (no optimizer state)",
                "other_arch": "the file does not fit the model this config builds"}[name]
    assert expected in lines[0]
    assert not (rd / "summary.json").exists() and not (tmp_path / "m_ckpt").exists()


def test_moved_run_dir_loads(gauss_run, tmp_path):
    rel = _summary(gauss_run)["best_checkpoint"]
    assert not Path(rel).is_absolute() and rel.startswith("checkpoints/") and rel.endswith(".ckpt")
    moved = _copy(gauss_run, tmp_path, "elsewhere")
    run = imbal.load_run(moved)
    assert run.checkpoint == moved / rel and run.checkpoint.is_file()
    saved = torch.load(moved / rel, map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.equal(v, saved[k]) for k, v in run.model.state_dict().items())
    # an older summary's absolute path whose dir is gone: found in the moved dir's checkpoints/
    s = _summary(moved)
    s["best_checkpoint"] = str(tmp_path / "gone" / rel)
    (moved / "summary.json").write_text(json.dumps(s))
    assert imbal.load_run(moved).checkpoint == moved / "checkpoints" / Path(rel).name


@pytest.mark.parametrize("flags", [[], ["--trust-config"]])
def test_predict_refuses_a_classification_run(gauss_run, tmp_path, capsys, flags):
    from imbal.cli import main

    with pytest.raises(SystemExit) as info:
        main(["predict", *flags, str(gauss_run), str(tmp_path), str(tmp_path / "out.csv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1
    assert err[0] == (f"imbal: error: predict: run dir {gauss_run} is a multiclass run (data_stats.json task "
                      "'multiclass'); imbal predict writes mask submissions and needs a segmentation run "
                      "(data=airbus, data=mask_folder); for other runs use imbal.load_run(run_dir).model")
    assert not (tmp_path / "out.csv").exists()


def _cli_predict_refuses(run_dir: Path, tmp_path: Path) -> None:
    node, value, marker = _payloads(tmp_path)["torch_load"]
    _edit_summary_config(run_dir, node, value)
    _edit_checkpoint_config(_checkpoint(run_dir), node, value)
    images = tmp_path / "images"
    images.mkdir()
    res = subprocess.run([sys.executable, "-m", "imbal.cli", "predict", str(run_dir), str(images),
                          str(tmp_path / "out.csv")], capture_output=True, text=True, cwd=REPO, timeout=300,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr[-2000:]
    assert lines[0].startswith(f"imbal: error: run dir {run_dir} (summary.json): refusing to build "
                               "config.model._target_='torch.load' from a run dir (not a known imbal model;")
    assert not marker.exists() and not (tmp_path / "out.csv").exists()


def test_cli_predict_refuses_a_crafted_run_dir(gauss_run, tmp_path):
    """`imbal predict` as a process on a run dir crafted to look like a segmentation run: exit 2, one line,
    the payload never runs."""
    run_dir = _copy(gauss_run, tmp_path)
    (run_dir / "data_stats.json").write_text(json.dumps({
        "task": "segmentation", "num_classes": 2, "class_counts": [1000, 10], "class_names": ["background", "ship"],
        "modality": "mask", "input_shape": [3, 32, 32]}))
    _cli_predict_refuses(run_dir, tmp_path)


@pytest.mark.slow
def test_cli_predict_refuses_a_crafted_segmentation_run(tmp_path, monkeypatch):
    """The same on a real (tiny, synthetic Airbus) segmentation run whose summary and checkpoint were edited."""
    monkeypatch.setenv("IMBAL_CACHE", str(tmp_path / "cache"))
    _cli_predict_refuses(_train(tmp_path, *SEG), tmp_path)
