"""Forward + backward time of every loss of the loss library, as a ratio to references of the same formula.

    python bench/losses.py [--reps 9] [--threads 1] [--seg-size 768] [--only NAME] [--quick]

Shapes (float32, CPU): logits [8192, 1000] (multiclass), [8192, 80] (multilabel) and
binary segmentation masks [16, 1, S, S] (S = --seg-size, default 768: 9.4M pixels).

Every loss is timed against one or more *references of the same formula*: the
reference library where one exists (torchvision ``sigmoid_focal_loss``, timm
``AsymmetricLoss*``, segmentation-models-pytorch ``DiceLoss`` / ``JaccardLoss`` /
``TverskyLoss`` / ``LovaszLoss``) and the straightforward plain-PyTorch expression of
the formula (``plain``; for class_balanced the Cui et al. reference code, for
equalization Tan et al.'s Eq. 7-8 with the same random draw).  Before timing, each
reference's value is asserted equal to imbal's (equalization: same RNG seed).  The
ratio is imbal / the *fastest* of those references.  Plain ``F.cross_entropy`` /
``F.binary_cross_entropy_with_logits`` (a different formula) is timed too, as context.
All callables of a row are timed alternately in every repetition (the order rotates;
the machine is shared, so load drifts; a sample repeats a fast call for >= 0.1 s); the
table shows median times, and as ratio the
median over repetitions of the paired ratio (imbal / reference, timed back to back).
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

import imbal.losses as L

N = 8192
C_MC, C_ML, C_COST = 1000, 80, 100
SEG_N = 16

Fn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def lt_counts(c: int, n_max: int = 5000, ratio: float = 100.0) -> list[int]:
    """Exponential long-tail profile n_i = n_max * ratio^(-i/(C-1))."""
    return [max(1, int(n_max * ratio ** (-i / (c - 1)))) for i in range(c)]


def fwd_bwd(fn: Fn, x: torch.Tensor, y: torch.Tensor, k: int = 1) -> float:
    """Seconds per forward + backward, averaged over k back-to-back calls."""
    leaf = x.detach().requires_grad_()
    t0 = time.perf_counter()
    for _ in range(k):
        leaf.grad = None
        fn(leaf, y).backward()
    return (time.perf_counter() - t0) / k


#: Each timed sample runs a callable back to back for at least this long: on a loaded box a
#: 4 ms call is either preempted or not (bimodal times); a longer sample averages that out.
MIN_SAMPLE_S = 0.1


def time_all(fns: list[Fn], x, y, reps: int, min_sample_s: float = MIN_SAMPLE_S) -> list[list[float]]:
    """Seconds per call of each callable in each repetition, timed alternately (order rotated every repetition)."""
    warm = [fwd_bwd(fn, x, y) for fn in fns]  # warm-up, and the calls per sample
    k = max(1, math.ceil(min_sample_s / max(min(warm), 1e-6)))
    times: list[list[float]] = [[] for _ in fns]
    for r in range(reps):
        n = len(fns)
        for i in [(r + j) % n for j in range(n)]:
            times[i].append(fwd_bwd(fns[i], x, y, k))
    return times


def med_ms(t: list[float]) -> float:
    return statistics.median(t) * 1e3


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median over repetitions of a_r / b_r (each pair timed back to back: load drift cancels)."""
    return statistics.median(ai / bi for ai, bi in zip(a, b))


@dataclass
class Case:
    label: str
    task: str
    fn: Fn
    refs: list[tuple[str, Fn]]  # same formula: values asserted equal
    context: list[tuple[str, Fn]] = field(default_factory=list)  # a different formula (plain CE/BCE)
    seeded: bool = False  # draws random numbers: re-seed before each value check
    cosine: bool = False  # takes cosine logits in [-1, 1] (LDAM, AM-softmax)


