"""The LightningModule that trains any backbone with any registered loss."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import lightning as L
import torch
from torch import Tensor, nn

from imbal.data.stats import DataStats
from imbal.guards import NonFiniteGuard
from imbal.kinds import BINARY, SEGMENTATION
from imbal.metrics import build_metrics
from imbal.models.heads import build_head
from imbal.optim import pass_loss


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


def gather_records(local: list) -> list:
    """Every rank's per-image segmentation records, rank after rank (as :func:`gather_outputs`)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local
    everything: list = [None] * dist.get_world_size()
    dist.all_gather_object(everything, local)
    return [r for part in everything for r in (part or [])]


class ImbalanceTask(L.LightningModule):
    """One LightningModule for ``multiclass``, ``binary`` and ``multilabel`` (shapes in imbal.kinds and docs/design.md).

    Args:
        backbone: maps inputs to features ``[N, D]`` and has ``out_features``.
        loss: a registered loss; its ``head`` attribute (``linear`` or
            ``cosine``) picks the classifier layer, its optional ``set_epoch``
            is called at the start of every training epoch.
        stats: the data module's :class:`DataStats`.
        optimizer: a partial (``_partial_: true``) taking ``params``.
        scheduler: optional partial taking ``optimizer`` (and ``total_steps``, the trainer's
            estimated optimiser steps, when it names it); stepped every ``scheduler_interval``.
        guard: checks each training loss for NaN/inf (:class:`imbal.guards.NonFiniteGuard`).
        frozen_modules: names of frozen submodules (``model.freeze``) kept in eval mode while training.
        backbone_lr_mult, norm_bias_decay, scheduler_interval: the optimizer node's own keys
            (imbal/models/finetune.py): backbone lr = lr * mult, no decay on norms/biases when
            false, ``epoch`` | ``step``.
        lr_base_batch: the optimizer node's own key: when set, every group's lr is scaled by
            ``global batch / lr_base_batch`` (:meth:`lr_scale`); None leaves it as written.
    """

    def __init__(
        self,
        backbone: nn.Module,
        loss: nn.Module,
        stats: DataStats,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        guard: "NonFiniteGuard | None" = None,
        *,
        frozen_modules: Sequence[str] = (),
        backbone_lr_mult: float = 1.0,
        norm_bias_decay: bool = True,
        scheduler_interval: str = "epoch",
        lr_base_batch: int | None = None,
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
        self.frozen_modules = list(frozen_modules)
        self.backbone_lr_mult = float(backbone_lr_mult)
        self.norm_bias_decay = bool(norm_bias_decay)
        self.scheduler_interval = scheduler_interval
        self.lr_base_batch = lr_base_batch
        #: what lr_base_batch did (per-device batch, world size, accumulation, factor, lrs), once built
        self.lr_scaling: dict[str, Any] | None = None
        self.val_metrics = build_metrics(stats)
        self.test_metrics = build_metrics(stats)
        self.results: dict[str, dict] = {}
        self._epoch_loss_sum = torch.zeros(())
        self._epoch_loss_count = 0
        # Outputs of the last val/test epoch (features, logits, targets on CPU)
        # for post-hoc corrections; classification only (masks are too big).
        self.keep_outputs = self.task_kind != SEGMENTATION
        self.outputs: dict[str, dict[str, Tensor]] = {}
        self._buffers_out: dict[str, list[tuple[Tensor, Tensor, Tensor]]] = {}
        # Segmentation: per-image RLE records of the thresholded mask and the true instances
        # (imbal.runner.predictions.mask_records) of the last val/test run outside fit.
        self.mask_predictions: dict[str, list[dict]] = {}
        self._masks_out: dict[str, list[dict]] = {}

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(features, logits); features is the backbone output (the logits for a U-Net)."""
        feats = self.backbone(x)
        logits = self.head(feats)
        if self.task_kind == BINARY and logits.ndim == 2:
            logits = logits.squeeze(-1)
        return feats, logits

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_features(x)[1]

    def predict_step(self, batch, batch_idx: int = 0, dataloader_idx: int = 0) -> Tensor:
        """Logits of a batch (``x`` or ``(x, y, ...)``) as the metrics see them (``eval_logit_scale``
        applied), so ``trainer.predict(task, dataloaders=...)`` returns what evaluation scored."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x).detach() * self.eval_logit_scale

    # -- rebuilding from a checkpoint -------------------------------------
    def set_rebuild_info(self, config: dict, stats: dict) -> None:
        """Record the resolved run config and ``DataStats.to_dict()`` as hyper-parameters (plain data),
        so every checkpoint can rebuild this task (:meth:`load_from_checkpoint`)."""
        self.save_hyperparameters({"config": config, "stats": stats}, logger=False)

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, map_location=None, hparams_file=None, strict=None,
                             weights_only=None, *, config: dict | None = None, stats: dict | None = None,
                             trust_config: bool | None = None, **kwargs) -> "ImbalanceTask":
        """The task of a checkpoint with its trained weights, rebuilt from the config and data stats
        the checkpoint records (``set_rebuild_info``); ``config``/``stats`` stand in for a checkpoint
        that records none.  Always loaded with ``weights_only=True`` (the checkpoint holds plain data),
        whatever ``weights_only`` says.  The recorded config is data, not code: only imbal's models and
        registered losses are built (:mod:`imbal.runner.rebuild`) unless ``trust_config=True``."""
        from imbal.errors import ImbalError
        from imbal.models.finetune import load_strict
        from imbal.runner.rebuild import read_checkpoint, rebuild_task

        if hparams_file is not None or kwargs:
            extra = "hparams_file" if hparams_file is not None else sorted(kwargs)[0]
            raise ImbalError(f"ImbalanceTask.load_from_checkpoint: '{extra}' is not supported; "
                             "the task is rebuilt from the config and stats in the checkpoint")
        ckpt = read_checkpoint(checkpoint_path)
        hp = ckpt.get("hyper_parameters") or {}
        config, stats = hp.get("config", config), hp.get("stats", stats)
        if config is None or stats is None:
            raise ImbalError(f"checkpoint {checkpoint_path} records no config and data stats; "
                             "pass config= and stats= (a run dir's summary.json config and data_stats.json)")
        stats_obj = stats if isinstance(stats, DataStats) else DataStats.from_dict(stats, where=str(checkpoint_path))
        task = rebuild_task(config, stats_obj, where=f"checkpoint {checkpoint_path}", trust_config=trust_config)
        if strict is False:
            task.load_state_dict(ckpt["state_dict"], strict=False)
        else:
            load_strict(task, ckpt["state_dict"], key="checkpoint", path=str(checkpoint_path),
                        what="the model its recorded config builds (expected a checkpoint of that run)")
        if map_location is not None and not callable(map_location) and not isinstance(map_location, dict):
            task.to(map_location)
        return task

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Before Lightning loads a checkpoint's weights (``resume=``): one line when they do not fit."""
        from imbal.models.finetune import load_strict

        state = checkpoint.get("state_dict")
        sharded = type(getattr(self._trainer, "strategy", None)).__name__ in ("FSDPStrategy", "DeepSpeedStrategy")
        if self.strict_loading and isinstance(state, dict) and not sharded:
            own = self.state_dict()
            if set(own) != set(state) or any(tuple(state[k].shape) != tuple(v.shape) for k, v in own.items()):
                path = getattr(self._trainer, "ckpt_path", None) or "(the checkpoint being loaded)"
                load_strict(self, state, key="checkpoint", path=str(path),
                            what="the model this config builds (expected a checkpoint of the same model and data)")

    # -- training -------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        self.on_train_epoch_start_reset()
        set_epoch = getattr(self.loss_fn, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(self.current_epoch)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor | None:
        x, y = batch
        mixing = getattr(self, "mixing", None)  # imbal/mixing: mixup, cutmix, remix, manifold mixup
        if mixing is not None and mixing.active(self.current_epoch):
            loss, logits = mixing.loss(self, x, y)
        else:
            logits = self(x)
            loss = self.loss_fn(logits, y)
        if not getattr(self, "_loss_checked", False):  # the first batch: a plugin's loss that cannot train
            from imbal.losses.registry import check_loss_output

            check_loss_output(self.loss_fn, loss)
            self._loss_checked = True
        if self.guard is not None and not self.guard.check(
            loss, logits=logits, batch=batch, batch_idx=batch_idx, global_step=self.global_step,
            distributed=self.trainer.world_size > 1,
        ):
            return None  # Lightning skips the optimiser step for this batch
        # Summed here, logged once per epoch (on_train_epoch_end): Lightning's per-step
        # self.log costs ~1 ms of bookkeeping a step (bench/overhead.py), this costs nothing.
        step_loss, record = pass_loss(self, logits, y, loss)  # SAM/ImbSAM: this closure call's loss
        if record:
            n = len(y)
            self._epoch_loss_sum = self._epoch_loss_sum + loss.detach().float() * n
            self._epoch_loss_count += n
        return step_loss

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
        elif self._records_masks():
            from imbal.runner.predictions import mask_records

            self._masks_out.setdefault(split, []).extend(
                mask_records(logits, y, extra[0] if extra else None, getattr(metrics, "threshold", 0.5)))

    def _records_masks(self) -> bool:
        """Segmentation masks are recorded by trainer.validate/test (the run's final evaluation), not in fit."""
        trainer = self._trainer
        return self.task_kind == SEGMENTATION and (trainer is None or trainer.state.fn != "fit")

    def validation_step(self, batch, batch_idx):
        self._eval_step("val", batch, self.val_metrics)

    def test_step(self, batch, batch_idx):
        self._eval_step("test", batch, self.test_metrics)

    def on_validation_epoch_start(self) -> None:
        self._buffers_out.pop("val", None)
        self._masks_out.pop("val", None)

    def on_test_epoch_start(self) -> None:
        self._buffers_out.pop("test", None)
        self._masks_out.pop("test", None)

    def _eval_epoch_end(self, split: str, metrics) -> None:
        result = metrics.compute()  # torchmetrics syncs across ranks here
        metrics.reset()
        parts = self._buffers_out.pop(split, [])
        if self._records_masks():
            self.mask_predictions[split] = gather_records(self._masks_out.pop(split, []))
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
        import inspect

        from imbal.models.finetune import body, param_groups

        groups = param_groups(self, body(self.backbone), backbone_lr_mult=self.backbone_lr_mult,
                              norm_bias_decay=self.norm_bias_decay)
        opt = self.optimizer_factory(params=groups)
        scale = self.lr_scale()
        for group in opt.param_groups:  # the optimiser filled in its lr; the backbone's is scaled
            group["lr"] = group["lr"] * group.get("lr_mult", 1.0) * scale
        if self.lr_scaling is not None:
            self._record_lr_scaling(opt)
        if self.scheduler_factory is None:
            return opt
        extra = {}
        if "total_steps" in inspect.signature(self.scheduler_factory).parameters and "total_steps" not in getattr(
            self.scheduler_factory, "keywords", {}
        ):
            extra["total_steps"] = self.trainer.estimated_stepping_batches
        scheduler = self.scheduler_factory(optimizer=opt, **extra)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}

    def lr_scale(self) -> float:
        """``global batch / lr_base_batch`` (1.0 when ``lr_base_batch`` is None); the global batch is the
        data module's per-device ``batch_size`` x ``trainer.world_size`` (devices x nodes) x
        ``accumulate_grad_batches``, read from the running Trainer."""
        if self.lr_base_batch is None:
            return 1.0
        from imbal.errors import ImbalError

        trainer = self.trainer
        per_device = getattr(trainer.datamodule, "batch_size", None)
        if per_device is None:  # fitted with bare dataloaders: the config's batch
            per_device = ((self.hparams.get("config") or {}).get("data") or {}).get("batch_size")
        if not isinstance(per_device, int) or isinstance(per_device, bool) or per_device < 1:
            raise ImbalError(f"optimizer.lr_base_batch={self.lr_base_batch}: expected a data module with a "
                             f"per-device batch_size to scale the lr by, got {per_device!r}")
        world, accumulate = int(trainer.world_size), int(trainer.accumulate_grad_batches)
        global_batch = per_device * world * accumulate
        factor = global_batch / self.lr_base_batch
        self.lr_scaling = {"lr_base_batch": self.lr_base_batch, "per_device_batch": per_device, "world_size": world,
                           "accumulate_grad_batches": accumulate, "global_batch": global_batch, "factor": factor}
        return factor

    def _record_lr_scaling(self, opt) -> None:
        """The effective lrs in ``lr_scaling`` and the checkpoint's hyper-parameters; one info line on rank 0."""
        import logging

        info = self.lr_scaling
        info["lr"] = {str(g.get("name", i)): g["lr"] for i, g in enumerate(opt.param_groups)}
        self.hparams["lr_scaling"] = dict(info)
        if self.trainer.is_global_zero:
            lrs = ", ".join(f"{k} {v:g}" for k, v in info["lr"].items())
            logging.getLogger("imbal").info(
                f"lr scaled x{info['factor']:g} (global batch {info['global_batch']} = {info['per_device_batch']} "
                f"x {info['world_size']} processes x {info['accumulate_grad_batches']} accumulated, "
                f"optimizer.lr_base_batch={info['lr_base_batch']}): {lrs}")

    # -- frozen parts (model.freeze) ------------------------------------------
    def _frozen_to_eval(self) -> None:
        for name in self.frozen_modules:
            self.get_submodule(name).eval()

    def on_train_start(self) -> None:
        # Lightning keeps the modes it finds (and restores them after each validation); switched
        # here rather than at construction, where Lightning would warn about eval-mode modules
        self._frozen_to_eval()

    def train(self, mode: bool = True) -> "ImbalanceTask":
        """The train/eval switch; frozen modules stay in eval mode (BatchNorm statistics unchanged)."""
        super().train(mode)
        if mode:
            self._frozen_to_eval()
        return self
