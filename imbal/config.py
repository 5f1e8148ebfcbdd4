"""Hydra glue: where ``conf/`` is, generated loss config nodes, one-line checks of group choices."""

from __future__ import annotations

import inspect
import re
import warnings
from pathlib import Path
from typing import Any, Iterable

from imbal.errors import ImbalError

#: Config groups whose options a user picks on the command line.
GROUPS = ("data", "model", "loss", "sampler", "optimizer", "trainer", "logger", "experiment", "hparams_search")


def conf_dir() -> Path:
    """The ``conf/`` directory: the repository's when run from a checkout, else the installed copy."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "conf", here / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise ImbalError(f"imbal's config directory was not found (looked for conf/train.yaml near {here})")


def yaml_options(group: str) -> list[str]:
    """Options of a config group given by YAML files under ``conf/<group>/``."""
    d = conf_dir() / group
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def _plain(value: Any) -> Any:
    """A default as Hydra can store it (tuples become lists)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def loss_node(name: str) -> dict[str, Any]:
    """The generated config node of a registered loss: ``name`` plus its hyper-parameters' defaults."""
    from imbal.losses import registry

    cls = registry.get(name)
    node: dict[str, Any] = {"name": name}
    for key, default in registry.hparams(cls).items():
        # A required hyper-parameter gets "???" (Hydra's missing value):
        # the run then says which key must be given.
        node[key] = "???" if default is inspect.Parameter.empty else _plain(default)
    return node


_registered: set[str] = set()


def register_configs() -> list[str]:
    """Store a Hydra config node (group ``loss``) for every registered loss without a YAML.

    Called by ``train.py`` before Hydra composes, so ``loss=<plugin>`` and
    ``loss.<hparam>=v`` work for any installed plugin with no YAML.  A plugin
    that fails to import is skipped with a warning naming it and its error.
    Returns the names stored.
    """
    from hydra.core.config_store import ConfigStore

    from imbal.losses import registry

    cs = ConfigStore.instance()
    have_yaml = set(yaml_options("loss"))
    stored = []
    for name in registry.available():
        if name in have_yaml:
            continue
        try:
            node = loss_node(name)
        except ImbalError as exc:
            warnings.warn(str(exc), stacklevel=2)
            continue
        cs.store(group="loss", name=name, node=node)
        _registered.add(name)
        stored.append(name)
    return stored


def options(group: str) -> list[str]:
    """Every valid choice of a group: YAML files, plus registered losses for ``loss``."""
    opts = set(yaml_options(group))
    if group == "loss":
        from imbal.losses import registry

        opts |= set(registry.available())
    return sorted(opts)


_CHOICE = re.compile(r"^(?P<prefix>[+~]{0,2})(?P<group>[a-z_]+)=(?P<value>.*)$")


def check_choices(overrides: Iterable[str]) -> None:
    """Refuse an unknown group option with one line naming the valid choices.

    Hydra's own message for this spans many lines (and the search path); this
    check runs first on the command line's overrides.  Sweep values
    (``loss=ce,focal``) are checked one by one; ranges, globs and interpolations
    are left to Hydra.
    """
    for arg in overrides:
        m = _CHOICE.match(arg)
        if not m or m["group"] not in GROUPS or m["prefix"].startswith("~"):
            continue
        raw = m["value"]
        if any(ch in raw for ch in "()[]{}$*") or raw in ("", "null"):
            continue
        valid = options(m["group"])
        for value in raw.split(","):
            if value not in valid:
                raise ImbalError(
                    f"unknown {m['group']} '{value}'; choose one of: {', '.join(valid)}"
                )
            if m["group"] == "loss" and value not in yaml_options("loss"):
                from imbal.losses import registry

                registry.get(value)  # a plugin that fails to load says so here, in one line


def model_accepts(model: str) -> list[str]:
    """Modalities a model config accepts (its ``accepts`` key)."""
    from omegaconf import OmegaConf

    path = conf_dir() / "model" / f"{model}.yaml"
    if not path.is_file():
        return []
    return list(OmegaConf.load(path).get("accepts", []))


def check_compatible(data_name: str, modality: str, model_name: str, accepts: Iterable[str]) -> None:
    """Refuse a data x model pair whose modalities do not match, naming the models that fit."""
    accepts = list(accepts)
    if modality in accepts:
        return
    fitting = [m for m in yaml_options("model") if modality in model_accepts(m)]
    raise ImbalError(
        f"model '{model_name}' accepts {', '.join(accepts) or 'nothing'} inputs, but data '{data_name}' "
        f"gives {modality}; choose model= one of: {', '.join(fitting) or '(none)'}"
    )


def check_output_dirs(overrides: Iterable[str]) -> None:
    """Refuse an output directory that cannot be created, before Hydra tries (its error spans lines)."""
    import os

    targets = ["outputs"]
    for arg in overrides:
        for key in ("hydra.run.dir=", "hydra.sweep.dir="):
            if arg.startswith(key):
                targets.append(arg[len(key):])
    for target in targets:
        if "${" in target:
            continue
        p = Path(target).expanduser().absolute()
        probe = p
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            raise ImbalError(f"cannot create output dir {p}: {probe} exists and is not a directory")
        if not os.access(probe, os.W_OK | os.X_OK):
            raise ImbalError(f"cannot create output dir {p}: {probe} is not writable")
        try:  # os.access says yes to root even on read-only file systems
            probe_file = probe / f".imbal-write-test-{os.getpid()}"
            probe_file.touch()
            probe_file.unlink()
        except OSError as exc:
            raise ImbalError(f"cannot create output dir {p}: {probe} is not writable ({exc.strerror})") from exc
