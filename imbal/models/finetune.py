"""Fine-tuning controls shared by every backbone: ``model.freeze``, a local weights file, and the
optimiser's parameter groups (``optimizer.backbone_lr_mult``, ``optimizer.norm_bias_decay``).

**The body.**  What ``model.freeze=true`` freezes and ``backbone_lr_mult`` scales is the
backbone's *body*: the whole backbone (the task's classifier head trains at the base rate), or,
for a model that produces its logits itself and names a ``finetune_body`` attribute, that part
(smp models: ``encoder``; their decoder and segmentation head train at the base rate).

**Stages.**  ``model.freeze=<k>`` freezes the first ``k`` stages.  A backbone may list its own
stages as parameter-name groups with ``finetune_stages()`` (timm models: timm's coarse
``group_matcher`` grouping, e.g. ResNet: stem, layer1 .. layer4); otherwise the stages are the
body's top-level child modules that hold parameters, in order, a normalisation layer joining the
stage before it (a ResNet's conv1 + bn1 stem: stem, layer1 .. layer4 again; smp encoders).

**Frozen means unchanged.**  A frozen parameter has ``requires_grad=False`` and is left out of
the optimiser; the modules whose parameters are all frozen are also kept in eval mode during
training (:meth:`imbal.task.ImbalanceTask.train`), so their BatchNorm running statistics stay
as loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from torch import Tensor, nn

from imbal.errors import ImbalError

#: Keys of a model node that imbal handles itself (popped before the backbone is built, unless
#: the backbone's ``__init__`` names the key, e.g. ``hf_encoder``'s own ``freeze``).
FINETUNE_KEYS = ("freeze",)

SCHEDULER_INTERVALS = ("epoch", "step")


# -- freezing -----------------------------------------------------------------
def body(backbone: nn.Module) -> nn.Module:
    """The part of ``backbone`` that ``freeze=true`` and ``backbone_lr_mult`` cover."""
    name = getattr(backbone, "finetune_body", None)
    return backbone.get_submodule(name) if name else backbone


def body_prefix(backbone: nn.Module) -> str:
    """Parameter-name prefix of the body inside the backbone ('' for the whole backbone)."""
    name = getattr(backbone, "finetune_body", None)
    return f"{name}." if name else ""


def stages(backbone: nn.Module) -> list[list[str]]:
    """The backbone's stages as lists of parameter names (relative to the backbone), in order."""
    own = getattr(backbone, "finetune_stages", None)
    if callable(own):
        return [list(s) for s in own() if s]
    return child_stages(body(backbone), body_prefix(backbone))


def child_stages(module: nn.Module, prefix: str = "") -> list[list[str]]:
    """``module``'s top-level children that hold parameters, as parameter-name lists in order; a
    normalisation layer joins the stage before it (a ResNet stem's conv1 + bn1 is one stage)."""
    norms = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
    out: list[list[str]] = []
    for child_name, child in module.named_children():
        names = [f"{prefix}{child_name}.{n}" for n, _ in child.named_parameters()]
        if names and out and isinstance(child, norms):
            out[-1].extend(names)
        elif names:
            out.append(names)
    return out


def check_freeze(value: Any) -> bool | int:
    """``model.freeze`` as ``True`` / ``False`` / an int ``k >= 0``, or a one-line error."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int) and value >= 0:
        return value
    raise ImbalError(f"model.freeze={value}: expected true, false or a number of stages k >= 0")


def freeze(backbone: nn.Module, value: Any, *, model: str = "model") -> None:
    """Freeze the body (``True``) or its first ``k`` stages (``int``); ``False`` / 0: nothing."""
    value = check_freeze(value)
    if value is False or value == 0:
        return
    if value is True:
        body(backbone).requires_grad_(False)
    else:
        groups = stages(backbone)
        if value > len(groups):
            raise ImbalError(
                f"model.freeze={value}: model '{model}' has {len(groups)} stages; use k <= {len(groups)} or model.freeze=true"
            )
        params = dict(backbone.named_parameters())
        for names in groups[:value]:
            for n in names:
                params[n].requires_grad_(False)
    if getattr(backbone, "outputs_logits", False) and not any(p.requires_grad for p in backbone.parameters()):
        raise ImbalError(
            f"model.freeze={str(value).lower()}: model '{model}' produces its logits itself, so this freezes every "
            f"parameter and nothing would train; use model.freeze=<k> with fewer stages"
        )


def frozen_modules(module: nn.Module, name: str) -> list[str]:
    """Names of the largest submodules of ``module`` (called ``name``; ``module`` itself included)
    whose parameters are all frozen: they stay in eval mode while training."""
    params = list(module.parameters())
    if params and not any(p.requires_grad for p in params):
        return [name]
    out: list[str] = []
    for child_name, child in module.named_children():
        out += frozen_modules(child, f"{name}.{child_name}")
    return out


# -- weights files ------------------------------------------------------------
def read_state_dict(path: str | Path, key: str) -> dict[str, Tensor]:
    """A state dict from a local ``.safetensors`` / ``.pth`` / ``.pt`` / ``.bin`` file (tensors only, no pickle).

    A checkpoint dict that holds the weights under ``state_dict`` or ``model`` is unwrapped, and
    a ``module.`` prefix (DataParallel) is dropped.
    """
    import torch

    p = Path(str(path)).expanduser()
    if not p.is_file():
        raise ImbalError(f"{key}={path}: file not found; expected a local .safetensors, .pth or .bin weights file")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p), device="cpu")
        else:
            state = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ImbalError(f"{key}={path}: not a readable weights file ({first})") from None
    if isinstance(state, Mapping):
        for wrapper in ("state_dict", "model"):
            if isinstance(state.get(wrapper), Mapping):
                state = state[wrapper]
                break
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ImbalError(f"{key}={path}: expected a state dict of tensors")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def _names(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > limit else shown


def load_strict(module: nn.Module, state: Mapping[str, Tensor], *, key: str, path: str, what: str) -> None:
    """``module.load_state_dict(state, strict=True)`` with a one-line error naming missing /
    unexpected keys and mismatched shapes."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = [f"missing {_names(missing)}" if missing else "", f"unexpected {_names(unexpected)}" if unexpected else "",
                 f"shape mismatch {_names(shapes, 2)} (file vs model)" if shapes else ""]
        raise ImbalError(f"{key}={path}: the file does not fit {what}: " + "; ".join(p for p in parts if p))
    module.load_state_dict(dict(state), strict=True)


