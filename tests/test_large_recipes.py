"""The large long-tail recipes (ImageNet-LT, Places-LT, iNaturalist 2018; docs/large_lt.md) and the linear lr
scaling they rely on (``optimizer.lr_base_batch``): each recipe composes with its paper's schedule, also for 8 GPUs
and for 2 SLURM nodes, and runs one training step on a generated split-list tree in the official list format
(stage 2 from the stage-1 run's dir)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from imbal.errors import ImbalError
from tests.conftest import best_state, compose_train
from tests.test_bad_inputs import run_inprocess

#: recipe -> (data preset, model name, loss, stage, epochs, per-device batch, lr, lr_base_batch, weight decay)
RECIPES = {
    "imagenet_lt_r50_ce": ("imagenet_lt", "resnet50", "ce", None, 90, 64, 0.2, 512, 5e-4),
    "imagenet_lt_r50_la": ("imagenet_lt", "resnet50", "logit_adjusted", None, 90, 64, 0.2, 512, 5e-4),
    "imagenet_lt_rx50_ce": ("imagenet_lt", "resnext50_32x4d", "ce", None, 90, 64, 0.2, 512, 5e-4),
    "imagenet_lt_rx50_crt": ("imagenet_lt", "resnext50_32x4d", "ce", "crt", 10, 64, 0.2, 512, 5e-4),
    "places_lt_r152_pretrained_ce": ("places_lt", "resnet152.tv_in1k", "ce", None, 30, 16, 0.1, 128, 5e-4),
    "places_lt_r152_pretrained_crt": ("places_lt", "resnet152.tv_in1k", "ce", "crt", 10, 32, 0.1, 256, 5e-4),
    "places_lt_r152_pretrained_lws": ("places_lt", "resnet152.tv_in1k", "ce", "lws", 5, 32, 0.1, 256, 5e-4),
    "inat2018_r50_ce": ("inat2018", "resnet50", "ce", None, 90, 64, 0.2, 512, 1e-4),
    "inat2018_r50_la": ("inat2018", "resnet50", "logit_adjusted", None, 90, 64, 0.2, 512, 1e-4),
}


def _compose(*overrides: str, hydra_node: bool = False):
    return compose_train("x", *overrides, return_hydra_config=hydra_node)


# --- optimizer.lr_base_batch ---------------------------------------------------------------------------

def _task(make_cfg, *overrides: str):
    from imbal.runner import build_parts

    cfg = make_cfg("data=gaussian_lt", "data.num_classes=3", "data.n_max=40", "data.ratio=2", "data.val_per_class=5",
                   "data.test_per_class=5", "optimizer=sgd", *overrides)
    return build_parts(cfg)[2]


def _attach(task, *, batch: int, world: int = 1, accumulate: int = 1):
    """A stand-in for the running Trainer: the three things lr scaling reads."""
    task._trainer = SimpleNamespace(datamodule=SimpleNamespace(batch_size=batch), world_size=world,
                                    accumulate_grad_batches=accumulate, is_global_zero=True)
    return task


@pytest.mark.parametrize("world,accumulate,factor", [(1, 1, 0.25), (8, 1, 2.0), (8, 2, 4.0), (16, 1, 4.0)])
def test_lr_scales_with_the_global_batch(make_cfg, world, accumulate, factor):
    """lr 0.1 given for batch 256, 64 a device: x world size x accumulation / 256 (world 1: exactly 0.025)."""
    task = _attach(_task(make_cfg, "optimizer.optim.lr=0.1", "optimizer.lr_base_batch=256", "data.batch_size=64",
                         "optimizer.backbone_lr_mult=0.5"), batch=64, world=world, accumulate=accumulate)
    opt = task.configure_optimizers()["optimizer"]
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == {"backbone": 0.1 * 0.5 * factor, "head": 0.1 * factor}
    if world == 1:
        assert lrs["head"] == 0.025 and lrs["backbone"] == 0.0125
    info = task.lr_scaling
    assert (info["global_batch"], info["world_size"], info["accumulate_grad_batches"]) == (64 * world * accumulate,
                                                                                           world, accumulate)
    assert info["factor"] == factor and task.hparams["lr_scaling"]["lr"] == lrs
    # the cosine schedule starts from the scaled lr
    sched = task.configure_optimizers()["lr_scheduler"]["scheduler"]
    assert sched.base_lrs == [lrs["backbone"], lrs["head"]]


def test_lr_base_batch_null_leaves_the_lr(make_cfg):
    task = _task(make_cfg, "optimizer.optim.lr=0.1", "data.batch_size=64")
    assert task.lr_base_batch is None  # every optimizer's default: no Trainer needed, nothing recorded
    opt = task.configure_optimizers()["optimizer"]
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.1] and task.lr_scaling is None
    assert "lr_scaling" not in task.hparams


def test_lr_scaling_in_a_run(make_cfg, tmp_path, caplog):
    """A real Trainer (world size 1): the lr actually used is 0.1 x 64 / 256, logged once and kept in the checkpoint."""
    from imbal.runner import train

    rd = tmp_path / "run"
    caplog.set_level(logging.INFO, logger="imbal")
    train(make_cfg("data=gaussian_lt", "data.num_classes=3", "data.n_max=64", "data.ratio=1", "data.val_per_class=4",
                   "data.test_per_class=4", "data.batch_size=64", "optimizer=sgd", "optimizer.optim.lr=0.1",
                   "optimizer.lr_base_batch=256", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                   "~posthoc", run_dir=rd))
    lines = [r.getMessage() for r in caplog.records if r.name == "imbal" and r.getMessage().startswith("lr scaled")]
    assert lines == ["lr scaled x0.25 (global batch 64 = 64 x 1 processes x 1 accumulated, "
                     "optimizer.lr_base_batch=256): backbone 0.025, head 0.025"]
    best = json.loads((rd / "summary.json").read_text())["best_checkpoint"]
    hp = torch.load(rd / best, map_location="cpu", weights_only=True)["hyper_parameters"]
    assert hp["lr_scaling"]["lr"] == {"backbone": 0.025, "head": 0.025} and hp["lr_scaling"]["global_batch"] == 64


@pytest.mark.parametrize("value", ["0", "-256", "2.5", "true", "'512'"])
def test_bad_lr_base_batch_is_one_line(tmp_path, capsys, value):
    rd = tmp_path / "run"
    code, err = run_inprocess(["data=gaussian_lt", "data.n_max=40", "trainer.max_epochs=1", f"optimizer.lr_base_batch={value}",
                               f"hydra.run.dir={rd}"], capsys)
    lines = err.strip().splitlines()
    shown = {"true": "true", "'512'": "'512'"}.get(value, value)
    assert code == 2 and "Traceback" not in err, err[-2000:]
    assert lines == [f"imbal: error: optimizer.lr_base_batch={shown}: expected null or an integer >= 1 "
                     "(the global batch the lr is given for)"]
    assert not (rd / "summary.json").exists()


@pytest.mark.parametrize("value", [0, -1, True, 2.5])
def test_optimizer_options_refuse_bad_lr_base_batch(value):
    from imbal.models.finetune import optimizer_options

    with pytest.raises(ImbalError, match=rf"^optimizer.lr_base_batch={value}: expected null or an integer >= 1 "):
        optimizer_options({"lr_base_batch": value})
    assert optimizer_options({"lr_base_batch": 512})["lr_base_batch"] == 512
    assert optimizer_options({})["lr_base_batch"] is None


# --- the recipes compose as their papers say ---------------------------------------------------------

@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_is_the_papers_schedule(name):
    from omegaconf import OmegaConf

    data, model, loss, stage, epochs, batch, lr, base, wd = RECIPES[name]
    cfg = _compose(f"experiment={name}")
    assert cfg.data.name == data and cfg.data._target_ == "imbal.data.split_list.SplitListDataModule"
    assert OmegaConf.is_missing(cfg.data, "root")  # the user's images: no default
    assert cfg.model.name == model and cfg.loss.name == loss
    assert (cfg.stage.name if cfg.get("stage") else None) == stage and cfg.init_from is None
    assert cfg.trainer.max_epochs == epochs and cfg.data.batch_size == batch
    o = cfg.optimizer
    assert o.optim._target_ == "torch.optim.SGD"
    assert (o.optim.lr, o.optim.momentum, o.optim.weight_decay, o.lr_base_batch) == (lr, 0.9, wd, base)
    # 8 GPUs, or 2 nodes of 4: the paper's global batch, so the paper's lr
    assert batch * 8 == base
    assert cfg.sampler.name == ("class_balanced" if stage else "none")
    if loss == "logit_adjusted":
        assert cfg.loss.tau == 1.0 and cfg.posthoc.la is None  # no second adjustment on top of the loss
    if name.startswith("places") and stage is None:
        # OLTR's stage 1: backbone lr 0.001 = 0.1 x 0.01, StepLR(10, 0.1) over 30 epochs, ImageNet weights
        assert cfg.model.pretrained is True and o.backbone_lr_mult == 0.01
        assert o.scheduler._target_ == "imbal.schedules.warmup_step_lr"
        assert (o.scheduler.warmup_epochs, list(o.scheduler.milestones), o.scheduler.gamma) == (0, [10, 20], 0.1)
    else:
        assert cfg.model.get("pretrained", False) is False and o.backbone_lr_mult == 1.0
        # Kang et al.: cosine to 0 over the run's epochs
        assert o.scheduler._target_ == "torch.optim.lr_scheduler.CosineAnnealingLR" and o.scheduler.T_max == epochs


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_composes_for_8_gpus_and_2_slurm_nodes(name):
    from omegaconf import OmegaConf

    batch, base = RECIPES[name][5], RECIPES[name][7]
    ddp = _compose(f"experiment={name}", "trainer=ddp", "trainer.devices=8")
    assert (ddp.trainer.strategy, ddp.trainer.devices, ddp.trainer.accelerator) == ("ddp", 8, "gpu")
    assert ddp.trainer.max_epochs == RECIPES[name][4]  # trainer=ddp keeps the recipe's schedule
    slurm = _compose("hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2",
                     f"experiment={name}", hydra_node=True)
    launcher = slurm.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    OmegaConf.resolve(slurm)
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)
    assert slurm.data.batch_size * launcher.nodes * launcher.tasks_per_node == base == batch * 8


# --- one step of every recipe on a generated split-list tree ----------------------------------------

#: training images of the 4 generated classes (many/medium/few are about counts > 100 / 20-100 / < 20: all few here)
COUNTS = [6, 4, 3, 2]
SHORT = ["trainer=cpu", "trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.enable_progress_bar=false",
         "data.image_size=16", "data.resize_size=18", "data.batch_size=4", "data.num_workers=0", "data.num_classes=4",
         "logger=csv", "~posthoc", "callbacks.model_checkpoint.save_last=false"]


def _jpeg(path: Path, rng) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (20, 26, 3), dtype=np.uint8)).save(path, quality=85)


def write_official_trees(base: Path) -> dict[str, Path]:
    """ImageNet-LT, Places-LT and iNaturalist 2018 roots, each with its lists under the official names and lines
    in the official form (paths with sub-folders, ``<path> <label>``); 4 classes of COUNTS training images."""
    rng = np.random.default_rng(0)
    roots = {k: base / k for k in ("imagenet", "places", "inat")}
    lists: dict[str, dict[str, list[str]]] = {k: {"train": [], "val": [], "test": []} for k in roots}

    def add(key: str, split: str, rel: str, label: int) -> None:
        _jpeg(roots[key] / rel, rng)
        lists[key][split].append(f"{rel} {label}")

    scenes = ["airfield", "airplane_cabin", "airport_terminal", "alcove"]
    for c, n in enumerate(COUNTS):
        wnid = f"n0{c}44076{c}"
        for i in range(n):
            add("imagenet", "train", f"train/{wnid}/{wnid}_{100 + i}.JPEG", c)
            add("places", "train", f"train/{scenes[c]}/{4851 + i:08d}.jpg", c)
            add("inat", "train", f"train_val2018/Plantae/{c}/{c:x}{i:031x}.jpg", c)
        add("imagenet", "val", f"train/{wnid}/{wnid}_{9 + c}.JPEG", c)
        add("places", "val", f"val/Places365_val_{c + 1:08d}.jpg", c)
        for i in range(2):
            add("imagenet", "test", f"val/{wnid}/ILSVRC2012_val_{10 * c + i + 1:08d}.JPEG", c)
            add("places", "test", f"val/Places365_val_{100 + 10 * c + i:08d}.jpg", c)
            add("inat", "val", f"train_val2018/Plantae/{c}/{15 - c:x}{i:031x}.jpg", c)
    names = {"imagenet": "ImageNet_LT_{}.txt", "places": "Places_LT_{}.txt", "inat": "iNaturalist18_{}.txt"}
    for key, root in roots.items():
        for split, lines in lists[key].items():
            if lines:
                (root / names[key].format(split)).write_text("\n".join(lines) + "\n")
    return roots


def _run_all(base: Path, roots: dict[str, Path], plan) -> dict[str, Path]:
    from imbal.runner import flow, train

    out: dict[str, Path] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(flow, "write_plots", lambda *a, **k: [])  # figures are not what this tests (and cost seconds)
        for name, stage1 in plan:
            rd = base / name
            extra = [f"init_from={out[stage1]}"] if stage1 else []
            if RECIPES[name][1] != "resnet50":
                extra.append("model.pretrained=false")  # timm: no weights download here
            else:  # the ImageNet stem the recipe gets at 224 px (cifar_stem null picks the 3x3 one up to 64 px)
                extra.append("model.cifar_stem=false")
            train(compose_train(rd, f"experiment={name}", f"data.root={roots[RECIPES[name][0]]}", *SHORT, *extra))
            out[name] = rd
    return out


ROOT_OF = {"imagenet_lt": "imagenet", "places_lt": "places", "inat2018": "inat"}


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    base = tmp_path_factory.mktemp("large_lt")
    roots = write_official_trees(base / "data")
    return base, {preset: roots[key] for preset, key in ROOT_OF.items()}


def _check_run(rd: Path, name: str, stage1: Path | None) -> dict:
    data, model, loss, stage, _, _, lr, base, _ = RECIPES[name]
    s = json.loads((rd / "summary.json").read_text())
    assert (s["data"], s["model"], s["loss"], s["stage"]) == (data, model, loss, stage), name
    assert s["class_counts"] == COUNTS and s["epochs_completed"] == 1 and s["global_step"] == 1, name
    assert s["config"]["trainer"]["max_epochs"] == 1
    assert s["test"]["num_samples"] == 8 and 0 <= s["test"]["balanced_accuracy"] <= 1, name
    assert s["test"]["few_shot_accuracy"] == s["test"]["balanced_accuracy"]  # every class has < 20 images
    if stage1 is not None:
        assert s["init_from"]["path"] == str(stage1), name
    # the paper's lr at the paper's batch, scaled to this run's global batch of 4 (one process)
    hp = torch.load(rd / s["best_checkpoint"], map_location="cpu", weights_only=True)["hyper_parameters"]
    scaling = hp["lr_scaling"]
    assert (scaling["global_batch"], scaling["lr_base_batch"], scaling["factor"]) == (4, base, 4 / base), name
    assert scaling["lr"]["head"] == pytest.approx(lr * 4 / base, rel=1e-12), name
    return s


# one test per group of runs, not one per recipe: xdist would run a shared module fixture once per worker
def test_recipes_run_one_step(trees):
    """One step of each ResNet-50 / ResNeXt-50 recipe; cRT from the ResNeXt-50 stage-1 run's dir."""
    base, roots = trees
    plan = [("imagenet_lt_r50_ce", None), ("imagenet_lt_r50_la", None), ("imagenet_lt_rx50_ce", None),
            ("imagenet_lt_rx50_crt", "imagenet_lt_rx50_ce"), ("inat2018_r50_ce", None), ("inat2018_r50_la", None)]
    runs = _run_all(base, roots, plan)
    for name, stage1 in plan:
        _check_run(runs[name], name, runs[stage1] if stage1 else None)
    # iNaturalist 2018: the official validation list is also the test list
    inat = runs["inat2018_r50_ce"]
    s = json.loads((inat / "summary.json").read_text())
    assert s["val"]["num_samples"] == s["test"]["num_samples"] == 8
    manifest = json.loads((inat / "data_manifest.json").read_text())
    assert Path(manifest["lists"]["test"]["file"]).name == "iNaturalist18_val.txt"
    assert Path(manifest["lists"]["train"]["file"]).name == "iNaturalist18_train.txt"
    # cRT keeps the stage-1 backbone (frozen, BatchNorm statistics included) and trains a new classifier
    s1, s2 = best_state(runs["imagenet_lt_rx50_ce"]), best_state(runs["imagenet_lt_rx50_crt"])
    backbone = [k for k in s1 if k.startswith("backbone.")]
    assert len(backbone) > 300  # ResNeXt-50: conv and BatchNorm tensors
    for k in backbone:
        assert torch.equal(s1[k], s2[k]), k
    assert s2["head.weight"].shape == (4, 2048) and not torch.equal(s1["head.weight"], s2["head.weight"])


