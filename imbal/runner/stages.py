"""Two-stage training (decoupling, Kang et al. 2020): a stage-2 run starts from a stage-1 model.

``stage=crt|lws|finetune`` with ``init_from=<stage-1 run dir or checkpoint>``:

* ``crt``: the backbone is frozen (eval mode: its BatchNorm statistics stay those of stage 1) and
  the classifier re-initialised and trained (``stage.reinit_head=false``: stage 1's classifier is
  loaded and trained on, as weight balancing's stage 2);
* ``lws``: backbone and classifier frozen; one scale per class multiplies the logits and is the
  only thing trained (:class:`LogitScale`, a parameter ``logit_scale.scale`` of the task);
* ``finetune``: everything loaded, nothing frozen.

``stage.shift_bn=true`` (crt / lws, MiSLAS) keeps the frozen backbone in train mode, so its
BatchNorm statistics are re-estimated on the stage-2 batches while its weights stay frozen.

The stage-2 run records its ``stage`` node in its config; :func:`add_structure` rebuilds the LWS
scales from that plain value (``imbal/runner/rebuild.py``), so a stage-2 run dir and checkpoint are
self-contained: prediction never reads ``init_from``.  Checked before training:
:func:`check_config` (before anything is built: the pair of keys, a readable checkpoint, the same
backbone) and :func:`prepare` (after the data is set up: the same classes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from imbal.errors import ImbalError

STAGES = ("crt", "lws", "finetune")
#: model-node keys that may differ between stage 1 and stage 2 (what is frozen; descriptions)
_MODEL_FREE_KEYS = ("freeze", "name", "accepts")
_WHAT = "a stage-1 run dir (with summary.json) or a checkpoint of an imbal run (.ckpt)"

# the checkpoint check_config read, reused by prepare (one read of a possibly large file)
_loaded: dict[str, tuple[float, dict]] = {}


class LogitScale(nn.Module):
    """Learnable weight scaling: ``logits * scale``, one scale per class (ones at the start)."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(int(num_classes)))

    def forward(self, logits: Tensor) -> Tensor:
        return logits * self.scale

    def hook(self, module: nn.Module, inputs: Any, output: Tensor) -> Tensor:
        """A forward hook of the classifier head: its output scaled."""
        return self(output)


def stage_name(config: Any) -> str | None:
    """``stage.name`` of a config (DictConfig or plain mapping), or None."""
    node = config.get("stage") if isinstance(config, Mapping) or hasattr(config, "get") else None
    if node is None:
        return None
    name = node.get("name") if hasattr(node, "get") else node
    return None if name is None else str(name)


def add_structure(task, stage: str | None, *, where: str = "config") -> None:
    """What a stage adds to the model's state dict (LWS: ``logit_scale.scale``), from the plain stage name."""
    if stage is None:
        return
    if stage not in STAGES:
        raise ImbalError(f"{where}: stage.name={stage!r}: expected one of {', '.join(STAGES)}")
    if getattr(task, "outputs_logits", False):
        raise ImbalError(f"{where}: stage={stage}: the model produces its logits itself (no classifier head "
                         "to re-train or scale); use a backbone with a head")
    if stage == "lws":
        task.logit_scale = LogitScale(task.stats.num_outputs)
        task.head.register_forward_hook(task.logit_scale.hook)


