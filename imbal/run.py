"""One training run: compose the parts a config names, fit, test, summarise."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from imbal.errors import ImbalError

#: Keys of the ``trainer`` node that imbal reads itself (not Lightning Trainer arguments).
IMBAL_TRAINER_KEYS = ("nan_policy", "nan_max_skips", "channels_last", "compile", "compile_mode")

#: ``trainer.compile`` values -> what is compiled (``true`` is ``model``).
COMPILE_CHOICES = {"false": (), "model": ("model",), "true": ("model",), "loss": ("loss",), "all": ("model", "loss")}

#: Keys of a data/model config node that describe it rather than construct it.
META_KEYS = ("name", "accepts")


def _instantiate(node: DictConfig, **kwargs: Any) -> Any:
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    missing = sorted(OmegaConf.missing_keys(node))  # full keys, e.g. "data.path"
    if missing:
        raise ImbalError(f"missing value for {missing[0]}: set it on the command line ({missing[0]}=...)")
    clean = OmegaConf.to_container(node, resolve=True)
    for key in META_KEYS:
        clean.pop(key, None)
    try:
        return instantiate(clean, **kwargs, _convert_="all")
    except InstantiationException as exc:
        # Hydra wraps the constructor's error; a user mistake keeps its own one-line message.
        cause = exc.__cause__
        if isinstance(cause, ImbalError):
            raise cause from None
        raise


def _instantiate_dict(nodes: DictConfig | None) -> list[Any]:
    """Instantiate every named node with a ``_target_`` (lightning-hydra-template's instantiator)."""
    from hydra.utils import instantiate

    if not nodes:
        return []
    return [instantiate(n, _convert_="all") for _, n in nodes.items() if isinstance(n, DictConfig) and "_target_" in n]


def peak_memory_mb() -> dict[str, float]:
    """Peak resident memory of this process (and of the GPU, when one was used), in MiB."""
    import resource

    import torch

    out = {"cpu_rss": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def versions() -> dict[str, str]:
    import lightning
    import torch

    import imbal

    return {"imbal": imbal.__version__, "torch": torch.__version__, "lightning": lightning.__version__}


def git_commit() -> str | None:
    """The checkout's commit (with ``-dirty`` when it has local changes), or None outside git."""
    import subprocess

    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def quiet_known_warnings() -> None:
    """Silence library warnings that say nothing about the user's run."""
    import warnings

    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*is smaller than the logging interval.*")


def run_dir_of(cfg: DictConfig) -> Path:
    return Path(cfg.run_dir).resolve()


def write_json_atomic(path: Path, data: dict) -> None:
    """Write then rename, so a reader never sees a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


#: What a backbone may ask for by naming it in ``__init__`` (like a loss's injected arguments).
MODEL_INJECTABLE = ("in_shape", "num_classes", "stats")


def model_injections(model_cfg: DictConfig, stats) -> dict[str, Any]:
    """The data-dependent arguments the backbone class names in its signature."""
    import inspect

    from hydra.utils import get_class

    cls = get_class(model_cfg._target_)
    params = inspect.signature(cls.__init__).parameters
    values = {"in_shape": list(stats.input_shape), "num_classes": stats.num_outputs, "stats": stats}
    return {k: v for k, v in values.items() if k in params and k not in model_cfg}


def check_launch(cfg: DictConfig) -> None:
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


def resume_checkpoint(cfg: DictConfig, run_dir: Path) -> str | None:
    """The checkpoint ``fit`` resumes from: ``resume=auto`` -> ``last.ckpt`` of this run dir if present,
    ``resume=<path>`` -> that checkpoint (which must exist), ``null`` -> none."""
    resume = cfg.get("resume")
    if resume in (None, False, "null", "none") and os.environ.get("SUBMITIT_EXECUTOR") == "slurm":
        # submitit owns pre-emption: a requeued job re-runs this function in the same
        # run dir, and must continue from its last checkpoint rather than start over.
        resume = "auto"
    if resume in (None, False, "null", "none"):
        return None
    if resume == "auto":
        last = run_dir / "checkpoints" / "last.ckpt"
        return str(last) if last.is_file() else None
    path = Path(str(resume))
    if not path.is_file():
        raise ImbalError(f"resume={resume}: no such checkpoint file (expected a .ckpt path or 'auto')")
    return str(path)


def write_manifest(datamodule, run_dir: Path, *, resuming: bool) -> None:
    """Save the data manifest; when resuming, refuse data that differs from the run's first start.

    The manifest (class counts, seed, hash of the training indices, ...) is written to
    a scratch dir first and compared key by key with the run's ``data_manifest.json``,
    so changed data is refused rather than silently mixed into a resumed run.
    """
    import tempfile

    if not hasattr(datamodule, "save_manifest"):
        return
    old_path = run_dir / "data_manifest.json"
    with tempfile.TemporaryDirectory() as tmp:
        new = json.loads(Path(datamodule.save_manifest(tmp)).read_text())
    if resuming and old_path.is_file():
        old = json.loads(old_path.read_text())
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if changed:
            k = changed[0]
            raise ImbalError(
                f"refusing to resume {run_dir}: the data changed since the run started "
                f"({old_path.name} key '{k}' was {old.get(k)!r}, now {new.get(k)!r})"
            )
    datamodule.save_manifest(run_dir)


def build_parts(cfg: DictConfig):
    """Data module (set up), loss and task for a config; no trainer."""
    from imbal import config as imbal_config
    from imbal.losses import build as build_loss
    from imbal.task import ImbalanceTask

    datamodule = _instantiate(cfg.data)
    imbal_config.check_compatible(
        cfg.data.get("name", type(datamodule).__name__),
        datamodule.modality,
        cfg.model.get("name", "model"),
        cfg.model.get("accepts", []),
    )
    datamodule.setup("fit")
    stats = datamodule.stats

    loss_cfg = OmegaConf.to_container(cfg.loss, resolve=True)
    loss_name = loss_cfg.pop("name")
    loss = build_loss(loss_name, stats=stats, **loss_cfg)

    backbone = _instantiate(cfg.model, **model_injections(cfg.model, stats))
    optim = _instantiate(cfg.optimizer.optim)
    sched = _instantiate(cfg.optimizer.scheduler) if cfg.optimizer.get("scheduler") else None
    from imbal.guards import NonFiniteGuard

    guard = NonFiniteGuard(
        policy=str(cfg.get("nan_policy", cfg.trainer.get("nan_policy", "error"))),
        max_skips=int(cfg.trainer.get("nan_max_skips", 10)),
        run_dir=cfg.get("run_dir"),
    )
    task = ImbalanceTask(backbone, loss, stats, optimizer=optim, scheduler=sched, guard=guard)
    return datamodule, loss_name, task


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


def train(cfg: DictConfig) -> float:
    """Run one experiment and return the metric a sweeper optimises (``cfg.optimized_metric``).

    ``summary.json`` is written in the run directory only when the run completes.
    """
    t0 = time.time()
    quiet_known_warnings()
    check_launch(cfg)
    run_dir = run_dir_of(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunDirLock(run_dir):
        return _train(cfg, run_dir, t0)


class RunDirLock:
    """Claims a run dir for one run (``.imbal.lock`` created exclusively, holding the pid).

    A second run pointed at a dir in use is refused in one line; a lock left by a
    killed run (its pid is gone) is taken over, so ``resume=auto`` works.  Extra DDP
    ranks (``LOCAL_RANK``/``RANK`` > 0) share their rank 0's claim.
    """

    def __init__(self, run_dir: Path):
        self.path = run_dir / ".imbal.lock"
        self.owned = False

    def __enter__(self) -> "RunDirLock":
        if os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("RANK", "0") != "0":
            return self
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    pid = int(self.path.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and pid != os.getpid() and _pid_alive(pid):
                    raise ImbalError(
                        f"run dir {self.path.parent} is in use by another run (pid {pid}); "
                        "give this run its own hydra.run.dir"
                    ) from None
                self.path.unlink(missing_ok=True)  # stale: its run was killed
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            self.owned = True
            return self
        raise ImbalError(f"could not claim run dir {self.path.parent} (lock file {self.path.name})")

    def __exit__(self, *exc) -> None:
        if self.owned:
            self.path.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _train(cfg: DictConfig, run_dir: Path, t0: float) -> float:
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.callbacks import ProgressBar as ProgressBarBase

    from imbal.loggers import finish_loggers, log_config

    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    check_trainer_options(cfg.trainer)

    datamodule, loss_name, task = build_parts(cfg)
    stats = datamodule.stats

    ckpt_cb = ModelCheckpoint(
        dirpath=str(run_dir / "checkpoints"),
        filename="best-epoch{epoch:03d}",
        auto_insert_metric_name=False,
        monitor=str(cfg.get("checkpoint_monitor", "val/balanced_accuracy")),
        mode="max",
        save_last=True,
    )
    callbacks = [ckpt_cb, *_instantiate_dict(cfg.get("callbacks"))]
    loggers = _instantiate_dict(cfg.get("logger"))
    log_config(loggers, OmegaConf.to_container(cfg, resolve=True))
    trainer_kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    if trainer_kwargs.get("enable_progress_bar", True) and not any(isinstance(c, ProgressBarBase) for c in callbacks):
        from imbal.progress import ProgressBar

        # Lightning's tqdm bar, redrawn at most every 0.1 s (not on every step); a bar given
        # in callbacks (e.g. Lightning's RichProgressBar) replaces it.
        callbacks.append(ProgressBar())
    from hydra.utils import instantiate

    options = {key: trainer_kwargs.pop(key, None) for key in IMBAL_TRAINER_KEYS}
    plugins = list(trainer_kwargs.pop("plugins", None) or [])
    if os.environ.get("SUBMITIT_EXECUTOR") == "slurm":
        from lightning.pytorch.plugins.environments import SLURMEnvironment

        # One side owns requeueing: submitit (USR2 + resubmit), not Lightning's USR1 handler.
        plugins.append(SLURMEnvironment(auto_requeue=False))
    trainer: L.Trainer = instantiate(
        trainer_kwargs,
        callbacks=callbacks,
        logger=loggers or False,
        default_root_dir=str(run_dir),
        plugins=plugins or None,
        _convert_="all",
    )
    apply_trainer_options(task, options, trainer.strategy.root_device)
    resume_from = resume_checkpoint(cfg, run_dir)
    if trainer.is_global_zero:
        write_manifest(datamodule, run_dir, resuming=resume_from is not None)

    # weights_only: a checkpoint holds plain data (no pickled objects), so loading one runs no code
    trainer.fit(task, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    ckpt = "best" if ckpt_cb.best_model_path else None
    trainer.validate(task, datamodule=datamodule, ckpt_path=ckpt, verbose=False, weights_only=True)
    trainer.test(task, datamodule=datamodule, ckpt_path=ckpt, verbose=False, weights_only=True)

    posthoc = evaluate_posthoc(cfg, task, stats)
    summary = {
        "val": task.results.get("val", {}),
        "test": task.results.get("test", {}),
        "posthoc": posthoc,
        "posthoc_skipped": getattr(task, "posthoc_skipped", {}),
        "class_counts": stats.class_counts,
        "class_names": stats.class_names,
        "task": stats.task,
        "data": cfg.data.get("name"),
        "model": cfg.model.get("name"),
        "loss": loss_name,
        "seed": int(cfg.seed),
        "loss_hparams": {k: v for k, v in OmegaConf.to_container(cfg.loss, resolve=True).items() if k != "name"},
        "best_checkpoint": ckpt_cb.best_model_path or None,
        "peak_memory_mb": peak_memory_mb(),
        "nonfinite_batches_skipped": task.guard.skipped if task.guard is not None else 0,
        "versions": versions(),
        "git_commit": git_commit(),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "epochs_completed": int(trainer.current_epoch),
        "global_step": int(trainer.global_step),
        "wall_time_s": round(time.time() - t0, 3),
        **stats.extra,
    }
    if trainer.is_global_zero:
        write_json_atomic(run_dir / "summary.json", summary)
        write_plots(run_dir, summary, task, stats, loggers, trainer.global_step)
        print_final_table(summary, run_dir)
    finish_loggers(loggers)  # every job of a multirun: closes wandb, prints the sync line once
    metric = cfg.get("optimized_metric", "val/balanced_accuracy")
    split, _, key = metric.partition("/")
    value = summary.get(split, {}).get(key)
    if value is None:
        raise ImbalError(f"optimized_metric '{metric}' was not computed; e.g. val/balanced_accuracy")
    return float(value)


def evaluate_posthoc(cfg: DictConfig, task, stats) -> dict[str, dict]:
    """Score every enabled post-hoc correction on the test split of the best model."""
    from imbal import posthoc as ph
    from imbal.metrics import ClassificationMetrics

    if "val" not in task.outputs or "test" not in task.outputs:
        return {}
    val, test = task.outputs["val"], task.outputs["test"]
    ctx = ph.PosthocContext(
        stats=stats,
        val_logits=val["logits"],
        val_targets=val["targets"],
        test_logits=test["logits"],
        test_targets=test["targets"],
        val_features=val["features"],
        test_features=test["features"],
        head=task.head,
    )
    posthoc_cfg = OmegaConf.to_container(cfg.get("posthoc"), resolve=True) if cfg.get("posthoc") else {}
    out = {}
    corrected = ph.apply(posthoc_cfg, ctx, skip_errors=True)
    task.posthoc_skipped = ctx.info.get("skipped", {})
    for name, logits in corrected.items():
        metrics = ClassificationMetrics(stats)
        metrics.update(logits, test["targets"])
        out[name] = {**metrics.compute(), **ctx.info.get(name, {})}
    return out


def write_plots(run_dir: Path, summary: dict, task, stats, loggers, step: int) -> list[Path]:
    """The run's figures (imbal/plots.py) in <run_dir>/plots, also sent to TensorBoard/wandb.

    A figure that fails to draw costs a warning, never the run: summary.json is already written.
    """
    import warnings

    from imbal.plots import write_run_plots

    try:
        return write_run_plots(run_dir, summary, task.outputs, stats, loggers, step=step)
    except Exception as exc:  # noqa: BLE001 - plotting must not fail a finished run
        warnings.warn(f"run plots failed: {type(exc).__name__}: {exc}", stacklevel=2)
        return []


def print_final_table(summary: dict, run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"imbal: {summary['data']} / {summary['model']} / {summary['loss']} (seed {summary['seed']})")
    table.add_column("metric")
    table.add_column("val", justify="right")
    table.add_column("test", justify="right")
    first = ["accuracy", "balanced_accuracy", "macro_f1", "log_loss"]
    keys = [k for k in first if k in summary["test"] or k in summary["val"]]
    keys += [k for k in summary["test"] if k not in keys and k != "num_samples" and isinstance(summary["test"][k], (int, float))]
    for key in keys:
        v, t = summary["val"].get(key), summary["test"].get(key)
        table.add_row(key, "-" if v is None else f"{v:.4f}", "-" if t is None else f"{t:.4f}")
    for name, res in summary.get("posthoc", {}).items():
        table.add_row(f"balanced_accuracy (post-hoc {name})", "", f"{res['balanced_accuracy']:.4f}")
    if "bayes_balanced_error" in summary:
        table.add_row("bayes balanced acc", "", f"{1 - summary['bayes_balanced_error']:.4f}")
    console = Console()
    console.print(table)
    console.print(f"run dir: {run_dir}")
    if (run_dir / "plots").is_dir():
        console.print(f"plots: {run_dir / 'plots'}")
    console.print(f"best checkpoint: {summary['best_checkpoint'] or '(none: no checkpoint was saved)'}")
    console.print(f"wall time: {summary['wall_time_s']:.1f} s")
