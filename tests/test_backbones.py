"""model=timm, model=smp and the fine-tuning controls: weights files, model.freeze, parameter
groups (optimizer.backbone_lr_mult, optimizer.norm_bias_decay) and per-step schedules."""

from __future__ import annotations

import json
import math

import lightning as L
import pytest
import torch

from imbal.errors import ImbalError
from tests.cifar_fixture import write_cifar10

# CIFAR-format data (ratio 10: 78 training images, 10 classes, 32x32), one short epoch
CIFAR = ["data=cifar10_lt", "data.ratio=10", "data.num_workers=0", "data.batch_size=16", "data.augment=false",
         "trainer.max_epochs=1", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "logger=csv"]
# the tiny synthetic Airbus run of tests/test_segmentation_train.py, with the model overrides dropped
AIRBUS = ["data=airbus", "data.synthetic.n_images=12", "data.synthetic.image_size=48", "data.crop=32",
          "data.samples_per_epoch=8", "data.synthetic.ship_image_share=0.5", "data.val_fraction=0.25",
          "data.test_fraction=0.25", "trainer.max_epochs=1", "trainer.accelerator=cpu",
          "trainer.enable_progress_bar=false", "logger=csv"]

SEEN: dict[str, list] = {}


class Recorder(L.Callback):
    """Records the head at the start of training and the lr of every optimiser group before each step."""

    def on_fit_start(self, trainer, pl_module):
        SEEN["head"] = [pl_module.head.weight.detach().clone()]
        SEEN["lr"] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        SEEN["lr"].append([g["lr"] for g in trainer.optimizers[0].param_groups])


RECORD = f"+callbacks.recorder._target_={__name__}.Recorder"


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    return write_cifar10(tmp_path_factory.mktemp("cifar"))


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    """A full timm resnet18 state dict (1000-class fc included) with non-default BatchNorm statistics."""
    import timm

    torch.manual_seed(1)
    model = timm.create_model("resnet18", pretrained=False)
    state = model.state_dict()
    for k, v in state.items():
        if k.endswith("running_mean"):
            v.normal_(0, 0.1)
        elif k.endswith("running_var"):
            v.uniform_(0.5, 2.0)
        elif k.endswith("num_batches_tracked"):
            v.fill_(7)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(state, path)
    return path


