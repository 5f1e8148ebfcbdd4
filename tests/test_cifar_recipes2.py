"""The CIFAR-LT recipes of the newer training methods (mixup + balanced softmax, cRT, LWS, weight balancing,
LDAM-DRW + SAM, MiSLAS): each composes as its paper says and runs one epoch on generated CIFAR-format data;
``stage.reinit_head=false`` keeps stage 1's classifier."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import best_state
import torch

from tests.cifar_fixture import write_cifar10
from tests.test_bad_inputs import run_inprocess

DATASETS = ["cifar10", "cifar100"]
#: ResNet-32 recipe data settings every new recipe shares (weight balancing: batch 64, its demo's)
BATCH = {"mixup_bs": 128, "crt": 128, "lws": 128, "wb_stage1": 64, "wb": 64, "ldam_drw_sam": 128,
         "mislas_stage1": 128, "mislas": 128}
#: one short epoch on the generated CIFAR-10 files (ratio 10: 78 training images), ResNet-32 with 1 block a stage
#: (post-hoc corrections dropped: tested elsewhere, and they cost seconds a run)
SHORT = ["data.ratio=10", "data.num_workers=0", "data.batch_size=16", "model.blocks=1", "trainer.max_epochs=1",
         "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "logger=csv", "~posthoc"]


def _plain(node):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True)


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("key", list(BATCH))
def test_recipe_shares_the_cifar_lt_setting(make_cfg, dataset, key):
    cfg = make_cfg(f"experiment={dataset}_lt_{key}")
    assert cfg.data.name == f"{dataset}_lt" and cfg.data.ratio == 100 and cfg.data.profile == "exp"
    assert cfg.data.batch_size == BATCH[key] and cfg.data.val_from == "test"
    assert cfg.model.name == "resnet32" and cfg.model.blocks == 5
    two_stage = key in ("crt", "lws", "wb", "mislas")
    assert cfg.init_from is None  # stage 2 needs the user's init_from; stage 1 has none
    assert (cfg.get("stage") is not None) is two_stage
    # cRT / LWS: BagofTricks-LT's 30 CIFAR epochs; the other second stages 10
    assert cfg.trainer.max_epochs == (30 if key in ("crt", "lws") else 10 if two_stage else 200)


@pytest.mark.parametrize("dataset", DATASETS)
def test_mixup_bs_is_bag_of_tricks_combination(make_cfg, dataset):
    cfg = make_cfg(f"experiment={dataset}_lt_mixup_bs")
    assert _plain(cfg.loss) == {"name": "balanced_softmax", "reduction": "mean"}
    assert (cfg.mixing.name, cfg.mixing.alpha, cfg.mixing.prob, cfg.mixing.until_epoch) == ("mixup", 1.0, 1.0, 180)
    o = cfg.optimizer
    assert o.optim._target_ == "torch.optim.SGD" and (o.optim.lr, o.optim.momentum, o.optim.weight_decay) == (0.1, 0.9, 2e-4)
    assert (o.scheduler.warmup_epochs, list(o.scheduler.milestones), o.scheduler.gamma) == (5, [160, 180], 0.01)
    assert cfg.sampler.name == "none" and cfg.regularizer.get("_target_") is None
    assert "tau_norm" in cfg.posthoc and "la_tuned" not in cfg.posthoc  # no tuned logit adjustment on top of it


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("stage", ["crt", "lws"])
def test_crt_lws_are_kang_stage_two(make_cfg, dataset, stage):
    cfg = make_cfg(f"experiment={dataset}_lt_{stage}")
    assert cfg.stage.name == stage and cfg.stage.shift_bn is False
    assert cfg.stage.get("reinit_head", True) is True
    assert cfg.loss.name == "ce" and cfg.sampler.name == "class_balanced" and cfg.mixing.name == "none"
    o = cfg.optimizer
    # BagofTricks-LT's CIFAR cRT / LWS configs: SGD 0.1, wd 5e-4, 30 epochs, 5 warm-up, x0.1 at 10 and 20
    assert o.optim._target_ == "torch.optim.SGD"
    assert (o.optim.lr, o.optim.momentum, o.optim.weight_decay) == (0.1, 0.9, 5e-4)
    assert o.scheduler._target_ == "imbal.schedules.warmup_step_lr"
    assert (o.scheduler.warmup_epochs, list(o.scheduler.milestones), o.scheduler.gamma) == (5, [10, 20], 0.1)
    assert cfg.trainer.max_epochs == 30 and cfg.data.batch_size == 128


@pytest.mark.parametrize("dataset", DATASETS)
def test_wb_two_stages_are_alshammari(make_cfg, dataset):
    s1 = make_cfg(f"experiment={dataset}_lt_wb_stage1")
    assert s1.loss.name == "ce" and s1.sampler.name == "none" and s1.regularizer.get("_target_") is None
    assert (s1.optimizer.optim.lr, s1.optimizer.optim.momentum, s1.optimizer.optim.weight_decay) == (0.01, 0.9, 5e-3)
    assert s1.optimizer.scheduler._target_ == "torch.optim.lr_scheduler.CosineAnnealingLR"
    assert s1.optimizer.scheduler.T_max == 200
    s2 = make_cfg(f"experiment={dataset}_lt_wb")
    assert _plain(s2.stage) == {"name": "crt", "shift_bn": False, "reinit_head": False}
    assert (s2.loss.name, s2.loss.base, s2.loss.beta) == ("class_balanced", "softmax", 0.9999)
    assert s2.regularizer._target_ == "imbal.callbacks.maxnorm.MaxNorm" and s2.regularizer.thresh == 0.1
    assert (s2.optimizer.optim.lr, s2.optimizer.optim.momentum, s2.optimizer.optim.weight_decay) == (0.01, 0.9, 0.1)
    assert s2.optimizer.scheduler.T_max == 10 and s2.sampler.name == "none"


@pytest.mark.parametrize("dataset", DATASETS)
def test_ldam_drw_sam_is_rangwani(make_cfg, dataset):
    from hydra.utils import instantiate

    cfg = make_cfg(f"experiment={dataset}_lt_ldam_drw_sam")
    assert cfg.loss.name == "ldam" and (cfg.loss.max_m, cfg.loss.s, cfg.loss.drw_epoch, cfg.loss.drw_beta) == (0.5, 30.0, 160, 0.9999)
    o = _plain(cfg.optimizer.optim)
    assert o == {"_target_": "imbal.optim.sam.SAM", "_partial_": True, "base": "sgd", "rho": 0.8, "adaptive": False,
                 "lr": 0.1, "momentum": 0.9, "nesterov": False, "betas": None, "eps": None, "weight_decay": 2e-4}
    s = cfg.optimizer.scheduler
    assert (s._target_, s.warmup_epochs, list(s.milestones), s.gamma) == ("imbal.schedules.warmup_step_lr", 5, [160, 180], 0.01)
    from imbal.optim.sam import SAM

    opt = instantiate(cfg.optimizer.optim)([torch.nn.Parameter(torch.zeros(2))])
    assert isinstance(opt, SAM)
    sched = instantiate(cfg.optimizer.scheduler)(optimizer=opt)
    assert isinstance(sched, torch.optim.lr_scheduler.LambdaLR) and opt.param_groups[0]["lr"] == pytest.approx(0.02)


@pytest.mark.parametrize("dataset", DATASETS)
def test_mislas_two_stages_are_zhong(make_cfg, dataset):
    s1 = make_cfg(f"experiment={dataset}_lt_mislas_stage1")
    assert s1.loss.name == "ce" and (s1.mixing.name, s1.mixing.alpha, s1.mixing.until_epoch) == ("mixup", 1.0, None)
    assert (s1.optimizer.optim.lr, s1.optimizer.optim.weight_decay) == (0.1, 2e-4)
    assert list(s1.optimizer.scheduler.milestones) == [160, 180]
    s2 = make_cfg(f"experiment={dataset}_lt_mislas")
    assert _plain(s2.stage) == {"name": "crt", "shift_bn": True, "reinit_head": True}
    assert (s2.loss.name, s2.loss.smooth_head, s2.loss.smooth_tail, s2.loss.shape) == ("label_aware_smoothing", 0.4, 0.1, "concave")
    assert (s2.optimizer.optim.lr, s2.optimizer.optim.momentum, s2.optimizer.optim.weight_decay) == (0.1, 0.9, 2e-4)
    assert s2.optimizer.scheduler.T_max == 10 and s2.sampler.name == "class_balanced" and s2.mixing.name == "none"


# --- one epoch of each recipe on generated CIFAR-10 files ------------------------------------------------

@pytest.fixture(scope="module")
def cifar_runs(tmp_path_factory):
    """Generated CIFAR-10 files and one-epoch runs of every recipe (stage 2 from the stage-1 recipes' runs)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from imbal.config import conf_dir, register_configs
    from imbal.runner import flow, train

    register_configs()
    base = tmp_path_factory.mktemp("recipes2")
    data = write_cifar10(base / "data")
    out: dict[str, Path] = {}

    def run(key: str, *extra: str) -> None:
        rd = base / key
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            cfg = compose(config_name="train", overrides=[f"run_dir={rd}", f"experiment=cifar10_lt_{key}",
                                                          f"data.root={data}", *SHORT, *extra])
        train(cfg)
        out[key] = rd

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(flow, "write_plots", lambda *a, **k: [])  # figures are not what this tests (and cost seconds)
        for key in ("mixup_bs", "ldam_drw_sam", "wb_stage1", "mislas_stage1"):
            run(key)
        for key, s1 in (("crt", "mislas_stage1"), ("lws", "mislas_stage1"), ("wb", "wb_stage1"),
                        ("mislas", "mislas_stage1")):
            run(key, f"init_from={out[s1]}")
    GlobalHydra.instance().clear()
    return out


@pytest.mark.parametrize("key,loss,stage", [
    ("mixup_bs", "balanced_softmax", None), ("ldam_drw_sam", "ldam", None), ("wb_stage1", "ce", None),
    ("mislas_stage1", "ce", None), ("crt", "ce", "crt"), ("lws", "ce", "lws"), ("wb", "class_balanced", "crt"),
    ("mislas", "label_aware_smoothing", "crt"),
])
def test_recipe_runs_one_epoch(cifar_runs, key, loss, stage):
    s = json.loads((cifar_runs[key] / "summary.json").read_text())
    assert s["data"] == "cifar10_lt" and s["model"] == "resnet32" and s["loss"] == loss and s["stage"] == stage
    assert s["class_counts"] == [20, 15, 11, 9, 7, 5, 4, 3, 2, 2]
    assert 0 <= s["test"]["balanced_accuracy"] <= 1
    assert s["config"]["trainer"]["max_epochs"] == 1
    if stage is not None:
        assert s["init_from"]["path"] in {str(cifar_runs["mislas_stage1"]), str(cifar_runs["wb_stage1"])}


def test_wb_stage2_keeps_the_backbone_and_projects_the_classifier(cifar_runs):
    s1, s2 = best_state(cifar_runs["wb_stage1"]), best_state(cifar_runs["wb"])
    for k in s1:
        if k.startswith("backbone."):
            assert torch.equal(s1[k], s2[k]), k  # frozen, BatchNorm statistics included (shift_bn=false)
    assert not torch.equal(s1["head.weight"], s2["head.weight"])
    assert s2["head.weight"].norm(dim=1).max() <= 0.1 + 1e-6  # MaxNorm, thresh 0.1


def test_mislas_stage2_shifts_batchnorm_only(cifar_runs):
    s1, s2 = best_state(cifar_runs["mislas_stage1"]), best_state(cifar_runs["mislas"])
    stats = [k for k in s1 if k.startswith("backbone.") and k.endswith(("running_mean", "running_var"))]
    weights = [k for k in s1 if k.startswith("backbone.") and k.endswith((".weight", ".bias"))]
    assert stats and weights
    assert any(not torch.equal(s1[k], s2[k]) for k in stats)  # re-estimated on the stage-2 batches
    for k in weights:
        assert torch.equal(s1[k], s2[k]), k


@pytest.mark.parametrize("reinit", [True, False])
def test_prepare_reinit_head(cifar_runs, reinit):
    """stage=crt: stage.reinit_head=false loads stage 1's classifier (and trains it); true re-initialises it."""
    from omegaconf import OmegaConf

    import imbal
    from imbal.runner import stages

    s1_dir = cifar_runs["wb_stage1"]
    run = imbal.load_run(s1_dir)
    task, s1 = run.model, best_state(s1_dir)
    with torch.no_grad():
        for p in task.parameters():
            p.add_(1.0)  # prepare must load the stage-1 tensors back
    cfg = OmegaConf.create({"stage": {"name": "crt", "shift_bn": False, "reinit_head": reinit}, "init_from": str(s1_dir)})
    stages.prepare(task, cfg, run.stats)
    assert task.frozen_modules == ["backbone"]
    assert sorted(n for n, p in task.named_parameters() if p.requires_grad) == ["head.bias", "head.weight"]
    for k, v in task.backbone.state_dict().items():
        assert torch.equal(v, s1[f"backbone.{k}"]), k
    assert torch.equal(task.head.weight, s1["head.weight"]) is (not reinit)
    assert torch.equal(task.head.bias, s1["head.bias"]) is (not reinit)


TINY = ["data=gaussian_lt", "data.num_classes=3", "data.n_max=40", "data.ratio=2", "data.val_per_class=5",
        "data.test_per_class=5", "data.batch_size=16", "trainer.enable_progress_bar=false", "trainer.max_epochs=1"]


@pytest.mark.parametrize("args,expected", [
    (["stage=lws", "+stage.reinit_head=false"],
     "stage.reinit_head=false: expected it only with stage=crt (stage=lws keeps stage 1's classifier anyway)"),
    (["stage=finetune", "+stage.reinit_head=false"],
     "stage.reinit_head=false: expected it only with stage=crt (stage=finetune keeps stage 1's classifier anyway)"),
    (["stage=crt", "stage.reinit_head=maybe"],
     "stage.reinit_head='maybe': expected true or false (re-initialise the classifier)"),
])
def test_bad_reinit_head_is_one_line(tmp_path, capsys, args, expected):
    rd = tmp_path / "run"
    code, err = run_inprocess([*TINY, *args, f"init_from={tmp_path / 'stage1'}", f"hydra.run.dir={rd}"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err and lines == [f"imbal: error: {expected}"], err[-2000:]
    assert not (rd / "summary.json").exists()
