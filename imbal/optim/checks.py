"""Trainer settings SAM and ImbSAM cannot honour, refused in one line before training (no torch import).

* ``trainer.accumulate_grad_batches`` > 1: Lightning calls the closure without a step on the
  accumulating batches, so the second gradient would see only the last batch.
* ``trainer.precision`` 16-mixed / 16: the GradScaler steps the optimizer without the closure.
* ``trainer.gradient_clip_algorithm=value`` with SAM: clipping each coordinate changes the direction
  of the perturbation (norm clipping does not); ImbSAM: any clipping (Lightning clips ``g_h`` and
  ``g_t'`` separately, not their sum).
* ``mixing`` other than none with ImbSAM: it splits the batch into head and tail classes by its
  unmixed targets.  SAM itself mixes fine: the mixer reuses its draw when the closure calls the
  training step again on the same batch, so both gradients see one mixed batch.
* ``trainer.strategy`` fsdp / deepspeed: sharded parameters, the perturbation's norm would be a shard's.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from imbal.errors import ImbalError
from imbal.optim import SAM_TARGETS

SCALED_PRECISIONS = ("16-mixed", "16")


def _get(cfg: DictConfig, key: str, default: Any = None) -> Any:
    value = OmegaConf.select(cfg, key, default=default, throw_on_missing=False)
    return default if value is None else value


def base_keys_error(base: str, momentum: Any, nesterov: Any, betas: Any, eps: Any = None) -> str | None:
    """The one line for a key of the other base optimizer (SGD's momentum/nesterov, AdamW's betas/eps)."""
    where = "optimizer.optim"
    if base == "sgd" and (betas is not None or eps is not None):
        key, value = ("betas", list(betas)) if betas is not None else ("eps", eps)
        return (f"{where}.{key}={value}: AdamW's {key}, not used by {where}.base=sgd; "
                f"set {where}.{key}=null (SGD's momentum: {where}.momentum)")
    if base == "adamw" and (momentum is not None or nesterov):
        key, value, off = ("momentum", momentum, "null") if momentum is not None else ("nesterov", "true", "false")
        return (f"{where}.{key}={value}: SGD's {key}, not used by {where}.base=adamw; "
                f"set {where}.{key}={off} (AdamW's betas: {where}.betas)")
    return None


def check_optimizer(cfg: DictConfig) -> None:
    """Refuse a trainer setting optimizer=sam|imbsam cannot run with, naming both keys."""
    name = SAM_TARGETS.get(str(_get(cfg, "optimizer.optim._target_", "")))
    if name is None:
        return
    what = f"optimizer={name} with"
    node = OmegaConf.to_container(cfg.optimizer.optim, resolve=True)
    wrong = base_keys_error(str(node.get("base", "sgd")), node.get("momentum"), node.get("nesterov"), node.get("betas"),
                            node.get("eps"))
    if wrong:
        raise ImbalError(wrong)
    mixing = str(_get(cfg, "mixing.name", "none"))
    if mixing != "none" and "imbsam" in what:
        raise ImbalError(f"{what} mixing={mixing}: ImbSAM splits the batch into head and tail classes by its "
                         "unmixed targets; use mixing=none (or optimizer=sam)")
    accumulate = _get(cfg, "trainer.accumulate_grad_batches", 1)
    if isinstance(accumulate, int) and accumulate > 1:
        raise ImbalError(f"{what} trainer.accumulate_grad_batches={accumulate}: its gradients are taken on one "
                         "batch, at w and at the perturbed w; set trainer.accumulate_grad_batches=1 "
                         "(or a larger data.batch_size)")
    precision = str(_get(cfg, "trainer.precision", "32-true"))
    if precision in SCALED_PRECISIONS:
        raise ImbalError(f"{what} trainer.precision={precision}: the gradient scaler steps the optimizer without "
                         "the closure its second gradient needs; use trainer.precision=bf16-mixed or 32-true")
    clip = _get(cfg, "trainer.gradient_clip_val", 0)
    if isinstance(clip, (int, float)) and clip > 0:
        algorithm = str(_get(cfg, "trainer.gradient_clip_algorithm", "norm"))
        if name == "imbsam":
            raise ImbalError(f"{what} trainer.gradient_clip_val={clip}: Lightning would clip the head and the tail "
                             "gradients separately, not the sum ImbSAM steps with; set trainer.gradient_clip_val=null")
        if algorithm == "value":
            raise ImbalError(f"{what} trainer.gradient_clip_algorithm=value: clipping by value turns the perturbation "
                             "away from the gradient; use trainer.gradient_clip_algorithm=norm")
    strategy = str(_get(cfg, "trainer.strategy", "auto")).lower()
    if strategy.startswith(("fsdp", "deepspeed")):
        raise ImbalError(f"{what} trainer.strategy={strategy}: sharded parameters (the perturbation's norm would be "
                         "one shard's); use trainer.strategy=ddp or auto")
