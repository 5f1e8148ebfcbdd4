"""data=airbus end to end through imbal.runner.train: tiny synthetic run, summary keys, overlays."""

from __future__ import annotations

import json

import pytest

from tests.conftest import SHARED_DATA, run_train

TINY = [
    "data=airbus",
    "data.synthetic.n_images=12",
    "data.synthetic.image_size=48",
    "data.crop=32",
    "data.samples_per_epoch=8",
    "data.synthetic.ship_image_share=0.5",
    "data.val_fraction=0.25",
    "data.test_fraction=0.25",
    "model.depth=2",
    "model.base_width=4",
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "logger=csv",
]


@pytest.mark.parametrize("loss", ["dice"])
def test_tiny_airbus_run_writes_segmentation_metrics(make_cfg, tmp_path, monkeypatch, loss):
    from imbal.runner import train

    monkeypatch.setenv("IMBAL_CACHE", str(tmp_path / "cache"))
    cfg = make_cfg(*TINY, f"loss={loss}")
    train(cfg)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    for split in ("val", "test"):
        for key in ("dice", "iou", "airbus_f2", "image_accuracy", "balanced_accuracy"):
            assert 0.0 <= summary[split][key] <= 1.0
    assert summary["best_checkpoint"].endswith("best-epoch000.ckpt")  # monitored: val/dice
    assert summary["task"] == "segmentation" and summary["model"] == "unet"
    bg, ship = summary["class_counts"]
    assert ship > 0 and bg > 50 * ship
    assert (tmp_path / "run" / "overlays" / "epoch_000.png").is_file()


def test_classification_backbone_refused_for_masks(make_cfg, tmp_path, monkeypatch):
    from imbal.errors import ImbalError
    from imbal.runner import build_parts

    monkeypatch.setenv("IMBAL_CACHE", str(tmp_path / "cache"))
    cfg = make_cfg(*[o for o in TINY if not o.startswith("model.")], "model=small_cnn")
    with pytest.raises(ImbalError, match=r"model 'small_cnn' accepts image inputs, but data 'airbus' gives mask; choose model= one of: smp, unet"):
        build_parts(cfg)


@pytest.mark.slow
def test_default_command_learns_on_synthetic(tmp_path):
    """`python train.py data=airbus loss=asymmetric` as the user runs it: val Dice far above all-background (0).

    Measured: val Dice 0.988, test 0.970 (486 s of CPU time).
    """
    rd = tmp_path / "run"
    r = run_train("data=airbus", "loss=asymmetric", f"run_dir={rd}", f"hydra.run.dir={rd}",
                  "trainer.enable_progress_bar=false", env={"IMBAL_CACHE": str(tmp_path / "cache")}, timeout=1800)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr.count("imbal: warning: data.root is not set") == 1
    s = json.loads((rd / "summary.json").read_text())
    assert s["val"]["dice"] > 0.5 and s["test"]["dice"] > 0.5
    assert s["val"]["airbus_f2"] > 0.75  # all-background scores the share of ship-free images (0.72)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "airbus_ship_sample").is_dir(), reason="shared Airbus sample absent")
def test_real_sample_runs(tmp_path):
    rd = tmp_path / "run"
    r = run_train("data=airbus", f"data.root={SHARED_DATA / 'airbus_ship_sample'}", "loss=dice", "trainer.max_epochs=1",
                  "data.samples_per_epoch=8", f"run_dir={rd}", f"hydra.run.dir={rd}", "trainer.enable_progress_bar=false",
                  timeout=1800)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads((rd / "summary.json").read_text())
    assert 0 <= s["val"]["airbus_f2"] <= 1 and s["class_counts"][1] > 0


def test_predict_reads_no_training_data(tmp_path, monkeypatch):
    """`imbal predict` on an Airbus run dir after the training CSV and images are deleted: the run dir's
    config, checkpoint and data_stats.json are enough, and the submission is the one made before."""
    import shutil
    import subprocess
    import sys

    from imbal.data.segmentation.synthetic import cached
    from imbal.predict import predict_run
    from imbal.runner import train

    root, _ = cached(tmp_path / "data", n_images=12, image_size=48, ship_image_share=0.5, seed=0)
    images = tmp_path / "to_predict"
    shutil.copytree(root / "train_v2", images)
    run_dir = tmp_path / "run"
    from tests.conftest import REPO
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from imbal.config import conf_dir, register_configs

    register_configs()
    GlobalHydra.instance().clear()
    overrides = [o for o in TINY if not o.startswith("data.synthetic")]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[
            f"run_dir={run_dir}", *overrides, f"data.root={root}", "data.image_size=48"])
    GlobalHydra.instance().clear()
    train(cfg)
    assert json.loads((run_dir / "data_stats.json").read_text())["task"] == "segmentation"
    before = predict_run(run_dir, images, tmp_path / "before.csv")

    shutil.rmtree(root / "train_v2")
    (root / "train_ship_segmentations_v2.csv").unlink()
    res = subprocess.run([sys.executable, "-m", "imbal.cli", "predict", str(run_dir), str(images),
                          str(tmp_path / "after.csv")], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "after.csv").read_text() == (tmp_path / "before.csv").read_text()
    assert before["images"] == 12
