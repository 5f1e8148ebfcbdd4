"""Generic properties of every loss of the loss library (issue 3), parametrised over its names.

Each case builds the loss through the registry with injected data statistics, on
a batch where one class (or one label) is absent, and checks: finite values and
gradients at ordinary logits, at logits of +-1e4 and under bf16 autocast;
float64 gradcheck for the smooth ones; one-line ImbalError for a bad reduction.
"""

from __future__ import annotations

import pytest
import torch

import imbal.losses as L
from imbal.errors import ImbalError

C = 5
N = 12
COUNTS = [500, 120, 40, 9, 2]  # multiclass / multilabel (positives per label)
BIN_COUNTS = [900, 100]  # binary / segmentation: [n_neg, n_pos]

# (name, task, hyper-parameters): every loss of issue 3, each task it supports.
CASES = [
    ("ce", "multiclass", {}),
    ("ce", "multiclass", {"label_smoothing": 0.1, "drw_epoch": 0}),
    ("weighted_ce", "multiclass", {}),
    ("weighted_ce", "multiclass", {"weights": "effective_number"}),
    ("focal", "multiclass", {}),
    ("focal", "multiclass", {"gamma": 0.5, "drw_epoch": 0}),
    ("focal", "binary", {"alpha": 0.25}),
    ("focal", "multilabel", {}),
    ("focal", "segmentation", {"gamma": 0.5}),
    ("logit_adjusted", "multiclass", {}),
    ("balanced_softmax", "multiclass", {}),
    ("bce", "binary", {"pos_weight": "auto"}),
    ("bce", "multilabel", {"pos_weight": "auto", "num_samples": 600}),
    ("bce", "segmentation", {}),
    ("asymmetric", "multiclass", {}),
    ("asymmetric", "binary", {}),
    ("asymmetric", "multilabel", {}),
    ("asymmetric", "segmentation", {"gamma_pos": 0.5}),
    ("class_balanced", "multiclass", {}),
    ("class_balanced", "multiclass", {"base": "softmax"}),
    ("class_balanced", "multiclass", {"base": "sigmoid"}),
    ("class_balanced", "binary", {}),
    ("class_balanced", "multilabel", {}),
    ("class_balanced", "segmentation", {"base": "sigmoid"}),
    ("ldam", "multiclass", {}),
    ("ldam", "multiclass", {"drw_epoch": 0}),
    ("am_softmax", "multiclass", {}),
    ("equalization", "multiclass", {"lambda_": 0.1}),
    ("zlpr", "multilabel", {}),
    ("truncated_ce", "multiclass", {}),
    ("truncated_ce", "binary", {}),
    ("truncated_ce", "multilabel", {}),
    ("soft_truncated", "multiclass", {}),
    ("soft_truncated", "binary", {"K": 2.0}),
    ("soft_truncated", "multilabel", {}),
    ("cost_sensitive", "multiclass", {"costs": [[0 if i == j else 1 + i + j for j in range(C)] for i in range(C)]}),
    ("cost_sensitive", "multiclass", {"mode": "expected"}),
    ("fbeta", "binary", {}),
    ("fbeta", "multilabel", {"beta": 2.0}),
    ("fbeta", "segmentation", {}),
    ("combo", "multiclass", {"terms": [{"name": "am_softmax", "weight": 2}, {"name": "ldam", "weight": 0.5, "drw_epoch": 0}]}),
    ("combo", "binary", {"terms": [{"name": "focal", "weight": 10}, {"name": "fbeta"}]}),
    ("combo", "multilabel", {"terms": [{"name": "zlpr"}, {"name": "asymmetric", "weight": 0.1}]}),
    ("combo", "segmentation", {"terms": "[{name: bce}, {name: fbeta, beta: 2}]"}),
]
MY_LOSSES = sorted({c[0] for c in CASES})
IDS = [f"{n}-{t}-{i}" for i, (n, t, _) in enumerate(CASES)]



