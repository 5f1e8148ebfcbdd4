"""Paper recipes: the warm-up + step schedule, and every experiment=cifar*_lt_* composes as the papers say."""

from __future__ import annotations

import pytest
import torch

from imbal.errors import ImbalError
from imbal.schedules import WarmupStep, warmup_step_lr

EXPERIMENTS = {
    "ce": ("ce", {}),
    "focal": ("focal", {"gamma": 1.0}),
    "cb_focal": ("class_balanced", {"base": "focal", "beta": 0.9999, "gamma": 0.5}),
    "ldam_drw": ("ldam", {"drw_epoch": 160, "max_m": 0.5, "s": 30.0}),
    "la": ("logit_adjusted", {"tau": 1.0}),
}


def lrs(sched, opt, epochs):
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_warmup_step_is_the_ldam_schedule():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    got = lrs(warmup_step_lr(opt), opt, 200)

    def ldam(epoch):  # adjust_learning_rate of the LDAM reference code (1-based epoch)
        epoch = epoch + 1
        if epoch <= 5:
            return 0.1 * epoch / 5
        if epoch > 180:
            return 0.1 * 0.0001
        if epoch > 160:
            return 0.1 * 0.01
        return 0.1

    assert got == pytest.approx([ldam(e) for e in range(200)], rel=1e-9)
    assert got[0] == pytest.approx(0.02) and got[4] == pytest.approx(0.1) and got[159] == 0.1
    assert got[160] == pytest.approx(1e-3) and got[180] == pytest.approx(1e-5)


def test_warmup_step_bad_values():
    with pytest.raises(ImbalError, match=r"milestones must be increasing, got \[180, 160\]"):
        WarmupStep(5, [180, 160])
    with pytest.raises(ImbalError, match=r"warmup_epochs must be >= 0, got -1"):
        WarmupStep(-1)
    assert WarmupStep(0, [2], 0.5)(0) == 1.0 and WarmupStep(0, [2], 0.5)(2) == 0.5


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
@pytest.mark.parametrize("key", list(EXPERIMENTS))
def test_experiment_configs(make_cfg, dataset, key):
    from hydra.utils import instantiate

    cfg = make_cfg(f"experiment={dataset}_lt_{key}")
    loss, hp = EXPERIMENTS[key]
    assert cfg.data.name == f"{dataset}_lt" and cfg.data.ratio == 100 and cfg.data.profile == "exp"
    assert cfg.data.batch_size == 128 and cfg.data.val_from == "test"
    assert cfg.model.name == "resnet32" and cfg.model.blocks == 5
    assert cfg.loss.name == loss and all(cfg.loss[k] == v for k, v in hp.items())
    o = cfg.optimizer
    assert o.optim._target_ == "torch.optim.SGD" and (o.optim.lr, o.optim.momentum, o.optim.weight_decay) == (0.1, 0.9, 2e-4)
    assert (o.scheduler.warmup_epochs, list(o.scheduler.milestones), o.scheduler.gamma) == (5, [160, 180], 0.01)
    assert cfg.trainer.max_epochs == 200
    assert set(cfg.posthoc) >= {"la", "la_tuned", "tau_norm"}
    sched = instantiate(o.scheduler)(optimizer=torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1))
    assert isinstance(sched, torch.optim.lr_scheduler.LambdaLR)


@pytest.mark.parametrize("key", list(EXPERIMENTS))
def test_recipe_losses_build_with_cifar10_lt_counts(make_cfg, key):
    """Each recipe's loss builds with the CIFAR-10-LT counts (the loss library's names and hyper-parameters)."""
    from omegaconf import OmegaConf

    from imbal.data.profile import longtail_counts
    from imbal.data.stats import DataStats
    from imbal.losses import build

    cfg = make_cfg(f"experiment=cifar10_lt_{key}")
    counts = longtail_counts(5000, 10, 100)
    stats = DataStats(task="multiclass", num_classes=10, class_counts=counts, class_names=list("abcdefghij"), modality="image")
    node = OmegaConf.to_container(cfg.loss, resolve=True)
    loss = build(node.pop("name"), stats=stats, **node)
    logits, y = torch.randn(8, 10), torch.arange(8)
    assert torch.isfinite(loss(logits.tanh() if key == "ldam_drw" else logits, y))
