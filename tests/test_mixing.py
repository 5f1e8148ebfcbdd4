"""Mixing (imbal/mixing): mixup, CutMix, Remix, manifold mixup, text embedding mixup, the class-balanced pair.

Numbers against hand computations; bad combinations refused in one line before training.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from imbal.data.stats import DataStats
from imbal.errors import ImbalError
from imbal.kinds import MULTICLASS, SEGMENTATION
from imbal.losses import registry
from imbal.mixing import Mixer, build_mixing
from imbal.mixing import batch as B
from imbal.models.simple import MLP, SmallCNN
from tests.test_bad_inputs import run_inprocess

COUNTS = [50, 20, 5]
#: hyper-parameters a loss needs beyond its defaults to be built at all
NEEDS = {"combo": {"terms": [{"name": "ce"}, {"name": "focal", "weight": 0.5}]}}


class FakeTask(nn.Module):
    """What Mixer.loss uses of ImbalanceTask: ``task(x)`` -> logits, ``backbone``, ``loss_fn``."""

    def __init__(self, backbone: nn.Module, loss_fn: nn.Module, outputs: int = 3, squash: bool = False):
        super().__init__()
        self.backbone, self.loss_fn, self.squash = backbone, loss_fn, squash
        self.head = nn.Linear(backbone.out_features, outputs)

    def forward(self, x):
        logits = self.head(self.backbone(x))
        return logits.tanh() if self.squash else logits  # a cosine head's logits lie in [-1, 1]


def multiclass_losses() -> list[str]:
    return [n for n in registry.available() if MULTICLASS in registry.supported_tasks(registry.get(n))]


def _stats(task=MULTICLASS, modality="vector", counts=COUNTS) -> DataStats:
    return DataStats(task=task, num_classes=len(counts), class_counts=list(counts),
                     class_names=[str(i) for i in range(len(counts))], modality=modality)


def _loss_and_grads(task: nn.Module, fn) -> tuple[torch.Tensor, list[torch.Tensor]]:
    task.zero_grad()
    loss = fn()
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in task.parameters()]


@pytest.mark.parametrize("method", ["mixup", "remix", "manifold_mixup", "cutmix"])
def test_lam_one_is_the_plain_loss_for_every_multiclass_loss(method):
    """With lam = 1 every method's mixed loss and its gradients equal the plain loss's, loss by loss."""
    names = multiclass_losses()
    assert {"ce", "focal", "ldam", "logit_adjusted", "combo"} <= set(names)
    for name in names:
        torch.manual_seed(0)
        loss_fn = registry.build(name, stats=_stats(), **NEEDS.get(name, {}))
        cosine = getattr(loss_fn, "head", "linear") == "cosine"
        image = method == "cutmix"
        backbone = SmallCNN(in_shape=[1, 8, 8], width=4, dropout=0.0) if image else MLP(in_shape=[4], hidden=[8, 8])
        task = FakeTask(backbone, loss_fn, squash=cosine)
        x = torch.randn(6, 1, 8, 8) if image else torch.randn(6, 4)
        y = torch.tensor([0, 0, 1, 2, 0, 1])
        mixer = Mixer(method, task=MULTICLASS, modality="image" if image else "vector", class_counts=COUNTS,
                      num_classes=3, stages=["net.2", "net.4"] if method == "manifold_mixup" else [])
        task.eval()  # SmallCNN's BatchNorm: the same statistics in both passes
        plain, g_plain = _loss_and_grads(task, lambda: loss_fn(task(x), y))
        idx = torch.tensor([5, 4, 3, 2, 1, 0])
        mixed, g_mixed = _loss_and_grads(task, lambda: mixer.loss(task, x, y, lam=1.0, idx=idx, stage=1)[0])
        assert torch.equal(mixed, plain), name
        for a, b in zip(g_mixed, g_plain):
            assert torch.equal(a, b), name


def test_mixup_loss_by_hand():
    """lam = 0.3, pairs (0 <- 1), (1 <- 0): 0.3 CE(y_a) + 0.7 CE(y_b) of the mixed inputs, written out."""
    lin = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    backbone = nn.Identity()
    backbone.out_features = 2
    task = FakeTask(backbone, registry.build("ce", stats=_stats()))
    task.head = lin
    x, y = torch.tensor([[2.0, 0.0], [0.0, 4.0]]), torch.tensor([0, 2])
    mixer = Mixer("mixup", task=MULTICLASS, modality="vector", num_classes=3)
    loss, logits = mixer.loss(task, x, y, lam=0.3, idx=torch.tensor([1, 0]))
    # mixed inputs: 0.3 * [2, 0] + 0.7 * [0, 4] = [0.6, 2.8]; 0.3 * [0, 4] + 0.7 * [2, 0] = [1.4, 1.2]
    assert torch.allclose(logits, torch.tensor([[0.6, 2.8, 0.0], [1.4, 1.2, 0.0]]))

    def ce(z, k):
        return math.log(sum(math.exp(v) for v in z)) - z[k]

    z0, z1 = [0.6, 2.8, 0.0], [1.4, 1.2, 0.0]
    hand = (0.3 * ce(z0, 0) + 0.7 * ce(z0, 2) + 0.3 * ce(z1, 2) + 0.7 * ce(z1, 0)) / 2
    assert float(loss.detach()) == pytest.approx(hand, rel=1e-6)


def test_a_loss_that_accepts_soft_targets_gets_the_mixed_one_hot():
    """Soft cross-entropy on ``w onehot(y_a) + (1 - w) onehot(y_b)`` equals the mixed CE loss (Remix weights too)."""

    class SoftCE(nn.Module):
        accepts_soft_targets = True

        def forward(self, logits, target):
            self.seen = target
            return -(target * torch.log_softmax(logits, 1)).sum(1).mean()

    torch.manual_seed(0)
    soft, hard = SoftCE(), registry.build("ce", stats=_stats())
    backbone = MLP(in_shape=[2], hidden=[4])
    x, y, idx = torch.randn(3, 2), torch.tensor([0, 2, 1]), torch.tensor([1, 0, 2])
    mixer = Mixer("remix", task=MULTICLASS, modality="vector", class_counts=COUNTS, num_classes=3)
    got, logits = mixer.loss(FakeTask(backbone, soft), x, y, lam=0.3, idx=idx)
    # pairs (0, 2): ratio 10, lam < tau -> class 2; (2, 0): lam; (1, 1): class 1
    assert torch.allclose(soft.seen, torch.tensor([[0.0, 0.0, 1.0], [0.7, 0.0, 0.3], [0.0, 1.0, 0.0]]))
    weight = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)
    assert torch.allclose(got, B.mixed_loss(hard, logits, y, y[idx], 0.3, weight), atol=1e-6)


@pytest.mark.parametrize("name", ["none", "mixup", "cutmix", "remix", "manifold_mixup"])
def test_every_mixing_config_composes_validates_and_builds(make_cfg, name):
    from omegaconf import OmegaConf

    from imbal.config import conf_dir
    from imbal.mixing import METHODS
    from imbal.runner.validate import MIXING_METHODS, validate_config

    assert MIXING_METHODS == METHODS and sorted(p.stem for p in (conf_dir() / "mixing").glob("*.yaml")) == sorted(METHODS)
    cfg = make_cfg("data=gaussian_lt", f"mixing={name}")
    validate_config(cfg)
    node = OmegaConf.to_container(cfg.mixing, resolve=True)
    assert node["name"] == name
    stats = _stats(modality="image") if name == "cutmix" else _stats()
    backbone = SmallCNN(in_shape=[1, 8, 8]) if name == "cutmix" else MLP(in_shape=[2])
    mixer = build_mixing(node, stats, backbone)
    assert (mixer is None) if name == "none" else (mixer.method == name and mixer.prob == 1.0)


def test_binary_mixup_is_bce_on_the_mixed_target():
    """BCE is linear in the target: lam BCE(y_a) + (1 - lam) BCE(y_b) = BCE(lam y_a + (1 - lam) y_b); Remix runs on binary."""
    torch.manual_seed(0)
    stats = _stats(task="binary", counts=[30, 5])
    task = FakeTask(MLP(in_shape=[2], hidden=[4]), registry.build("bce", stats=stats), outputs=1)
    task.forward = lambda x: task.head(task.backbone(x)).squeeze(-1)
    x, y, idx = torch.randn(4, 2), torch.tensor([0.0, 1.0, 0.0, 1.0]), torch.tensor([1, 0, 3, 2])
    loss, logits = Mixer("mixup", task="binary", modality="vector").loss(task, x, y, lam=0.3, idx=idx)
    target = 0.3 * y + 0.7 * y[idx]
    assert torch.allclose(loss, torch.nn.functional.binary_cross_entropy_with_logits(logits, target), atol=1e-6)
    mixer = build_mixing({"name": "remix"}, stats, task.backbone)
    loss, logits = mixer.loss(task, x, y, lam=0.3, idx=idx)  # pairs (0, 1): ratio 6, lam < tau -> label 1
    target = torch.tensor([1.0, 0.3, 1.0, 0.3])
    assert torch.allclose(loss, torch.nn.functional.binary_cross_entropy_with_logits(logits, target), atol=1e-6)


def test_remix_rule_on_a_hand_case():
    """Chou et al. (2020): counts 100 / 30 / 10, kappa 3, tau 0.5."""
    n = torch.tensor([100.0, 30.0, 10.0])
    a, b = torch.tensor([0, 2, 0, 1, 1, 0]), torch.tensor([2, 0, 1, 0, 1, 0])
    # ratios n_a/n_b: 10, 0.1, 3.33, 0.3, 1, 1
    assert B.remix_label_weights(0.3, n[a], n[b]).tolist() == pytest.approx([0.0, 0.3, 0.0, 0.3, 0.3, 0.3])
    assert B.remix_label_weights(0.7, n[a], n[b]).tolist() == pytest.approx([0.7, 1.0, 0.7, 1.0, 0.7, 0.7])
    # kappa 4: the 100/30 pair (3.33) is no longer unbalanced enough
    assert B.remix_label_weights(0.3, n[a], n[b], kappa=4.0).tolist() == pytest.approx([0.0, 0.3, 0.3, 0.3, 0.3, 0.3])


def test_remix_loss_by_hand():
    """The Remix loss is mean_i (w_i CE(y_a) + (1 - w_i) CE(y_b)) with the rule's per-pair w_i."""
    torch.manual_seed(0)
    task = FakeTask(MLP(in_shape=[2], hidden=[4]), registry.build("ce", stats=_stats()))
    x, y = torch.randn(3, 2), torch.tensor([0, 2, 1])
    idx = torch.tensor([1, 0, 2])  # pairs (0, 2), (2, 0), (1, 1); counts 50 / 5: ratio 10 and 0.1
    mixer = Mixer("remix", task=MULTICLASS, modality="vector", class_counts=COUNTS, num_classes=3)
    loss, logits = mixer.loss(task, x, y, lam=0.3, idx=idx)
    w = [0.0, 0.3, 0.3]  # majority image mostly the minority's -> minority label; else lam
    logp = torch.log_softmax(logits.detach(), dim=1)
    hand = -sum(w[i] * logp[i, y[i]] + (1 - w[i]) * logp[i, y[idx[i]]] for i in range(3)) / 3
    assert float(loss.detach()) == pytest.approx(float(hand), rel=1e-6)


