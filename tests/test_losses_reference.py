"""Each loss of the library against an independent computation: a reference library, the paper's
formula written out in the test, or numbers computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import imbal.losses as L
from imbal.errors import ImbalError
from imbal.losses.class_balanced import class_balanced_weights


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def grads(fn, logits, *rest):
    """Value and gradient w.r.t. the logits (a fresh leaf); a non-scalar value is summed for the gradient."""
    leaf = logits.detach().clone().requires_grad_()
    value = fn(leaf, *rest)
    (g,) = torch.autograd.grad(value.sum(), leaf)
    return value, g


def assert_same(fn_a, fn_b, *inputs, tol=1e-5):
    """Same values and same gradients w.r.t. the first input."""
    va, ga = grads(fn_a, *inputs)
    vb, gb = grads(fn_b, *inputs)
    assert va.shape == vb.shape
    torch.testing.assert_close(va, vb, rtol=tol, atol=tol)
    torch.testing.assert_close(ga, gb, rtol=tol, atol=tol)


def mc(seed=0, n=64, c=7, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g) * scale, torch.randint(0, c, (n,), generator=g)


def ml(seed=0, shape=(64, 7), scale=3.0, p=0.3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * scale, (torch.rand(*shape, generator=g) < p).float()


# -- focal ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_focal_gamma0_equals_ce(seed):
    x, y = mc(seed)
    assert_same(L.build("focal", gamma=0), L.build("ce"), x, y)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("alpha", [None, 0.25])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_sigmoid_focal_equals_torchvision(gamma, alpha, reduction):
    from torchvision.ops import sigmoid_focal_loss

    x, y = ml(seed=int(gamma * 10))
    ours = L.build("focal", task="multilabel", gamma=gamma, alpha=alpha, reduction=reduction)
    ref_alpha = -1 if alpha is None else alpha
    assert_same(ours, lambda z, t: sigmoid_focal_loss(z, t, alpha=ref_alpha, gamma=gamma, reduction=reduction), x, y)


def test_focal_segmentation_shape_equals_torchvision_on_the_mask():
    from torchvision.ops import sigmoid_focal_loss

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 8, 8, generator=g) * 3
    y = (torch.rand(2, 8, 8, generator=g) < 0.1).float()
    ours = L.build("focal", task="segmentation", alpha=0.25)
    assert_same(lambda z: ours(z, y), lambda z: sigmoid_focal_loss(z, y.unsqueeze(1), reduction="mean"), x)


def test_focal_hand_computed():
    # p = softmax([0, ln 3]) = [1/4, 3/4]; target 1: (1/4)^2 * -ln(3/4)
    x = torch.tensor([[0.0, math.log(3.0)]])
    assert L.build("focal")(x, torch.tensor([1])).item() == pytest.approx(0.0625 * -math.log(0.75), rel=1e-6)


# -- asymmetric (timm) ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("disable_focal_grad", [False, True])
def test_asymmetric_multilabel_equals_timm(seed, disable_focal_grad):
    from timm.loss import AsymmetricLossMultiLabel

    x, y = ml(seed)
    kw = dict(disable_torch_grad_focal_loss=disable_focal_grad)
    mean = L.build("asymmetric", task="multilabel", disable_focal_grad=disable_focal_grad)
    total = L.build("asymmetric", task="multilabel", disable_focal_grad=disable_focal_grad, reduction="sum")
    # our `mean` averages elements (timm reduction='mean'); our `sum` is the authors' -sum
    assert_same(mean, AsymmetricLossMultiLabel(reduction="mean", **kw), x, y)
    assert_same(total, AsymmetricLossMultiLabel(reduction="sum", **kw), x, y)
    # timm's default 'batchmean' = our sum / N
    assert_same(lambda z, t: total(z, t) / z.shape[0], AsymmetricLossMultiLabel(**kw), x, y)


@pytest.mark.parametrize("kw", [{}, {"gamma_neg": 2, "gamma_pos": 0, "clip": 0.0}, {"clip": 0.2, "eps": 1e-4}])
def test_asymmetric_multilabel_hparams_equal_timm(kw):
    from timm.loss import AsymmetricLossMultiLabel

    x, y = ml(5)
    assert_same(L.build("asymmetric", task="multilabel", **kw), AsymmetricLossMultiLabel(reduction="mean", **kw), x, y)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kw", [{}, {"gamma_pos": 0, "gamma_neg": 4}, {"label_smoothing": 0.0}])
def test_asymmetric_single_label_equals_timm(seed, kw):
    from timm.loss import AsymmetricLossSingleLabel

    x, y = mc(seed)
    ref_kw = {k: v for k, v in kw.items() if k != "label_smoothing"}
    ref = AsymmetricLossSingleLabel(eps=kw.get("label_smoothing", 0.1), **ref_kw)
    # single-label: per-sample sum over classes, averaged over N: timm's 'mean'
    assert_same(L.build("asymmetric", task="multiclass", **kw), lambda z, t: ref(z, t), x, y)


def test_asymmetric_binary_and_segmentation_equal_the_multilabel_form():
    from timm.loss import AsymmetricLossMultiLabel

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 5, 5, generator=g) * 3
    y = (torch.rand(2, 5, 5, generator=g) < 0.3).float()
    seg = L.build("asymmetric", task="segmentation")
    ref = AsymmetricLossMultiLabel(reduction="mean")
    assert_same(lambda z: seg(z, y), lambda z: ref(z.reshape(2, 25), y.reshape(2, 25)), x)
    binary = L.build("asymmetric", task="binary")
    xb, yb = x.flatten(), y.flatten()
    assert_same(lambda z: binary(z, yb), lambda z: ref(z.unsqueeze(1), yb.unsqueeze(1)), xb)


def test_asymmetric_is_fp32_under_autocast():
    x, y = ml(0)
    fn = L.build("asymmetric", task="multilabel")
    xb = x.to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        v = fn(xb, y)
    assert v.dtype == torch.float32
    torch.testing.assert_close(v, fn(xb.float(), y))


# -- weighted CE, balanced softmax, logit adjustment -----------------------------------------


def test_weighted_ce_uniform_weights_equal_ce():
    x, y = mc(0)
    assert_same(L.build("weighted_ce", weights=[2.0] * 7), L.build("ce"), x, y)
    # 'balanced' on balanced counts is uniform too
    assert_same(L.build("weighted_ce", class_counts=[30] * 7), L.build("ce"), x, y)


def test_weighted_ce_balanced_matches_sklearn():
    from sklearn.utils.class_weight import compute_class_weight

    y = np.array([0] * 50 + [1] * 30 + [2] * 5)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y)
    fn = L.build("weighted_ce", class_counts=[50, 30, 5])
    np.testing.assert_allclose(fn.weight.numpy(), expected, rtol=1e-6)


def test_balanced_softmax_equals_logit_adjusted_tau1_and_its_formula():
    counts = [500, 60, 7, 1, 33, 2, 90]
    x, y = mc(0)
    bs = L.build("balanced_softmax", class_counts=counts)
    la = L.build("logit_adjusted", class_counts=counts, tau=1.0)
    # log n_c and log(n_c / n) differ by the constant log n: same loss and gradient
    assert_same(bs, la, x, y)
    log_n = torch.tensor(counts, dtype=torch.float64).log().float()
    assert_same(bs, lambda z, t: F.cross_entropy(z + log_n, t), x, y)


def test_logit_adjusted_hand_computed():
    # counts [3, 1]: pi = [3/4, 1/4]; logits 0: adjusted [ln 3/4, ln 1/4] -> p(1) = 1/4
    fn = L.build("logit_adjusted", class_counts=[3, 1])
    assert fn(torch.zeros(1, 2), torch.tensor([1])).item() == pytest.approx(math.log(4), rel=1e-6)
    tau0 = L.build("logit_adjusted", class_counts=[3, 1], tau=0)
    assert tau0(torch.zeros(1, 2), torch.tensor([1])).item() == pytest.approx(math.log(2), rel=1e-6)


# -- class-balanced --------------------------------------------------------------------------


def test_class_balanced_weights_match_the_formula():
    counts, beta = [5000, 500, 50, 5, 1], 0.9999
    raw = [(1 - beta) / (1 - beta**n) for n in counts]
    expected = [w / sum(raw) * len(counts) for w in raw]
    got = class_balanced_weights(counts, beta)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)
    assert got.sum().item() == pytest.approx(len(counts), rel=1e-6)
    # beta = 0: uniform; beta -> 1: inverse frequency
    np.testing.assert_allclose(class_balanced_weights(counts, 0.0).numpy(), [1.0] * 5, rtol=1e-6)
    inv = np.array([1 / n for n in counts])
    np.testing.assert_allclose(class_balanced_weights(counts, 1 - 1e-12).numpy(), inv / inv.sum() * 5, rtol=1e-3)


def _cui_reference(labels_one_hot, logits, weights, gamma):
    """Cui et al.'s ``CB_loss(loss_type='focal')`` (their TF code, as ported to PyTorch), written out."""
    w = weights.unsqueeze(0).repeat(labels_one_hot.shape[0], 1) * labels_one_hot
    w = w.sum(1, keepdim=True).repeat(1, labels_one_hot.shape[1])
    bce = F.binary_cross_entropy_with_logits(logits, labels_one_hot, reduction="none")
    modulator = torch.exp(-gamma * labels_one_hot * logits - gamma * torch.log(1 + torch.exp(-1.0 * logits)))
    return (w * modulator * bce).sum() / labels_one_hot.sum()


