"""Generic properties of every built-in loss, parametrised over the loss registry.

The cases are generated from ``imbal.losses.available()`` (imbal's own entry
points): every loss is built through the registry with injected data
statistics for every task kind it declares (``cls.tasks``), on a batch from the
input factory of that task where one class (or one label, or one image's
foreground) is absent.  A newly registered loss is therefore covered with its
default hyper-parameters, or fails loudly; :data:`VARIANTS` adds hand-picked
hyper-parameters (and gives the ones a loss cannot do without, as ``combo``).
Checks: finite values and gradients at ordinary logits, at logits of +-1e4 and
under bf16 autocast; float64 gradcheck for the smooth ones; one-line
ImbalError for a bad reduction.
"""

from __future__ import annotations

import inspect

import pytest
import torch

import imbal.losses as L
from imbal.errors import ImbalError
from imbal.kinds import BINARY, MULTICLASS, MULTILABEL, SEGMENTATION, SIGMOID, TASKS
from imbal.losses import registry

C = 5
N = 12
COUNTS = [500, 120, 40, 9, 2]  # multiclass / multilabel (positives per label)
BIN_COUNTS = [900, 100]  # binary / segmentation: [n_neg, n_pos]

#: imbal's own losses: every entry point its package declares (plugins have their own tests).
LOSSES = [n for n in L.available() if registry.entries()[n].package == "imbal"]

#: Hyper-parameter variants per (loss, task); a pair not listed runs with the loss's defaults ({}).
VARIANTS: dict[tuple[str, str], list[dict]] = {
    ("ce", MULTICLASS): [{}, {"label_smoothing": 0.1, "drw_epoch": 0}],
    ("weighted_ce", MULTICLASS): [{}, {"weights": "effective_number"}],
    ("focal", MULTICLASS): [{}, {"gamma": 0.5, "drw_epoch": 0}],
    ("focal", BINARY): [{"alpha": 0.25}],
    ("focal", SEGMENTATION): [{"gamma": 0.5}],
    ("bce", BINARY): [{"pos_weight": "auto"}],
    ("bce", MULTILABEL): [{"pos_weight": "auto", "num_samples": 600}],
    ("asymmetric", SEGMENTATION): [{"gamma_pos": 0.5}],
    ("class_balanced", MULTICLASS): [{}, {"base": "softmax"}, {"base": "sigmoid"}],
    ("class_balanced", SEGMENTATION): [{"base": "sigmoid"}],
    ("ldam", MULTICLASS): [{}, {"drw_epoch": 0}],
    ("equalization", MULTICLASS): [{"lambda_": 0.1}],
    ("soft_truncated", BINARY): [{"K": 2.0}],
    ("cost_sensitive", MULTICLASS): [
        {"costs": [[0 if i == j else 1 + i + j for j in range(C)] for i in range(C)]},
        {"mode": "expected"},
    ],
    ("fbeta", MULTILABEL): [{"beta": 2.0}],
    ("combo", MULTICLASS): [{"terms": [{"name": "am_softmax", "weight": 2}, {"name": "ldam", "weight": 0.5, "drw_epoch": 0}]}],
    ("combo", BINARY): [{"terms": [{"name": "focal", "weight": 10}, {"name": "fbeta"}]}],
    ("combo", MULTILABEL): [{"terms": [{"name": "zlpr"}, {"name": "asymmetric", "weight": 0.1}]}],
    ("combo", SEGMENTATION): [{"terms": "[{name: bce}, {name: fbeta, beta: 2}]"}],
    ("dice", SEGMENTATION): [{}, {"per_image": True, "log_loss": True}],
    ("jaccard", SEGMENTATION): [{}, {"per_image": True}],
    ("tversky", SEGMENTATION): [{}, {"alpha": 0.7, "beta": 0.3, "per_image": True}],
    ("lovasz", SEGMENTATION): [{}, {"per_image": False}],
}


def declared_tasks(name: str) -> tuple[str, ...]:
    """The task kinds a loss declares; a loss that fails to load gets one case, which then fails with its error."""
    try:
        return L.supported_tasks(L.get(name))
    except ImbalError:
        return (MULTICLASS,)