def test_cutmix_cuts_image_and_mask_identically():
    x = torch.arange(2 * 8 * 8, dtype=torch.float32).reshape(2, 1, 8, 8)
    mask = x[:, 0].clone()
    box = B.cutmix_box(8, 8, 0.75, cy=4, cx=4)  # sides 8 * sqrt(0.25) = 4 around (4, 4)
    assert box == (2, 6, 2, 6)
    out, cut, lam = B.cutmix(x, torch.tensor([1, 0]), box, mask)
    assert lam == 0.75  # 1 - 16 / 64
    assert torch.equal(out[:, 0], cut)
    assert torch.equal(out[0, 0, 2:6, 2:6], x[1, 0, 2:6, 2:6]) and torch.equal(out[1, 0, 2:6, 2:6], x[0, 0, 2:6, 2:6])
    outside = torch.ones(8, 8, dtype=torch.bool)
    outside[2:6, 2:6] = False
    assert torch.equal(out[0, 0][outside], x[0, 0][outside])
    assert B.cutmix_box(8, 8, 0.75, cy=0, cx=7) == (0, 2, 5, 8)  # clipped at the border
    assert B.cutmix_box(8, 8, 1.0) == (0, 0, 0, 0)


def test_cutmix_on_segmentation_gives_the_loss_the_cut_mask():
    seen = {}

    def loss_fn(logits, target):
        seen["target"] = target
        return logits.mean()

    class Seg(nn.Module):
        def forward(self, x):
            seen["x"] = x
            return x[:, :1] * 1.0

    task = Seg()
    task.loss_fn, task.backbone = loss_fn, nn.Identity()
    torch.manual_seed(3)
    x = torch.rand(4, 1, 16, 16)
    mixer = Mixer("cutmix", task=SEGMENTATION, modality="mask")
    mixer.loss(task, x, (x[:, 0] > 0.5).float(), lam=0.5)
    assert torch.equal(seen["target"], (seen["x"][:, 0] > 0.5).float())
    assert not torch.equal(seen["x"], x)  # a box was cut


