"""Building a run's parts from its config: data module, backbone, loss, task, callbacks, trainer.

Every part a config names is built here and nowhere else.  The backbone's data-dependent
arguments (``in_shape``, ``num_classes``, ``stats``) are injected by name, as the loss
registry injects a loss's (docs/design.md, "Contracts").
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from imbal.errors import ImbalError

#: Keys of a data/model config node that describe it rather than construct it.
META_KEYS = ("name", "accepts")

#: What a backbone may ask for by naming it in ``__init__`` (like a loss's injected arguments).
MODEL_INJECTABLE = ("in_shape", "num_classes", "stats")


def instantiate(node: DictConfig, _inject: dict[str, Any] | None = None, _raw: tuple[str, ...] = (),
                **kwargs: Any) -> Any:
    """Hydra's instantiate of a node, with imbal's one-line errors.

    A missing mandatory value names its key; an :class:`ImbalError` raised by the constructor
    keeps its own message; ``_inject`` objects (a DataStats) reach the constructor as they are,
    and so do the ``_raw`` keys of the node, as plain data (a ``sampler`` node with a
    ``_target_`` is built by the data module, with its labels, not by Hydra).
    """
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate

    missing = sorted(OmegaConf.missing_keys(node))  # full keys, e.g. "data.path"
    if missing:
        raise ImbalError(f"missing value for {missing[0]}: set it on the command line ({missing[0]}=...)")
    clean = OmegaConf.to_container(node, resolve=True)
    for key in META_KEYS:
        clean.pop(key, None)
    raw = {key: clean.pop(key) for key in _raw if key in clean}
    if raw:
        _inject = {**(_inject or {}), **raw}
    try:
        if _inject:
            # through instantiate's kwargs Hydra would turn objects into plain dicts
            return hydra_instantiate(clean, **kwargs, _convert_="all", _partial_=True)(**_inject)
        return hydra_instantiate(clean, **kwargs, _convert_="all")
    except InstantiationException as exc:
        # Hydra wraps the constructor's error; a user mistake keeps its own one-line message.
        cause = exc.__cause__
        if isinstance(cause, ImbalError):
            raise cause from None
        unknown = _unknown_argument(node, cause)
        if unknown is not None:
            raise unknown from None
        raise
    except TypeError as exc:  # the _inject path calls the constructor itself
        unknown = _unknown_argument(node, exc)
        if unknown is not None:
            raise unknown from None
        raise


def _unknown_argument(node: DictConfig, err: BaseException | None) -> ImbalError | None:
    """``+data.foo=1`` on a class without ``foo``: one line naming the key, not Python's TypeError."""
    import re

    match = re.search(r"unexpected keyword argument '(\w+)'", str(err)) if isinstance(err, TypeError) else None
    if match is None:
        return None
    path = node._get_full_key(None) or "the node"
    return ImbalError(f"{path}.{match.group(1)}: {node.get('_target_')} takes no argument "
                      f"'{match.group(1)}'; remove the key (or fix its spelling)")


def model_injections(model_cfg: DictConfig, stats) -> dict[str, Any]:
    """The data-dependent arguments the backbone class names in its signature."""
    from hydra.utils import get_class

    cls = get_class(model_cfg._target_)
    params = inspect.signature(cls.__init__).parameters
    values = {"in_shape": list(stats.input_shape), "num_classes": stats.num_outputs, "stats": stats}
    return {k: v for k, v in values.items() if k in params and k not in model_cfg}


def build_data(cfg: DictConfig):
    """The data module a config names, checked against the model's modalities and set up."""
    from imbal import config as imbal_config

    datamodule = instantiate(cfg.data, _raw=("sampler",))
    if cfg.data.get("name"):
        datamodule.name = str(cfg.data.name)  # one name for the data in the manifest and the summary
    datamodule.use_distributed_sampler = bool(cfg.trainer.get("use_distributed_sampler", True))
    imbal_config.check_compatible(
        cfg.data.get("name", type(datamodule).__name__),
        datamodule.modality,
        cfg.model.get("name", "model"),
        cfg.model.get("accepts", []),
    )
    datamodule.setup("fit")
    return datamodule


