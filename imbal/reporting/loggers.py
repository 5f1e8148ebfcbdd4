"""Experiment loggers beyond Lightning's defaults: a Weights & Biases logger that never prompts, MLflow.

``conf/logger/wandb.yaml`` names :func:`wandb_logger` as its ``_target_``.  It
picks the mode without asking anyone:

1. ``mode`` from the config (``logger.wandb.mode=offline``), if given;
2. else ``WANDB_MODE`` from the environment, if set;
3. else ``online`` when an API key is available (``WANDB_API_KEY``, or a
   ``wandb login`` entry in ``~/.netrc``), ``offline`` otherwise.

Offline runs are written under ``<run_dir>/wandb/offline-run-*``; at the end of
the run :func:`finish_loggers` closes the wandb run and prints the
``wandb sync`` command that uploads it, once.  Online mode without a key is
refused with one line instead of wandb's interactive login prompt; an online
run whose server cannot be reached within ``init_timeout`` seconds logs
offline instead, with a warning, rather than failing the training run.

In a Hydra multirun the jobs of a sweep share a group (the sweep directory)
unless the config names one.

``conf/logger/mlflow.yaml`` names :func:`mlflow_logger`: a local file store in the run dir
unless ``logger.mlflow.tracking_uri`` (or ``MLFLOW_TRACKING_URI``) names another; the run's
plots and ``summary.json`` become artifacts of the MLflow run at its end.
"""

from __future__ import annotations

import netrc
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence
from urllib.parse import urlparse

from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

from imbal.errors import ImbalError

MODES = ("online", "offline", "disabled")
#: wandb's older spelling of ``offline``.
_ALIASES = {"dryrun": "offline"}
#: Hosts ``wandb login`` may have stored a key for when ``WANDB_BASE_URL`` is unset.
LEGACY_BASE_URL = "https://api.wandb.ai"


def _default_base_urls() -> list[str]:
    try:
        from wandb.sdk.lib.urls import DEFAULT_BASE_URL  # the installed wandb's default server
    except ImportError:  # older or newer layouts
        return [LEGACY_BASE_URL]
    return list(dict.fromkeys([DEFAULT_BASE_URL, LEGACY_BASE_URL]))


def _netrc_has_key(base_url: str, netrc_path: str | os.PathLike | None = None) -> bool:
    """Whether ``wandb login`` stored a key for ``base_url``'s host (no network, no prompt)."""
    host = urlparse(base_url).hostname or base_url
    path = netrc_path or os.environ.get("NETRC") or Path.home() / ".netrc"
    try:
        auth = netrc.netrc(os.fspath(path)).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(auth and auth[2])


def has_api_key(env: Mapping[str, str] | None = None, netrc_path: str | os.PathLike | None = None) -> bool:
    env = os.environ if env is None else env
    if env.get("WANDB_API_KEY", "").strip():
        return True
    urls = [env["WANDB_BASE_URL"]] if env.get("WANDB_BASE_URL") else _default_base_urls()
    return any(_netrc_has_key(url, netrc_path) for url in urls)


def choose_mode(
    mode: str | None = None, env: Mapping[str, str] | None = None, netrc_path: str | os.PathLike | None = None
) -> str:
    """The wandb mode for a run: config ``mode``, else ``WANDB_MODE``, else online iff a key is available.

    Raises:
        ImbalError: an unknown mode, or ``online`` with no API key (wandb would
            prompt for one).
    """
    env = os.environ if env is None else env
    source = "logger.wandb.mode"
    if not mode:
        mode, source = env.get("WANDB_MODE") or None, "WANDB_MODE"
    if mode:
        mode = _ALIASES.get(str(mode).strip().lower(), str(mode).strip().lower())
        if mode not in MODES:
            raise ImbalError(f"{source}='{mode}' is not a wandb mode; expected one of {', '.join(MODES)}")
        if mode == "online" and not has_api_key(env, netrc_path):
            raise ImbalError(
                f"{source}=online needs an API key: set WANDB_API_KEY (or run `wandb login`), "
                "or leave the mode unset to log offline into the run dir"
            )
        return mode
    return "online" if has_api_key(env, netrc_path) else "offline"