def check_same(case: Case, x, y) -> list[str]:
    """Assert that every reference gives imbal's value (before any timing).

    imbal's float32 value is compared with each reference evaluated in float64 (the
    formula's exact value, to rounding): a float32 reference can be off by more than
    the tolerance on 9.4M-pixel sums (smp's Dice on [16, 1, 768, 768]: 4e-3 relative).
    Returns notes on references whose float32 value is off by more than 1e-4 relative.
    """
    notes = []
    x64 = x.double()
    y64 = y.double() if y.is_floating_point() else y
    with torch.no_grad():
        if case.seeded:
            torch.manual_seed(1234)
        ours = case.fn(x, y).double()
        for name, ref in case.refs:
            if case.seeded:
                torch.manual_seed(1234)
            try:
                exact = ref(x64, y64).double()
            except RuntimeError:  # a reference that only runs in float32 (smp's Lovasz): compare in float32
                if case.seeded:
                    torch.manual_seed(1234)
                exact = ref(x, y).double()
            torch.testing.assert_close(
                ours, exact, rtol=2e-5, atol=1e-6,
                msg=lambda m, name=name: f"{case.label} ({case.task}) != {name} in float64: {m}",
            )
            if case.seeded:
                torch.manual_seed(1234)
            ref32 = float(ref(x, y))
            err = abs(ref32 - float(exact)) / max(abs(float(exact)), 1e-12)
            if err > 1e-4:
                notes.append(f"{case.label} ({case.task}): {name} in float32 is off by {err:.1e} relative "
                             f"(imbal: {abs(float(ours) - float(exact)) / max(abs(float(exact)), 1e-12):.1e})")
    return notes


# -- plain-PyTorch references: the formula written the obvious way ------------------------


def plain_softmax_focal(gamma: float = 2.0) -> Fn:
    def f(x, y):
        log_pt = F.log_softmax(x, dim=-1).gather(1, y[:, None]).squeeze(1)
        return (-((1 - log_pt.exp()) ** gamma) * log_pt).mean()

    return f


def cui_focal(alpha_fn, gamma: float, norm_fn) -> Fn:
    """Cui et al.'s ``focal_loss`` (their reference code), alpha per element, sum / norm."""

    def f(x, labels):
        bce = F.binary_cross_entropy_with_logits(x, labels, reduction="none")
        modulator = torch.exp(-gamma * labels * x - gamma * torch.log(1 + torch.exp(-1.0 * x)))
        return (alpha_fn(labels) * (modulator * bce)).sum() / norm_fn(labels)

    return f


def plain_eql(tail: torch.Tensor, gamma: float) -> Fn:
    """Softmax EQL, Tan et al. 2020 Eq. 7-8: -log(e^z_y / sum_k w_k e^z_k), w_k = 1 - beta_k T(f_k) (1 - y_k)."""

    def f(x, y):
        not_y = 1 - F.one_hot(y, x.shape[1]).to(x.dtype)
        beta = (torch.rand(x.shape) < gamma).to(x.dtype)
        w = 1 - beta * tail.to(x.dtype) * not_y
        z_y = x.gather(1, y[:, None]).squeeze(1)
        return (torch.logsumexp(x + torch.log(w), dim=1) - z_y).mean()

    return f


def su_zlpr(x, t):
    """Su Jianlin's multilabel_categorical_crossentropy (the ZLPR reference code, PyTorch port)."""
    y_pred = (1 - 2 * t) * x
    y_pred_neg = y_pred - t * 1e12
    y_pred_pos = y_pred - (1 - t) * 1e12
    zeros = torch.zeros_like(y_pred[..., :1])
    y_pred_neg = torch.cat([y_pred_neg, zeros], dim=-1)
    y_pred_pos = torch.cat([y_pred_pos, zeros], dim=-1)
    return (torch.logsumexp(y_pred_neg, dim=-1) + torch.logsumexp(y_pred_pos, dim=-1)).mean()


