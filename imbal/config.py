"""Hydra glue: where ``conf/`` is, generated loss config nodes, one-line checks of group choices."""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path
from typing import Any, Iterable

from imbal.errors import ImbalError

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

#: bump when the cached nodes' layout changes
NODES_VERSION = 1
LOSS_GROUP = "imbal.losses"


def loss_names() -> list[str]:
    """Names of every registered loss, read from the entry points alone (no loss, no torch imported)."""
    from importlib.metadata import entry_points

    return sorted({ep.name for ep in entry_points(group=LOSS_GROUP)})


def _compute_loss_nodes(names: Iterable[str]) -> dict[str, Any]:
    """``{"nodes": name -> node, "failed": name -> message}`` for ``names`` (imports each loss, hence torch)."""
    nodes: dict[str, Any] = {}
    failed: dict[str, str] = {}
    for name in names:
        try:
            nodes[name] = loss_node(name)
        except ImbalError as exc:
            failed[name] = str(exc)
    return {"nodes": nodes, "failed": failed}


def loss_nodes(use_cache: bool = True) -> dict[str, Any]:
    """The generated ``loss`` nodes of every registered loss without a YAML, and the losses that failed to load.

    Building a node reads the loss's signature, which imports the loss and torch (seconds);
    the result is cached under :func:`imbal.cache.cache_root` with the key of the ``imbal losses``
    listing (entry points, loss sources' mtimes) plus the loss YAMLs, so with unchanged plugins
    and sources this is a file read and ``train.py --help`` never imports torch.  A result
    with a failed plugin is not cached.
    """
    from imbal.cache import keyed_json
    from imbal.cli import _listing_key

    have_yaml = set(yaml_options("loss"))
    names = [n for n in loss_names() if n not in have_yaml]
    key = _listing_key() if use_cache else None
    if key is not None:
        key = f"{NODES_VERSION}:{key}:{','.join(sorted(have_yaml))}"
    # a plugin that failed may load once its dependency is installed (the key would not change): not cached
    return keyed_json("loss-nodes.json", key, lambda: _compute_loss_nodes(names), keep=lambda r: not r["failed"])


def register_configs() -> list[str]:
    """Store a Hydra config node (group ``loss``) for every registered loss without a YAML.

    Called by ``train.py`` before Hydra composes, so ``loss=<plugin>`` and
    ``loss.<hparam>=v`` work for any installed plugin with no YAML.  A plugin
    that fails to import is skipped with a warning naming it and its error.
    The nodes come from :func:`loss_nodes` (cached: no torch import on a hit).
    Returns the names stored.
    """
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    found = loss_nodes()
    stored = []
    for name, node in found["nodes"].items():
        cs.store(group="loss", name=name, node=node)
        _registered.add(name)
        stored.append(name)
    for message in found["failed"].values():
        warnings.warn(message, stacklevel=2)
    return stored


def share_config_store() -> None:
    """Let copies of Hydra's config repository share its ConfigStore instead of deep-copying it.

    Hydra deep-copies its repository for every group it lists (``--help`` lists ~100, the
    choice checks one per group), and each copy takes the process-wide ConfigStore along
    (Hydra's own schema: ~0.05 s a copy, seconds for ``--help``).  The store is a singleton,
    only read through these copies, and its ``load`` hands out deep copies of its nodes, so
    a copy of it may be the store itself.  Called by the ``train`` entry point.
    """
    from hydra.core.config_store import ConfigStore

    if "__deepcopy__" not in vars(ConfigStore):
        ConfigStore.__deepcopy__ = lambda self, memo: self


class ConfigSearch:
    """The config groups and options Hydra will see for a command line, asked of Hydra itself.

    Built from the same search path Hydra builds for ``train.py`` (imbal's ``conf/``,
    search-path plugins, ``--config-dir``, ``hydra.searchpath=[...]`` and every node in
    Hydra's ConfigStore, where the registered losses are), so a user's YAML is a valid
    choice in every group.  Hydra has no public call for this: it uses the same internal
    classes its own ``hydra.main`` uses (``hydra._internal``).
    """

    def __init__(self, config_dir: str | None = None, overrides: Iterable[str] = (), config_name: str = "train"):
        from hydra._internal.config_loader_impl import ConfigLoaderImpl
        from hydra._internal.utils import create_config_search_path
        from hydra.core.config_search_path import SearchPathQuery

        search_path = create_config_search_path(str(conf_dir()))
        if config_dir:
            path = Path(config_dir).expanduser().absolute()
            if not path.is_dir():
                raise ImbalError(f"--config-dir {config_dir}: no such directory")
            search_path.prepend("command-line", f"file://{path}", anchor=SearchPathQuery(provider="schema"))
        self.loader = ConfigLoaderImpl(config_search_path=search_path)
        self.config_name = config_name
        self.overrides = [o for o in overrides if o.lstrip("+~").startswith("hydra.searchpath=")]

    def groups(self) -> list[str]:
        """The top-level config groups (``hydra`` left out: Hydra checks its own)."""
        groups = self.loader.get_group_options("", results_filter=_group_type(), config_name=self.config_name,
                                               overrides=self.overrides)
        return sorted(g for g in groups if g != "hydra")

    def options(self, group: str) -> list[str]:
        return sorted(self.loader.get_group_options(group, config_name=self.config_name, overrides=self.overrides))

    def load(self, group: str, option: str) -> dict:
        """An option's own YAML/ConfigStore node (its defaults list not applied), as a dict."""
        from omegaconf import OmegaConf

        found = self.loader.repository.load_config(f"{group}/{option}")
        if found is None:
            return {}
        node = OmegaConf.to_container(found.config, resolve=False)
        return node if isinstance(node, dict) else {}


