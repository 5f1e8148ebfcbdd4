"""Region losses and the Lovasz hinge: against segmentation-models-pytorch, hand values, empty masks."""

from __future__ import annotations

import pytest
import torch

import imbal.errors
import imbal.losses
from imbal.losses.lovasz import LovaszHingeLoss
from imbal.losses.region import DiceLoss, FocalTverskyLoss, JaccardLoss, TverskyLoss

smp_losses = pytest.importorskip("segmentation_models_pytorch.losses")

STATS = {"task": "segmentation", "num_classes": 2, "class_counts": [1000, 10]}


def batch(seed=0, n=3, h=12, w=10, p=0.2):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, 1, h, w, generator=g, dtype=torch.float32) * 3
    target = (torch.rand(n, h, w, generator=g, dtype=torch.float32) < p).float()
    target[:, 0, 0] = 1  # every image non-empty
    return logits, target


def grads(fn, logits, target):
    x = logits.clone().requires_grad_(True)
    v = fn(x, target)
    v.backward()
    return v.detach(), x.grad


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(
    "ours, theirs",
    [
        (DiceLoss(smooth=0.5), lambda: smp_losses.DiceLoss("binary", smooth=0.5)),
        (DiceLoss(smooth=0.0, log_loss=True), lambda: smp_losses.DiceLoss("binary", smooth=0.0, log_loss=True)),
        (JaccardLoss(smooth=1.0), lambda: smp_losses.JaccardLoss("binary", smooth=1.0)),
        (TverskyLoss(alpha=0.3, beta=0.7), lambda: smp_losses.TverskyLoss("binary", alpha=0.3, beta=0.7, smooth=1.0)),
        # smp raises the batch loss to gamma; ours to 1/gamma: gamma=4/3 <-> smp gamma=0.75
        (FocalTverskyLoss(), lambda: smp_losses.TverskyLoss("binary", alpha=0.3, beta=0.7, smooth=1.0, gamma=0.75)),
        (LovaszHingeLoss(per_image=True), lambda: smp_losses.LovaszLoss("binary", per_image=True)),
        (LovaszHingeLoss(per_image=False), lambda: smp_losses.LovaszLoss("binary", per_image=False)),
    ],
)
def test_equals_smp_binary_mode_with_gradients(ours, theirs, seed):
    logits, target = batch(seed)
    ref = theirs()
    v1, g1 = grads(ours, logits, target)
    v2, g2 = grads(lambda x, t: ref(x, t.unsqueeze(1)), logits, target)
    torch.testing.assert_close(v1.double(), v2.double(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g1.double(), g2.double(), rtol=1e-4, atol=1e-7)


def test_dice_by_hand():
    # one image, probabilities 0.5 everywhere (logit 0), 4 pixels, 1 foreground:
    # TP = 0.5, FP = 1.5, FN = 0.5; Dice (s = 1) = (0.5 + 1) / (0.5 + 1 + 1) = 0.6
    logits = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[1.0, 0], [0, 0]]])
    assert float(DiceLoss()(logits, target)) == pytest.approx(0.4)
    # Tversky alpha 0.3 (FP), beta 0.7 (FN): TI = 1.5 / (0.5 + 0.45 + 0.35 + 1) = 1.5/2.3
    assert float(TverskyLoss()(logits, target)) == pytest.approx(1 - 1.5 / 2.3)
    # focal Tversky: (1 - TI)^(3/4)
    assert float(FocalTverskyLoss()(logits, target)) == pytest.approx((0.8 / 2.3) ** 0.75)
    # alpha weighs false positives: more FP weight, larger loss here (FP > FN)
    assert float(TverskyLoss(alpha=0.7, beta=0.3)(logits, target)) > float(TverskyLoss()(logits, target))


def test_lovasz_by_hand_and_empty_mask_rule():
    # empty mask: loss = relu(1 + max logit)
    logits = torch.tensor([[[[-3.0, 0.5], [-2.0, -4.0]]]], requires_grad=True)
    loss = LovaszHingeLoss()(logits, torch.zeros(1, 2, 2))
    assert float(loss.detach()) == pytest.approx(1.5)
    loss.backward()
    assert logits.grad.flatten().tolist() == [0.0, 1.0, 0.0, 0.0]
    # all-background prediction below -1 on an empty mask: zero loss
    assert float(LovaszHingeLoss()(torch.full((1, 1, 2, 2), -2.0), torch.zeros(1, 2, 2))) == 0.0