# -- before anything is built ---------------------------------------------------
def check_config(cfg) -> None:
    """``stage`` and ``init_from`` together, a readable stage-1 checkpoint of the same backbone; one line else."""
    stage, init = stage_name(cfg), cfg.get("init_from")
    if stage is None and init is None:
        return
    if stage is None:
        raise ImbalError(f"init_from={init}: starting from a stage-1 model needs stage=crt, lws or finetune "
                         "(what stage 2 freezes and trains)")
    if stage not in STAGES:
        raise ImbalError(f"stage.name={stage!r}: expected one of {', '.join(STAGES)}")
    if not isinstance(init, str) or not init.strip():
        raise ImbalError(f"stage={stage}: needs init_from=<{_WHAT}>, the model stage 2 starts from "
                         f"(got init_from={'null' if init is None else repr(init)})")
    reinit = cfg.stage.get("reinit_head", True)
    if not isinstance(reinit, bool):
        raise ImbalError(f"stage.reinit_head={reinit!r}: expected true or false (re-initialise the classifier)")
    if not reinit and stage != "crt":
        raise ImbalError(f"stage.reinit_head=false: expected it only with stage=crt (stage={stage} keeps stage 1's "
                         "classifier anyway)")
    if bool(cfg.stage.get("shift_bn", False)) and stage == "finetune":
        raise ImbalError("stage.shift_bn=true: expected false with stage=finetune (nothing is frozen, so the "
                         "BatchNorm statistics are re-estimated anyway); shift_bn is for stage=crt or lws")
    ckpt_path, _ = resolve(init)
    ckpt = _read(ckpt_path)
    check_model(cfg, ckpt, init)


def resolve(init: str) -> tuple[Path, Path | None]:
    """(checkpoint file, stage-1 run dir or None) of an ``init_from`` value."""
    from imbal.runner.summary import SUMMARY_FILE, RunSummary

    p = Path(init).expanduser()
    if not p.exists():
        raise ImbalError(f"init_from={init}: no such file or directory; expected {_WHAT}")
    if p.is_dir():
        if not (p / SUMMARY_FILE).is_file():
            raise ImbalError(f"init_from={init}: the directory has no {SUMMARY_FILE} (not a finished run); "
                             f"expected {_WHAT}")
        best = RunSummary.read(p).best_checkpoint
        if not best:
            raise ImbalError(f"init_from={init}: its {SUMMARY_FILE} names no best_checkpoint; pass the checkpoint "
                             "file itself (init_from=<run dir>/checkpoints/<file>.ckpt)")
        ckpt = Path(best) if Path(best).is_absolute() else p / best
        return ckpt.resolve(), p.resolve()
    run = p.resolve().parent.parent
    return p.resolve(), run if (run / SUMMARY_FILE).is_file() else None


def _read(path: Path) -> dict:
    from imbal.runner.rebuild import read_checkpoint

    key = str(path)
    mtime = path.stat().st_mtime if path.exists() else -1.0
    if key in _loaded and _loaded[key][0] == mtime:
        return _loaded[key][1]
    ckpt = read_checkpoint(path, what=f"the stage-1 checkpoint of init_from ({_WHAT})")
    hp = ckpt.get("hyper_parameters") or {}
    if not isinstance(hp.get("config"), Mapping) or not isinstance(hp.get("stats"), Mapping):
        raise ImbalError(f"init_from: checkpoint {path} records no config and data stats; expected {_WHAT}")
    _loaded.clear()
    _loaded[key] = (mtime, ckpt)
    return ckpt


def _model_node(node: Any) -> dict:
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node or {})
    return {k: v for k, v in plain.items() if k not in _MODEL_FREE_KEYS}


def check_model(cfg, ckpt: Mapping, init: str) -> None:
    """The backbone this config builds is the one stage 1 trained (its model node, ``freeze`` aside)."""
    from hydra.utils import get_class

    here = _model_node(cfg.model)
    there = _model_node(ckpt["hyper_parameters"]["config"].get("model"))
    try:  # initial-weights arguments (timm's pretrained, ...) may differ: stage 1's weights replace them
        free = set(getattr(get_class(str(here.get("_target_"))), "weight_keys", {}))
    except Exception:  # noqa: BLE001 - an unknown class is reported when the model is built
        free = set()
    for key in sorted((set(here) | set(there)) - free):
        if here.get(key, "<unset>") != there.get(key, "<unset>"):
            raise ImbalError(f"init_from={init}: stage 1 trained another backbone: model.{key}="
                             f"{there.get(key, '<unset>')!r} there, {here.get(key, '<unset>')!r} here; "
                             "expected the stage-1 model settings")


