"""The LightningModule that trains any backbone with any registered loss."""

from __future__ import annotations

from typing import Any, Callable

import lightning as L
import torch
from torch import Tensor, nn

from imbal.data.stats import DataStats
from imbal.guards import NonFiniteGuard
from imbal.kinds import BINARY
from imbal.metrics import build_metrics
from imbal.models.heads import build_head


def gather_outputs(local: dict[str, Tensor]) -> dict[str, Tensor]:
    """Concatenate every rank's eval outputs (unequal sizes allowed) so post-hoc sees the whole split.

    ``all_gather_object`` rather than Lightning's ``all_gather``: the unpadded
    eval sampler gives ranks different numbers of samples.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local
    everything: list = [None] * dist.get_world_size()
    dist.all_gather_object(everything, local)
    keys = [k for k in ("features", "logits", "targets") if all(k in d for d in everything if d)]
    parts = [d for d in everything if d]
    return {k: torch.cat([d[k] for d in parts]) for k in keys} if parts else {}


class ImbalanceTask(L.LightningModule):
    """One LightningModule for ``multiclass``, ``binary`` and ``multilabel`` (shapes in imbal.kinds and docs/design.md).

    Args:
        backbone: maps inputs to features ``[N, D]`` and has ``out_features``.
        loss: a registered loss; its ``head`` attribute (``linear`` or
            ``cosine``) picks the classifier layer, its optional ``set_epoch``
            is called at the start of every training epoch.
        stats: the data module's :class:`DataStats`.
        optimizer: a partial (``_partial_: true``) taking ``params``.
        scheduler: optional partial taking ``optimizer``; stepped per epoch.
        guard: checks each training loss for NaN/inf (:class:`imbal.guards.NonFiniteGuard`).
    """

    def __init__(
        self,
        backbone: nn.Module,
        loss: nn.Module,
        stats: DataStats,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        guard: "NonFiniteGuard | None" = None,
    ):
        super().__init__()
        self.backbone = backbone
        # A backbone that produces logits itself (a U-Net: [N, C, H, W]) gets no head.
        self.outputs_logits = bool(getattr(backbone, "outputs_logits", False))
        self.head = (
            nn.Identity()
            if self.outputs_logits
            else build_head(getattr(loss, "head", "linear"), backbone.out_features, stats.num_outputs)
        )
        self.loss_fn = loss
        # A cosine head outputs cos(theta) in [-1, 1]; margin losses scale it by s only
        # inside the loss. Evaluation (metrics, calibration, post-hoc) sees s * cos, the
        # logits the loss trained (without the margin), not the unscaled cosines.
        self.eval_logit_scale = float(getattr(loss, "s", 1.0)) if getattr(loss, "head", "linear") == "cosine" else 1.0
        self.stats = stats
        self.task_kind = stats.task
        self.guard = guard
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.val_metrics = build_metrics(stats)
        self.test_metrics = build_metrics(stats)
        self.results: dict[str, dict] = {}
        self._epoch_loss_sum = torch.zeros(())
        self._epoch_loss_count = 0
        # Outputs of the last val/test epoch (features, logits, targets on CPU)
        # for post-hoc corrections; classification only (masks are too big).
        self.keep_outputs = not self.outputs_logits
        self.outputs: dict[str, dict[str, Tensor]] = {}
        self._buffers_out: dict[str, list[tuple[Tensor, Tensor, Tensor]]] = {}

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(features, logits); features is the backbone output (the logits for a U-Net)."""
        feats = self.backbone(x)
        logits = self.head(feats)
        if self.task_kind == BINARY and logits.ndim == 2:
            logits = logits.squeeze(-1)
        return feats, logits

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_features(x)[1]

    # -- training -------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        self.on_train_epoch_start_reset()
        set_epoch = getattr(self.loss_fn, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(self.current_epoch)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor | None:
        x, y = batch
        logits = self(x)
        loss = self.loss_fn(logits, y)
        if self.guard is not None and not self.guard.check(
            loss, logits=logits, batch=batch, batch_idx=batch_idx, global_step=self.global_step,
            distributed=self.trainer.world_size > 1,
        ):
            return None  # Lightning skips the optimiser step for this batch
        # Summed here, logged once per epoch (on_train_epoch_end): Lightning's per-step
        # self.log costs ~1 ms of bookkeeping a step (bench/overhead.py), this costs nothing.
        n = len(y)
        self._epoch_loss_sum = self._epoch_loss_sum + loss.detach().float() * n
        self._epoch_loss_count += n
        return loss

    def on_train_epoch_start_reset(self) -> None:
        self._epoch_loss_sum = torch.zeros((), device=self.device)
        self._epoch_loss_count = 0

    def on_train_epoch_end(self) -> None:
        if self._epoch_loss_count:
            mean = self._epoch_loss_sum / self._epoch_loss_count
            self.log("train/loss", mean, prog_bar=True, sync_dist=self.trainer.world_size > 1)

    # -- evaluation -----------------------------------------------------
    def _eval_step(self, split: str, batch: tuple[Tensor, ...], metrics) -> None:
        # segmentation evaluation batches carry a third item (true instance labels) for the metrics
        x, y, *extra = batch
        feats, logits = self.forward_features(x)
        logits = logits.detach() * self.eval_logit_scale
        metrics.update(logits, y, *extra)
        if self.keep_outputs:
            self._buffers_out.setdefault(split, []).append((feats.detach().cpu(), logits.cpu(), y.detach().cpu()))

    def validation_step(self, batch, batch_idx):
        self._eval_step("val", batch, self.val_metrics)

    def test_step(self, batch, batch_idx):
        self._eval_step("test", batch, self.test_metrics)

    def on_validation_epoch_start(self) -> None:
        self._buffers_out.pop("val", None)

    def on_test_epoch_start(self) -> None:
        self._buffers_out.pop("test", None)

    def _eval_epoch_end(self, split: str, metrics) -> None:
        result = metrics.compute()  # torchmetrics syncs across ranks here
        metrics.reset()
        parts = self._buffers_out.pop(split, [])
        if self.keep_outputs:
            local = {}
            if parts:
                f, lg, t = zip(*parts)
                local = {"features": torch.cat(f), "logits": torch.cat(lg), "targets": torch.cat(t)}
            self.outputs[split] = gather_outputs(local)
            if self.outputs[split]:
                result["num_samples"] = int(len(self.outputs[split]["targets"]))
        self.results[split] = result
        logged = {f"{split}/{k}": float(v) for k, v in result.items() if isinstance(v, (int, float))}
        for i, r in enumerate(result.get("per_class_recall", [])):
            logged[f"{split}/recall_c{i}"] = r
        # Already global values: no further sync.
        self.log_dict(logged, prog_bar=False, sync_dist=False)
        self.log(f"{split}/bal_acc", result["balanced_accuracy"], prog_bar=True, sync_dist=False)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val", self.val_metrics)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test", self.test_metrics)

    # -- optimisation ---------------------------------------------------
    def configure_optimizers(self):
        opt = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer=opt), "interval": "epoch"}}