def plain_fbeta(beta: float = 1.0, per_label: bool = True) -> Fn:
    """1 - F_beta from probability sums over the batch, per label (or over all elements)."""

    def f(x, t):
        if not per_label:
            x, t = x.reshape(-1), t.reshape(-1)
        p = torch.sigmoid(x)
        tp = (p * t).sum(0)
        fb = (1 + beta**2) * tp / (beta**2 * t.sum(0) + p.sum(0))
        return (1 - fb).mean()

    return f


def plain_tversky(alpha: float, beta: float, smooth: float = 1.0, gamma: float = 1.0) -> Fn:
    """Batch soft Tversky loss of sigmoid probabilities, the textbook way."""

    def f(x, t):
        p = torch.sigmoid(x).reshape(-1)
        g = t.reshape(-1)
        tp = (p * g).sum()
        fp = (p * (1 - g)).sum()
        fn = ((1 - p) * g).sum()
        loss = 1 - (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)
        return loss if gamma == 1.0 else loss ** (1.0 / gamma)

    return f


def seed_cost_sensitive(w: torch.Tensor):
    """The seed's w_categorical_crossentropy: for every class pair (i, j) add W[i, j] * [y = i and pred = j]."""

    def loss(x, y):
        c = w.shape[0]
        ce = F.cross_entropy(x, y, reduction="none")
        pred = x.detach().argmax(-1)
        mask = torch.zeros_like(ce)
        for i in range(c):
            for j in range(c):
                mask = mask + w[i, j] * ((y == i) & (pred == j)).float()
        return (ce * mask).mean()

    return loss


def build(name: str, stats: dict, **hp):
    fn = L.build(name, stats=stats, **hp)
    fn.set_epoch(1)
    return fn


def multiclass_cases(c: int, stats: dict, costs: list) -> list[Case]:
    from timm.loss import AsymmetricLossSingleLabel

    ce = ("F.cross_entropy", lambda x, y: F.cross_entropy(x, y))
    cases: list[Case] = []

    def add(label, fn, refs, context=(ce,), **kw):
        cases.append(Case(label, "multiclass", fn, list(refs), list(context), **kw))

    add("(noise floor: F.cross_entropy vs itself)", lambda x, y: F.cross_entropy(x, y), [ce], context=())
    fn = build("ce", stats)
    add("ce", fn, [ce], context=())
    fn = build("ce", stats, drw_epoch=0)
    add("ce drw_epoch=0", fn, [("F.cross_entropy(weight=)", lambda x, y, w=fn.drw_weight: F.cross_entropy(x, y, weight=w.to(x.dtype)))])
    fn = build("weighted_ce", stats)
    add("weighted_ce", fn, [("F.cross_entropy(weight=)", lambda x, y, w=fn.weight: F.cross_entropy(x, y, weight=w.to(x.dtype)))])
    add("focal", build("focal", stats), [("plain", plain_softmax_focal(2.0))])
    add("focal gamma=0.0", build("focal", stats, gamma=0.0), [ce], context=())
    fn = build("logit_adjusted", stats)
    add("logit_adjusted", fn, [("plain CE(z + tau log pi)", lambda x, y, lp=fn.log_prior: F.cross_entropy(x + lp.to(x.dtype), y))])
    fn = build("balanced_softmax", stats)
    add("balanced_softmax", fn, [("plain CE(z + log n)", lambda x, y, ln=fn.log_counts: F.cross_entropy(x + ln.to(x.dtype), y))])
    add("asymmetric", build("asymmetric", stats, task="multiclass"), [("timm AsymmetricLossSingleLabel", AsymmetricLossSingleLabel())])
    fn = build("class_balanced", stats, base="softmax")
    add("class_balanced base=softmax", fn,
        [("plain w_y CE", lambda x, y, w=fn.weight: (w.to(x.dtype)[y] * F.cross_entropy(x, y, reduction="none")).mean())])
    fn = build("class_balanced", stats)

    def cui_mc(x, y, w=fn.weight, g=fn.gamma):
        labels = F.one_hot(y, x.shape[1]).to(x.dtype)
        return cui_focal(lambda _: w.to(x.dtype)[y].unsqueeze(1), g, lambda lab: lab.sum())(x, labels)

    add("class_balanced", fn, [("Cui et al. focal_loss code", cui_mc)])
    return cases + _margin_and_rest(c, stats, costs, ce)