# (name, task, hyper-parameters): every built-in loss, each task it supports, in task order.
CASES = [
    (name, task, hp)
    for name in LOSSES
    for task in sorted(declared_tasks(name), key=lambda t: TASKS.index(t) if t in TASKS else len(TASKS))
    for hp in VARIANTS.get((name, task), [{}])
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
    counts = BIN_COUNTS if task in (BINARY, SEGMENTATION) else COUNTS
    # num_train: training samples (DataStats.num_train), which distribution_balanced needs
    return {"task": task, "num_classes": len(counts), "class_counts": counts, "num_train": sum(counts)}


def build(name: str, task: str, hp: dict):
    return L.build(name, stats=stats(task), **hp)


# -- input factories, one per task kind (the shapes of imbal.kinds) -----------------------------


def multiclass_batch(g: torch.Generator, dtype, scale: float):
    x = torch.randn(N, C, generator=g, dtype=dtype) * scale
    y = torch.randint(0, C - 1, (N,), generator=g)  # class C-1 absent
    y[:4] = torch.arange(4)
    return x, y


def binary_batch(g: torch.Generator, dtype, scale: float):
    x = torch.randn(N, generator=g, dtype=dtype) * scale
    y = (torch.rand(N, generator=g) < 0.3).to(dtype)
    y[:2] = torch.tensor([0.0, 1.0], dtype=dtype)
    return x, y


def multilabel_batch(g: torch.Generator, dtype, scale: float):
    x = torch.randn(N, C, generator=g, dtype=dtype) * scale
    y = (torch.rand(N, C, generator=g) < 0.3).to(dtype)
    y[:, C - 1] = 0  # label C-1 absent
    y[0, 0] = 1
    return x, y


def segmentation_batch(g: torch.Generator, dtype, scale: float):
    """Binary masks: logits [N, 1, H, W], target [N, H, W] 0/1; image 1 has an empty mask."""
    x = torch.randn(2, 1, 4, 4, generator=g, dtype=dtype) * scale
    y = (torch.rand(2, 4, 4, generator=g) < 0.2).to(dtype)
    y[1] = 0
    y[0, 0, 0] = 1
    return x, y


BATCHES = {MULTICLASS: multiclass_batch, BINARY: binary_batch, MULTILABEL: multilabel_batch,
           SEGMENTATION: segmentation_batch}


def batch(task: str, dtype=torch.float32, seed: int = 0, scale: float = 2.0):
    """Logits (a leaf) and a target where class/label 4 (or the positives of one image) is absent."""
    if task not in BATCHES:
        raise AssertionError(f"no input factory for task {task!r}: add one to BATCHES")
    x, y = BATCHES[task](torch.Generator().manual_seed(seed), dtype, scale)
    return x.requires_grad_(), y


def test_every_registered_loss_has_cases_for_every_task_it_declares():
    """A new entry point is covered by the property tests below, or this fails."""
    assert set(LOSSES) == set(MY_LOSSES) and len(LOSSES) >= 22
    assert set(BATCHES) == set(TASKS)
    for name in LOSSES:
        declared = L.supported_tasks(L.get(name))
        assert declared and set(declared) <= set(BATCHES), (name, declared)
        assert {t for n, t, _ in CASES if n == name} == set(declared)
    # no stale variant: each one names a registered loss and a task it supports
    stale = [k for k in VARIANTS if k[0] not in LOSSES or k[1] not in L.supported_tasks(L.get(k[0]))]
    assert stale == []


def test_factories_give_the_task_shapes():
    shapes = {t: tuple(tuple(a.shape) for a in batch(t)) for t in TASKS}
    assert shapes == {MULTICLASS: ((N, C), (N,)), BINARY: ((N,), (N,)), MULTILABEL: ((N, C), (N, C)),
                      SEGMENTATION: ((2, 1, 4, 4), (2, 4, 4))}
    assert batch(MULTICLASS)[1].dtype == torch.int64
    for t in SIGMOID:
        y = batch(t)[1]
        assert y.dtype == torch.float32 and set(y.unique().tolist()) == {0.0, 1.0}


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
    "name,task,hp", [pytest.param(*c, id=i) for i, c in zip(IDS, CASES) if c[0] not in NON_SMOOTH],
)
def test_gradcheck_float64(name, task, hp):
    if name == "equalization":
        hp = {**hp, "gamma": 1.0}  # deterministic suppression
    loss_fn = build(name, task, hp).double()
    loss_fn.set_epoch(1)
    x, y = batch(task, dtype=torch.float64, seed=3, scale=1.0)
    if task == MULTICLASS and name in ("ldam", "am_softmax"):
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
    assert set(d["tasks"]) <= set(TASKS)
    # every hyper-parameter has a default, so `loss=<name>` alone is a valid config
    # (combo's terms default to None and are refused at build time with a message)
    assert all(v is not inspect.Parameter.empty for v in d["hparams"].values()), d["hparams"]


@pytest.mark.parametrize("name", ["focal", "bce", "asymmetric", "class_balanced", "fbeta"])
def test_per_element_losses_support_segmentation(name):
    assert SEGMENTATION in L.supported_tasks(L.get(name))


ALL_TASKS = set(TASKS)


@pytest.mark.parametrize("name", [n for n in MY_LOSSES if {t for m, t, _ in CASES if m == n} != ALL_TASKS])
def test_unsupported_task_refused_by_registry(name):
    tasks = set(L.supported_tasks(L.get(name)))
    assert tasks == {t for m, t, _ in CASES if m == name}  # CASES cover every declared task
    other = sorted(ALL_TASKS - tasks)
    with pytest.raises(ImbalError, match=f"loss '{name}' does not support task '{other[0]}'"):
        L.build(name, stats=stats(other[0]))


def test_every_registered_loss_loads():
    """Every entry point of the project imports."""
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