def test_manifold_mixup_mixes_at_the_stage_by_hand():
    torch.manual_seed(0)
    backbone = MLP(in_shape=[3], hidden=[5, 4])
    task = FakeTask(backbone, registry.build("ce", stats=_stats()))
    x, y, idx = torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), torch.tensor([3, 2, 1, 0])
    mixer = Mixer("manifold_mixup", task=MULTICLASS, modality="vector", num_classes=3,
                  stages=build_mixing({"name": "manifold_mixup"}, _stats(), backbone).stages)
    assert mixer.stages == ["net.2", "net.4"]
    _, logits = mixer.loss(task, x, y, lam=0.25, idx=idx, stage=1)
    net = backbone.net
    h = torch.relu(net[1](x))
    h = 0.25 * h + 0.75 * h[idx]
    assert torch.allclose(logits, task.head(torch.relu(net[3](h))), atol=1e-6)
    _, at_input = mixer.loss(task, x, y, lam=0.25, idx=idx, stage=0)
    assert torch.allclose(at_input, task(0.25 * x + 0.75 * x[idx]), atol=1e-6)


def test_stages_of_imbal_backbones_and_of_a_backbone_that_lists_its_own():
    from imbal.mixing.manifold import stage_names
    from imbal.models.resnet_cifar import ResNetCifar

    assert stage_names(ResNetCifar(in_shape=[3, 8, 8], blocks=1)) == ["layer1", "layer2", "layer3"]
    assert stage_names(SmallCNN(in_shape=[1, 8, 8])) == ["features.0", "features.2"]
    assert stage_names(MLP(in_shape=[2], hidden=[4, 4, 4])) == ["net.2", "net.4", "net.6"]
    own = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 3))
    own.mixing_stages = ["0"]
    assert build_mixing({"name": "manifold_mixup"}, _stats(), own).stages == ["0"]
    own.mixing_stages = ["7"]
    with pytest.raises(ImbalError, match=r"^mixing=manifold_mixup: model 'model' lists stage '7' \(mixing_stages\), "
                                         r"but has no such submodule$"):
        build_mixing({"name": "manifold_mixup"}, _stats(), own)