def _checkpoint(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    return summary, torch.load(run_dir / summary["best_checkpoint"], map_location="cpu", weights_only=True)["state_dict"]


# -- model=timm -------------------------------------------------------------------
@pytest.mark.slow
def test_timm_resnet18_trains_one_epoch(make_cfg, tmp_path, cifar_root):
    from imbal.runner import train

    train(make_cfg(*CIFAR, f"data.root={cifar_root}", "model=timm"))
    summary, state = _checkpoint(tmp_path / "run")
    assert summary["model"] == "resnet18" and summary["data"] == "cifar10_lt"
    assert 0.0 <= summary["test"]["balanced_accuracy"] <= 1.0
    assert state["backbone.model.layer4.1.bn2.weight"].shape == (512,)
    assert state["head.weight"].shape == (10, 512)  # timm's num_features -> the task's head


def test_weights_and_freeze_keep_the_backbone_bit_identical(make_cfg, tmp_path, cifar_root, resnet18_file):
    from imbal.runner import train

    train(make_cfg(*CIFAR, f"data.root={cifar_root}", "model=timm", f"model.weights={resnet18_file}",
                   "model.freeze=true", RECORD))
    summary, state = _checkpoint(tmp_path / "run")
    assert summary["model"] == "resnet18" and 0.0 <= summary["test"]["balanced_accuracy"] <= 1.0
    loaded = torch.load(resnet18_file, weights_only=True)
    backbone = {k: v for k, v in loaded.items() if not k.startswith("fc.")}
    assert len(backbone) == 120  # 60 parameters + 60 buffers of the 20 BatchNorms (running stats, num_batches_tracked)
    assert all(torch.equal(state[f"backbone.model.{k}"], v) for k, v in backbone.items())
    assert sum(k.startswith("backbone.") for k in state) == 120
    assert (state["head.weight"] - SEEN["head"][0]).abs().max() > 1e-4  # the head trained
    assert len(SEEN["lr"][0]) == 1  # one optimiser group: the head's


def test_pretrained_without_network_is_one_line(monkeypatch):
    import timm.models._builder as builder

    from imbal.models.timm_backbone import TimmBackbone

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load this file.\nsecond line")

    monkeypatch.setattr(builder, "load_pretrained", offline)
    with pytest.raises(ImbalError) as err:
        TimmBackbone(model_name="resnet18", in_shape=(3, 32, 32), pretrained=True)
    assert str(err.value) == (
        "model.pretrained=true: could not download the weights of timm model 'resnet18' (no network?): "
        "We couldn't connect to 'https://huggingface.co' to load this file.; give model.weights=<local file>"
    )


def test_timm_user_mistakes_are_one_line(tmp_path, resnet18_file):
    from imbal.models.timm_backbone import TimmBackbone

    with pytest.raises(ImbalError, match=r"^model.name=resnet19: not a timm model; close matches: resnet18, ") as err:
        TimmBackbone(model_name="resnet19", in_shape=(3, 32, 32))
    assert "\n" not in str(err.value)
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(ImbalError, match=rf"^model.weights={missing}: file not found; expected a local"):
        TimmBackbone(model_name="resnet18", in_shape=(3, 32, 32), weights=str(missing))
    state = torch.load(resnet18_file, weights_only=True)
    del state["layer4.1.bn2.running_var"]
    state["extra.weight"] = torch.zeros(3)
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    with pytest.raises(ImbalError) as err:
        TimmBackbone(model_name="resnet18", in_shape=(3, 32, 32), weights=str(bad))
    assert str(err.value) == (f"model.weights={bad}: the file does not fit timm model 'resnet18': "
                              "missing layer4.1.bn2.running_var; unexpected extra.weight")
    with pytest.raises(ImbalError) as err:  # one input channel against a 3-channel stem
        TimmBackbone(model_name="resnet18", in_shape=(1, 32, 32), weights=str(resnet18_file))
    assert str(err.value).endswith("shape mismatch conv1.weight (64, 3, 7, 7) vs (64, 1, 7, 7) (file vs model)")
    with pytest.raises(ImbalError, match=r"timm model takes 224x224 inputs, the data gives 32x32; .* \+model.img_size=32"):
        TimmBackbone(model_name="vit_tiny_patch16_224", in_shape=(3, 32, 32))


# -- model=smp --------------------------------------------------------------------
def test_smp_unet_resnet18_trains_and_scores(make_cfg, tmp_path, monkeypatch):
    from imbal.runner import train

    monkeypatch.setenv("IMBAL_CACHE", str(tmp_path / "cache"))
    train(make_cfg(*AIRBUS, "model=smp", "model.arch=Unet", "model.encoder=resnet18", "loss=dice"))
    summary, state = _checkpoint(tmp_path / "run")
    assert summary["model"] == "smp" and summary["task"] == "segmentation"
    for split in ("val", "test"):
        assert 0.0 <= summary[split]["dice"] <= 1.0
    assert state["backbone.model.segmentation_head.0.weight"].shape[0] == 1  # one logit channel


def test_smp_encoder_weights_file_loads_exactly(tmp_path):
    import segmentation_models_pytorch as smp

    from imbal.models.smp_model import SmpModel

    torch.manual_seed(3)
    source = smp.create_model("Unet", encoder_name="resnet18", encoder_weights=None).encoder.state_dict()
    path = tmp_path / "encoder.pth"
    torch.save(source, path)
    model = SmpModel(arch="Unet", encoder="resnet18", encoder_weights=str(path), in_shape=(3, 32, 32))
    own = model.model.encoder.state_dict()
    assert own.keys() == source.keys() and len(own) == 120
    assert all(torch.equal(own[k], v) for k, v in source.items())
    # model.freeze=2: the encoder's stem (conv1 + bn1) and layer1; the decoder trains
    from imbal.models import finetune

    assert [len(names) for names in model.finetune_stages()] == [3, 12, 15, 15, 15]
    finetune.freeze(model, 2, model="smp")
    assert finetune.frozen_modules(model, "backbone") == [
        "backbone.model.encoder.conv1", "backbone.model.encoder.bn1", "backbone.model.encoder.layer1"]
    del source["conv1.weight"]
    torch.save(source, path)
    with pytest.raises(ImbalError, match=r"^model.encoder_weights=.*encoder.pth: the file does not fit smp encoder 'resnet18': missing conv1.weight$"):
        SmpModel(arch="Unet", encoder="resnet18", encoder_weights=str(path), in_shape=(3, 32, 32))
    with pytest.raises(ImbalError, match=r"^model.arch=unet: expected one of Unet, UnetPlusPlus, FPN, DeepLabV3Plus, Linknet$"):
        SmpModel(arch="unet", in_shape=(3, 32, 32))


def test_smp_pads_sides_that_are_not_multiples_of_32():
    from imbal.models.smp_model import SmpModel

    model = SmpModel(arch="FPN", encoder="resnet18", in_shape=(3, 48, 40)).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 48, 40)).shape == (2, 1, 48, 40)