@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: intra-op threads only add synchronisation (40 ms a call on a loaded 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# Not differentiable everywhere (hard thresholds): no gradcheck.
NON_SMOOTH = {"truncated_ce"}


def stats(task: str) -> dict:
    counts = BIN_COUNTS if task in ("binary", "segmentation") else COUNTS
    return {"task": task, "num_classes": len(counts), "class_counts": counts}


def build(name: str, task: str, hp: dict):
    return L.build(name, stats=stats(task), **hp)


def batch(task: str, dtype=torch.float32, seed: int = 0, scale: float = 2.0):
    """Logits (a leaf) and a target where class/label 4 (or the positives of one image) is absent."""
    g = torch.Generator().manual_seed(seed)
    if task == "multiclass":
        x = torch.randn(N, C, generator=g, dtype=dtype) * scale
        y = torch.randint(0, C - 1, (N,), generator=g)  # class C-1 absent
        y[:4] = torch.arange(4)
    elif task == "binary":
        x = torch.randn(N, generator=g, dtype=dtype) * scale
        y = (torch.rand(N, generator=g) < 0.3).to(dtype)
        y[:2] = torch.tensor([0.0, 1.0], dtype=dtype)
    elif task == "multilabel":
        x = torch.randn(N, C, generator=g, dtype=dtype) * scale
        y = (torch.rand(N, C, generator=g) < 0.3).to(dtype)
        y[:, C - 1] = 0  # label C-1 absent
        y[0, 0] = 1
    else:  # binary segmentation: image 1 has an empty mask
        x = torch.randn(2, 1, 4, 4, generator=g, dtype=dtype) * scale
        y = (torch.rand(2, 4, 4, generator=g) < 0.2).to(dtype)
        y[1] = 0
        y[0, 0, 0] = 1
    return x.requires_grad_(), y


@pytest.mark.parametrize("name,task,hp", CASES, ids=IDS)
def test_finite_value_and_gradient_with_absent_class(name, task, hp):
    loss_fn = build(name, task, hp)
    loss_fn.set_epoch(1)  # DRW cases (drw_epoch=0) are then re-weighted
    x, y = batch(task)
    value = loss_fn(x, y)
    assert value.ndim == 0 and value.dtype == torch.float32
    assert torch.isfinite(value) and value.item() >= 0
    (grad,) = torch.autograd.grad(value, x)
    assert torch.isfinite(grad).all()
    assert grad.abs().sum() > 0  # the loss does depend on the logits


@pytest.mark.parametrize("name,task,hp", CASES, ids=IDS)
@pytest.mark.parametrize("magnitude", [1e4, -1e4, "mixed"])
def test_finite_at_extreme_logits(name, task, hp, magnitude):
    loss_fn = build(name, task, hp)
    loss_fn.set_epoch(1)
    x0, y = batch(task)
    if magnitude == "mixed":
        x = (torch.sign(x0.detach()) * 1e4).requires_grad_()
    else:
        x = torch.full_like(x0, magnitude).requires_grad_()
    value = loss_fn(x, y)
    assert torch.isfinite(value), value
    (grad,) = torch.autograd.grad(value, x)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("name,task,hp", CASES, ids=IDS)
@pytest.mark.parametrize("scale", [2.0, 1e4])
def test_bf16_autocast(name, task, hp, scale):
    """Logits produced in bf16 by a layer under autocast: fp32 loss, finite, equal to the fp32 loss of the same logits."""
    loss_fn = build(name, task, hp)
    loss_fn.set_epoch(1)
    x, y = batch(task, scale=scale)
    w = torch.ones((), requires_grad=True)
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = x.detach().to(torch.bfloat16) * w.to(torch.bfloat16)
        assert logits.dtype == torch.bfloat16
        value = loss_fn(logits, y)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    (gw,) = torch.autograd.grad(value, w)
    assert torch.isfinite(gw)
    torch.manual_seed(0)  # equalization draws at random: same draw
    ref = loss_fn(x.detach().to(torch.bfloat16).float(), y)
    torch.testing.assert_close(value, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "name,task,hp",
    [c for c in CASES if c[0] not in NON_SMOOTH],
    ids=[i for i, c in zip(IDS, CASES) if c[0] not in NON_SMOOTH],
)
def test_gradcheck_float64(name, task, hp):
    if name == "equalization":
        hp = {**hp, "gamma": 1.0}  # deterministic suppression
    loss_fn = build(name, task, hp).double()
    loss_fn.set_epoch(1)
    x, y = batch(task, dtype=torch.float64, seed=3, scale=1.0)
    if task == "multiclass" and name in ("ldam", "am_softmax"):
        x = torch.tanh(x).detach().requires_grad_()  # cosines
    assert loss_fn(x, y).dtype == torch.float64
    assert torch.autograd.gradcheck(lambda z: loss_fn(z, y), (x,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", [n for n in MY_LOSSES if n != "combo"])
def test_bad_reduction_is_one_line_imbal_error(name):
    task, hp = next((t, h) for n, t, h in CASES if n == name)
    with pytest.raises(ImbalError, match="reduction 'avg'") as exc:
        build(name, task, {**hp, "reduction": "avg"})
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(
    "name,task,hp",
    [c for c in CASES if c[0] != "combo"],  # combo has no reduction of its own
    ids=[i for i, c in zip(IDS, CASES) if c[0] != "combo"],
)
def test_reduction_none_and_sum_agree_with_mean(name, task, hp):
    x, y = batch(task)
    none = build(name, task, {**hp, "reduction": "none"})
    total = build(name, task, {**hp, "reduction": "sum"})
    mean = build(name, task, {**hp, "reduction": "mean"})
    for fn in (none, total, mean):
        fn.set_epoch(1)
    torch.manual_seed(0)
    per = none(x, y)
    torch.manual_seed(0)
    s = total(x, y)
    torch.manual_seed(0)
    m = mean(x, y)
    torch.testing.assert_close(per.sum(), s)
    if name == "weighted_ce" or (name in ("ce", "ldam") and hp.get("drw_epoch") == 0):
        # weighted mean: divided by the batch's weight sum, not by the count
        w = (none.weight if name == "weighted_ce" else none.drw_weight)[y]
        torch.testing.assert_close(s / w.sum(), m)
    else:
        torch.testing.assert_close(per.mean(), m)


@pytest.mark.parametrize("name", MY_LOSSES)
def test_describe_lists_tasks_and_defaults(name):
    d = L.describe(name)
    assert d["package"] == "imbal"
    assert d["summary"]
    assert set(d["tasks"]) <= {"multiclass", "binary", "multilabel", "segmentation"}
    # every hyper-parameter has a default, so `loss=<name>` alone is a valid config
    # (combo's terms default to None and are refused at build time with a message)
    assert all(v is not __import__("inspect").Parameter.empty for v in d["hparams"].values()), d["hparams"]


@pytest.mark.parametrize("name", ["focal", "bce", "asymmetric", "class_balanced", "fbeta"])
def test_per_element_losses_support_segmentation(name):
    assert "segmentation" in L.supported_tasks(L.get(name))


ALL_TASKS = {"multiclass", "binary", "multilabel", "segmentation"}


@pytest.mark.parametrize("name", [n for n in MY_LOSSES if {t for m, t, _ in CASES if m == n} != ALL_TASKS])
def test_unsupported_task_refused_by_registry(name):
    tasks = set(L.supported_tasks(L.get(name)))
    assert tasks == {t for m, t, _ in CASES if m == name}  # CASES cover every declared task
    other = sorted(ALL_TASKS - tasks)
    with pytest.raises(ImbalError, match=f"loss '{name}' does not support task '{other[0]}'"):
        L.build(name, stats=stats(other[0]))


def test_every_registered_loss_loads():
    """Every entry point of the project imports (region/lovasz losses belong to another issue)."""
    assert L.broken() == {}


@pytest.mark.slow
def test_bench_runs_quick(tmp_path):
    """bench/losses.py --quick: every row printed, the cost-sensitive loss checked against the seed loop."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, str(root / "bench" / "losses.py"), "--quick"], capture_output=True, text=True, cwd=tmp_path,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    tasks = [r.split("|")[2].strip() for r in rows[1:]]
    # header; multiclass (noise floor + 18) + the seed loop row; multilabel; segmentation masks
    assert (len(rows), tasks.count("multiclass"), tasks.count("multilabel"), tasks.count("segmentation")) == (
        1 + 20 + 11 + 12, 20, 11, 12)