def test_class_balanced_focal_equals_the_authors_code():
    counts = [400, 100, 30, 8, 2, 50, 70]
    x, y = mc(3, scale=2.0)
    w = class_balanced_weights(counts, 0.9999)
    ours = L.build("class_balanced", class_counts=counts)
    assert_same(ours, lambda z, t: _cui_reference(F.one_hot(t, 7).float(), z, w, 0.5), x, y)


def test_class_balanced_softmax_is_weighted_ce_over_n():
    counts = [400, 100, 30, 8, 2, 50, 70]
    x, y = mc(1)
    w = class_balanced_weights(counts, 0.999)
    ours = L.build("class_balanced", class_counts=counts, base="softmax", beta=0.999)
    assert_same(ours, lambda z, t: (w[t] * F.cross_entropy(z, t, reduction="none")).mean(), x, y)


def test_class_balanced_binary_weights_positives_and_negatives():
    fn = L.build("class_balanced", task="binary", class_counts=[900, 100], base="sigmoid")
    w0, w1 = class_balanced_weights([900, 100]).tolist()
    x = torch.tensor([0.3, -1.2])
    y = torch.tensor([1.0, 0.0])
    expected = (w1 * F.softplus(-x[0]) + w0 * F.softplus(x[1])) / 2
    assert fn(x, y).item() == pytest.approx(expected.item(), rel=1e-6)