def _margin_and_rest(c, stats, costs, ce) -> list[Case]:
    cases: list[Case] = []

    def add(label, fn, refs, context=(ce,), **kw):
        cases.append(Case(label, "multiclass", fn, list(refs), list(context), **kw))

    fn = build("ldam", stats)

    def ldam_plain(x, y, m=fn.margins, s=fn.s):
        return F.cross_entropy(s * (x - m.to(x.dtype)[y].unsqueeze(1) * F.one_hot(y, x.shape[1])), y)

    add("ldam (cosine logits)", fn, [("plain CE(s (z - m_y onehot))", ldam_plain)], cosine=True)
    fn = build("am_softmax", stats)

    def am_plain(x, y, m=fn.m, s=fn.s):
        return F.cross_entropy(s * (x - m * F.one_hot(y, x.shape[1])), y)

    add("am_softmax (cosine logits)", fn, [("plain CE(s (z - m onehot))", am_plain)], cosine=True)
    fn = build("equalization", stats)
    add("equalization", fn, [("plain Tan et al. Eq. 7-8, same draw", plain_eql(fn.tail, fn.gamma))], seeded=True)

    def trunc_plain(x, y, m=0.6):
        ce_ = F.cross_entropy(x, y, reduction="none")
        return (ce_ * (torch.exp(-ce_) <= m).detach()).mean()

    add("truncated_ce", build("truncated_ce", stats), [("plain CE * [p_y <= m]", trunc_plain)])

    def soft_trunc_plain(x, y, k=1.0):
        idx = y[:, None]
        log_pt = F.log_softmax(x, dim=-1).gather(1, idx).squeeze(1)
        w = F.softmax(-k * x, dim=-1).gather(1, idx).squeeze(1)
        return (-w * log_pt).mean()

    add("soft_truncated", build("soft_truncated", stats), [("plain -softmax(-Kz)_y log softmax(z)_y", soft_trunc_plain)])
    fn = build("cost_sensitive", stats, costs=costs)

    def cs_plain(x, y, w=fn.costs):
        return (F.cross_entropy(x, y, reduction="none") * w.to(x.dtype)[y, x.detach().argmax(1)]).mean()

    add("cost_sensitive", fn, [("plain CE * W[y, argmax]", cs_plain)])
    fn = build("cost_sensitive", stats, costs=costs, mode="expected")

    def cse_plain(x, y, w=fn.costs):
        return (F.cross_entropy(x, y, reduction="none") * (F.softmax(x, dim=1) * w.to(x.dtype)[y]).sum(1)).mean()

    add("cost_sensitive mode=expected", fn, [("plain CE * sum_j p_j W[y, j]", cse_plain)])
    focal_plain = plain_softmax_focal(2.0)
    add("combo ce+2*focal", build("combo", stats, terms=[{"name": "ce"}, {"name": "focal", "weight": 2}]),
        [("plain CE + 2 focal", lambda x, y: F.cross_entropy(x, y) + 2 * focal_plain(x, y))])
    return cases


