"""After training: post-hoc corrections scored on the best model's test outputs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:
    from torch import Tensor


def evaluate_posthoc(cfg: DictConfig, task, stats) -> tuple[dict[str, dict], dict[str, Tensor]]:
    """Score every enabled post-hoc correction on the test split of the best model.

    Returns (correction name -> test metrics plus what it chose, correction name -> the corrected
    test logits that were scored); both empty when the task kept no val/test outputs.
    """
    from imbal import posthoc as ph
    from imbal.metrics import ClassificationMetrics

    if "val" not in task.outputs or "test" not in task.outputs:
        return {}, {}
    val, test = task.outputs["val"], task.outputs["test"]
    ctx = ph.PosthocContext(
        stats=stats,
        val_logits=val["logits"],
        val_targets=val["targets"],
        test_logits=test["logits"],
        test_targets=test["targets"],
        val_features=val["features"],
        test_features=test["features"],
        head=task.head,
    )
    posthoc_cfg = OmegaConf.to_container(cfg.get("posthoc"), resolve=True) if cfg.get("posthoc") else {}
    out = {}
    corrected = ph.apply(posthoc_cfg, ctx, skip_errors=True)
    task.posthoc_skipped = ctx.info.get("skipped", {})
    for name, logits in corrected.items():
        metrics = ClassificationMetrics(stats)
        metrics.update(logits, test["targets"])
        out[name] = {**metrics.compute(), **ctx.info.get(name, {})}
    return out, corrected