# -- LDAM, AM-softmax ------------------------------------------------------------------------


def _ldam_reference(x, target, cls_num_list, max_m=0.5, s=30, weight=None):
    """kaidic/LDAM-DRW ``LDAMLoss.forward``, written out."""
    m_list = 1.0 / np.sqrt(np.sqrt(np.array(cls_num_list, dtype=np.float64)))
    m_list = torch.tensor(m_list * (max_m / np.max(m_list)), dtype=torch.float32)
    index = torch.zeros_like(x, dtype=torch.uint8)
    index.scatter_(1, target.view(-1, 1), 1)
    batch_m = torch.matmul(m_list[None, :], index.float().t()).view((-1, 1))
    output = torch.where(index.bool(), x - batch_m, x)
    return F.cross_entropy(s * output, target, weight=weight)


def test_ldam_equals_the_reference_code():
    counts = [500, 100, 20, 5, 1, 300, 42]
    x, y = mc(0, scale=0.4)
    x = x.clamp(-1, 1)
    assert_same(L.build("ldam", class_counts=counts), lambda z, t: _ldam_reference(z, t, counts), x, y)


def test_ldam_hand_computed():
    # counts [16, 1]: n^-1/4 = [1/2, 1] -> margins [0.25, 0.5]; s = 2
    fn = L.build("ldam", class_counts=[16, 1], s=2.0)
    torch.testing.assert_close(fn.margins, torch.tensor([0.25, 0.5]))
    x = torch.tensor([[0.5, 0.5]])
    # target 1: logits [0.5, 0.5 - 0.5] * 2 = [1, 0] -> -log(1 / (1 + e))
    assert fn(x, torch.tensor([1])).item() == pytest.approx(math.log(1 + math.e), rel=1e-6)


def test_am_softmax_hand_computed():
    fn = L.build("am_softmax")
    assert fn.head == "cosine" and L.get("ldam").head == "cosine"
    x = torch.tensor([[0.8, 0.1, -0.3]])
    z = [30 * (0.8 - 0.35), 30 * 0.1, 30 * -0.3]
    expected = -z[0] + math.log(sum(math.exp(v) for v in z))
    assert fn(x, torch.tensor([0])).item() == pytest.approx(expected, rel=1e-4)  # a loss of 3e-5 in fp32


# -- DRW -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ce", "focal", "ldam"])
def test_drw_switches_to_class_balanced_weights_at_drw_epoch(name):
    counts = [500, 100, 20, 5, 1, 300, 42]
    x, y = mc(0, scale=3.0)
    if name == "ldam":
        x = x.clamp(-1, 1)  # cosines
    plain = L.build(name, class_counts=counts)
    drw = L.build(name, class_counts=counts, drw_epoch=2)
    w = class_balanced_weights(counts, 0.9999)
    for epoch in (0, 1):
        drw.set_epoch(epoch)
        assert drw(x, y).item() == pytest.approx(plain(x, y).item(), rel=1e-6)
    drw.set_epoch(2)
    if name == "ce":
        expected = F.cross_entropy(x, y, weight=w)
    elif name == "focal":
        expected = (w[y] * L.build("focal", reduction="none")(x, y)).mean()
    else:
        expected = _ldam_reference(x, y, counts, weight=w)
    assert drw(x, y).item() == pytest.approx(expected.item(), rel=1e-5)
    assert drw(x, y).item() != pytest.approx(plain(x, y).item(), rel=1e-3)


@pytest.mark.parametrize("name", ["ce", "focal"])
def test_drw_needs_class_counts(name):
    with pytest.raises(ImbalError, match="drw_epoch=3 needs class_counts"):
        L.build(name, drw_epoch=3)


def test_task_calls_set_epoch_and_combo_forwards_it():
    counts = [50, 5]
    combo = L.build("combo", stats={"class_counts": counts, "task": "multiclass"},
                    terms=[{"name": "ce", "drw_epoch": 1}, {"name": "focal", "drw_epoch": 1}])
    combo.set_epoch(4)
    assert [t.drw_active for t in combo.terms] == [True, True]


# -- truncated -------------------------------------------------------------------------------


def test_soft_truncated_k1_equals_binary_focal_gamma1():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, generator=g) * 4, (torch.rand(200, generator=g) < 0.3).float()
    assert_same(L.build("soft_truncated", task="binary"), L.build("focal", task="binary", gamma=1.0), x, y)


def test_soft_truncated_multiclass_two_classes_equals_binary_form():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(50, 2, generator=g) * 3
    y = torch.randint(0, 2, (50,), generator=g)
    mc_fn = L.build("soft_truncated", task="multiclass", K=1.5)
    bin_fn = L.build("soft_truncated", task="binary", K=1.5)
    # two-class softmax = sigmoid of the logit difference
    assert_same(lambda z: mc_fn(z, y), lambda z: bin_fn(z[:, 1] - z[:, 0], y.float()), x)


