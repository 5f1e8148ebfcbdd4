"""Two-stage training (stage=crt|lws|finetune, init_from=): what is frozen stays bit-identical, the
stage-2 run dir is self-contained, and bad stage-2 inputs stop in one line before training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import best_state
import torch
import torch.nn.functional as F

from tests.test_bad_inputs import run_inprocess

#: tiny Gaussian data, 3 classes, one epoch
TINY = ["data=gaussian_lt", "data.num_classes=3", "data.n_max=40", "data.ratio=2", "data.val_per_class=5",
        "data.test_per_class=5", "data.batch_size=16", "trainer.enable_progress_bar=false", "trainer.max_epochs=1"]


def _train(make_cfg, run_dir: Path, *overrides: str) -> dict:
    from imbal.runner import train

    train(make_cfg(*TINY, *overrides, run_dir=run_dir))
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A stage-1 run and its cRT and LWS stage-2 runs (one epoch each)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from imbal.config import conf_dir, register_configs

    register_configs()
    root = tmp_path_factory.mktemp("stages")

    def make_cfg(*overrides, run_dir):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return compose(config_name="train", overrides=[f"run_dir={run_dir}", *overrides])

    from imbal.runner import flow

    out = {"root": root, "s1": root / "stage1"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(flow, "write_plots", lambda *a, **k: [])  # figures are not what this tests (and cost seconds)
        out["s1_summary"] = _train(make_cfg, out["s1"])
        for stage in ("crt", "lws"):
            out[stage] = root / stage
            out[f"{stage}_summary"] = _train(make_cfg, out[stage], f"stage={stage}", f"init_from={out['s1']}")
    GlobalHydra.instance().clear()
    return out


def test_crt_keeps_every_backbone_tensor_and_retrains_the_classifier(runs):
    s1, s2 = best_state(runs["s1"]), best_state(runs["crt"])
    assert set(s2) == set(s1)  # cRT adds nothing to the model
    backbone = [k for k in s1 if k.startswith("backbone.")]
    assert len(backbone) == 4  # MLP hidden [64, 64]: two Linear layers, weight + bias
    for k in backbone:
        assert torch.equal(s1[k], s2[k]), k
    assert not torch.equal(s1["head.weight"], s2["head.weight"])
    assert not torch.equal(s1["head.bias"], s2["head.bias"])
    summary = runs["crt_summary"]
    assert summary["stage"] == "crt"
    assert summary["config"]["sampler"]["name"] == "class_balanced"  # the stage's default sampler
    assert summary["config"]["optimizer"]["optim"]["lr"] == 0.05
    # tau-norm stays post-hoc, reported beside the re-trained classifier (tau tuned on validation)
    assert summary["posthoc"]["tau_norm"]["tau"] in [round(0.1 * i, 1) for i in range(21)]
    rec = summary["init_from"]
    assert rec["path"] == str(runs["s1"])
    assert rec["run_dir"] == str(runs["s1"].resolve())
    assert rec["checkpoint"] == str((runs["s1"] / runs["s1_summary"]["best_checkpoint"]).resolve())
    assert rec["test"] == runs["s1_summary"]["test"]
    assert rec["loss"] == "ce" and rec["stage"] is None


def test_lws_keeps_backbone_and_classifier_and_trains_only_the_scales(runs):
    s1, s2 = best_state(runs["s1"]), best_state(runs["lws"])
    assert set(s2) - set(s1) == {"logit_scale.scale"}
    for k in s1:
        if k.startswith(("backbone.", "head.")):
            assert torch.equal(s1[k], s2[k]), k
    scale = s2["logit_scale.scale"]
    assert scale.shape == (3,)
    assert not torch.equal(scale, torch.ones(3))  # trained from ones
    assert runs["lws_summary"]["stage"] == "lws"


def test_load_run_on_an_lws_run_dir_alone(runs, tmp_path):
    import imbal

    away = tmp_path / "moved_stage1"
    shutil.move(str(runs["s1"]), away)  # the stage-2 run dir must not need the stage-1 one
    try:
        run = imbal.load_run(runs["lws"])
        state = best_state(runs["lws"])
        assert torch.equal(run.model.logit_scale.scale.detach(), state["logit_scale.scale"])
        x = torch.tensor([[0.5, -1.0], [2.0, 0.25]])
        with torch.no_grad():
            got = run.model(x)
            feats = run.model.backbone(x)
        expected = F.linear(feats, state["head.weight"], state["head.bias"]) * state["logit_scale.scale"]
        assert torch.equal(got, expected)
        # the stored test predictions are the rebuilt model's: same argmax as the run's own accuracy
        preds = run.predictions("test")
        assert preds["logits"].shape == (15, 3)
        trusted = imbal.load_run(runs["lws"], trust_config=True)  # built as training builds it: the same scales
        assert torch.equal(trusted.model.logit_scale.scale.detach(), state["logit_scale.scale"])
    finally:
        shutil.move(str(away), runs["s1"])


def test_init_from_a_checkpoint_file_finds_its_run(runs):
    from imbal.runner import stages

    best = runs["s1"] / runs["s1_summary"]["best_checkpoint"]
    assert stages.resolve(str(best)) == (best.resolve(), runs["s1"].resolve())
    assert stages.resolve(str(runs["s1"])) == (best.resolve(), runs["s1"].resolve())


def test_summary_without_stage_fields_still_reads():
    from imbal.runner.summary import RunSummary

    old = {"data": "d", "model": "m", "loss": "ce", "seed": 0, "task": "multiclass", "class_counts": [2, 1],
           "class_names": ["a", "b"], "schema": 2}
    s = RunSummary.from_dict(old)
    assert s.stage is None and s.init_from is None


@pytest.mark.parametrize("stage,shift_bn,backbone_training,frozen", [
    ("crt", False, False, ["backbone"]), ("crt", True, True, []),
    ("lws", False, False, ["head", "backbone"]), ("lws", True, True, ["head"]),
    ("finetune", False, True, []),
])
def test_prepare_freezes_what_the_stage_freezes(runs, stage, shift_bn, backbone_training, frozen):
    """stage.shift_bn: the backbone's weights frozen, yet in train mode (BatchNorm statistics re-estimated)."""
    from omegaconf import OmegaConf

    import imbal
    from imbal.runner import stages

    run = imbal.load_run(runs["s1"])
    task, s1 = run.model, best_state(runs["s1"])
    with torch.no_grad():
        for p in task.parameters():
            p.add_(1.0)  # prepare must load every stage-1 tensor back
    cfg = OmegaConf.create({"stage": {"name": stage, "shift_bn": shift_bn}, "init_from": str(runs["s1"])})
    stages.prepare(task, cfg, run.stats)
    assert task.frozen_modules == frozen
    task.train()
    assert task.backbone.training is backbone_training
    trainable = sorted(n for n, p in task.named_parameters() if p.requires_grad)
    assert trainable == {"crt": ["head.bias", "head.weight"], "lws": []}.get(stage, sorted(s1))
    for k, v in task.backbone.state_dict().items():
        assert torch.equal(v, s1[f"backbone.{k}"]), k
    if stage == "crt":
        assert not torch.equal(task.head.weight, s1["head.weight"])
    else:
        assert torch.equal(task.head.weight, s1["head.weight"])
    assert task.init_record["test"] == runs["s1_summary"]["test"]


