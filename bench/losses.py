"""Forward + backward time of every loss of the loss library, as a ratio to a baseline timed in the same process.

    python bench/losses.py [--reps 7] [--quick]

Shapes: logits [8192, 1000] (multiclass) and [8192, 80] (multilabel), float32 on CPU.
Baseline: the reference implementation where one exists (torchvision's
sigmoid_focal_loss, timm's AsymmetricLoss*), else plain F.cross_entropy /
F.binary_cross_entropy_with_logits.  The cost-sensitive loss is also timed against
the seed's double Python loop over (true, predicted) class pairs at 100 classes.
Loss and baseline are timed alternately in each repetition (the machine is shared,
so load drifts); the table shows medians.  Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

import imbal.losses as L

N = 8192
C_MC, C_ML, C_COST = 1000, 80, 100


def lt_counts(c: int, n_max: int = 5000, ratio: float = 100.0) -> list[int]:
    """Exponential long-tail profile n_i = n_max * ratio^(-i/(C-1))."""
    return [max(1, int(n_max * ratio ** (-i / (c - 1)))) for i in range(c)]


def fwd_bwd(fn, x, y) -> float:
    leaf = x.detach().requires_grad_()
    t0 = time.perf_counter()
    loss = fn(leaf, y)
    loss.backward()
    return time.perf_counter() - t0


def compare(fn, base, x, y, reps: int) -> tuple[float, float]:
    fwd_bwd(fn, x, y)  # warm-up
    fwd_bwd(base, x, y)
    a, b = [], []
    for _ in range(reps):
        a.append(fwd_bwd(fn, x, y))
        b.append(fwd_bwd(base, x, y))
    return statistics.median(a) * 1e3, statistics.median(b) * 1e3


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="small shapes, 2 reps (a smoke test)")
    ap.add_argument(
        "--threads", type=int, default=1,
        help="torch intra-op threads (default 1: on a shared 2-core box, 2 threads stall on each other)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    n, c_mc, c_ml, reps = (N, C_MC, C_ML, args.reps) if not args.quick else (256, 50, 10, 2)
    from timm.loss import AsymmetricLossMultiLabel, AsymmetricLossSingleLabel
    from torchvision.ops import sigmoid_focal_loss

    g = torch.Generator().manual_seed(0)
    x_mc = torch.randn(n, c_mc, generator=g) * 3
    y_mc = torch.randint(0, c_mc, (n,), generator=g)
    x_ml = torch.randn(n, c_ml, generator=g) * 3
    y_ml = (torch.rand(n, c_ml, generator=g) < 0.05).float()
    mc_stats = {"task": "multiclass", "num_classes": c_mc, "class_counts": lt_counts(c_mc)}
    ml_stats = {"task": "multilabel", "num_classes": c_ml, "class_counts": lt_counts(c_ml, 500)}
    costs = (torch.rand(c_mc, c_mc, generator=g) * 4).tolist()

    ce = ("F.cross_entropy", lambda x, y: F.cross_entropy(x, y))
    bce = ("F.bce_with_logits", lambda x, y: F.binary_cross_entropy_with_logits(x, y))
    tv_focal = ("torchvision sigmoid_focal_loss", lambda x, y: sigmoid_focal_loss(x, y, alpha=-1, reduction="mean"))
    timm_ml = ("timm AsymmetricLossMultiLabel", AsymmetricLossMultiLabel(reduction="mean"))
    timm_sl = ("timm AsymmetricLossSingleLabel", AsymmetricLossSingleLabel())

    multiclass = [
        ("ce", {}, ce),
        ("ce", {"drw_epoch": 0}, ce),
        ("weighted_ce", {}, ce),
        ("focal", {}, ce),
        ("focal", {"gamma": 0.0}, ce),
        ("logit_adjusted", {}, ce),
        ("balanced_softmax", {}, ce),
        ("asymmetric", {}, timm_sl),
        ("asymmetric", {}, ce),
        ("class_balanced", {"base": "softmax"}, ce),
        ("class_balanced", {}, ce),
        ("ldam", {}, ce),
        ("am_softmax", {}, ce),
        ("equalization", {}, ce),
        ("truncated_ce", {}, ce),
        ("soft_truncated", {}, ce),
        ("cost_sensitive", {"costs": costs}, ce),
        ("cost_sensitive", {"costs": costs, "mode": "expected"}, ce),
        ("combo", {"terms": [{"name": "ce"}, {"name": "focal", "weight": 2}]}, ce),
    ]
    multilabel = [
        ("bce", {}, bce),
        ("bce", {"pos_weight": "auto", "num_samples": 5000}, bce),
        ("focal", {}, tv_focal),
        ("focal", {}, bce),
        ("asymmetric", {}, timm_ml),
        ("asymmetric", {}, bce),
        ("class_balanced", {"base": "sigmoid"}, bce),
        ("class_balanced", {}, bce),
        ("zlpr", {}, bce),
        ("truncated_ce", {}, bce),
        ("soft_truncated", {}, bce),
        ("fbeta", {}, bce),
        ("combo", {"terms": [{"name": "focal", "weight": 10}, {"name": "fbeta"}]}, bce),
    ]

    rows = []
    t_start = time.perf_counter()
    for task, stats, cases, x, y in (
        ("multiclass", mc_stats, multiclass, x_mc, y_mc),
        ("multilabel", ml_stats, multilabel, x_ml, y_ml),
    ):
        for name, hp, (base_name, base) in cases:
            fn = L.build(name, stats=stats, **hp)
            fn.set_epoch(1)
            ms, base_ms = compare(fn, base, x, y, reps)
            shown = [f"{k}={v}" for k, v in hp.items() if k not in ("costs", "terms")]
            if name == "combo":
                shown.append("+".join(t["name"] for t in hp["terms"]))
            label = " ".join([name] + shown)
            rows.append((label, task, f"{tuple(x.shape)}", ms, base_name, base_ms))

    # cost-sensitive against the seed's double loop, 100 classes
    c = C_COST if not args.quick else 10
    xc = torch.randn(n, c, generator=g) * 3
    yc = torch.randint(0, c, (n,), generator=g)
    w = torch.rand(c, c, generator=g) * 4
    fn = L.build("cost_sensitive", costs=w.tolist(), num_classes=c)
    torch.testing.assert_close(fn(xc, yc), seed_cost_sensitive(w)(xc, yc))  # same loss
    ms, base_ms = compare(fn, seed_cost_sensitive(w), xc, yc, max(2, reps // 2))
    rows.append(("cost_sensitive", "multiclass", f"{tuple(xc.shape)}", ms, f"seed double loop ({c}x{c} masks)", base_ms))

    print(f"# imbal loss bench, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(
        f"torch {torch.__version__}, CPU ({platform.processor() or platform.machine()}), "
        f"{os.cpu_count()} cores, {torch.get_num_threads()} torch threads, float32, "
        f"median of {reps} forward+backward runs (cost_sensitive vs seed: {max(2, reps // 2)})\n"
    )
    print("| loss | task | logits | ms | baseline | baseline ms | ratio |")
    print("| --- | --- | --- | ---: | --- | ---: | ---: |")
    for label, task, shape, ms, base_name, base_ms in rows:
        ratio = ms / base_ms
        shown = f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.4f}x ({1 / ratio:.0f}x faster)"
        print(f"| {label} | {task} | {shape} | {ms:.1f} | {base_name} | {base_ms:.1f} | {shown} |")
    print(f"\ntotal bench time {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
