"""Rebuilding a trained task from a run dir or a checkpoint: the config stored there is data, not code.

Training instantiates whatever ``_target_`` the user's own config names (a config you run is
code).  A run dir or checkpoint someone shares is not: its ``summary.json`` config and the config
a checkpoint records could name any callable (``torch.load`` of a pickle, ``builtins.open``).
So prediction (``imbal predict``, :func:`imbal.load_run`, ``ImbalanceTask.load_from_checkpoint``)
builds only:

* the backbone, from ``config.model``: its ``_target_`` and every nested ``_target_`` must be a
  model of imbal's ``conf/model/*.yaml`` (:data:`KNOWN_MODEL_TARGETS`) or an ``imbal.*`` class
  that subclasses ``torch.nn.Module``; it is called directly (no Hydra instantiate, no second
  interpolation pass);
* the loss, from ``config.loss``: a registered name (entry points ``imbal.losses``: installed
  code only) with plain hyper-parameters; a ``_target_`` anywhere in the loss node is refused;
* the head: chosen by the loss class (installed code).

The optimizer, scheduler, data, callbacks, logger and trainer nodes are never built: a rebuilt
task predicts; it does not train.  ``trust_config=True`` (``imbal predict --trust-config``, or
``IMBAL_TRUST_CONFIG=1``) restores the unrestricted build for a run dir you made yourself with a
backbone from your own package.  Checkpoints are read with ``torch.load(weights_only=True)``
only, and an unreadable one is one line naming the file (:func:`read_checkpoint`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterator, Mapping

from imbal.errors import ImbalError

#: The environment variable that trusts every run dir's config (as ``trust_config=True``).
TRUST_ENV = "IMBAL_TRUST_CONFIG"

#: The backbones of imbal's ``conf/model/*.yaml`` (tests/test_run_dir_safety.py keeps this in step).
KNOWN_MODEL_TARGETS = frozenset({
    "imbal.models.MLP",
    "imbal.models.SmallCNN",
    "imbal.models.resnets.TorchvisionResNet",
    "imbal.models.resnet_cifar.ResNetCifar",
    "imbal.models.timm_backbone.TimmBackbone",
    "imbal.models.smp_model.SmpModel",
    "imbal.models.unet.UNet",
    "imbal.models.text.TextCNN",
    "imbal.models.text.GRUEncoder",
    "imbal.models.text.HFEncoder",
})

#: Keys of the model node that describe it (build.META_KEYS) and Hydra's options (not parameters).
_MODEL_META = ("name", "accepts")
_HYDRA_KEYS = ("_target_", "_args_", "_partial_", "_recursive_", "_convert_")
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")
_TRUST_HINT = ("a run dir is data, not code: rebuild it with train.py from a config you trust, or, if you "
               f"made this run yourself, pass --trust-config (imbal.load_run(..., trust_config=True), {TRUST_ENV}=1)")


def trusted(trust_config: bool | None = None) -> bool:
    """``trust_config``, or ``IMBAL_TRUST_CONFIG`` set to anything but empty/0."""
    return bool(trust_config) or os.environ.get(TRUST_ENV, "") not in ("", "0")


def refuse(where: str, key: str, value: Any, why: str) -> ImbalError:
    return ImbalError(f"{where}: refusing to build {key}={value!r} from a run dir ({why}; {_TRUST_HINT})")


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _walk(node: Any, key: str) -> Iterator[tuple[str, Mapping]]:
    """(key, mapping) of every mapping inside ``node``, ``node`` first, lists included."""
    if isinstance(node, Mapping):
        yield key, node
        for k, v in node.items():
            yield from _walk(v, f"{key}.{k}")
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _walk(v, f"{key}[{i}]")


def model_class(target: Any, *, where: str, key: str) -> type:
    """The backbone class a ``_target_`` of a run dir names, when it is one imbal may build."""
    if not isinstance(target, str) or not _DOTTED.fullmatch(target):
        raise refuse(where, key, target, "not a dotted path of an imbal model")
    if target not in KNOWN_MODEL_TARGETS and not target.startswith("imbal."):
        raise refuse(where, key, target, "not a known imbal model")
    from torch import nn

    from imbal.registry import locate

    obj = locate(target, kind="model")  # imports a module of the imbal package only
    if not (isinstance(obj, type) and issubclass(obj, nn.Module) and obj.__module__.split(".")[0] == "imbal"):
        raise refuse(where, key, target, "not an imbal torch.nn.Module class")
    return obj


def check_config(config: Any, *, where: str) -> dict[str, Any]:
    """The recorded config, resolved to plain data, if prediction may build it; else one ImbalError line.

    Every ``_target_`` in ``config.model`` must pass :func:`model_class`; ``config.loss`` needs a
    string ``name`` and no ``_target_`` anywhere.  Other nodes are not read.
    """
    from omegaconf import OmegaConf

    if not isinstance(config, Mapping):
        raise ImbalError(f"{where}: the recorded config is a {type(config).__name__}, expected a mapping "
                         "with 'model' and 'loss' nodes")
    try:  # interpolations resolved once, here; what is built is the plain data checked below
        root = OmegaConf.create(dict(config))
        plain = {k: OmegaConf.to_container(root[k], resolve=True) if OmegaConf.is_config(root.get(k)) else root.get(k)
                 for k in ("model", "loss")}
    except Exception as exc:  # noqa: BLE001 - any unreadable config is the run dir's fault
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ImbalError(f"{where}: the recorded config cannot be read ({type(exc).__name__}: {first})") from None
    model, loss = plain.get("model"), plain.get("loss")
    if not isinstance(model, Mapping) or "_target_" not in model:
        raise ImbalError(f"{where}: config.model must be a node with a _target_ (the backbone), got {_short(model)}")
    for key, node in _walk(model, "config.model"):
        if "_target_" in node:
            model_class(node["_target_"], where=where, key=f"{key}._target_")
        if node.get("_partial_"):
            raise refuse(where, f"{key}._partial_", node["_partial_"], "a backbone is a class, not a partial")
    if not isinstance(loss, Mapping) or not isinstance(loss.get("name"), str):
        raise ImbalError(f"{where}: config.loss must be a node with a 'name' (a registered loss), got {_short(loss)}")
    for key, node in _walk(loss, "config.loss"):
        if "_target_" in node:
            raise refuse(where, f"{key}._target_", node["_target_"], "a loss hyper-parameter is plain data; "
                         "losses are built by name from the 'imbal.losses' entry points")
    return plain


def _build_node(node: Mapping, *, where: str, key: str, inject: Mapping[str, Any] | None = None) -> Any:
    """Call the class a checked node names with its (recursively built) parameters."""
    from imbal.registry import check_params

    cls = model_class(node["_target_"], where=where, key=f"{key}._target_")
    recursive = node.get("_recursive_", True) is not False

    def value(v: Any, k: str) -> Any:
        if not recursive:
            return v
        if isinstance(v, Mapping):
            return _build_node(v, where=where, key=k) if "_target_" in v else {n: value(x, f"{k}.{n}") for n, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [value(x, f"{k}[{i}]") for i, x in enumerate(v)]
        return v

    args = [value(v, f"{key}._args_[{i}]") for i, v in enumerate(node.get("_args_") or [])]
    params = {str(k): value(v, f"{key}.{k}") for k, v in node.items() if k not in _HYDRA_KEYS}
    check_params(cls, params, label=f"{where}: {key} ({node['_target_']})", n_args=len(args), supplied=inject)
    return cls(*args, **(inject or {}), **params)


def build_backbone(model: Mapping[str, Any], stats, *, where: str, load_weights: bool = False):
    """(backbone, frozen module names) of a checked ``config.model`` node, as ``build_task`` builds it."""
    import inspect

    from imbal.models import finetune
    from imbal.runner.build import MODEL_INJECTABLE

    cls = model_class(model["_target_"], where=where, key="config.model._target_")
    own = inspect.signature(cls.__init__).parameters
    node = {k: v for k, v in model.items() if k not in _MODEL_META}
    tuning = {k: node.pop(k) for k in finetune.FINETUNE_KEYS if k in node and k not in own}
    if not load_weights:
        node.update({k: v for k, v in getattr(cls, "weight_keys", {}).items() if k in node})
    values = {"in_shape": list(stats.input_shape), "num_classes": stats.num_outputs, "stats": stats}
    inject = {k: values[k] for k in MODEL_INJECTABLE if k in own and k not in node}
    backbone = _build_node(node, where=where, key="config.model", inject=inject)
    name = str(model.get("name", "model"))
    finetune.freeze(backbone, tuning.get("freeze", False), model=name)
    frozen = finetune.frozen_modules(backbone, "backbone") if model.get("freeze") not in (None, False, 0) else []
    return backbone, frozen


def _no_optimizer(**_: Any):
    raise ImbalError("a task rebuilt from a run dir predicts; it has no optimizer: train with train.py "
                     "(resume=<checkpoint> continues a run)")


def rebuild_task(config: Any, stats, *, where: str, trust_config: bool | None = None):
    """The :class:`~imbal.task.ImbalanceTask` a recorded config describes, without its weights.

    ``trust_config`` (or ``IMBAL_TRUST_CONFIG``): ``build_task`` as training builds it (any
    ``_target_``).  Otherwise only what :func:`check_config` allows, and no optimizer.
    """
    from imbal.losses import build as build_loss
    from imbal.task import ImbalanceTask

    if trusted(trust_config):
        from omegaconf import OmegaConf

        from imbal.runner.build import build_task

        return build_task(OmegaConf.create(dict(config)), stats, load_weights=False)[1]
    plain = check_config(config, where=where)
    hparams = {k: v for k, v in plain["loss"].items() if k != "name"}
    loss = build_loss(plain["loss"]["name"], stats=stats, **hparams)
    backbone, frozen = build_backbone(plain["model"], stats, where=where)
    task = ImbalanceTask(backbone, loss, stats, optimizer=_no_optimizer, frozen_modules=frozen)
    task.set_rebuild_info(dict(config), stats.to_dict())
    from imbal.runner import stages

    # a stage-2 run: what its recorded stage adds to the model (stage lws: per-class logit scales), plain data
    stages.add_structure(task, stages.stage_name(config), where=where)
    return task


def read_checkpoint(path: str | Path, *, what: str = "a checkpoint written by an imbal run (.ckpt)") -> dict:
    """``torch.load(path, weights_only=True)`` of a Lightning checkpoint, or one line naming the file.

    A truncated file, a file of another format and a pickle that holds code all give the same kind
    of line; torch's advice to load with full unpickling is never passed on.
    """
    import torch

    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ImbalError(f"checkpoint {path}: file not found; expected {what}") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's file
        raise ImbalError(f"checkpoint {path}: cannot be read ({_load_reason(exc, path)}); expected {what}") from None
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("state_dict"), Mapping):
        got = f"a mapping with keys {sorted(map(str, ckpt))[:6]}" if isinstance(ckpt, Mapping) else f"a {type(ckpt).__name__}"
        raise ImbalError(f"checkpoint {path}: no 'state_dict' in it (got {got}); expected {what}")
    return dict(ckpt)


def _load_reason(exc: BaseException, path: str | Path) -> str:
    import zipfile

    text = str(exc)
    if not zipfile.is_zipfile(str(path)):  # torch.save writes a zip archive
        return "not a complete torch checkpoint: truncated, or a file of another format"
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return f"it holds pickled objects ({found.group(1)}), not plain tensors and data"
    if "weights only" in text.lower() or "weights_only" in text:
        return "it holds pickled objects, not plain tensors and data"
    first = (text.strip().splitlines() or [""])[0][:160]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def stored_checkpoint_path(path: str | None, run_dir: Path) -> str | None:
    """A checkpoint path as ``summary.json`` stores it: relative to the run dir when inside it
    (``checkpoints/best-epoch003.ckpt``, so a moved run dir still finds it), else absolute."""
    if not path:
        return None
    p = Path(path).resolve()
    try:
        return p.relative_to(Path(run_dir).resolve()).as_posix()
    except ValueError:
        return str(p)