def multilabel_cases(stats: dict) -> list[Case]:
    from timm.loss import AsymmetricLossMultiLabel
    from torchvision.ops import sigmoid_focal_loss

    bce = ("F.bce_with_logits", lambda x, y: F.binary_cross_entropy_with_logits(x, y))
    tv = ("torchvision sigmoid_focal_loss", lambda x, y: sigmoid_focal_loss(x, y, alpha=-1, reduction="mean"))
    cases: list[Case] = []

    def add(label, fn, refs, context=(bce,), **kw):
        cases.append(Case(label, "multilabel", fn, list(refs), list(context), **kw))

    add("bce", build("bce", stats), [bce], context=())
    fn = build("bce", stats, pos_weight="auto", num_samples=5000)
    add("bce pos_weight=auto", fn, [("F.bce_with_logits(pos_weight=)",
                                     lambda x, y, pw=fn.pos_weight: F.binary_cross_entropy_with_logits(x, y, pos_weight=pw.to(x.dtype)))])
    add("focal", build("focal", stats), [tv])
    add("asymmetric", build("asymmetric", stats), [("timm AsymmetricLossMultiLabel", AsymmetricLossMultiLabel(reduction="mean"))])
    fn = build("class_balanced", stats, base="sigmoid")
    add("class_balanced base=sigmoid", fn, [("F.bce_with_logits(weight=w, sum) / N",
                                             lambda x, y, w=fn.weight: F.binary_cross_entropy_with_logits(x, y, weight=w.to(x.dtype), reduction="sum") / x.shape[0])])
    fn = build("class_balanced", stats)
    add("class_balanced", fn, [("Cui et al. focal_loss code", cui_focal(lambda lab, w=fn.weight: w.to(lab.dtype), fn.gamma, lambda lab: lab.shape[0]))])
    add("zlpr", build("zlpr", stats), [("Su's multilabel_categorical_crossentropy", su_zlpr)])

    def trunc_plain(x, t, m=0.6):
        p = torch.sigmoid(x).detach()
        done = ((t > 0.5) & (p > m)) | ((t <= 0.5) & (p < 1 - m))
        return (F.binary_cross_entropy_with_logits(x, t, reduction="none") * ~done).mean()

    add("truncated_ce", build("truncated_ce", stats), [("plain BCE * lambda(t, p)", trunc_plain)])

    def soft_trunc_plain(x, t, k=1.0):
        return (-t * torch.sigmoid(-k * x) * F.logsigmoid(x) - (1 - t) * torch.sigmoid(k * x) * F.logsigmoid(-x)).mean()

    add("soft_truncated", build("soft_truncated", stats), [("plain Su formula", soft_trunc_plain)])
    fb = plain_fbeta(1.0, per_label=True)
    add("fbeta", build("fbeta", stats), [("plain 1 - F1 from sums", fb)])
    add("combo 10*focal+fbeta", build("combo", stats, terms=[{"name": "focal", "weight": 10}, {"name": "fbeta"}]),
        [("10 torchvision focal + plain fbeta", lambda x, y: 10 * sigmoid_focal_loss(x, y, alpha=-1, reduction="mean") + fb(x, y))])
    return cases


