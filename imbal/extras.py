"""Optional dependencies: a feature that needs an extra says which one, in one line.

A core install (``pip install imbal``) runs the default experiment; the rest comes with
extras (``pip install 'imbal[text]'``; ``[all]`` for every one).  Code that needs an
extra calls :func:`require` at the point of use, before it reads any file::

    timm = require("timm", "vision", feature="model=timm")
"""

from __future__ import annotations

import importlib
from types import ModuleType

from imbal.errors import ImbalError

#: extra -> what it provides (kept in step with pyproject.toml's optional-dependencies)
EXTRAS = {
    "text": "text data and the Hugging Face encoder (transformers, tokenizers, pandas, pyarrow)",
    "plots": "run plots and `imbal report` (matplotlib, pandas)",
    "wandb": "logger=wandb",
    "mlflow": "logger=mlflow",
    "tensorboard": "logger=tensorboard",
    "slurm": "hydra/launcher=slurm (hydra-submitit-launcher)",
    "vision": "model=timm (timm)",
    "seg": "model=smp (segmentation-models-pytorch)",
    "sweep": "hparams_search=optuna (hydra-optuna-sweeper)",
}


class MissingExtraError(ImbalError):
    """A feature's optional dependency is not installed."""

    def __init__(self, message: str, module: str = "", extra: str = ""):
        super().__init__(message)
        self.module = module
        self.extra = extra


def missing_message(module: str, extra: str, feature: str | None = None) -> str:
    """``<feature> needs <module>: pip install 'imbal[<extra>]'``."""
    top = module.split(".")[0]
    return f"{feature or top} needs {top}: pip install 'imbal[{extra}]'"


def require(module: str, extra: str, feature: str | None = None) -> ModuleType:
    """Import ``module`` and return it, or raise a one-line :class:`MissingExtraError` naming ``extra``.

    ``feature`` names what the user asked for (``"model=timm"``, ``"logger=wandb"``); it
    defaults to the module's name.  Only a missing ``module`` (or a package it is part of)
    becomes the one-line error; any other import failure keeps its traceback.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and not (module == missing or module.startswith(missing + ".")):
            raise  # a dependency of the module is broken: not a missing extra
        raise MissingExtraError(missing_message(module, extra, feature), module, extra) from exc


def require_all(modules: list[str] | tuple[str, ...], extra: str, feature: str | None = None) -> None:
    """Raise :func:`require`'s one-line error for the first of ``modules`` not installed (none is imported)."""
    for module in modules:
        if not available(module):
            raise MissingExtraError(missing_message(module, extra, feature), module, extra)


def available(module: str) -> bool:
    """Whether ``module`` can be imported (found on the path; not imported)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


#: A config node's ``_target_`` (a prefix of it) -> the modules it needs and the extra that has them.
#: ``a|b`` is satisfied by either module.  Checked before anything is built (:func:`check_config`),
#: so a missing extra is named before any data file is looked for.
TARGETS: dict[str, tuple[tuple[str, ...], str]] = {
    "imbal.data.text.": (("pandas", "tokenizers"), "text"),
    "imbal.models.text.HFEncoder": (("transformers",), "text"),
    "imbal.models.text.hf_encoder.": (("transformers",), "text"),
    "imbal.data.segmentation.airbus.": (("pandas",), "seg"),
    "imbal.models.timm_backbone.": (("timm",), "vision"),
    "imbal.models.smp_model.": (("segmentation_models_pytorch",), "seg"),
    "imbal.reporting.loggers.wandb_logger": (("wandb",), "wandb"),
    "lightning.pytorch.loggers.WandbLogger": (("wandb",), "wandb"),
    "lightning.pytorch.loggers.wandb.": (("wandb",), "wandb"),
    "imbal.reporting.loggers.mlflow_logger": (("mlflow",), "mlflow"),
    "lightning.pytorch.loggers.MLFlowLogger": (("mlflow",), "mlflow"),
    "lightning.pytorch.loggers.mlflow.": (("mlflow",), "mlflow"),
    "lightning.pytorch.loggers.TensorBoardLogger": (("tensorboard|tensorboardX",), "tensorboard"),
    "lightning.pytorch.loggers.tensorboard.": (("tensorboard|tensorboardX",), "tensorboard"),
}

#: Hydra plugins a command-line choice needs: override -> (plugin module, extra)
CHOICES: dict[str, tuple[str, str]] = {
    "hydra/launcher=slurm": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    "hydra/launcher=submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    "hydra/launcher=submitit_local": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    "hparams_search=optuna": ("hydra_plugins.hydra_optuna_sweeper", "sweep"),
    "hydra/sweeper=optuna": ("hydra_plugins.hydra_optuna_sweeper", "sweep"),
}


def _missing(modules: tuple[str, ...]) -> str | None:
    for alternatives in modules:
        names = alternatives.split("|")
        if not any(available(n) for n in names):
            return names[0]
    return None


def _targets(node, path: str = ""):
    """(dotted key of the node, its ``_target_``) for every node with a ``_target_``, depth first."""
    if isinstance(node, dict):
        target = node.get("_target_")
        if isinstance(target, str):
            yield path, target
        for key, value in node.items():
            yield from _targets(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _targets(value, f"{path}[{i}]")


def _feature(key: str, choices: dict) -> str:
    """How the user asked for a node: ``data=sms_spam``, ``model=timm``, ``logger=wandb``."""
    group, _, rest = key.partition(".")
    if group == "logger" and rest:
        return f"logger={rest.split('.')[0]}"
    if group in choices and choices[group]:
        return f"{group}={choices[group]}"
    return key or "the config"


def check_config(cfg) -> None:
    """Refuse, in one line, a config whose parts need an extra that is not installed (nothing is imported).

    Every ``_target_`` in ``cfg`` (data, model, loggers, callbacks) is looked up in :data:`TARGETS`.
    """
    from omegaconf import OmegaConf

    container = OmegaConf.to_container(cfg, resolve=False) if OmegaConf.is_config(cfg) else cfg
    choices: dict = {}
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            choices = dict(HydraConfig.get().runtime.choices)
    except Exception:  # noqa: BLE001 - outside a Hydra app: name the config key instead
        choices = {}
    for key, target in _targets(container):
        if key.startswith("hydra"):
            continue
        for prefix, (modules, extra) in TARGETS.items():
            if target == prefix or (prefix.endswith(".") and target.startswith(prefix)):
                missing = _missing(modules)
                if missing is not None:
                    raise MissingExtraError(missing_message(missing, extra, _feature(key, choices)), missing, extra)


def check_overrides(overrides) -> None:
    """Refuse, in one line, a command-line choice of a Hydra plugin that is not installed (Hydra's error spans lines)."""
    for arg in overrides:
        plain = arg.lstrip("+")
        for choice, (module, extra) in CHOICES.items():
            if plain == choice and not available(module):
                raise MissingExtraError(
                    f"{choice} needs the Hydra plugin {module.split('.')[-1]}: pip install 'imbal[{extra}]'",
                    module, extra,
                )