@pytest.mark.slow
def test_places_recipes_run_one_step(trees):
    """The ResNet-152 recipes (about 20 s a run on 2 busy cores): stage 1, then cRT and LWS from its dir."""
    base, roots = trees
    plan = [("places_lt_r152_pretrained_ce", None), ("places_lt_r152_pretrained_crt", "places_lt_r152_pretrained_ce"),
            ("places_lt_r152_pretrained_lws", "places_lt_r152_pretrained_ce")]
    runs = _run_all(base, roots, plan)
    stage1 = runs["places_lt_r152_pretrained_ce"]
    for name, s1 in plan:
        _check_run(runs[name], name, runs[s1] if s1 else None)
    # OLTR's stage 1: the backbone at a hundredth of the classifier's lr
    s = json.loads((stage1 / "summary.json").read_text())
    hp = torch.load(stage1 / s["best_checkpoint"], map_location="cpu", weights_only=True)
    lrs = hp["hyper_parameters"]["lr_scaling"]["lr"]
    assert lrs["backbone"] == pytest.approx(0.01 * lrs["head"], rel=1e-12)
    # LWS: backbone and classifier frozen, one learnt scale per class
    s1, s2 = best_state(stage1), best_state(runs["places_lt_r152_pretrained_lws"])
    assert torch.equal(s1["head.weight"], s2["head.weight"]) and s2["logit_scale.scale"].shape == (4,)
