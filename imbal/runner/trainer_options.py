"""imbal's own keys of the ``trainer`` node (speed and the NaN guard), and launch checks.

Every other key of ``conf/trainer/*.yaml`` is a ``lightning.pytorch.Trainer`` argument;
these are popped before the Trainer is built and applied by imbal.
"""

from __future__ import annotations

from typing import Any

from imbal.errors import ImbalError

#: Keys of the ``trainer`` node that imbal reads itself (not Lightning Trainer arguments).
IMBAL_TRAINER_KEYS = ("nan_policy", "nan_max_skips", "channels_last", "compile", "compile_mode")

#: ``trainer.compile`` values -> what is compiled (``true`` is ``model``).
COMPILE_CHOICES = {"false": (), "model": ("model",), "true": ("model",), "loss": ("loss",), "all": ("model", "loss")}


def split_trainer_node(trainer_cfg: dict) -> tuple[dict, dict]:
    """(Lightning Trainer kwargs, imbal's own options) of a resolved ``trainer`` node."""
    kwargs = dict(trainer_cfg)
    options = {key: kwargs.pop(key, None) for key in IMBAL_TRAINER_KEYS}
    return kwargs, options


def compile_targets(value: Any) -> tuple[str, ...]:
    """``trainer.compile`` (false | true | model | loss | all) -> the parts to compile."""
    key = str(value).lower() if value is not None else "false"
    if key not in COMPILE_CHOICES:
        raise ImbalError(f"trainer.compile must be one of {', '.join(COMPILE_CHOICES)}, got {value!r}")
    return COMPILE_CHOICES[key]


def check_compile_available(device) -> None:
    """Refuse ``trainer.compile`` in one line where torch.compile cannot build kernels for ``device``
    (inductor needs a C++ compiler for the CPU and Triton for CUDA)."""
    import torch

    if not torch._dynamo.is_dynamo_supported():
        raise ImbalError("trainer.compile needs torch.compile, which this Python/PyTorch does not support; "
                         "use trainer.compile=false")
    if device.type == "cpu":
        try:
            from torch._inductor.cpp_builder import get_cpp_compiler

            get_cpp_compiler()
        except Exception as exc:  # InvalidCxxCompiler, or the lookup itself missing in another torch
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ImbalError(f"trainer.compile on the CPU needs a C++ compiler for torch.compile (inductor), "
                             f"none usable ({first}); install g++ or set CXX, or use trainer.compile=false") from None
    elif device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            raise ImbalError("trainer.compile on CUDA needs Triton (pip install triton); or use trainer.compile=false")


def planned_device_type(accelerator: Any) -> str:
    """The device type a Trainer with ``accelerator`` will use (before it is built): cpu, cuda, mps, ..."""
    import torch

    a = str(accelerator or "auto").lower()
    if a == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    return "cuda" if a == "gpu" else a


def check_trainer_options(trainer_cfg) -> None:
    """Refuse bad or unusable imbal trainer options in one line, before any data or Trainer work."""
    import torch

    if compile_targets(trainer_cfg.get("compile")):
        check_compile_available(torch.device(planned_device_type(trainer_cfg.get("accelerator"))))


def apply_trainer_options(task, options: dict, device) -> dict[str, Any]:
    """imbal's speed options of the ``trainer`` node, applied to the task's modules in place.

    ``channels_last``: backbone parameters and 4-D input batches in ``torch.channels_last``
    (a forward pre-hook on the backbone; other inputs pass unchanged).  ``compile``: see
    :data:`COMPILE_CHOICES`; :meth:`torch.nn.Module.compile` in place, so ``state_dict`` keys
    and checkpoints are those of an uncompiled run.  ``compile_mode``: ``torch.compile``'s mode.
    Returns what was applied.
    """
    import torch

    applied: dict[str, Any] = {}
    if bool(options.get("channels_last", False)):
        task.backbone.to(memory_format=torch.channels_last)

        def to_channels_last(module, args):
            if args and isinstance(args[0], torch.Tensor) and args[0].ndim == 4:
                return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
            return None

        task.backbone.register_forward_pre_hook(to_channels_last)
        applied["channels_last"] = True
    targets = compile_targets(options.get("compile", False))
    if targets:
        check_compile_available(device)
        mode = options.get("compile_mode") or None
        mode = None if mode == "default" else mode
        parts = {"model": task.backbone, "loss": task.loss_fn}
        for name in targets:
            if not isinstance(parts[name], torch.nn.Module):
                raise ImbalError(f"trainer.compile={options.get('compile')}: the {name} is a "
                                 f"{type(parts[name]).__name__}, not a torch.nn.Module; compile only the model")
            parts[name].compile(mode=mode)
        applied["compile"] = list(targets)
    return applied


def check_launch(cfg) -> None:
    """Refuse launch combinations that cannot work, in one line.

    Lightning's ``strategy=ddp`` re-executes ``sys.argv`` once per extra rank; inside
    Hydra's basic (in-process) multirun that re-runs the whole sweep in every rank
    (Lightning PR 15737).  ``ddp_spawn`` or a launcher with one process per job works.
    """
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    hc = HydraConfig.get()
    strategy = str(cfg.trainer.get("strategy", "auto"))
    devices = cfg.trainer.get("devices", 1)
    many = devices not in (1, "1", None) or int(cfg.trainer.get("num_nodes", 1) or 1) > 1
    basic = str(hc.launcher.get("_target_", "")).endswith("BasicLauncher")
    if str(hc.mode) == "RunMode.MULTIRUN" and basic and many and strategy.startswith("ddp") and "spawn" not in strategy:
        raise ImbalError(
            f"trainer.strategy={strategy} inside a local multirun (basic launcher) would re-run the whole sweep "
            "in every rank; use trainer.strategy=ddp_spawn, or hydra/launcher=submitit_local or hydra/launcher=slurm"
        )