def build_task(cfg: DictConfig, stats, *, load_weights: bool = True):
    """(loss name, :class:`~imbal.task.ImbalanceTask`) for a config and the data's statistics.

    Reads no data: prediction rebuilds a trained model from a run dir's stored stats with it.
    ``load_weights=False`` skips the backbone's initial weights (the keys its class lists in
    ``weight_keys``: timm's ``pretrained`` / ``weights``, smp's ``encoder_weights``), for a task
    whose checkpoint is loaded next: no download, no weights file needed.
    """
    from imbal.guards import NonFiniteGuard
    from imbal.losses import build as build_loss
    from imbal.task import ImbalanceTask

    loss_cfg = OmegaConf.to_container(cfg.loss, resolve=True)
    loss_name = loss_cfg.pop("name")
    loss = build_loss(loss_name, stats=stats, **loss_cfg)

    # model.freeze is imbal's own (imbal/models/finetune.py) unless the backbone's __init__ names it
    from hydra.utils import get_class
    from omegaconf import open_dict

    from imbal.models import finetune

    model_cls = get_class(cfg.model._target_)
    own = inspect.signature(model_cls.__init__).parameters
    model_node = cfg.model.copy()
    with open_dict(model_node):
        tuning = {k: model_node.pop(k) for k in finetune.FINETUNE_KEYS if k in model_node and k not in own}
        if not load_weights:
            model_node.merge_with({k: v for k, v in getattr(model_cls, "weight_keys", {}).items() if k in model_node})
    backbone = instantiate(model_node, _inject=model_injections(cfg.model, stats))
    finetune.freeze(backbone, tuning.get("freeze", False), model=str(cfg.model.get("name", "model")))
    frozen = finetune.frozen_modules(backbone, "backbone") if cfg.model.get("freeze") not in (None, False, 0) else []
    optim = instantiate(cfg.optimizer.optim)
    from imbal.optim import bind_stats

    optim = bind_stats(optim, stats)  # ImbSAM's class counts (its tail classes), checked here
    sched = instantiate(cfg.optimizer.scheduler) if cfg.optimizer.get("scheduler") else None
    guard = NonFiniteGuard(
        policy=str(cfg.trainer.get("nan_policy", "error")),
        max_skips=int(cfg.trainer.get("nan_max_skips", 10)),
        run_dir=cfg.get("run_dir"),
    )
    task = ImbalanceTask(backbone, loss, stats, optimizer=optim, scheduler=sched, guard=guard,
                         frozen_modules=frozen, **finetune.optimizer_options(cfg.optimizer))
    # what ImbalanceTask.load_from_checkpoint rebuilds it from, stored in every checkpoint
    task.set_rebuild_info(OmegaConf.to_container(cfg, resolve=True), stats.to_dict())
    from imbal.runner import stages

    stages.add_structure(task, stages.stage_name(cfg))  # stage=lws: per-class logit scales (imbal/runner/stages.py)
    from imbal.mixing import build_mixing

    mixing = cfg.get("mixing")  # no parameters: a mixed run's checkpoint loads as any other
    task.mixing = build_mixing(OmegaConf.to_container(mixing, resolve=True) if mixing else None, stats, backbone,
                               data=str(cfg.data.get("name", "data")), model=str(cfg.model.get("name", "model")))
    return loss_name, task


def build_parts(cfg: DictConfig):
    """Data module (set up), loss name and task for a config; no trainer."""
    datamodule = build_data(cfg)
    from imbal.runner import stages

    # a stage-2 run's backbone weights come from init_from: no initial weights to download or read
    loss_name, task = build_task(cfg, datamodule.stats, load_weights=stages.stage_name(cfg) is None)
    stages.prepare(task, cfg, datamodule.stats)  # stage=crt|lws|finetune: the init_from weights, frozen parts
    return datamodule, loss_name, task


