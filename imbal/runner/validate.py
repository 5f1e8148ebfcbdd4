"""One-line checks of a composed config's values, before the run reads any file or builds anything.

``validate_config(cfg)`` (called first thing by ``train()``) walks :data:`RULES`, a table of
``(key, test, expected)``: a present key whose value fails ``test`` is refused as
``<key>=<value>: expected <expected>``.  A few checks need more than one key or the machine
(``trainer.max_epochs`` with ``trainer.max_steps``, ``trainer.accelerator`` without a GPU) and
have their own functions; the post-hoc corrections' parameters are checked by
:func:`imbal.posthoc.build` and ``optimized_metric`` by its form.  ``check_before_fit(cfg, stats)``
repeats what depends on the data (the metric's task, corrections registered by a config's modules)
once the data is set up, still before any training.
"""

from __future__ import annotations

import difflib
import os
import math
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from imbal.data import augment
from imbal.errors import ImbalError
from imbal.runner.trainer_options import compile_targets

_ABSENT = object()
#: ``mixing=`` methods (imbal/mixing; spelled here too so validating imports no torch)
MIXING_METHODS = ("none", "mixup", "cutmix", "remix", "manifold_mixup")
#: ``stage=`` of a two-stage run (imbal/runner/stages.py STAGES; spelled here too: no torch import)
STAGES = ("crt", "lws", "finetune")

#: Scalar metrics of the raw results a run records (``summary.json`` ``val``/``test``), by task family.
CLASSIFICATION_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "log_loss", "ece", "num_samples",
                          "many_shot_accuracy", "medium_shot_accuracy", "few_shot_accuracy",
                          # multilabel only (imbal/metrics/multilabel.py MULTILABEL_METRICS)
                          "mAP", "micro_f1", "head_ap", "medium_ap", "tail_ap")
SEGMENTATION_METRICS = ("dice", "iou", "precision", "recall", "accuracy", "balanced_accuracy", "airbus_f2",
                        "image_accuracy")
METRICS = tuple(dict.fromkeys(CLASSIFICATION_METRICS + SEGMENTATION_METRICS))
SPLITS = ("val", "test")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int_at_least(lo: int, hi: int | None = None) -> Callable[[Any], bool]:
    return lambda v: _is_int(v) and v >= lo and (hi is None or v <= hi)


def _number_at_least(lo: float) -> Callable[[Any], bool]:
    return lambda v: _is_number(v) and v >= lo


def _devices(v: Any) -> bool:
    """Lightning's ``devices``: a count >= 1, -1 (all), 'auto', '0,1' / '2' / '-1', or a list of indices."""
    if _is_int(v):
        return v >= 1 or v == -1
    if isinstance(v, str):
        s = v.strip()
        parts = [p.strip() for p in s.split(",") if p.strip()]
        if s == "auto" or s == "-1":
            return True
        return bool(parts) and all(p.isdigit() for p in parts) and (len(parts) > 1 or s.endswith(",") or int(s) >= 1)
    if isinstance(v, (list, tuple)):
        return bool(v) and all(_is_int(i) and i >= 0 for i in v)
    return False


def precisions() -> list[str]:
    """Every ``trainer.precision`` Lightning accepts, as text."""
    from typing import get_args

    from lightning.fabric.plugins.precision.precision import (
        _PRECISION_INPUT_INT,
        _PRECISION_INPUT_STR,
        _PRECISION_INPUT_STR_ALIAS,
    )

    values = get_args(_PRECISION_INPUT_STR) + get_args(_PRECISION_INPUT_STR_ALIAS) + get_args(_PRECISION_INPUT_INT)
    return list(dict.fromkeys(str(v) for v in values))


