"""One training run, start to end: ``train(cfg)``."""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from imbal.errors import ImbalError
from imbal.runner import env, rebuild, resume, rundir
from imbal.runner.build import build_callbacks, build_parts, build_trainer, checkpoint_callback, instantiate_dict
from imbal.runner.evaluate import evaluate_posthoc
from imbal.runner.predictions import write_mask_predictions, write_predictions
from imbal.runner.summary import RunSummary, absent_from_results
from imbal.runner.trainer_options import apply_trainer_options, check_launch, check_trainer_options
from imbal.runner.validate import check_before_fit, validate_config


def train(cfg: DictConfig) -> float:
    """Run one experiment and return the metric a sweeper optimises (``cfg.optimized_metric``).

    ``summary.json`` is written in the run directory only when the run completes.
    """
    from imbal.extras import check_config

    t0 = time.time()
    env.quiet_known_warnings()
    check_config(cfg)  # a part whose extra is missing: one line naming it, before any file is read
    validate_config(cfg)  # bad values (seed, lr, epochs, precision, post-hoc parameters, ...): one line
    check_launch(cfg)
    run_dir = Path(cfg.run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    with rundir.RunDirLock(run_dir):
        return _train(cfg, run_dir, t0)


def _train(cfg: DictConfig, run_dir: Path, t0: float) -> float:
    import lightning as L

    from imbal.reporting.loggers import finish_loggers, log_config

    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    check_trainer_options(cfg.trainer)
    datamodule, loss_name, task = build_parts(cfg)
    stats = datamodule.stats
    check_before_fit(cfg, stats)  # the metric this task records, corrections the parts registered

    callbacks = build_callbacks(cfg, run_dir)
    ckpt_cb = checkpoint_callback(callbacks)
    ckpt_dir = Path(ckpt_cb.dirpath) if ckpt_cb is not None and ckpt_cb.dirpath else run_dir / rundir.CHECKPOINT_DIR
    resume_from = rundir.resume_checkpoint(cfg.get("resume"), ckpt_dir)
    # the checkpoint's run must be this run (before any logger rewrites a file of the run dir)
    ckpt_data = resume.check_resume_config(cfg, resume_from) if resume_from else None
    loggers = instantiate_dict(cfg.get("logger"))
    csv_rows = resume.read_csv_rows(loggers) if ckpt_data is not None else {}  # read before the loggers start
    log_config(loggers, OmegaConf.to_container(cfg, resolve=True))
    trainer, options = build_trainer(cfg, run_dir, callbacks, loggers)
    apply_trainer_options(task, options, trainer.strategy.root_device)
    if trainer.is_global_zero and ckpt_data is not None:
        resume.keep_csv_rows(loggers, csv_rows, int(ckpt_data.get("epoch", -1)))  # epochs the checkpoint holds
    del ckpt_data
    if trainer.is_global_zero:
        rundir.write_manifest(datamodule, run_dir, resuming=resume_from is not None)
        rundir.write_stats(stats, run_dir)

    # weights_only: a checkpoint holds plain data (no pickled objects), so loading one runs no code
    trainer.fit(task, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    ckpt = "best" if ckpt_cb is not None and ckpt_cb.best_model_path else None
    trainer.validate(task, datamodule=datamodule, ckpt_path=ckpt, verbose=False, weights_only=True)
    trainer.test(task, datamodule=datamodule, ckpt_path=ckpt, verbose=False, weights_only=True)

    posthoc, posthoc_logits = evaluate_posthoc(cfg, task, stats)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    summary = RunSummary(
        data=str(cfg.data.get("name") or datamodule.name),
        model=str(cfg.model.get("name") or type(task.backbone).__name__),
        loss=loss_name,
        seed=int(cfg.seed),
        task=stats.task,
        class_counts=stats.class_counts,
        class_names=stats.class_names,
        val=task.results.get("val", {}),
        test=task.results.get("test", {}),
        posthoc=posthoc,
        posthoc_skipped=getattr(task, "posthoc_skipped", {}),
        loss_hparams={k: v for k, v in resolved["loss"].items() if k != "name"},
        best_checkpoint=rebuild.stored_checkpoint_path(ckpt_cb.best_model_path, run_dir) if ckpt_cb is not None else None,
        epochs_completed=int(trainer.current_epoch),
        global_step=int(trainer.global_step),
        wall_time_s=round(time.time() - t0, 3),
        nonfinite_batches_skipped=task.guard.skipped if task.guard is not None else 0,
        peak_memory_mb=env.peak_memory_mb(),
        versions=env.versions(),
        git_commit=env.git_commit(),
        config=resolved,
        data_extra=dict(stats.extra),
        absent_classes=absent_from_results(task.results, stats.class_names, warn=trainer.is_global_zero),
        stage=(resolved.get("stage") or {}).get("name"),  # a stage-2 run: the stage-1 run it started from
        init_from=getattr(task, "init_record", None),
    )
    if trainer.is_global_zero:
        from imbal.reporting.table import print_final_table

        # the scored val/test logits (classification; task.outputs is gathered over ranks), before
        # summary.json, whose presence marks a complete run
        write_predictions(run_dir, task.outputs, stats, posthoc_logits, world_size=trainer.world_size)
        if task.mask_predictions:  # segmentation: per-image RLE masks (predictions/<split>.jsonl)
            write_mask_predictions(run_dir, task.mask_predictions, stats, task.test_metrics.threshold,
                                   {s: datamodule.split_ids(s) for s in task.mask_predictions},
                                   world_size=trainer.world_size)
        summary.write(run_dir)
        write_plots(run_dir, summary, task, stats, loggers, trainer.global_step)
        print_final_table(summary, run_dir)
    # every job of a multirun: closes wandb, prints the sync line once; summary.json to MLflow
    finish_loggers(loggers, run_dir=run_dir if trainer.is_global_zero else None)
    metric = cfg.get("optimized_metric", "val/balanced_accuracy")
    value = summary.metric(metric)
    if value is None:
        raise ImbalError(f"optimized_metric '{metric}' was not computed; e.g. val/balanced_accuracy")
    return value


_plots_noted = False


def write_plots(run_dir: Path, summary: RunSummary, task, stats, loggers, step: int) -> list[Path]:
    """The run's figures (imbal/reporting/plots.py) in <run_dir>/plots, also sent to TensorBoard/wandb.

    A figure that fails to draw costs a warning, never the run: summary.json is already written.
    """
    import warnings

    from imbal.extras import available

    if not available("matplotlib"):
        global _plots_noted
        if not _plots_noted:  # once per process (every job of a multirun would repeat it)
            _plots_noted = True
            print("imbal: run plots skipped: they need matplotlib: pip install 'imbal[plots]'", flush=True)
        return []
    from imbal.reporting.plots import write_run_plots

    try:
        return write_run_plots(run_dir, summary.to_dict(), task.outputs, stats, loggers, step=step)
    except Exception as exc:  # noqa: BLE001 - plotting must not fail a finished run
        warnings.warn(f"run plots failed: {type(exc).__name__}: {exc}", stacklevel=2)
        return []