# -- once the data is set up, before fit ---------------------------------------
def check_classes(stats, recorded: Mapping, init: str) -> None:
    """Stage 1 and stage 2 classify the same classes (task, number, names)."""
    where = f"init_from={init}"
    n_there, n_here = recorded.get("num_classes"), stats.num_classes
    if recorded.get("task") != stats.task:
        raise ImbalError(f"{where}: stage 1 was a {recorded.get('task')} task, this data is {stats.task}; "
                         "expected the same task and classes")
    if n_there != n_here:
        raise ImbalError(f"{where}: stage 1 has {n_there} classes, this data has {n_here}; "
                         "expected the same classes as stage 1")
    names = recorded.get("class_names") or []
    if names and stats.class_names and list(names) != list(stats.class_names):
        raise ImbalError(f"{where}: stage 1's classes are {list(names)[:6]}, this data's {list(stats.class_names)[:6]}; "
                         "expected the same classes in the same order")


def _sub_state(state: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def reset_head(head: nn.Module) -> None:
    """Re-initialise a classifier head (every submodule's ``reset_parameters``; a cosine head's weight)."""
    done = False
    for m in head.modules():
        if callable(getattr(m, "reset_parameters", None)):
            m.reset_parameters()
            done = True
    if not done:
        for p in head.parameters():
            nn.init.kaiming_uniform_(p, a=5**0.5) if p.ndim >= 2 else nn.init.zeros_(p)


def prepare(task, cfg, stats) -> None:
    """Load the stage-1 weights into a freshly built task and freeze what the stage freezes."""
    from imbal.models.finetune import load_strict

    stage = stage_name(cfg)
    if stage is None:
        return
    init = str(cfg.init_from)
    ckpt_path, run_dir = resolve(init)
    ckpt = _read(ckpt_path)
    _loaded.clear()
    check_classes(stats, ckpt["hyper_parameters"]["stats"], init)
    state = ckpt["state_dict"]
    what = "this run's {} (expected a stage-1 run of the same model and data)"
    load_strict(task.backbone, _sub_state(state, "backbone."), key="init_from", path=str(ckpt_path),
                what=what.format("backbone"))
    shift_bn = bool(cfg.stage.get("shift_bn", False))
    frozen = list(task.frozen_modules)
    reinit = stage == "crt" and bool(cfg.stage.get("reinit_head", True))
    if stage == "crt":
        task.backbone.requires_grad_(False)
        frozen += [] if shift_bn else ["backbone"]
    if reinit:  # a new classifier: stage 1's may even be another kind (a cosine head)
        reset_head(task.head)
    else:
        load_strict(task.head, _sub_state(state, "head."), key="init_from", path=str(ckpt_path),
                    what=what.format("classifier head"))
    if stage == "lws":
        task.backbone.requires_grad_(False)
        task.head.requires_grad_(False)
        frozen += ["head"] + ([] if shift_bn else ["backbone"])
    task.frozen_modules = list(dict.fromkeys(frozen))
    task.init_record = record(init, ckpt_path, run_dir)


def record(init: str, ckpt_path: Path, run_dir: Path | None) -> dict[str, Any]:
    """What ``summary.json`` keeps of the stage-1 run: where it is and its test metrics."""
    from imbal.runner.summary import RunSummary

    out: dict[str, Any] = {"path": init, "checkpoint": str(ckpt_path), "run_dir": str(run_dir) if run_dir else None}
    if run_dir is not None:
        try:
            s1 = RunSummary.read(run_dir)
        except ImbalError:
            return out
        out.update({"stage": s1.stage, "data": s1.data, "model": s1.model, "loss": s1.loss, "test": s1.test,
                    "posthoc": s1.posthoc})
    return out