def test_manifold_mixup_at_a_timm_stage_by_hand():
    """A timm model's stages are its feature_info modules; stage 3 (layer2) mixed, then layer3, layer4, the pooling."""
    from imbal.mixing.manifold import stage_names

    pytest.importorskip("timm")
    from imbal.models.timm_backbone import TimmBackbone

    timm_resnet = TimmBackbone(model_name="resnet10t", in_shape=[3, 16, 16])
    assert stage_names(timm_resnet) == ["model.act1", "model.layer1", "model.layer2", "model.layer3", "model.layer4"]
    task = FakeTask(timm_resnet, registry.build("ce", stats=_stats())).eval()
    mixer = build_mixing({"name": "manifold_mixup", "stage": 3}, _stats(modality="image"), timm_resnet)
    x, idx = torch.randn(2, 3, 16, 16), torch.tensor([1, 0])
    _, logits = mixer.loss(task, x, torch.tensor([0, 1]), lam=0.4, idx=idx)
    m = timm_resnet.model
    h = m.layer2(m.layer1(m.maxpool(m.act1(m.bn1(m.conv1(x))))))
    h = 0.4 * h + 0.6 * h[idx]
    assert torch.allclose(logits, task.head(m.forward_head(m.layer4(m.layer3(h)), pre_logits=True)), atol=1e-5)