@pytest.mark.parametrize("name", ["dice", "jaccard", "tversky", "focal_tversky", "lovasz"])
@pytest.mark.parametrize("per_image", [True, False])
def test_empty_masks_and_extreme_logits_finite_with_gradient_down(name, per_image):
    loss_fn = imbal.losses.build(name, stats=STATS, per_image=per_image)
    target = torch.zeros(2, 8, 8)
    for scale in (0.0, 3.0, 1e4):
        logits = (torch.linspace(-1, 1, 128).reshape(2, 1, 8, 8) * scale).requires_grad_(True)
        loss = loss_fn(logits, target)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
        if scale == 3.0:
            assert float(loss.detach()) > 0
            # predicting less foreground lowers the loss: the gradient is >= 0 everywhere, > 0 somewhere
            assert (logits.grad >= 0).all() and (logits.grad > 0).any()
    # a perfect all-background prediction costs (almost) nothing
    assert float(loss_fn(torch.full((2, 1, 8, 8), -30.0), target)) < 1e-6


@pytest.mark.parametrize("name", ["dice", "jaccard", "tversky", "focal_tversky", "lovasz"])
def test_extreme_logits_on_non_empty_masks(name):
    loss_fn = imbal.losses.build(name, stats=STATS)
    target = torch.zeros(2, 8, 8)
    target[:, 2:4, 2:5] = 1
    perfect = (target.unsqueeze(1) * 2 - 1) * 1e4
    for logits in (perfect, -perfect, torch.full_like(perfect, 1e4)):
        x = logits.clone().requires_grad_(True)
        v = loss_fn(x, target)
        v.backward()
        assert torch.isfinite(v) and torch.isfinite(x.grad).all()
    assert float(loss_fn(perfect, target)) < 1e-6
    assert float(loss_fn(-perfect, target)) > 0.5


def test_per_image_is_the_mean_of_single_image_losses():
    logits, target = batch(3)
    for cls in (DiceLoss, TverskyLoss, FocalTverskyLoss, LovaszHingeLoss):
        whole = cls(per_image=True)(logits, target)
        each = torch.stack([cls(per_image=False)(logits[i : i + 1], target[i : i + 1]) for i in range(3)])
        torch.testing.assert_close(whole, each.mean())


def test_registered_with_tasks_and_refuses_multichannel():
    for name in ("dice", "jaccard", "tversky", "focal_tversky", "lovasz"):
        assert "segmentation" in imbal.losses.describe(name)["tasks"]
    with pytest.raises(imbal.errors.ImbalError, match="expected logits"):
        DiceLoss()(torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4))
    with pytest.raises(imbal.errors.ImbalError, match="smooth must be >= 0"):
        imbal.losses.build("dice", stats=STATS, smooth=-1)


@pytest.mark.parametrize("per_image", [True, False])
def test_region_terms_equal_the_three_separate_sums(per_image):
    # TP, FP, FN from one product (FP = sum p - TP, FN = sum g - TP) = the textbook three sums, in float64
    from imbal.losses.region import tversky_terms

    logits, target = batch(5, n=4, h=16, w=16)
    tp, fp, fn = tversky_terms(logits, target, per_image=per_image)
    p = torch.sigmoid(logits.double()).reshape(4 if per_image else 1, -1)
    g = target.double().reshape(4 if per_image else 1, -1)
    for ours, ref in ((tp, (p * g).sum(1)), (fp, (p * (1 - g)).sum(1)), (fn, ((1 - p) * g).sum(1))):
        torch.testing.assert_close(ours.double(), ref, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", ["dice", "jaccard", "tversky", "focal_tversky", "lovasz"])
def test_region_losses_are_fp32_under_bf16_autocast(name):
    loss_fn = imbal.losses.build(name, stats=STATS)
    logits, target = batch(6)
    w = torch.ones((), requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x = logits.to(torch.bfloat16) * w.to(torch.bfloat16)
        value = loss_fn(x, target)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    (gw,) = torch.autograd.grad(value, w)
    assert torch.isfinite(gw)
    torch.testing.assert_close(value, loss_fn(logits.to(torch.bfloat16).float(), target), rtol=1e-6, atol=1e-6)