#: (key, test, what is expected); a key the config lacks, or null, is not checked
RULES: list[tuple[str, Callable[[Any], bool], str]] = [
    ("seed", _int_at_least(0, 2**32 - 1), "an integer in [0, 4294967295]"),
    ("data.batch_size", _int_at_least(1), "an integer >= 1"),
    ("data.num_workers", _int_at_least(0), "an integer >= 0 (0 loads in the main process)"),
    ("data.n_max", _int_at_least(1), "an integer >= 1 (training samples of the head class; 0 trains on nothing)"),
    ("data.max_length", _int_at_least(1), "an integer >= 1 (tokens kept per text; 0 trains on padding)"),
    ("data.augment", augment.valid_augment, augment.EXPECTED),
    ("data.cutout", _int_at_least(1), augment.CUTOUT_EXPECTED),
    ("data.randaugment_n", _int_at_least(1), augment.N_EXPECTED),
    ("data.randaugment_m", _int_at_least(0, 30), augment.M_EXPECTED),
    # data=split_list (imbal/data/split_list.py)
    ("data.resize_size", _int_at_least(8), "an integer >= 8 (the evaluation resize's short side, >= data.image_size)"),
    ("data.cache_size", _int_at_least(8), "null (no resize cache) or an integer >= 8 (the cached short side)"),
    ("data.color_jitter", lambda v: _is_number(v) and 0 <= v <= 1, "null or a number in [0, 1] (ColorJitter's "
                                                                   "brightness, contrast and saturation)"),
    ("data.decode", lambda v: v in ("cpu", "gpu"), "cpu or gpu (torchvision.io.decode_jpeg on the CUDA device)"),
    ("data.check_images", lambda v: isinstance(v, bool), "true (probe every image's header at setup) or false"),
    ("optimizer.optim.lr", _number_at_least(0), "a finite number >= 0"),
    ("optimizer.optim.weight_decay", _number_at_least(0), "a finite number >= 0"),
    ("optimizer.backbone_lr_mult", _number_at_least(0), "a finite number >= 0"),
    ("optimizer.lr_base_batch", _int_at_least(1), "null or an integer >= 1 (the global batch the lr is given for)"),
    ("optimizer.optim.base", lambda v: v in ("sgd", "adamw"), "sgd or adamw (the base optimizer of SAM / ImbSAM)"),
    ("optimizer.optim.rho", lambda v: _is_number(v) and v > 0, "a finite number > 0 (SAM's perturbation radius)"),
    ("optimizer.optim.adaptive", lambda v: isinstance(v, bool), "true (ASAM) or false"),
    ("optimizer.optim.tail_max_count", _int_at_least(0), "an integer >= 0 (tail classes have fewer training samples)"),
    ("optimizer.optim.momentum", _number_at_least(0), "a finite number >= 0"),
    ("regularizer.thresh", lambda v: _is_number(v) and v > 0, "a finite number > 0 (the largest class weight norm)"),
    ("optimizer.scheduler_interval", lambda v: v in ("epoch", "step"), "epoch or step"),
    ("trainer.devices", _devices, "a number of devices >= 1, -1 (all), auto, or a list of device indices"),
    ("trainer.num_nodes", _int_at_least(1), "an integer >= 1"),
    ("trainer.max_steps", lambda v: _is_int(v) and (v >= 1 or v == -1), "an integer >= 1, or -1 (no limit)"),
    ("trainer.accumulate_grad_batches", _int_at_least(1), "an integer >= 1"),
    ("trainer.check_val_every_n_epoch", _int_at_least(1), "an integer >= 1"),
    ("trainer.nan_policy", lambda v: v in ("error", "skip"), "error or skip"),
    ("trainer.nan_max_skips", _int_at_least(0), "an integer >= 0"),
    ("stage.name", lambda v: v in STAGES, "one of " + ", ".join(STAGES)),
    ("stage.shift_bn", lambda v: isinstance(v, bool), "true or false (re-estimate the frozen backbone's BatchNorm)"),
    ("init_from", lambda v: isinstance(v, str) and bool(v.strip()), "a stage-1 run dir or checkpoint path"),
    ("mixing.name", lambda v: v in MIXING_METHODS, "one of " + ", ".join(MIXING_METHODS)),
    ("mixing.alpha", lambda v: _is_number(v) and v > 0, "a finite number > 0 (lam ~ Beta(alpha, alpha))"),
    ("mixing.prob", lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1] (the chance a batch is mixed)"),
    ("mixing.until_epoch", _int_at_least(1), "null (mix every epoch) or an integer >= 1 (mix epochs before it)"),
    ("mixing.pair_sampler", lambda v: v in ("none", "class_balanced"), "none or class_balanced"),
    ("mixing.kappa", _number_at_least(1), "a finite number >= 1 (Remix's class-count ratio)"),
    ("mixing.tau", lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1] (Remix's lam threshold)"),
    ("mixing.stage", _int_at_least(0), "null (a random stage per batch) or an integer >= 0 (0: the input)"),
]


def _shown(value: Any) -> str:
    """A value as it is written on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_shown(v) for v in value) + "]"
    return repr(value) if isinstance(value, str) else str(value)


def refuse(key: str, value: Any, expected: str) -> ImbalError:
    return ImbalError(f"{key}={_shown(value)}: expected {expected}")


def _get(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)
    if isinstance(value, (DictConfig,)) or OmegaConf.is_list(value):
        return OmegaConf.to_container(value, resolve=True)
    return value


def validate_config(cfg: DictConfig) -> None:
    """Refuse the first bad value of ``cfg`` in one line naming the key, the value and what is expected."""
    for key, test, expected in RULES:
        value = _get(cfg, key)
        if value is _ABSENT or value is None:
            continue
        if not test(value):
            raise refuse(key, value, expected)
    trainer = cfg.get("trainer") or {}
    compile_targets(trainer.get("compile"))  # its own one-line message
    check_epochs(trainer)
    check_precision(trainer.get("precision"))
    check_accelerator(trainer.get("accelerator"))
    from imbal.optim.checks import check_optimizer

    check_optimizer(cfg)  # optimizer=sam|imbsam with a trainer setting it cannot run with
    check_airbus_target(cfg)  # before optimized_metric, which data=airbus looks up by data.target
    check_metric_name(cfg.get("optimized_metric"))
    check_posthoc(cfg, strict=False)
    if cfg.get("stage") is not None or cfg.get("init_from") is not None:
        from imbal.runner import stages

        stages.check_config(cfg)  # stage and init_from together, the stage-1 checkpoint readable, same backbone
    augment.check_config(cfg)  # data.augment / cutout / randaugment_* on data that cannot honour them


#: ``data.target`` of ``data=airbus`` (imbal/data/segmentation/presence.py TARGETS; spelled here: no torch import)
AIRBUS_TARGETS = ("mask", "presence")


def check_airbus_target(cfg: DictConfig) -> None:
    """``data=airbus``: ``data.target`` is mask or presence, and presence (whole images) has an image model."""
    data = cfg.get("data") or {}
    if str(data.get("_target_", "")).rpartition(".")[2] != "AirbusDataModule":
        return
    target = _get(cfg, "data.target")
    if target is _ABSENT or target is None:
        return
    if target not in AIRBUS_TARGETS:
        raise refuse("data.target", target, "mask (per-pixel ship masks) or presence (one ship / no-ship label "
                                            "per image)")
    accepts = _get(cfg, "model.accepts")
    if target == "presence" and isinstance(accepts, list) and "image" not in accepts:
        name = _get(cfg, "model.name")
        raise ImbalError(f"data=airbus data.target=presence classifies whole images, but model '{name}' accepts "
                         f"{', '.join(accepts) or 'nothing'}: use an image model, e.g. model=resnet18 or model=timm "
                         f"model.name=resnet34")


def check_epochs(trainer) -> None:
    """``trainer.max_epochs``: >= 1, null (Lightning's default), or -1 when ``max_steps`` bounds the run."""
    value = trainer.get("max_epochs")
    if value is None or trainer.get("fast_dev_run") not in (None, False, 0):
        return  # fast_dev_run runs one epoch whatever max_epochs says
    max_steps = trainer.get("max_steps", -1)
    if _is_int(value) and value >= 1:
        return
    if _is_int(value) and value == -1:
        if _is_int(max_steps) and max_steps >= 1:
            return
        raise refuse("trainer.max_epochs", value, f"an integer >= 1; -1 (no epoch limit) needs trainer.max_steps "
                                                   f">= 1, else the run never ends (trainer.max_steps={max_steps})")
    raise refuse("trainer.max_epochs", value, "an integer >= 1 (a run of fewer epochs trains nothing), "
                                              "or -1 with trainer.max_steps >= 1")


#: Lightning 2's precision values, to pass a good one without importing Lightning (a bad one lists its own)
KNOWN_PRECISIONS = ("16-mixed", "bf16-mixed", "32-true", "64-true", "16-true", "bf16-true", "transformer-engine",
                    "transformer-engine-float16", "16", "32", "64", "bf16")


def check_precision(value: Any) -> None:
    if value is None or (not isinstance(value, bool) and str(value) in KNOWN_PRECISIONS):
        return
    valid = precisions()
    if isinstance(value, bool) or str(value) not in valid:
        raise refuse("trainer.precision", value, f"one of {', '.join(valid)}")


def check_accelerator(value: Any) -> None:
    """A known accelerator name, and for gpu/cuda/mps one this machine has."""
    if value is None:
        return
    name = str(value).lower()
    if name not in ("auto", "cpu", "gpu", "cuda", "mps", "tpu"):  # Lightning's registry, imported only here
        from lightning.pytorch.accelerators import AcceleratorRegistry

        valid = sorted({"auto", "gpu", *AcceleratorRegistry.available_accelerators()})
        if name not in valid:
            raise refuse("trainer.accelerator", value, f"one of {', '.join(valid)}")
    if name not in ("gpu", "cuda", "mps"):
        return
    import torch

    if name in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ImbalError(f"trainer.accelerator={_shown(value)}: no CUDA GPU on this machine (torch.cuda.is_available() "
                         "is False); use trainer.accelerator=cpu or auto")
    mps = getattr(torch.backends, "mps", None)
    if name == "mps" and not (mps is not None and mps.is_available()):
        raise ImbalError(f"trainer.accelerator={_shown(value)}: MPS is not available on this machine; "
                         "use trainer.accelerator=cpu or auto")


def check_metric_name(metric: Any, names: tuple[str, ...] = METRICS, task: str | None = None) -> None:
    """``optimized_metric`` is ``val/<metric>`` or ``test/<metric>`` with a scalar metric the run records."""
    if metric is None:
        return
    split, _, name = str(metric).partition("/")
    if split in SPLITS and name in names:
        return
    choices = [f"{s}/{n}" for s in SPLITS for n in names]
    # of the closest three, the one sharing the longest start (val/bal_acc: balanced_accuracy, not tail_ap)
    close = difflib.get_close_matches(str(metric), choices, n=3)
    best = max(close, key=lambda c: len(os.path.commonprefix([c, str(metric)])), default=None)
    hint = f"; did you mean {best}?" if best else ""
    what = f"metrics of a {task} task" if task else "metrics"
    raise refuse("optimized_metric", metric, f"val/<metric> or test/<metric>, <metric> one of the {what}: "
                                             f"{', '.join(names)}{hint}")


def check_posthoc(cfg: DictConfig, *, strict: bool) -> None:
    """Every enabled post-hoc correction and its parameters (``strict``: an unknown name too)."""
    from imbal import posthoc

    node = cfg.get("posthoc")
    posthoc.build(OmegaConf.to_container(node, resolve=True) if node else {}, strict=strict)


def check_before_fit(cfg: DictConfig, stats) -> None:
    """What depends on the data or on modules the parts imported, once they are built and before ``fit``.

    A correction registered by a module a config's ``_target_`` imports exists only now; the metric a
    sweeper reads must be one this data's task records.
    """
    from imbal.kinds import BINARY, MULTICLASS, MULTILABEL, SEGMENTATION

    check_posthoc(cfg, strict=True)
    if stats.task == SEGMENTATION:
        names = SEGMENTATION_METRICS
    else:
        from imbal.metrics.shots import shot_groups

        groups = tuple(shot_groups(stats.class_counts)) if stats.class_counts is not None and stats.task == MULTICLASS else ()
        names = tuple(n for n in CLASSIFICATION_METRICS if not n.endswith("_shot_accuracy") or n in groups)
        if stats.task not in (MULTICLASS, BINARY):
            names = tuple(n for n in names if n != "ece")
        from imbal.metrics.multilabel import MULTILABEL_METRICS, ap_groups

        kept = ("mAP", "micro_f1", *ap_groups(stats.class_counts)) if stats.task == MULTILABEL else ()
        names = tuple(n for n in names if n not in MULTILABEL_METRICS or n in kept)
    check_metric_name(cfg.get("optimized_metric"), names, stats.task)