def test_truncated_ce_hand_computed():
    fn = L.build("truncated_ce", task="binary")  # m = 0.6
    x = torch.tensor([math.log(0.7 / 0.3), math.log(0.5 / 0.5), math.log(0.3 / 0.7), math.log(0.5 / 0.5)])
    y = torch.tensor([1.0, 1.0, 0.0, 0.0])
    # p = [0.7, 0.5, 0.3, 0.5]: the confident positive (0.7 > 0.6) and negative (0.3 < 0.4) drop out
    expected = (-math.log(0.5) - math.log(0.5)) / 4
    assert fn(x, y).item() == pytest.approx(expected, rel=1e-6)
    mcfn = L.build("truncated_ce")
    z = torch.tensor([[math.log(0.7), math.log(0.3)], [math.log(0.5), math.log(0.5)]])
    assert mcfn(z, torch.tensor([0, 0])).item() == pytest.approx(-math.log(0.5) / 2, rel=1e-6)
    assert_same(L.build("truncated_ce", m=1.0), L.build("ce"), *mc(0))


# -- cost-sensitive ---------------------------------------------------------------------------


def seed_loop(x, y, w):
    """The seed's ``w_categorical_crossentropy``: a double loop over (true, predicted) classes."""
    c = w.shape[0]
    ce = F.cross_entropy(x, y, reduction="none")
    pred = x.argmax(-1)
    mask = torch.zeros_like(ce)
    for i in range(c):
        for j in range(c):
            mask = mask + w[i, j] * ((y == i) & (pred == j)).float()
    return (ce * mask).mean()


def test_cost_sensitive_hand_computed():
    w = [[0.0, 2.0], [5.0, 1.0]]
    fn = L.build("cost_sensitive", costs=w, num_classes=2)
    x = torch.tensor([[math.log(3.0), 0.0], [math.log(3.0), 0.0], [0.0, math.log(3.0)]])
    y = torch.tensor([0, 1, 1])
    # predictions [0, 0, 1]: costs W[0,0]=0, W[1,0]=5, W[1,1]=1; CE = [ln 4/3, ln 4, ln 4/3]
    expected = (0 * math.log(4 / 3) + 5 * math.log(4) + 1 * math.log(4 / 3)) / 3
    assert fn(x, y).item() == pytest.approx(expected, rel=1e-6)
    # expected mode: p = [3/4, 1/4], [3/4, 1/4], [1/4, 3/4]
    ex = L.build("cost_sensitive", costs=w, num_classes=2, mode="expected")
    scales = [0.75 * 0 + 0.25 * 2, 0.75 * 5 + 0.25 * 1, 0.25 * 5 + 0.75 * 1]
    ces = [math.log(4 / 3), math.log(4), math.log(4 / 3)]
    assert ex(x, y).item() == pytest.approx(sum(s * c for s, c in zip(scales, ces)) / 3, rel=1e-6)


def test_cost_sensitive_equals_the_seed_loop():
    g = torch.Generator().manual_seed(0)
    c = 12
    w = torch.rand(c, c, generator=g) * 3
    x, y = mc(0, n=300, c=c)
    fn = L.build("cost_sensitive", costs=w.tolist(), num_classes=c)
    assert_same(fn, lambda z, t: seed_loop(z, t, w), x, y)


def test_cost_sensitive_expected_mode_has_gradient_through_the_costs():
    w = torch.tensor([[0.0, 2.0], [5.0, 1.0]], dtype=torch.float64)
    x = torch.tensor([[0.3, -0.2]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0])
    argmax = L.build("cost_sensitive", costs=w.tolist(), num_classes=2).double()
    expected = L.build("cost_sensitive", costs=w.tolist(), num_classes=2, mode="expected").double()
    (ga,) = torch.autograd.grad(argmax(x, y), x)
    (ge,) = torch.autograd.grad(expected(x, y), x)
    # d/dz [CE * s(p)] = s dCE/dz + CE ds/dz with s = sum_j p_j W[y, j]
    p = torch.softmax(x.detach(), -1)[0]
    ce = -torch.log(p[0])
    s = (p * w[0]).sum()
    dce = p - torch.tensor([1.0, 0.0], dtype=torch.float64)
    ds = p * (w[0] - s)
    torch.testing.assert_close(ge[0], s * dce + ce * ds)
    torch.testing.assert_close(ga[0], w[0, 0] * dce)  # argmax 0 -> W[0, 0] = 0: no gradient at all
    assert ga.abs().sum() == 0 and ge.abs().sum() > 0


def test_cost_matrix_of_wrong_shape_is_refused():
    with pytest.raises(ImbalError, match=r"costs has shape \(2, 3\), expected \(3, 3\) for 3 classes"):
        L.build("cost_sensitive", costs=[[0, 1, 1], [1, 0, 1]], num_classes=3)
    with pytest.raises(ImbalError, match="C x C matrix"):
        L.build("cost_sensitive", costs=[[0, 1], [1]], num_classes=2)
    with pytest.raises(ImbalError, match=r"expected \(4, 4\)"):
        L.build("cost_sensitive", stats={"num_classes": 4, "task": "multiclass"}, costs=[[0, 1], [1, 0]])


# -- fbeta -----------------------------------------------------------------------------------