def _group_type():
    from hydra.core.object_type import ObjectType

    return ObjectType.GROUP


#: Hydra's command-line flags that take a value, by their long name
_VALUE_FLAGS = {"-cd": "--config-dir", "--config-dir": "--config-dir", "-cn": "--config-name",
                "--config-name": "--config-name", "-cp": "--config-path", "--config-path": "--config-path",
                "-c": "--cfg", "--cfg": "--cfg", "-p": "--package", "--package": "--package",
                "--experimental-rerun": "--experimental-rerun"}
_INFO_VALUES = ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath")


def split_argv(argv: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """A ``train.py`` command line as (Hydra's flags -> value, overrides)."""
    argv = list(argv)
    flags: dict[str, str] = {}
    overrides: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in _VALUE_FLAGS and eq:
            flags[_VALUE_FLAGS[name]] = value
        elif arg in _VALUE_FLAGS and i + 1 < len(argv):
            flags[_VALUE_FLAGS[arg]] = argv[i + 1]
            i += 1
        elif arg in ("-i", "--info") and i + 1 < len(argv) and argv[i + 1] in _INFO_VALUES:
            flags["--info"] = argv[i + 1]
            i += 1
        elif arg.startswith("-"):
            flags[arg] = ""
        else:
            overrides.append(arg)
        i += 1
    return flags, overrides


def config_search(argv: Iterable[str] = ()) -> ConfigSearch:
    """:class:`ConfigSearch` of a ``train.py`` command line (``--config-dir``/``-cd``, ``--config-name``/``-cn``)."""
    flags, overrides = split_argv(argv)
    return ConfigSearch(flags.get("--config-dir"), overrides, flags.get("--config-name") or "train")


def _choice_values(override) -> list[str] | None:
    """The option names an override picks (several for a sweep ``a,b``); None when it names no plain option."""
    from hydra.core.override_parser.types import ChoiceSweep

    value = override.value()
    values = value.list if isinstance(value, ChoiceSweep) else [value]
    if not all(isinstance(v, str) for v in values) or any("${" in v or "*" in v for v in values):
        return None
    return [v for v in values if v not in ("", "null")]


def check_choices(argv: Iterable[str], search: ConfigSearch | None = None) -> None:
    """Refuse an unknown group option with one line naming the valid choices (a user's YAMLs included).

    Hydra's own message for this spans many lines (and the search path); this check runs
    first on the command line's overrides, parsed by Hydra's own override parser.  Sweep
    values (``loss=ce,focal``) are checked one by one; ranges, globs and interpolations are
    left to Hydra, as is a command line it cannot parse.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    args = split_argv(argv)[1]
    try:
        parsed = OverridesParser.create().parse_overrides(args)
    except HydraException:
        return
    candidates = [o for o in parsed if not o.is_delete() and o.package is None and "." not in o.key_or_group]
    if not candidates:
        return
    search = search or config_search(argv)
    groups = set(search.groups())
    for override in candidates:
        group = override.key_or_group
        values = _choice_values(override) if group in groups else None
        if not values:
            continue
        valid = search.options(group)
        nodes = set(valid)
        if group == "loss":
            # a registered loss whose plugin fails to import has no config node: it is still a
            # valid name, and asking for it reports the plugin's error in one line
            valid = sorted(nodes | set(loss_names()))
        for value in values:
            if value not in valid:
                raise ImbalError(f"unknown {group} '{value}'; choose one of: {', '.join(valid)}")
            if value not in nodes:  # registered, no node: import it (raises the plugin's error)
                from imbal.losses import registry

                registry.get(value)


def model_accepts(model: str, search: ConfigSearch | None = None) -> list[str]:
    """Modalities a model config accepts (its ``accepts`` key)."""
    search = search or running_search()
    return list(search.load("model", model).get("accepts") or [])


def running_search() -> ConfigSearch:
    """The search of the running Hydra app (its ``--config-dir`` included), else imbal's own ``conf/``."""
    from hydra.core.global_hydra import GlobalHydra

    gh = GlobalHydra.instance()
    if gh.is_initialized():
        search = ConfigSearch.__new__(ConfigSearch)
        search.loader, search.config_name, search.overrides = gh.config_loader(), "train", []
        return search
    return ConfigSearch()


def check_compatible(data_name: str, modality: str, model_name: str, accepts: Iterable[str]) -> None:
    """Refuse a data x model pair whose modalities do not match, naming the models that fit."""
    accepts = list(accepts)
    if modality in accepts:
        return
    search = running_search()
    fitting = [m for m in search.options("model") if modality in model_accepts(m, search)]
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