def test_text_is_mixed_at_the_embedding_by_hand():
    class Bag(nn.Module):
        out_features = 2

        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(5, 2)

        def forward(self, x):
            return self.embedding(x["input_ids"]).mean(1)

    torch.manual_seed(0)
    backbone = Bag()
    task = FakeTask(backbone, registry.build("ce", stats=_stats()))
    ids = torch.tensor([[1, 2], [3, 4]])
    mixer = build_mixing({"name": "mixup"}, _stats(modality="text"), backbone)
    _, logits = mixer.loss(task, {"input_ids": ids}, torch.tensor([0, 1]), lam=0.6, idx=torch.tensor([1, 0]))
    e = backbone.embedding(ids)
    assert torch.allclose(logits, task.head((0.6 * e + 0.4 * e[[1, 0]]).mean(1)), atol=1e-6)


def test_class_balanced_pair_draws_each_class_equally():
    """Eight samples of class 0 and two of class 1: a partner of either class with probability 1/2."""
    torch.manual_seed(0)
    y = torch.tensor([0] * 8 + [1] * 2)
    partners = torch.cat([y[B.pair_index(y, 10, "class_balanced")] for _ in range(2000)])
    assert abs(float(partners.float().mean()) - 0.5) < 0.02  # 20000 draws: sd 0.0035
    assert int(y[torch.randperm(10)].sum()) == 2  # the plain pair keeps the batch's classes


def test_until_epoch_and_prob():
    m = Mixer("mixup", task=MULTICLASS, modality="vector", until_epoch=2, prob=0.0)
    assert [m.active(e) for e in range(4)] == [True, True, False, False]
    assert Mixer("mixup", task=MULTICLASS, modality="vector").active(10**6)
    task = FakeTask(MLP(in_shape=[2], hidden=[3]), registry.build("ce", stats=_stats()))
    x, y = torch.randn(4, 2), torch.tensor([0, 1, 2, 0])
    loss, logits = m.loss(task, x, y)  # prob 0: never mixed
    assert torch.equal(logits, task(x)) and torch.equal(loss, task.loss_fn(task(x), y))