def sweep_group() -> str | None:
    """The sweep directory of a Hydra multirun (wandb's ``group``), or None outside one."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized():
            return None
        hc = HydraConfig.get()
        if hc.mode != RunMode.MULTIRUN:
            return None
        sweep_dir = Path(str(hc.sweep.dir))
    except Exception:  # noqa: BLE001 - no Hydra context: no group
        return None
    # The last two parts name a sweep well (`multirun/2026-01-31/12-00-00` ->
    # `2026-01-31/12-00-00`, `sweeps/loss_cmp` -> `sweeps/loss_cmp`); wandb caps groups at 128 chars.
    return "/".join(sweep_dir.parts[-2:])[-128:] or None


class ImbalWandbLogger(WandbLogger):
    """Lightning's WandbLogger that, online, logs offline instead when the server cannot be reached."""

    @property
    def experiment(self):
        try:
            return super().experiment
        except Exception as exc:  # noqa: BLE001 - wandb raises CommError, UsageError, TimeoutError...
            if self._wandb_init.get("mode") != "online" or self._experiment is not None:
                raise
            import wandb

            if wandb.run is not None:
                wandb.finish()
            first = (str(exc).strip().splitlines() or [""])[0]
            warnings.warn(
                f"wandb: could not start an online run ({type(exc).__name__}: {first[:200]}); "
                f"logging offline into {self._wandb_init.get('dir')} instead",
                stacklevel=2,
            )
            self._wandb_init["mode"] = "offline"
            self._wandb_init["settings"] = wandb.Settings(quiet=True)
            return super().experiment


def wandb_logger(
    save_dir: str | os.PathLike,
    project: str = "imbal",
    name: str | None = None,
    group: str | None = None,
    tags: Sequence[str] = (),
    job_type: str | None = None,
    entity: str | None = None,
    mode: str | None = None,
    log_model: bool | str = False,
    init_timeout: float = 60.0,
    **kwargs: Any,
):
    """A Lightning ``WandbLogger`` whose mode comes from the config and environment, never from a prompt.

    Args:
        save_dir: the run directory; wandb writes ``<save_dir>/wandb/``.
        project, name, group, tags, job_type, entity: as in ``wandb.init``;
            ``group=None`` means the sweep directory in a Hydra multirun.
        mode: ``online``, ``offline`` or ``disabled``; None picks (module docstring).
        log_model: upload checkpoints as artifacts (online only).
        init_timeout: seconds to wait for the server when online; past it the
            run logs offline instead (with a warning) rather than failing.
        **kwargs: passed on to ``wandb.init``.
    """
    import wandb

    chosen = choose_mode(mode)
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    if chosen != "online":
        log_model = False  # artifacts need a server
    if wandb.run is not None:
        # A previous job of this process (a Hydra multirun) left its run open.
        wandb.finish()
    settings = kwargs.pop("settings", None) or wandb.Settings(
        # Offline: wandb's own end-of-run text is replaced by one `wandb sync` line (finish_loggers).
        quiet=chosen == "offline",
        init_timeout=float(init_timeout),
    )
    logger = ImbalWandbLogger(
        save_dir=str(save_dir),
        project=project,
        name=name,
        group=group if group is not None else sweep_group(),
        tags=[str(t) for t in tags] or None,
        job_type=job_type,
        entity=entity,
        mode=chosen,
        log_model=log_model,
        settings=settings,
        **kwargs,
    )
    # Lightning always passes `anonymous`, which wandb >= 0.19 only warns about.
    init_kwargs = getattr(logger, "_wandb_init", None)
    if isinstance(init_kwargs, dict) and init_kwargs.get("anonymous") is None:
        init_kwargs.pop("anonymous", None)
    return logger


