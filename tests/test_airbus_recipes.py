"""experiment=airbus_unet34 and experiment=airbus_gate_r34 (the Kaggle winners' two stages): each composes with the
recipe's settings and runs one training step on the synthetic Airbus-layout set with CPU overrides; the two runs
share one split, so the gate is accepted by the segmenter's pipeline."""

from __future__ import annotations

import json
import pytest

from tests.conftest import compose_train

pytest.importorskip("segmentation_models_pytorch")
pytest.importorskip("timm")


def test_unet34_is_the_kaggle_segmenter(make_cfg):
    cfg = make_cfg("experiment=airbus_unet34")
    assert (cfg.data.name, cfg.data.target, cfg.data.group) == ("airbus", "mask", "scene")
    assert (cfg.data.crop, cfg.data.empty_share, cfg.data.samples_per_epoch) == (256, 0.25, None)
    assert (cfg.model.name, cfg.model.arch, cfg.model.encoder, cfg.model.encoder_weights) == (
        "smp", "Unet", "resnet34", "imagenet")
    terms = [dict(t) for t in cfg.loss.terms]
    assert cfg.loss.name == "combo" and terms == [{"name": "focal", "weight": 10}, {"name": "dice", "log_loss": True}]
    gpus = make_cfg("experiment=airbus_unet34", "trainer=ddp", "trainer.devices=4", "trainer.precision=bf16-mixed")
    assert (gpus.trainer.strategy, gpus.trainer.devices, gpus.trainer.accelerator) == ("ddp", 4, "gpu")
    assert gpus.model.encoder == "resnet34" and gpus.data.empty_share == 0.25
    assert cfg.callbacks.model_checkpoint.monitor == "val/dice"


def test_gate_r34_is_the_kaggle_classifier(make_cfg):
    cfg = make_cfg("experiment=airbus_gate_r34")
    assert (cfg.data.target, cfg.data.group, cfg.data.presence_size) == ("presence", "scene", 256)
    assert (cfg.model._target_, cfg.model.model_name, cfg.model.pretrained) == (
        "imbal.models.timm_backbone.TimmBackbone", "resnet34", True)
    assert cfg.loss.name == "bce" and cfg.sampler.name == "class_balanced"
    assert make_cfg("experiment=airbus_gate_r34", "trainer=ddp", "trainer.devices=4").trainer.devices == 4
    assert cfg.callbacks.model_checkpoint.monitor == "val/balanced_accuracy"


CPU = ["trainer=cpu", "trainer.max_epochs=1", "trainer.limit_train_batches=1",
       "trainer.enable_progress_bar=false", "data.num_workers=0", "data.eval_batch_size=4", "logger=csv", "~posthoc",
       "data.synthetic.n_images=40"]


def test_both_recipes_run_one_step_on_one_split(tmp_path, monkeypatch):
    from imbal.runner import flow, train

    monkeypatch.setattr(flow, "write_plots", lambda *a, **k: [])  # figures are tested elsewhere
    runs = {}
    for name, extra in (("airbus_unet34", ["model.encoder_weights=null", "data.crop=64", "data.batch_size=4"]),
                        ("airbus_gate_r34", ["model.pretrained=false", "data.presence_size=64", "data.batch_size=8"])):
        rd = tmp_path / name
        train(compose_train(rd, f"experiment={name}", f"data.cache_dir={tmp_path / 'cache'}", *CPU, *extra))
        runs[name] = rd
    seg = json.loads((runs["airbus_unet34"] / "summary.json").read_text())
    gate = json.loads((runs["airbus_gate_r34"] / "summary.json").read_text())
    assert seg["global_step"] == gate["global_step"] == 1
    assert "airbus_f2" in seg["test"] and "balanced_accuracy" in gate["test"]
    manifests = [json.loads((runs[n] / "data_manifest.json").read_text()) for n in runs]
    assert [m["group"] for m in manifests] == ["scene", "scene"]
    assert manifests[0]["val_ids"] == manifests[1]["val_ids"] and manifests[0]["test_ids"] == manifests[1]["test_ids"]
    assert gate["test"]["num_samples"] == len(manifests[1]["test_ids"])