def test_the_same_batch_twice_is_mixed_the_same_way():
    """SAM / ImbSAM run the training step twice per step: the second pass sees the first pass's mixed batch."""
    import copy
    import pickle

    torch.manual_seed(0)
    task = FakeTask(MLP(in_shape=[2], hidden=[4]), registry.build("ce", stats=_stats()))
    for method in ("mixup", "remix", "manifold_mixup"):
        mixer = build_mixing({"name": method, "prob": 0.5}, _stats(), task.backbone)
        x, y = torch.randn(16, 2), torch.randint(0, 3, (16,))
        draws = [mixer.loss(task, x, y)[0] for _ in range(3)]
        assert draws[0].item() == draws[1].item() == draws[2].item(), method
        others = {round(mixer.loss(task, x.clone(), y)[0].item(), 6) for _ in range(8)}  # new batches: new draws
        assert len(others) > 1, method
        assert pickle.loads(pickle.dumps(mixer))._last is None and copy.deepcopy(mixer).method == method


def test_build_refusals():
    vec, backbone = _stats(), MLP(in_shape=[2], hidden=[3, 3])
    assert build_mixing({"name": "none"}, vec, backbone) is None and build_mixing(None, vec, backbone) is None
    cases = [
        ({"name": "remix"}, _stats(task="multilabel"),
         "mixing=remix: the data's task is 'multilabel'; it needs one class per sample (task multiclass or binary); "
         "use mixing=mixup"),
        ({"name": "mixup", "pair_sampler": "class_balanced"}, _stats(task=SEGMENTATION, modality="mask"),
         "mixing.pair_sampler=class_balanced: the data's task is 'segmentation'; it needs one class per sample "
         "(task multiclass or binary); use mixing.pair_sampler=none"),
        ({"name": "manifold_mixup", "stage": 3}, vec,
         "mixing.stage=3: model 'mlp' has 2 stages; expected 0 (the input) to 2, or null (a random one per batch)"),
        ({"name": "manifold_mixup"}, vec, "mixing=manifold_mixup: model 'mlp' exposes no stages to mix at"),
        ({"name": "cutmix"}, vec, "mixing=cutmix: data 'd' gives vector inputs; CutMix cuts a box out of images"),
        ({"name": "mixup", "kappa": 3}, vec,
         "mixing.kappa: not a key of mixing=mixup; expected alpha, prob, until_epoch, pair_sampler"),
    ]
    for node, stats, message in cases:
        bb = nn.Linear(2, 2) if "no stages" in message else backbone
        with pytest.raises(ImbalError) as info:
            build_mixing(node, stats, bb, data="d", model="mlp")
        assert str(info.value).startswith(message)


def _tiny_gaussian(tmp_path, *extra):
    return ["data=gaussian_lt", "data.n_max=100", "data.val_per_class=4", "data.test_per_class=4",
            "data.batch_size=32", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
            "logger=csv", f"hydra.run.dir={tmp_path / 'run'}", *extra]