def test_fbeta_hand_computed():
    # p = [0.8, 0.5, 0.2], t = [1, 1, 0]: TP = 1.3, FP = 0.2, FN = 0.7
    x = torch.logit(torch.tensor([0.8, 0.5, 0.2]))
    y = torch.tensor([1.0, 1.0, 0.0])
    f1 = 2 * 1.3 / (2 * 1.3 + 0.7 + 0.2)
    assert L.build("fbeta")(x, y).item() == pytest.approx(1 - f1, rel=1e-5)
    f2 = 5 * 1.3 / (5 * 1.3 + 4 * 0.7 + 0.2)
    assert L.build("fbeta", beta=2)(x, y).item() == pytest.approx(1 - f2, rel=1e-5)


def test_fbeta_on_saturated_logits_equals_sklearn():
    from sklearn.metrics import fbeta_score

    g = torch.Generator().manual_seed(0)
    y = (torch.rand(40, 4, generator=g) < 0.4).float()
    pred = (torch.rand(40, 4, generator=g) < 0.5).float()
    x = (pred * 2 - 1) * 50  # probabilities 0/1 to 1e-22
    ref = fbeta_score(y.numpy(), pred.numpy(), beta=2, average="macro")
    assert L.build("fbeta", task="multilabel", beta=2)(x, y).item() == pytest.approx(1 - ref, abs=1e-6)


def test_fbeta_empty_class_rule():
    fn = L.build("fbeta", task="multilabel", reduction="none")
    y = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])  # label 1 has no positive
    x = torch.logit(torch.tensor([[0.9, 0.2], [0.1, 0.4], [0.7, 0.0 + 1e-6]]))
    per = fn(x, y)
    # label 1: loss = mean predicted probability (soft false-positive rate)
    assert per[1].item() == pytest.approx((0.2 + 0.4 + 1e-6) / 3, rel=1e-4)
    # all-negative prediction on an empty class: loss 0; all-positive: loss 1
    assert fn(torch.full((3, 2), -1e4), y)[1].item() == 0.0
    assert fn(torch.full((3, 2), 1e4), y)[1].item() == 1.0
    # segmentation with an all-empty batch: finite, and pushes probabilities down
    seg = L.build("fbeta", task="segmentation")
    z = torch.zeros(2, 1, 3, 3, requires_grad=True)
    v = seg(z, torch.zeros(2, 3, 3))
    (g,) = torch.autograd.grad(v, z)
    assert v.item() == pytest.approx(0.5) and (g > 0).all()


# -- zlpr ------------------------------------------------------------------------------------


def test_zlpr_hand_computed():
    x = torch.tensor([[2.0, -1.0, 0.5]])
    y = torch.tensor([[1.0, 0.0, 0.0]])
    expected = math.log(1 + math.exp(-1.0) + math.exp(0.5)) + math.log(1 + math.exp(-2.0))
    assert L.build("zlpr")(x, y).item() == pytest.approx(expected, rel=1e-6)


def su_1e12(y_pred, y_true):
    """Su's reference ``multilabel_categorical_crossentropy``, masking with 1e12."""
    y_pred = (1 - 2 * y_true) * y_pred
    y_pred_neg = y_pred - y_true * 1e12
    y_pred_pos = y_pred - (1 - y_true) * 1e12
    zeros = torch.zeros_like(y_pred[..., :1])
    return (torch.logsumexp(torch.cat([y_pred_neg, zeros], -1), -1)
            + torch.logsumexp(torch.cat([y_pred_pos, zeros], -1), -1)).mean()


def test_zlpr_equals_the_1e12_masked_formula_in_float64():
    """For moderate logits the 1e12 mask is exact in float64: the two agree, gradients included."""
    x, y = ml(0)
    assert_same(L.build("zlpr"), su_1e12, x.double(), y.double(), tol=1e-10)


def test_zlpr_masks_with_inf_not_1e12():
    import inspect

    import imbal.losses.zlpr as mod

    assert "1e12" not in inspect.getsource(mod.zlpr_loss).replace("``s - 1e12``", "")
    # A negative label scored 3e12: loss log(1 + e^{3e12}) + log(1 + e^{-5}) ~ 3e12.  The 1e12
    # mask no longer hides it from the positives' sum and reports 5e12; -inf stays exact.
    x = torch.tensor([[5.0, 3e12]])
    y = torch.tensor([[1.0, 0.0]])
    assert L.build("zlpr")(x, y).item() == pytest.approx(3e12, rel=1e-6)
    assert su_1e12(x.double(), y.double()).item() == pytest.approx(5e12, rel=1e-6)
    # an empty side (no positives) contributes log(1 + 0) = 0
    v2 = L.build("zlpr")(torch.tensor([[-1e4, -2e4]]), torch.zeros(1, 2))
    assert v2.item() == 0.0


# -- equalization ----------------------------------------------------------------------------


def test_equalization_gamma0_and_no_tail_equal_ce():
    counts = [1000, 500, 20, 5, 300, 100, 75]
    x, y = mc(0)
    assert_same(L.build("equalization", class_counts=counts, gamma=0.0), L.build("ce"), x, y)
    assert_same(L.build("equalization", class_counts=counts, lambda_=0.0), L.build("ce"), x, y)