def instantiate_dict(nodes: DictConfig | None, **defaults: Any) -> list[Any]:
    """Instantiate every named node with a ``_target_`` (lightning-hydra-template's instantiator).

    ``defaults`` fill keys a node leaves null (e.g. a checkpoint callback's ``dirpath``).
    """
    from hydra.utils import instantiate as hydra_instantiate

    if not nodes:
        return []
    out = []
    for _, node in nodes.items():
        if not (isinstance(node, DictConfig) and "_target_" in node):
            continue
        fill = {k: v for k, v in defaults.items() if k in node and node.get(k) is None}
        out.append(hydra_instantiate(node, **fill, _convert_="all"))
    return out


def build_callbacks(cfg: DictConfig, run_dir: Path) -> list[Any]:
    """The ``callbacks`` group's callbacks (checkpointing among them), plus imbal's progress bar and,
    always on, what makes a resumed run the run it continues: ``RNGState`` (the RNGs in every
    checkpoint), ``FlushCSVLogs`` (metrics.csv on disk at each checkpoint) and ``LastCheckpoint``
    (``save_last`` after every epoch; imbal/callbacks/)."""
    from lightning.pytorch.callbacks import ProgressBar as ProgressBarBase

    from imbal.callbacks.last_checkpoint import take_over_last
    from imbal.callbacks.rng_state import FlushCSVLogs, RNGState

    callbacks = instantiate_dict(cfg.get("callbacks"), dirpath=str(run_dir / "checkpoints"))
    regularizer = cfg.get("regularizer")
    if regularizer and "_target_" in regularizer:  # regularizer=maxnorm (imbal/callbacks/maxnorm.py)
        callbacks.append(instantiate(regularizer))
    for cls in (RNGState, FlushCSVLogs):
        if not any(isinstance(c, cls) for c in callbacks):
            callbacks.append(cls())
    take_over_last(callbacks)  # last.ckpt after every epoch, not only after an improvement
    if cfg.trainer.get("enable_progress_bar", True) and not any(isinstance(c, ProgressBarBase) for c in callbacks):
        from imbal.callbacks.progress import ProgressBar

        # Lightning's tqdm bar, redrawn at most every 0.1 s (not on every step); a bar given
        # in callbacks (e.g. Lightning's RichProgressBar) replaces it.
        callbacks.append(ProgressBar())
    return callbacks


def checkpoint_callback(callbacks: list[Any]):
    """The callbacks' ModelCheckpoint (the one whose best model is tested), or None."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    found = [c for c in callbacks if isinstance(c, ModelCheckpoint)]
    return found[0] if found else None


def build_trainer(cfg: DictConfig, run_dir: Path, callbacks: list[Any], loggers: list[Any]):
    """(Lightning Trainer, imbal's trainer options) from the ``trainer`` node."""
    from hydra.utils import instantiate as hydra_instantiate

    from imbal.runner.trainer_options import split_trainer_node

    trainer_kwargs, options = split_trainer_node(OmegaConf.to_container(cfg.trainer, resolve=True))
    plugins = list(trainer_kwargs.pop("plugins", None) or [])
    if os.environ.get("SUBMITIT_EXECUTOR") == "slurm":
        from lightning.pytorch.plugins.environments import SLURMEnvironment

        # One side owns requeueing: submitit (USR2 + resubmit), not Lightning's USR1 handler.
        plugins.append(SLURMEnvironment(auto_requeue=False))
    trainer = hydra_instantiate(
        trainer_kwargs,
        callbacks=callbacks,
        logger=loggers or False,
        default_root_dir=str(run_dir),
        plugins=plugins or None,
        _convert_="all",
    )
    return trainer, options