def test_a_mixed_run_trains_and_loads(tmp_path, capsys):
    code, err = run_inprocess(_tiny_gaussian(tmp_path, "mixing=remix", "mixing.pair_sampler=class_balanced"), capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["config"]["mixing"] == {"name": "remix", "alpha": 1.0, "prob": 1.0, "until_epoch": None,
                                           "pair_sampler": "class_balanced", "kappa": 3.0, "tau": 0.5}
    import imbal

    run = imbal.load_run(tmp_path / "run")  # mixing adds no parameters: the run loads as any other
    assert run.model(torch.zeros(2, 2)).shape == (2, 10)


BAD = {
    "cutmix on text": (["data=text_synth", "data.n_max=20", "mixing=cutmix"],
                       "imbal: error: mixing=cutmix: data 'text_synth' gives text inputs; CutMix cuts a box out of "
                       "images (and their masks): use mixing=mixup (text is mixed at the embedding) or mixing=none"),
    "manifold on a backbone without stages": (
        ["data=text_synth", "data.n_max=20", "mixing=manifold_mixup"],
        "imbal: error: mixing=manifold_mixup: model 'textcnn' exposes no stages to mix at (stages: mlp, small_cnn, "
        "resnet32, resnet18/50, timm, or a backbone's mixing_stages attribute); use mixing=mixup"),
    "alpha 0": (["data=gaussian_lt", "mixing=mixup", "mixing.alpha=0"],
                "imbal: error: mixing.alpha=0: expected a finite number > 0 (lam ~ Beta(alpha, alpha))"),
    "prob above 1": (["data=gaussian_lt", "mixing=cutmix", "mixing.prob=1.5"],
                     "imbal: error: mixing.prob=1.5: expected a number in [0, 1] (the chance a batch is mixed)"),
    "until_epoch 0": (["data=gaussian_lt", "mixing=mixup", "mixing.until_epoch=0"],
                      "imbal: error: mixing.until_epoch=0: expected null (mix every epoch) or an integer >= 1 "
                      "(mix epochs before it)"),
    "unknown pair sampler": (["data=gaussian_lt", "mixing=mixup", "mixing.pair_sampler=sqrt"],
                             "imbal: error: mixing.pair_sampler='sqrt': expected none or class_balanced"),
    "kappa below 1": (["data=gaussian_lt", "mixing=remix", "mixing.kappa=0.5"],
                      "imbal: error: mixing.kappa=0.5: expected a finite number >= 1 (Remix's class-count ratio)"),
    "tau above 1": (["data=gaussian_lt", "mixing=remix", "mixing.tau=2"],
                    "imbal: error: mixing.tau=2: expected a number in [0, 1] (Remix's lam threshold)"),
    "stage past the last": (["data=gaussian_lt", "data.n_max=20", "mixing=manifold_mixup", "mixing.stage=3"],
                            "imbal: error: mixing.stage=3: model 'mlp' has 2 stages; expected 0 (the input) to 2, "
                            "or null (a random one per batch)"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_mixing_is_one_line_before_training(name, tmp_path, capsys):
    args, message = BAD[name]
    code, err = run_inprocess([*args, f"hydra.run.dir={tmp_path / 'run'}"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and lines == [message], err
    assert "Traceback" not in err and not (tmp_path / "run" / "summary.json").exists()
    assert not (tmp_path / "run" / "checkpoints").exists()


AIRBUS_TINY = ["data=airbus", "data.synthetic.n_images=12", "data.synthetic.image_size=48", "data.crop=32",
               "data.samples_per_epoch=8", "data.synthetic.ship_image_share=0.5", "data.val_fraction=0.25",
               "data.test_fraction=0.25", "model.depth=2", "model.base_width=4", "trainer.accelerator=cpu"]


@pytest.mark.slow
@pytest.mark.parametrize("args", [
    ["data=text_synth", "data.n_max=40", "data.val_per_class=5", "data.test_per_class=5", "mixing=remix"],
    ["data=text_synth", "model=gru", "data.n_max=40", "data.val_per_class=5", "data.test_per_class=5", "mixing=mixup"],
    ["data=digits_lt", "mixing=cutmix", "mixing.prob=0.5"],
    ["data=digits_lt", "trainer.max_epochs=2", "mixing=manifold_mixup", "mixing.until_epoch=1"],
    [*AIRBUS_TINY, "loss=dice", "mixing=cutmix"],
    [*AIRBUS_TINY, "loss=focal", "mixing=mixup", "mixing.alpha=0.4"],
], ids=["text-remix", "gru-mixup", "digits-cutmix", "digits-manifold", "airbus-cutmix", "airbus-mixup"])
def test_mixed_runs_on_text_images_and_masks(args, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("IMBAL_CACHE", str(tmp_path / "cache"))  # the synthetic Airbus set's cache
    code, err = run_inprocess(["trainer.max_epochs=1", "trainer.enable_progress_bar=false", *args,
                               f"hydra.run.dir={tmp_path / 'run'}"], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    method = next(a.split("=", 1)[1] for a in args if a.startswith("mixing="))
    assert summary["config"]["mixing"]["name"] == method
    assert summary["epochs_completed"] >= 1