# --- bad stage-2 inputs: one line, exit 2, before training --------------------------------------

def _bad_checkpoint(tmp: Path, s1: Path) -> list[str]:
    bad = tmp / "broken.ckpt"
    bad.write_bytes(b"not a checkpoint")
    return ["stage=crt", f"init_from={bad}"]


BAD = {
    "stage without init_from": (lambda tmp, s1: ["stage=crt"],
                                "imbal: error: stage=crt: needs init_from=<a stage-1 run dir (with summary.json) or a "
                                "checkpoint of an imbal run (.ckpt)>, the model stage 2 starts from (got init_from=null)"),
    "init_from without stage": (lambda tmp, s1: [f"init_from={s1}"],
                                "imbal: error: init_from={s1}: starting from a stage-1 model needs stage=crt, lws or "
                                "finetune (what stage 2 freezes and trains)"),
    "init_from pointing at nothing": (lambda tmp, s1: ["stage=lws", f"init_from={tmp / 'nowhere'}"],
                                      "imbal: error: init_from={tmp}/nowhere: no such file or directory; expected "
                                      "a stage-1 run dir (with summary.json) or a checkpoint of an imbal run (.ckpt)"),
    "a bad checkpoint": (_bad_checkpoint,
                         "imbal: error: checkpoint {tmp}/broken.ckpt: cannot be read (not a complete torch checkpoint: "
                         "truncated, or a file of another format); expected the stage-1 checkpoint of init_from"),
    "another number of classes": (lambda tmp, s1: ["stage=crt", f"init_from={s1}", "data.num_classes=4"],
                                  "imbal: error: init_from={s1}: stage 1 has 3 classes, this data has 4; expected "
                                  "the same classes as stage 1"),
    "another backbone": (lambda tmp, s1: ["stage=crt", f"init_from={s1}", "model.hidden=[32]"],
                         "imbal: error: init_from={s1}: stage 1 trained another backbone: model.hidden=[64, 64] "
                         "there, [32] here; expected the stage-1 model settings"),
    "shift_bn with finetune": (lambda tmp, s1: ["stage=finetune", f"init_from={s1}", "stage.shift_bn=true"],
                               "imbal: error: stage.shift_bn=true: expected false with stage=finetune"),
    "a directory that is not a run": (lambda tmp, s1: ["stage=crt", f"init_from={tmp}"],
                                      "imbal: error: init_from={tmp}: the directory has no summary.json (not a "
                                      "finished run)"),
    "unknown stage value": (lambda tmp, s1: ["stage=crt", "stage.name=crrt", f"init_from={s1}"],
                            "imbal: error: stage.name='crrt': expected one of crt, lws, finetune"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_stage_input_is_one_line_before_training(case, runs, tmp_path, capsys):
    build, expected = BAD[case]
    run_dir = tmp_path / "run"
    code, err = run_inprocess([*TINY, *build(tmp_path, runs["s1"]), f"hydra.run.dir={run_dir}"], capsys)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith(expected.format(tmp=tmp_path, s1=runs["s1"])), lines[0]
    assert "Traceback" not in err
    assert not (run_dir / "summary.json").exists()
    assert not list(run_dir.glob("checkpoints/*.ckpt"))