def segmentation_cases(stats: dict) -> list[Case]:
    import segmentation_models_pytorch.losses as smp
    from timm.loss import AsymmetricLossMultiLabel
    from torchvision.ops import sigmoid_focal_loss

    def on_masks(fn):  # references take the target as [N, 1, H, W]
        return lambda x, t: fn(x, t.unsqueeze(1))

    bce = ("F.bce_with_logits", on_masks(F.binary_cross_entropy_with_logits))
    cases: list[Case] = []

    def add(label, fn, refs, context=(bce,), **kw):
        cases.append(Case(label, "segmentation", fn, list(refs), list(context), **kw))

    add("dice", build("dice", stats),
        [("smp DiceLoss", on_masks(smp.DiceLoss("binary", smooth=1.0))), ("plain", on_masks(plain_tversky(0.5, 0.5)))])
    add("jaccard", build("jaccard", stats),
        [("smp JaccardLoss", on_masks(smp.JaccardLoss("binary", smooth=1.0))), ("plain", on_masks(plain_tversky(1.0, 1.0)))])
    add("tversky", build("tversky", stats),
        [("smp TverskyLoss", on_masks(smp.TverskyLoss("binary", smooth=1.0, alpha=0.3, beta=0.7))),
         ("plain", on_masks(plain_tversky(0.3, 0.7)))])
    add("focal_tversky", build("focal_tversky", stats),
        [("smp TverskyLoss(gamma=0.75)", on_masks(smp.TverskyLoss("binary", smooth=1.0, alpha=0.3, beta=0.7, gamma=0.75))),
         ("plain", on_masks(plain_tversky(0.3, 0.7, gamma=4.0 / 3.0)))])
    add("lovasz per_image", build("lovasz", stats), [("smp LovaszLoss(per_image=True)", on_masks(smp.LovaszLoss("binary", per_image=True)))])
    add("lovasz per_image=False", build("lovasz", stats, per_image=False),
        [("smp LovaszLoss(per_image=False)", on_masks(smp.LovaszLoss("binary", per_image=False)))])
    add("bce", build("bce", stats), [bce], context=())
    add("focal", build("focal", stats),
        [("torchvision sigmoid_focal_loss", on_masks(lambda x, t: sigmoid_focal_loss(x, t, alpha=-1, reduction="mean")))])
    add("asymmetric", build("asymmetric", stats), [("timm AsymmetricLossMultiLabel", on_masks(AsymmetricLossMultiLabel(reduction="mean")))])
    fn = build("class_balanced", stats, base="sigmoid")
    w0, w1 = fn.weight.tolist()
    add("class_balanced base=sigmoid", fn,
        [("F.bce_with_logits(weight=w_t)", on_masks(lambda x, t: F.binary_cross_entropy_with_logits(x, t, weight=w0 + (w1 - w0) * t)))])
    fn = build("class_balanced", stats)
    add("class_balanced", fn,
        [("Cui et al. focal_loss code", on_masks(cui_focal(lambda t: w0 + (w1 - w0) * t, fn.gamma, lambda t: t.numel())))])
    add("fbeta", build("fbeta", stats), [("plain 1 - F1 from sums", on_masks(plain_fbeta(1.0, per_label=False)))])
    return cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--quick", action="store_true", help="small shapes, 2 reps (a smoke test)")
    ap.add_argument("--seg-size", type=int, default=768, help="H = W of the [16, 1, H, W] segmentation logits (default 768)")
    ap.add_argument("--only", default=None, help="run only the rows whose label contains this string")
    ap.add_argument("--task", default=None, choices=["multiclass", "multilabel", "segmentation"], help="run one task only")
    ap.add_argument(
        "--threads", type=int, default=1,
        help="torch intra-op threads (default 1: on a shared 2-core box, 2 threads stall on each other)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    min_sample = 0.0 if args.quick else MIN_SAMPLE_S
    if args.quick:
        n, c_mc, c_ml, reps, seg_n, seg = 256, 50, 10, 2, 2, 32
    else:
        n, c_mc, c_ml, reps, seg_n, seg = N, C_MC, C_ML, args.reps, SEG_N, args.seg_size

    g = torch.Generator().manual_seed(0)
    x_mc = torch.randn(n, c_mc, generator=g) * 3
    x_cos = torch.rand(n, c_mc, generator=g) * 2 - 1  # cosine logits for LDAM / AM-softmax
    y_mc = torch.randint(0, c_mc, (n,), generator=g)
    x_ml = torch.randn(n, c_ml, generator=g) * 3
    y_ml = (torch.rand(n, c_ml, generator=g) < 0.05).float()
    x_seg = torch.randn(seg_n, 1, seg, seg, generator=g) * 3 - 2
    y_seg = (torch.rand(seg_n, seg, seg, generator=g) < 0.05).float()
    y_seg[:, 0, 0] = 1  # every mask non-empty (smp's convention differs on empty masks)
    mc_stats = {"task": "multiclass", "num_classes": c_mc, "class_counts": lt_counts(c_mc)}
    ml_stats = {"task": "multilabel", "num_classes": c_ml, "class_counts": lt_counts(c_ml, 500)}
    seg_stats = {"task": "segmentation", "num_classes": 2, "class_counts": [950_000, 50_000]}
    costs = (torch.rand(c_mc, c_mc, generator=g) * 4).tolist()

    groups = {
        "multiclass": lambda: multiclass_cases(c_mc, mc_stats, costs),
        "multilabel": lambda: multilabel_cases(ml_stats),
        "segmentation": lambda: segmentation_cases(seg_stats),
    }
    data = {"multiclass": (x_mc, y_mc), "multilabel": (x_ml, y_ml), "segmentation": (x_seg, y_seg)}

    rows = []
    notes: list[str] = []
    t_start = time.perf_counter()
    for task, make in groups.items():
        if args.task and task != args.task:
            continue
        for case in make():
            if args.only and args.only not in case.label:
                continue
            x, y = data[task]
            if case.cosine:
                x = x_cos
            notes += check_same(case, x, y)
            fns = [case.fn] + [f for _, f in case.refs] + [f for _, f in case.context]
            times = time_all(fns, x, y, reps, min_sample)
            rows.append((case, tuple(x.shape), times[0], times[1 : 1 + len(case.refs)], times[1 + len(case.refs) :]))

    # cost-sensitive against the seed's double loop, 100 classes
    if not args.task and not args.only:
        c = C_COST if not args.quick else 10
        xc = torch.randn(n, c, generator=g) * 3
        yc = torch.randint(0, c, (n,), generator=g)
        w = torch.rand(c, c, generator=g) * 4
        fn = L.build("cost_sensitive", costs=w.tolist(), num_classes=c)
        case = Case("cost_sensitive", "multiclass", fn, [(f"seed double loop ({c}x{c} masks)", seed_cost_sensitive(w))])
        check_same(case, xc, yc)
        times = time_all([fn, seed_cost_sensitive(w)], xc, yc, max(2, reps // 2), min_sample)
        rows.append((case, tuple(xc.shape), times[0], times[1:], []))

    print(f"# imbal loss bench, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    print(
        f"torch {torch.__version__}, CPU ({platform.processor() or platform.machine()}), "
        f"{os.cpu_count()} cores, {torch.get_num_threads()} torch threads, float32, "
        f"median of {reps} forward+backward runs (cost_sensitive vs seed: {max(2, reps // 2)}), "
        f"load average at the end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}\n"
    )
    print(
        "| loss | task | logits | imbal ms | fastest same-formula reference | ref ms | ratio "
        "| other same-formula references: ms (ratio) | plain CE/BCE: ms (ratio) |"
    )
    print("| --- | --- | --- | ---: | --- | ---: | ---: | --- | --- |")
    for case, shape, ours, refs, ctx in rows:
        best = min(range(len(refs)), key=lambda i: med_ms(refs[i]))
        ratio = paired_ratio(ours, refs[best])
        shown = f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.4f}x ({1 / ratio:.0f}x faster)"
        others = "; ".join(
            f"{case.refs[i][0]}: {med_ms(refs[i]):.1f} ({paired_ratio(ours, refs[i]):.2f}x)"
            for i in range(len(refs)) if i != best
        ) or "-"
        context = "; ".join(
            f"{name}: {med_ms(t):.1f} ({paired_ratio(ours, t):.2f}x)" for (name, _), t in zip(case.context, ctx)
        ) or "-"
        print(
            f"| {case.label} | {case.task} | {shape} | {med_ms(ours):.1f} | {case.refs[best][0]} "
            f"| {med_ms(refs[best]):.1f} | {shown} | {others} | {context} |"
        )
    for note in notes:
        print(f"\nnote: {note}")
    print(f"\ntotal bench time {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