def mlflow_logger(
    save_dir: str | os.PathLike,
    experiment_name: str = "imbal",
    run_name: str | None = None,
    tracking_uri: str | None = None,
    tags: Mapping[str, Any] | None = None,
    log_model: bool | str = False,
    **kwargs: Any,
):
    """Lightning's ``MLFlowLogger``, by default into a local file store in the run dir.

    Args:
        save_dir: the run directory; with no ``tracking_uri`` (and no ``MLFLOW_TRACKING_URI``)
            the store is ``file:<save_dir>/mlruns`` (``mlflow ui --backend-store-uri <that>``).
        experiment_name, run_name, tags, log_model: as in ``MLFlowLogger``.
        tracking_uri: a server (``http://host:5000``), a database or another ``file:`` store.
        **kwargs: passed on to ``MLFlowLogger``.
    """
    from imbal.extras import require

    require("mlflow", "mlflow", feature="logger=mlflow")
    from lightning.pytorch.loggers import MLFlowLogger

    store = Path(save_dir).expanduser().resolve() / "mlruns"
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or store.as_uri()
    if uri == store.as_uri():
        store.mkdir(parents=True, exist_ok=True)
    if uri.startswith("file:") or "://" not in uri:
        # MLflow >= 3.x refuses a file store unless told: a local store is what was asked for
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MLFlowLogger(
        experiment_name=experiment_name,
        run_name=run_name,
        tracking_uri=uri,
        tags={str(k): str(v) for k, v in (tags or {}).items()} or None,
        log_model=log_model,
        **kwargs,
    )


def is_wandb(logger: Any) -> bool:
    return isinstance(logger, WandbLogger)


def is_mlflow(logger: Any) -> bool:
    from lightning.pytorch.loggers import MLFlowLogger

    return isinstance(logger, MLFlowLogger)


def log_artifacts(loggers: Iterable[Any], paths: Iterable[str | os.PathLike], folder: str | None = None) -> None:
    """Upload files as artifacts of every MLflow run among ``loggers`` (others are left alone)."""
    paths = [Path(p) for p in paths]
    for lg in loggers:
        if is_mlflow(lg):
            for path in paths:
                if path.is_file():
                    lg.experiment.log_artifact(lg.run_id, str(path), artifact_path=folder)


def is_tensorboard(logger: Any) -> bool:
    return isinstance(logger, TensorBoardLogger)


def log_config(loggers: Iterable[Any], config: Mapping[str, Any]) -> None:
    """Record the run's resolved config as hyper-parameters in every logger (csv: hparams.yaml)."""
    for lg in loggers:
        lg.log_hyperparams(dict(config))


def finish_loggers(loggers: Iterable[Any], print_fn=print, run_dir: str | os.PathLike | None = None) -> list[Path]:
    """Close every wandb run (call once per run, also per job of a multirun); returns offline run dirs.

    For an offline run it prints, once, the ``wandb sync`` command that uploads it.  With
    ``run_dir``, its ``summary.json`` becomes an artifact of every MLflow run.  Other loggers
    are flushed by Lightning itself.
    """
    loggers = list(loggers)
    if run_dir is not None:
        log_artifacts(loggers, [Path(run_dir) / "summary.json"])
    offline: list[Path] = []
    for lg in loggers:
        if not is_wandb(lg) or getattr(lg, "_experiment", None) is None:
            continue
        run = lg.experiment
        run_path = Path(run.dir).parent  # .../wandb/offline-run-<date>-<id>/files -> its parent
        was_offline = bool(getattr(run.settings, "_offline", False)) or run.settings.mode in ("offline", "dryrun")
        run.finish()
        lg._experiment = None
        if was_offline:
            offline.append(run_path)
            print_fn(f"wandb: offline run saved in {run_path}; upload it with: wandb sync {run_path}")
    return offline