def test_equalization_gamma1_removes_rare_classes_from_the_denominator():
    counts = [1000, 500, 20, 5]  # frequencies .654 .327 .013 .003: classes 2, 3 are rare (< 0.05)
    fn = L.build("equalization", class_counts=counts, gamma=1.0)
    x = torch.tensor([[1.0, 0.5, 3.0, 2.0], [1.0, 0.5, 3.0, 2.0]])
    y = torch.tensor([0, 2])
    l0 = -1.0 + math.log(math.exp(1.0) + math.exp(0.5))  # rare 2, 3 suppressed
    l1 = -3.0 + math.log(math.exp(1.0) + math.exp(0.5) + math.exp(3.0))  # own class kept, 3 suppressed
    assert fn(x, y).item() == pytest.approx((l0 + l1) / 2, rel=1e-6)


def test_equalization_drop_rate_is_gamma():
    counts = [1000, 500, 20, 5]
    fn = L.build("equalization", class_counts=counts, gamma=0.9, reduction="none")
    torch.manual_seed(0)
    x = torch.zeros(4000, 4)
    y = torch.zeros(4000, dtype=torch.long)
    # per sample: 2 rare classes, each kept with prob 0.1: E[loss] = E[log(2 + kept)]
    got = fn(x, y).mean().item()
    expected = 0.81 * math.log(2) + 0.18 * math.log(3) + 0.01 * math.log(4)
    assert got == pytest.approx(expected, abs=0.01)


# -- bce -------------------------------------------------------------------------------------


def test_bce_auto_pos_weight_hand_computed_and_tf_formula():
    fn = L.build("bce", task="binary", class_counts=[900, 100], pos_weight="auto")
    assert fn.pos_weight.item() == pytest.approx(9.0)
    x = torch.tensor([0.3, -2.0])
    y = torch.tensor([1.0, 0.0])
    p = torch.sigmoid(x)
    # tf.nn.weighted_cross_entropy_with_logits: -(q t log p + (1 - t) log(1 - p))
    expected = (-(9.0 * torch.log(p[0])) - torch.log(1 - p[1])) / 2
    assert fn(x, y).item() == pytest.approx(expected.item(), rel=1e-6)
    ml_fn = L.build("bce", task="multilabel", class_counts=[10, 50], pos_weight="auto", num_samples=100)
    torch.testing.assert_close(ml_fn.pos_weight, torch.tensor([9.0, 1.0]))
    with pytest.raises(ImbalError, match="needs num_samples"):
        L.build("bce", task="multilabel", class_counts=[10, 50], pos_weight="auto")
    with pytest.raises(ImbalError, match="3 pos_weight values for 2 labels, expected 1 or 2"):
        L.build("bce", stats={"task": "multilabel", "num_classes": 2}, pos_weight=[1.0, 2.0, 3.0])
    with pytest.raises(ImbalError, match="class 1 has none"):
        L.build("bce", task="binary", class_counts=[10, 0], pos_weight="auto")


def test_bce_segmentation_shape():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 4, 4, generator=g)
    y = (torch.rand(2, 4, 4, generator=g) < 0.3).float()
    v = L.build("bce", task="segmentation")(x, y)
    assert v.item() == pytest.approx(F.binary_cross_entropy_with_logits(x[:, 0], y).item(), rel=1e-6)
    with pytest.raises(ImbalError, match="do not match target"):
        L.build("bce", task="segmentation")(x, y[:, :3])


# -- combo -----------------------------------------------------------------------------------


def test_combo_is_the_weighted_sum_of_registry_built_terms():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 6, 6, generator=g)
    y = (torch.rand(2, 6, 6, generator=g) < 0.2).float()
    stats = {"task": "segmentation", "class_counts": [900, 100], "num_classes": 2}
    for terms in ([{"name": "focal", "weight": 10}, {"name": "fbeta"}], "[{name: focal, weight: 10}, {name: fbeta}]"):
        combo = L.build("combo", stats=stats, terms=terms)
        expected = 10 * L.build("focal", stats=stats)(x, y) + L.build("fbeta", stats=stats)(x, y)
        assert combo(x, y).item() == pytest.approx(expected.item(), rel=1e-6)
    assert combo.terms[0].task == "segmentation"  # stats passed on