# -- optimiser ----------------------------------------------------------------
def optimizer_options(node: Mapping[str, Any]) -> dict[str, Any]:
    """imbal's own keys of the ``optimizer`` node, checked: ``backbone_lr_mult``, ``norm_bias_decay``,
    ``scheduler_interval``, ``lr_base_batch`` (defaults 1.0, true, epoch, null).

    ``lr_base_batch``: the global batch the node's ``lr`` is given for (linear scaling, Goyal et al.
    2017): every group's lr is multiplied by ``global batch / lr_base_batch`` when the optimiser is
    built (:meth:`imbal.task.ImbalanceTask.configure_optimizers`); null leaves the lr as written."""
    mult = node.get("backbone_lr_mult", 1.0)
    if isinstance(mult, bool) or not isinstance(mult, (int, float)) or mult < 0:
        raise ImbalError(f"optimizer.backbone_lr_mult={mult}: expected a number >= 0 (0 = backbone not updated)")
    decay = node.get("norm_bias_decay", True)
    if not isinstance(decay, bool):
        raise ImbalError(f"optimizer.norm_bias_decay={decay}: expected true or false")
    interval = node.get("scheduler_interval", "epoch")
    if interval not in SCHEDULER_INTERVALS:
        raise ImbalError(f"optimizer.scheduler_interval={interval}: expected one of {', '.join(SCHEDULER_INTERVALS)}")
    base = node.get("lr_base_batch")
    if base is not None and (isinstance(base, bool) or not isinstance(base, int) or base < 1):
        raise ImbalError(f"optimizer.lr_base_batch={base}: expected null or an integer >= 1 "
                         "(the global batch the lr is given for)")
    return {"backbone_lr_mult": float(mult), "norm_bias_decay": decay, "scheduler_interval": interval,
            "lr_base_batch": base}


def no_decay(name: str, param: Tensor) -> bool:
    """timm's ``param_groups_weight_decay`` rule: norm weights and biases (1-D tensors, ``*.bias``)."""
    return param.ndim <= 1 or name.endswith(".bias")


def param_groups(
    module: nn.Module, body_module: nn.Module, *, backbone_lr_mult: float = 1.0, norm_bias_decay: bool = True
) -> list[dict[str, Any]]:
    """The trainable parameters of ``module`` as optimiser groups.

    Groups of ``body_module``'s parameters carry ``lr_mult=backbone_lr_mult`` (the caller scales
    their ``lr`` once the optimiser has filled in its default); the rest ``lr_mult=1``.  With
    ``norm_bias_decay=False`` the norm weights and biases get ``weight_decay=0``; otherwise every
    group keeps the optimiser's weight decay.  Frozen parameters are left out.
    """
    in_body = {id(p) for p in body_module.parameters()}
    buckets: dict[tuple[str, bool], list[Tensor]] = {}
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        part = "backbone" if id(p) in in_body else "head"
        buckets.setdefault((part, not norm_bias_decay and no_decay(name, p)), []).append(p)
    groups = []
    for (part, zero_decay), params in buckets.items():
        group: dict[str, Any] = {"params": params, "name": part + ("_no_decay" if zero_decay else ""),
                                 "lr_mult": backbone_lr_mult if part == "backbone" else 1.0}
        if zero_decay:
            group["weight_decay"] = 0.0
        groups.append(group)
    if not groups:
        raise ImbalError("model.freeze: every parameter is frozen, nothing would train")
    return groups
