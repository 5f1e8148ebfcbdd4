"""Per-run figures: confusion matrix, recall against class frequency, reliability, precision-recall.

:func:`write_run_plots` writes PNGs under ``<run_dir>/plots/`` and sends the same
figures to the TensorBoard, wandb and MLflow loggers of the run.  Figures are drawn
with matplotlib's object-oriented API on the Agg canvas (no pyplot, no global
backend switch), at 100 dpi with fixed sizes, so a figure's pixel size is known
from its kind and the number of classes:

============================  ==========================================
file                          size (pixels)
============================  ==========================================
``confusion_matrix.png``      ``confusion_size(C)``: 800 x 700 up to 11 classes
``recall_vs_frequency.png``   650 x 550 per panel (raw, then one per post-hoc)
``reliability.png``           650 x 750
``pr_curve.png`` (binary)     650 x 600
============================  ==========================================

What is drawn from where: the confusion matrix, reliability diagram and PR
curve from the raw test logits in ``outputs["test"]`` (the reliability bins and
their ECE are those of :mod:`imbal.metrics.calibration`, as the summary's ``ece``); recall against
frequency from ``summary["test"]["per_class_recall"]`` and each
``summary["posthoc"][name]["per_class_recall"]`` with the training counts of
``stats``.  A figure whose inputs are missing (no test outputs, no class
counts, a segmentation task) is skipped, not faked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from imbal.kinds import BINARY, CLASSIFICATION, MULTICLASS, SEGMENTATION
from imbal.metrics import (
    MEDIUM_MAX,
    MEDIUM_MIN,
    calibration_inputs,
    expected_calibration_error,
    reliability_bins,
)

DPI = 100
FONT = {"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "xtick.labelsize": 10, "ytick.labelsize": 10}

PANEL_W, PANEL_H = 6.5, 5.5
RELIABILITY_SIZE = (6.5, 7.5)
PR_SIZE = (6.5, 6.0)


def confusion_size(num_classes: int) -> tuple[float, float]:
    """Figure size (inches) of the confusion matrix: grows with the class count, capped at 20 x 19."""
    w = min(20.0, max(8.0, 2.5 + 0.5 * num_classes))
    return w, w - 1.0


def _figure(size: tuple[float, float]) -> Figure:
    return Figure(figsize=size, dpi=DPI, layout="constrained")


def _probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    """``[N, C]`` class probabilities (binary: ``[1 - p, p]``)."""
    logits = logits.detach().float().cpu()
    if task == MULTICLASS:
        return torch.softmax(logits, dim=-1)
    p = torch.sigmoid(logits)
    if task == BINARY:
        return torch.stack([1 - p, p], dim=-1)
    return p


# -- confusion matrix ---------------------------------------------------
def confusion_matrix(logits: torch.Tensor, targets: torch.Tensor, task: str, num_classes: int) -> np.ndarray:
    """Row-normalised confusion matrix (rows: true class, summing to 1; recall on the diagonal)."""
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    preds = _probabilities(logits, task).argmax(dim=-1)
    cm = multiclass_confusion_matrix(preds, targets.long().cpu(), num_classes=num_classes, normalize="true")
    return cm.numpy()


def _tick_labels(names: Sequence[str], counts: Sequence[int] | None) -> list[str]:
    if counts is None:
        return [str(n) for n in names]
    return [f"{n} (n={c})" for n, c in zip(names, counts)]


def plot_confusion(cm: np.ndarray, class_names: Sequence[str], counts: Sequence[int] | None, title: str) -> Figure:
    c = cm.shape[0]
    fig = _figure(confusion_size(c))
    ax = fig.add_subplot()
    im = ax.imshow(cm, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    cbar = fig.colorbar(im, ax=ax, shrink=0.85)
    cbar.set_label("fraction of the true class")
    if c <= 30:
        ticks = np.arange(c)
        ax.set_xticks(ticks, [str(n) for n in class_names], rotation=30 if c * max(len(str(n)) for n in class_names) > 60 else 0)
        ax.set_yticks(ticks, _tick_labels(class_names, counts))
    if c <= 20:
        size = 16 if c <= 4 else 10 if c <= 12 else 8
        for i in range(c):
            for j in range(c):
                v = cm[i, j]
                if v >= 0.005:
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=size,
                            color="white" if v > 0.55 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (training count)" if counts is not None else "true class")
    ax.set_title(title)
    return fig


# -- recall against training frequency -----------------------------------
def plot_recall_vs_frequency(
    counts: Sequence[int], class_names: Sequence[str], panels: Sequence[tuple[str, Sequence[float]]]
) -> Figure:
    """One panel per (title, per-class recall); x: training count (log), y: test recall."""
    fig = _figure((PANEL_W * len(panels), PANEL_H))
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    x = np.asarray(counts, dtype=float)
    pos = x[x > 0]
    lo = max(0.5, pos.min() / 1.6) if pos.size else 0.5
    hi = (pos.max() * 1.6) if pos.size else 10.0
    label_points = len(class_names) <= 30
    for ax, (title, recall) in zip(axes, panels):
        r = np.asarray(recall, dtype=float)
        xs = np.clip(x, lo, None)  # a class with 0 training samples sits at the left edge
        for edge, name in ((MEDIUM_MIN, "few | medium"), (MEDIUM_MAX, "medium | many")):
            if lo < edge < hi:
                ax.axvline(edge, color="0.6", ls=":", lw=1)
                ax.text(edge, 1.07, name, ha="center", va="bottom", fontsize=9, color="0.35")
        ax.scatter(xs, r, s=40, color="tab:blue", zorder=3)
        if label_points:
            for xi, ri, name in zip(xs, r, class_names):
                ax.annotate(str(name), (xi, ri), xytext=(5, 4), textcoords="offset points", fontsize=9)
        mean = float(np.nanmean(r)) if np.isfinite(r).any() else float("nan")
        ax.axhline(mean, color="tab:red", ls="--", lw=1.2, label=f"balanced accuracy {mean:.3f}")
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylim(-0.05, 1.15)
        ax.set_xlabel("training samples of the class (log scale)")
        ax.set_title(title)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="lower right", fontsize=9)
    axes[0].set_ylabel("test recall of the class")
    return fig


# -- reliability ----------------------------------------------------------
def plot_reliability(
    confidence: torch.Tensor, correct: torch.Tensor, ece: float, title: str, per_output: bool
) -> Figure:
    """Bins of :func:`imbal.metrics.calibration_inputs`; ``per_output``: each output's probability
    against its truth (binary, multilabel), else the top label's confidence and correctness."""
    centres, acc, conf, count, _ = reliability_bins(confidence, correct)
    width = 1.0 / len(centres)
    fig = _figure(RELIABILITY_SIZE)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    have = count > 0
    top.bar(centres[have], acc[have], width=width, color="tab:blue", edgecolor="white",
            label="fraction positive in bin" if per_output else "accuracy in bin")
    top.vlines(centres[have], acc[have], conf[have], color="tab:red", lw=2)
    top.plot(centres[have], conf[have], ls="none", marker="D", ms=6, color="tab:red",
             label="mean predicted probability" if per_output else "mean confidence in bin")
    top.plot([0, 1], [0, 1], color="0.3", ls="--", lw=1, label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("fraction positive" if per_output else "accuracy")
    top.set_title(f"{title}\nECE = {ece:.3f} ({len(centres)} equal-width bins)")
    top.legend(loc="upper left", fontsize=9)
    top.grid(True, alpha=0.3)
    bottom.bar(centres, count, width=width, color="0.5", edgecolor="white")
    bottom.set_yscale("log" if count.max() > 50 * max(1.0, np.median(count[have]) if have.any() else 1.0) else "linear")
    bottom.set_ylabel("samples")
    bottom.set_xlabel("predicted probability" if per_output else "confidence (top predicted probability)")
    return fig


# -- precision-recall (binary) --------------------------------------------
def plot_pr_curve(logits: torch.Tensor, targets: torch.Tensor, title: str, threshold: float | None = None) -> Figure:
    from torchmetrics.functional.classification import binary_average_precision, binary_precision_recall_curve

    p = torch.sigmoid(logits.detach().float().cpu().reshape(-1))
    t = targets.long().cpu().reshape(-1)
    precision, recall, _ = binary_precision_recall_curve(p, t)
    ap = float(binary_average_precision(p, t))
    prevalence = float(t.float().mean())
    fig = _figure(PR_SIZE)
    ax = fig.add_subplot()
    ax.step(recall.numpy(), precision.numpy(), where="post", color="tab:blue", lw=2, label=f"model (AP = {ap:.3f})")
    ax.axhline(prevalence, color="0.5", ls="--", lw=1, label=f"chance (prevalence {prevalence:.3f})")
    for thr, marker, name in ((0.5, "o", "threshold 0.5"), (threshold, "s", f"tuned threshold {threshold}")):
        if thr is None:
            continue
        pred = p > thr
        tp = float((pred & (t == 1)).sum())
        prec = tp / max(1.0, float(pred.sum()))
        rec = tp / max(1.0, float((t == 1).sum()))
        ax.plot([rec], [prec], marker=marker, ms=9, ls="none", color="tab:orange" if marker == "o" else "tab:green",
                label=f"{name}: P={prec:.2f}, R={rec:.2f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall (positive class)")
    ax.set_ylabel("precision (positive class)")
    ax.set_title(title)
    ax.legend(loc="lower left", fontsize=9)
    ax.grid(True, alpha=0.3)
    return fig


# -- loggers ----------------------------------------------------------------
def send_to_loggers(figures: Mapping[str, tuple[Figure, Path]], loggers: Iterable[Any], step: int | None = None) -> None:
    """TensorBoard: ``add_figure``; wandb: ``log_image`` of the written PNG; MLflow: the PNG as an artifact."""
    from imbal.reporting.loggers import is_tensorboard, is_wandb, log_artifacts

    loggers = list(loggers)

    for lg in loggers:
        if is_tensorboard(lg):
            writer = lg.experiment
            for name, (fig, _) in figures.items():
                writer.add_figure(f"plots/{name}", fig, global_step=step or 0, close=False)
            writer.flush()
        elif is_wandb(lg):
            for name, (_, path) in figures.items():
                lg.log_image(key=f"plots/{name}", images=[str(path)], step=step)
    log_artifacts(loggers, [path for _, path in figures.values()], folder="plots")  # MLflow: the PNGs


# -- the whole set ----------------------------------------------------------
def _get(obj: Any, key: str, default: Any = None) -> Any:
    if obj is None:
        return default
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def write_run_plots(
    run_dir: str | Path,
    summary: Mapping[str, Any],
    outputs: Mapping[str, Mapping[str, torch.Tensor]],
    stats: Any,
    loggers: Iterable[Any] = (),
    step: int | None = None,
) -> list[Path]:
    """Write the run's figures under ``<run_dir>/plots/`` and send them to TensorBoard/wandb loggers.

    Args:
        run_dir: the run directory.
        summary: the dict written to ``summary.json`` (``test``, ``posthoc`` and ``class_counts`` are read).
        outputs: ``task.outputs``: split -> ``{"features", "logits", "targets"}`` tensors.
        stats: the data module's ``DataStats`` (or a mapping with ``task``,
            ``num_classes``, ``class_counts``, ``class_names``).
        loggers: the run's Lightning loggers; TensorBoard and wandb get the figures.
        step: global step to log the figures at.

    Returns:
        the PNG paths written, in a fixed order.
    """
    import matplotlib

    task = _get(stats, "task", summary.get("task"))
    if task == SEGMENTATION:
        return []  # the overlay grid belongs to the segmentation task
    num_classes = int(_get(stats, "num_classes", 0) or len(summary.get("class_names") or []))
    names = list(_get(stats, "class_names", None) or summary.get("class_names") or range(num_classes))
    counts = _get(stats, "class_counts", None) or summary.get("class_counts")
    label = " / ".join(str(summary[k]) for k in ("data", "loss") if summary.get(k))
    suffix = f" ({label})" if label else ""

    out_dir = Path(run_dir) / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    figures: dict[str, tuple[Figure, Path]] = {}
    test = outputs.get("test") if outputs else None

    with matplotlib.rc_context(FONT):
        if test is not None and task in (MULTICLASS, BINARY):
            cm = confusion_matrix(test["logits"], test["targets"], task, num_classes)
            figures["confusion_matrix"] = (
                plot_confusion(cm, names, counts, f"Confusion matrix, test, row-normalised{suffix}"),
                out_dir / "confusion_matrix.png",
            )
        raw_recall = (summary.get("test") or {}).get("per_class_recall")
        if counts is not None and raw_recall:
            panels = [("raw model", raw_recall)]
            for name, res in (summary.get("posthoc") or {}).items():
                if isinstance(res, Mapping) and res.get("per_class_recall"):
                    params = ", ".join(f"{k}={v}" for k, v in res.items() if k in ("tau", "threshold"))
                    panels.append((f"post-hoc {name}" + (f" ({params})" if params else ""), res["per_class_recall"]))
            fig = plot_recall_vs_frequency(counts, names, panels)
            fig.suptitle(f"Per-class test recall against training frequency{suffix}", fontsize=13)
            figures["recall_vs_frequency"] = (fig, out_dir / "recall_vs_frequency.png")
        if test is not None and task in CLASSIFICATION:
            logits, targets = test["logits"].cpu(), test["targets"].cpu()
            conf, correct = calibration_inputs(logits, targets, task)
            ece = expected_calibration_error(logits, targets, task)
            figures["reliability"] = (
                plot_reliability(conf, correct, ece, f"Reliability, test, raw model{suffix}", task != MULTICLASS),
                out_dir / "reliability.png",
            )
        if test is not None and task == BINARY:
            threshold = None
            for res in (summary.get("posthoc") or {}).values():
                if isinstance(res, Mapping) and isinstance(res.get("threshold"), (int, float)):
                    threshold = float(res["threshold"])
            figures["pr_curve"] = (
                plot_pr_curve(test["logits"], test["targets"], f"Precision-recall, test{suffix}", threshold),
                out_dir / "pr_curve.png",
            )
        for fig, path in figures.values():
            fig.savefig(path, dpi=DPI)
        send_to_loggers(figures, loggers, step)
    return [path for _, path in figures.values()]


def png_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of a PNG read from its header; raises ValueError when it is not a PNG."""
    data = Path(path).read_bytes()[:24]
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError(f"{path}: not a PNG file")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


__all__ = ["write_run_plots", "confusion_matrix", "png_size"]