def test_combo_from_hydra_config_and_errors():
    from omegaconf import OmegaConf

    terms = OmegaConf.create([{"name": "ldam", "max_m": 0.3}, {"name": "am_softmax", "weight": 0.5}])
    combo = L.build("combo", stats={"task": "multiclass", "class_counts": [10, 3, 1], "num_classes": 3}, terms=terms)
    assert combo.head == "cosine" and combo.terms[0].max_m == 0.3
    with pytest.raises(ImbalError, match="loss 'zlpr' does not support task 'binary'"):
        L.build("combo", stats={"task": "binary"}, terms=[{"name": "zlpr"}])
    with pytest.raises(ImbalError, match="needs terms"):
        L.build("combo")
    with pytest.raises(ImbalError, match="needs 'class_counts'"):
        L.build("combo", terms=[{"name": "ldam"}])


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,kw,match",
    [
        ("focal", {"gamma": -1}, "gamma must be a finite number >= 0, got -1"),
        ("asymmetric", {"gamma_neg": -0.5}, "gamma_neg must be a finite number >= 0"),
        ("class_balanced", {"gamma": -2, "class_counts": [3, 1]}, "gamma must be"),
        ("class_balanced", {"beta": 1.0, "class_counts": [3, 1]}, r"beta must be in \[0, 1\), got 1.0"),
        ("class_balanced", {"beta": -0.1, "class_counts": [3, 1]}, r"beta must be in \[0, 1\)"),
        ("ce", {"drw_epoch": 1, "drw_beta": 1.5, "class_counts": [3, 1]}, r"beta must be in \[0, 1\)"),
        ("ldam", {"drw_beta": 1.0, "class_counts": [3, 1]}, r"drw_beta must be in \[0, 1\)"),
        ("ldam", {"class_counts": [3, 0, 2]}, "class 1 has zero training samples"),
        ("logit_adjusted", {"class_counts": [3, 2, 0]}, "class 2 has zero training samples"),
        ("balanced_softmax", {"class_counts": [0, 2]}, "class 0 has zero training samples"),
        ("ce", {"drw_epoch": -1, "class_counts": [3, 1]}, "drw_epoch must be an integer >= 0"),
        ("truncated_ce", {"m": 0.3, "task": "binary"}, r"m must be in \(0.5, 1\]"),
        ("soft_truncated", {"K": 0}, "K must be a finite number > 0"),
        ("fbeta", {"beta": 0}, "beta must be a finite number > 0"),
        ("equalization", {"gamma": 1.5, "class_counts": [3, 1]}, "gamma must be a probability"),
        ("cost_sensitive", {"mode": "soft", "num_classes": 2}, "mode 'soft' is not one of argmax, expected"),
        ("class_balanced", {"base": "softmax", "task": "binary", "class_counts": [3, 1]}, "base 'softmax' is for multiclass"),
        ("am_softmax", {"s": 0}, "s must be a finite number > 0"),
    ],
)
def test_bad_hyper_parameters_raise_one_line_imbal_error(name, kw, match):
    with pytest.raises(ImbalError, match=match) as exc:
        L.build(name, **kw)
    assert isinstance(exc.value, ValueError) and "\n" not in str(exc.value)


def test_zero_count_class_allowed_where_no_log_is_taken():
    counts = [50, 0, 5]
    x, y = mc(0, c=3)
    y = y.clamp(max=0) + (y == 2).long() * 2  # no sample of the empty class
    for name in ("class_balanced", "equalization", "weighted_ce"):
        v = L.build(name, class_counts=counts)(x, y)
        assert torch.isfinite(v)
    w = class_balanced_weights(counts)
    assert w[1] == 0 and w.sum().item() == pytest.approx(3.0)


def test_weighted_ce_effective_number_uses_the_same_weights():
    counts = [5000, 500, 50, 5, 1]
    fn = L.build("weighted_ce", class_counts=counts, weights="effective_number", beta=0.999)
    torch.testing.assert_close(fn.weight, class_balanced_weights(counts, 0.999))
    assert fn.weight[-1] / fn.weight[0] == pytest.approx((1 - 0.999**5000) / (1 - 0.999), rel=1e-5)


@pytest.mark.parametrize("base", ["focal", "sigmoid"])
def test_class_balanced_multiclass_fast_path_equals_the_dense_one_hot_form(base):
    from imbal.losses.class_balanced import _sigmoid_terms

    counts = [400, 100, 30, 8, 2, 50, 70]
    x, y = mc(2, scale=3.0)
    x[0, y[0]] = 1e4  # a confidently right sample: no cancellation in the other classes' terms
    x[1] = -30.0
    w = class_balanced_weights(counts)
    fn = L.build("class_balanced", class_counts=counts, base=base, reduction="none")
    dense = w[y] * _sigmoid_terms(x, F.one_hot(y, 7).float(), 0.5, base == "focal").sum(-1)
    torch.testing.assert_close(fn(x, y), dense, rtol=1e-6, atol=1e-6)


def test_focal_gamma_below_one_has_finite_gradient_where_torchvision_has_nan():
    from torchvision.ops import sigmoid_focal_loss

    y = torch.tensor([1.0, 0.0])
    x = torch.tensor([1e4, -1e4], requires_grad=True)
    sigmoid_focal_loss(x, y, gamma=0.5, reduction="mean").backward()
    assert torch.isnan(x.grad).all()  # 0 ** (gamma - 1) = inf, times a 0 loss
    (g,) = torch.autograd.grad(L.build("focal", task="binary", gamma=0.5)(x, y), x)
    assert torch.equal(g, torch.zeros(2))
    x = torch.tensor([[1e4, 0.0, -1e4]], requires_grad=True)
    (g,) = torch.autograd.grad(L.build("focal", gamma=0.5)(x, torch.tensor([0])), x)
    assert torch.equal(g, torch.zeros(1, 3))