# -- fine-tuning controls ---------------------------------------------------------
def test_freeze_stages_and_parameter_groups(make_cfg, cifar_root):
    from imbal.runner import build_parts

    cfg = make_cfg(*CIFAR, f"data.root={cifar_root}", "model=timm", "model.freeze=2", "optimizer=adamw",
                   "optimizer.backbone_lr_mult=0.1", "optimizer.norm_bias_decay=false")
    _, _, task = build_parts(cfg)
    # timm's coarse groups of resnet18: stem, layer1, ... ; freeze=2 = stem + layer1
    assert task.frozen_modules == ["backbone.model.conv1", "backbone.model.bn1", "backbone.model.layer1"]
    task.train()
    assert not task.backbone.model.layer1[0].bn1.training and task.backbone.model.layer2[0].bn1.training
    opt = task.configure_optimizers()["optimizer"]
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["backbone"]["lr"] == pytest.approx(3e-4) and groups["backbone_no_decay"]["lr"] == pytest.approx(3e-4)
    assert groups["head"]["lr"] == pytest.approx(3e-3) and groups["head_no_decay"]["lr"] == pytest.approx(3e-3)
    assert groups["backbone"]["weight_decay"] == 1e-4 and groups["backbone_no_decay"]["weight_decay"] == 0.0
    # layer2..4 of resnet18: 15 conv weights (decayed), 30 BatchNorm weights and biases (not)
    assert len(groups["backbone"]["params"]) == 15 and len(groups["backbone_no_decay"]["params"]) == 30
    assert all(p.ndim > 1 for p in groups["backbone"]["params"]) and all(p.ndim == 1 for p in groups["backbone_no_decay"]["params"])
    assert [p.shape for p in groups["head"]["params"]] == [(10, 512)] and groups["head_no_decay"]["weight_decay"] == 0.0


def test_freeze_is_accepted_by_any_backbone(make_cfg):
    from imbal.runner import build_parts

    _, _, task = build_parts(make_cfg("model=small_cnn", "+model.freeze=true", "optimizer.norm_bias_decay=true"))
    assert task.frozen_modules == ["backbone"]
    task.train()
    assert not task.backbone.training and task.head.training
    assert not any(p.requires_grad for p in task.backbone.parameters())
    opt = task.configure_optimizers()["optimizer"]
    assert [g["name"] for g in opt.param_groups] == ["head"] and opt.param_groups[0]["weight_decay"] == 1e-4
    with pytest.raises(ImbalError, match=r"^model.freeze=9: model 'small_cnn' has 1 stages; use k <= 1 or model.freeze=true$"):
        build_parts(make_cfg("model=small_cnn", "+model.freeze=9"))
    with pytest.raises(ImbalError, match=r"^optimizer.scheduler_interval=batch: expected one of epoch, step$"):
        build_parts(make_cfg("optimizer.scheduler_interval=batch"))