@pytest.mark.parametrize(
    "name,hp,head",
    [("ldam", {}, "cosine"), ("am_softmax", {}, "cosine"), ("ce", {}, "linear"),
     ("combo", {"terms": [{"name": "ldam", "drw_epoch": 2}]}, "cosine")],
)
def test_task_builds_the_head_the_loss_asks_for_and_calls_set_epoch(name, hp, head):
    from torch import nn

    from imbal.data.stats import DataStats
    from imbal.models.heads import CosineHead
    from imbal.task import ImbalanceTask

    stats = DataStats(task="multiclass", num_classes=3, class_counts=[30, 6, 1], class_names=list("abc"),
                      modality="vector", input_shape=(4,))
    loss = L.build(name, stats=stats, **hp)
    backbone = nn.Linear(4, 8)
    backbone.out_features = 8
    task = ImbalanceTask(backbone, loss, stats, optimizer=lambda params: torch.optim.SGD(params, lr=0.1))
    assert isinstance(task.head, CosineHead) == (head == "cosine")
    logits = task(torch.randn(5, 4))
    assert logits.shape == (5, 3)
    if head == "cosine":
        assert logits.abs().max() <= 1 + 1e-6
    loss.set_epoch(7)
    task.on_train_epoch_start()  # no trainer attached: current_epoch is 0
    drw_terms = [m for m in loss.modules() if hasattr(m, "drw_active")]
    assert all(m.epoch == 0 for m in drw_terms)


# -- the fast paths of the performance work (bench/losses.py) against the dense formulas -------


def _dense_sigmoid_terms(x, t, gamma, focal):
    bce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    if not focal or gamma == 0:
        return bce
    p = torch.sigmoid(x)
    return ((p * (1 - t) + (1 - p) * t) ** gamma) * bce


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("base", ["sigmoid", "focal"])
@pytest.mark.parametrize("task", ["binary", "multilabel", "segmentation"])
def test_class_balanced_sigmoid_forms_equal_the_dense_formula(task, base, reduction):
    counts = [900, 100] if task != "multilabel" else [40, 300, 7, 90, 12, 3, 60]
    w = class_balanced_weights(counts)
    shape = {"binary": (64,), "multilabel": (64, 7), "segmentation": (3, 1, 6, 5)}[task]
    x, t = ml(4, shape=shape)
    fn = L.build("class_balanced", task=task, class_counts=counts, base=base, reduction=reduction)
    xt, tt = (x, t) if task != "segmentation" else (x, t.squeeze(1))

    def dense(z, _):
        terms = _dense_sigmoid_terms(z, t, 0.5, base == "focal")
        if task == "multilabel":
            loss = (w * terms).sum(-1)
        else:
            loss = (w[1] * t + w[0] * (1 - t)) * terms
        return {"mean": loss.mean(), "sum": loss.sum(), "none": loss}[reduction]

    assert_same(fn, dense, xt, tt)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("alpha", [None, 0.25])
def test_sigmoid_focal_soft_targets_equal_the_written_formula(alpha, reduction):
    x, _ = ml(5)
    t = torch.rand(x.shape, generator=torch.Generator().manual_seed(5))  # soft targets
    fn = L.build("focal", task="multilabel", alpha=alpha, reduction=reduction)

    def dense(z, tt):
        p = torch.sigmoid(z)
        loss = F.binary_cross_entropy_with_logits(z, tt, reduction="none") * (p * (1 - tt) + (1 - p) * tt) ** 2
        if alpha is not None:
            loss = (alpha * tt + (1 - alpha) * (1 - tt)) * loss
        return {"mean": loss.mean(), "sum": loss.sum(), "none": loss}[reduction]

    assert_same(fn, dense, x, t)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_truncated_ce_multilabel_equals_the_dense_where_form(reduction):
    x, t = ml(6)
    fn = L.build("truncated_ce", task="multilabel", m=0.7, reduction=reduction)

    def dense(z, tt):
        p = torch.sigmoid(z.detach())
        done = ((tt > 0.5) & (p > 0.7)) | ((tt <= 0.5) & (p < 0.3))
        bce = F.binary_cross_entropy_with_logits(z, tt, reduction="none")
        loss = torch.where(done, torch.zeros_like(bce), bce)
        return {"mean": loss.mean(), "sum": loss.sum(), "none": loss}[reduction]

    assert_same(fn, dense, x, t)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("soft", [False, True])
def test_asymmetric_multilabel_reductions_and_soft_targets_equal_the_written_formula(soft, reduction):
    x, t = ml(7)
    if soft:
        t = torch.rand(x.shape, generator=torch.Generator().manual_seed(7))
    fn = L.build("asymmetric", task="multilabel", reduction=reduction)

    def dense(z, tt, gp=1.0, gn=4.0, clip=0.05, eps=1e-8):
        xs_pos = torch.sigmoid(z)
        xs_neg = (1 - xs_pos + clip).clamp(max=1)
        loss = tt * torch.log(xs_pos.clamp(min=eps)) + (1 - tt) * torch.log(xs_neg.clamp(min=eps))
        pt = xs_pos * tt + xs_neg * (1 - tt)
        loss = -loss * torch.pow(1 - pt, gp * tt + gn * (1 - tt))
        return {"mean": loss.mean(), "sum": loss.sum(), "none": loss}[reduction]

    assert_same(fn, dense, x, t)


@pytest.mark.parametrize("pos_weight", [None, 3.0])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_fused_reduction_equals_none_then_reduce(reduction, pos_weight):
    x, t = ml(8)
    fn = L.build("bce", task="multilabel", pos_weight=pos_weight, reduction=reduction)
    pw = None if pos_weight is None else torch.tensor([pos_weight])

    def dense(z, tt):
        loss = F.binary_cross_entropy_with_logits(z, tt, pos_weight=pw, reduction="none")
        return {"mean": loss.mean(), "sum": loss.sum(), "none": loss}[reduction]

    assert_same(fn, dense, x, t)