def test_freeze_true_of_a_model_without_head_is_refused():
    from imbal.models import finetune
    from imbal.models.unet import UNet

    with pytest.raises(ImbalError, match=r"model 'unet' produces its logits itself, so this freezes every parameter"):
        finetune.freeze(UNet(in_shape=(3, 32, 32), depth=2, base_width=4), True, model="unet")


def test_warmup_cosine_steps_per_batch(make_cfg, tmp_path, cifar_root):
    """optimizer=adamw_warmup_cosine: the lr before step k is lr * k / W during warm-up, then
    lr * 0.5 * (1 + cos(pi * (k - W) / (T - W))), T = the trainer's 10 steps (2 epochs x 5 batches)."""
    from imbal.runner import train

    train(make_cfg(*CIFAR, f"data.root={cifar_root}", "model=small_cnn", "trainer.max_epochs=2",
                   "optimizer=adamw_warmup_cosine", "optimizer.optim.lr=0.01", "optimizer.scheduler.warmup_steps=3",
                   "optimizer.scheduler.warmup_fraction=null", "optimizer.backbone_lr_mult=0.5", RECORD))
    lrs = SEEN["lr"]
    assert len(lrs) == 10
    total, warm = 10, 3
    for k, (*_, head) in enumerate(lrs):
        factor = k / warm if k < warm else 0.5 * (1 + math.cos(math.pi * (k - warm) / (total - warm)))
        assert head == pytest.approx(0.01 * factor, abs=1e-12)
    backbone = [g[0] for g in lrs]  # groups: backbone, backbone_no_decay, head, head_no_decay
    assert backbone[4] == pytest.approx(0.5 * lrs[4][-1])
    assert [round(x[-1] / 0.01, 6) for x in lrs[:5]] == [0.0, 0.333333, 0.666667, 1.0, 0.950484]


def test_warmup_cosine_factor_closed_form():
    from imbal.schedules import WarmupCosine, warmup_cosine

    f = WarmupCosine(total_steps=100, warmup_steps=10)
    assert [f(0), f(5), f(10), f(55), f(100), f(150)] == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.0, 0.0])
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    assert warmup_cosine(opt, total_steps=40, warmup_fraction=0.25).lr_lambdas[0].warmup_steps == 10
    with pytest.raises(ImbalError, match="finite number of steps"):
        warmup_cosine(opt, total_steps=float("inf"))
    # decay=linear: Hugging Face's get_linear_schedule_with_warmup, max(0, (T - s) / (T - W)) after warm-up
    lin = WarmupCosine(total_steps=100, warmup_steps=10, decay="linear")
    assert [lin(0), lin(5), lin(10), lin(55), lin(91), lin(100), lin(150)] == pytest.approx(
        [0.0, 0.5, 1.0, 0.5, 0.1, 0.0, 0.0])
    with pytest.raises(ImbalError, match="decay must be one of cosine, linear, got 'step'"):
        warmup_cosine(opt, total_steps=10, decay="step")


def test_rebuild_for_a_checkpoint_needs_no_weights(make_cfg, cifar_root, tmp_path):
    """build_task(load_weights=False), as for a checkpoint: the weights file or download is not needed."""
    from imbal.runner import build_parts, build_task

    datamodule, _, _ = build_parts(make_cfg(*CIFAR, f"data.root={cifar_root}"))
    gone = tmp_path / "gone.safetensors"
    for extra in (f"model.weights={gone}", "model.pretrained=true"):
        cfg = make_cfg(*CIFAR, f"data.root={cifar_root}", "model=timm", extra)
        _, task = build_task(cfg, datamodule.stats, load_weights=False)
        assert task.backbone.out_features == 512
    with pytest.raises(ImbalError, match="file not found"):
        build_task(make_cfg(*CIFAR, f"data.root={cifar_root}", "model=timm", f"model.weights={gone}"), datamodule.stats)
