"""Loss registry: every loss, built-in or third-party, is an entry point.

A package registers a loss by declaring, in its ``pyproject.toml``::

    [project.entry-points."imbal.losses"]
    poly1 = "imbal_polyloss:Poly1Loss"

imbal declares its own built-in losses the same way, so a plugin is a
first-class citizen.  The registry keeps each entry point's dotted path and
imports it only when the loss is asked for (as fsspec does); the listing is
cached and can be refreshed (as xarray's backends).  A plugin that fails to
import, or that claims a name already taken, is reported with its package name
and error and never breaks the other losses (as keyring's ``_load_plugins``).
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Mapping

from torch import nn

from imbal.errors import ImbalError
from imbal.kinds import MULTICLASS

GROUP = "imbal.losses"

#: Data-dependent arguments the builder injects when a loss names them in its
#: ``__init__`` signature.  Nothing else is ever injected.
INJECTABLE = ("class_counts", "num_classes", "task", "test_prior", "num_train")

_OWN_PACKAGE = "imbal"


class LossPluginError(ImbalError):
    """A registered loss could not be loaded (import error, bad object)."""


@dataclass
class LossEntry:
    name: str
    value: str  # dotted "module:attr", imported on first use
    package: str  # distribution that declared it
    version: str = ""
    _obj: Any = field(default=None, repr=False)
    _error: str | None = field(default=None, repr=False)

    def load(self) -> type:
        if self._obj is not None:
            return self._obj
        if self._error is not None:
            raise LossPluginError(self._error)
        try:
            module_name, _, attr = self.value.partition(":")
            obj = importlib.import_module(module_name)
            for part in attr.split(".") if attr else []:
                obj = getattr(obj, part)
        except Exception as exc:  # any failure of third-party code is reported, not raised raw
            self._error = (
                f"loss '{self.name}' from package '{self.package}' ({self.value}) failed to load: "
                f"{type(exc).__name__}: {exc}"
            )
            raise LossPluginError(self._error) from exc
        if not (inspect.isclass(obj) and issubclass(obj, nn.Module)):
            self._error = (
                f"loss '{self.name}' from package '{self.package}' ({self.value}) is not an "
                f"nn.Module subclass but {type(obj).__name__}"
            )
            raise LossPluginError(self._error)
        self._obj = obj
        return obj

    @property
    def error(self) -> str | None:
        return self._error


_entries: dict[str, LossEntry] | None = None
_conflicts: list[str] = []


def _discover() -> dict[str, LossEntry]:
    found: dict[str, list[LossEntry]] = {}
    for ep in entry_points(group=GROUP):
        dist = getattr(ep, "dist", None)
        package = dist.metadata["Name"] if dist is not None else "<unknown>"
        version = dist.version if dist is not None else ""
        entry = LossEntry(ep.name, ep.value, package, version)
        bucket = found.setdefault(ep.name, [])
        # The same distribution can be seen twice (e.g. an editable install
        # plus a stale egg-info on sys.path): not a conflict.
        if not any(e.package == entry.package and e.value == entry.value for e in bucket):
            bucket.append(entry)
    entries: dict[str, LossEntry] = {}
    conflicts: list[str] = []
    for name, bucket in found.items():
        # imbal's own loss keeps its name; between plugins the first package
        # in alphabetical order does, so the choice never depends on sys.path.
        bucket.sort(key=lambda e: (e.package != _OWN_PACKAGE, e.package.lower()))
        entries[name] = bucket[0]
        for other in bucket[1:]:
            conflicts.append(
                f"loss name '{name}' registered by package '{other.package}' ({other.value}) "
                f"is already taken by package '{bucket[0].package}' ({bucket[0].value}); ignored"
            )
    global _conflicts
    _conflicts = conflicts
    for msg in conflicts:
        warnings.warn(msg, stacklevel=3)
    return dict(sorted(entries.items()))


def entries(refresh: bool = False) -> dict[str, LossEntry]:
    """All registered entries by name (not imported)."""
    global _entries
    if _entries is None or refresh:
        _entries = _discover()
    return _entries


def refresh() -> None:
    """Forget the cached listing and loaded classes (after installing a plugin)."""
    entries(refresh=True)


def available(refresh: bool = False) -> list[str]:
    """Sorted names of every registered loss (plugins that fail to import included)."""
    return list(entries(refresh))


def conflicts() -> list[str]:
    """Messages for entry points whose name was already taken."""
    entries()
    return list(_conflicts)


def get(name: str) -> type:
    """The loss class registered as ``name`` (imports it on first use)."""
    table = entries()
    if name not in table:
        raise ImbalError(f"unknown loss '{name}'; valid names: {', '.join(table) or '(none registered)'}")
    return table[name].load()


def broken() -> dict[str, str]:
    """Name -> error for every registered loss that fails to load."""
    out = {}
    for name, entry in entries().items():
        try:
            entry.load()
        except LossPluginError as exc:
            out[name] = str(exc)
    return out


def supported_tasks(cls: type) -> tuple[str, ...]:
    """Task kinds a loss class declares; a class without ``tasks`` supports multiclass only."""
    return tuple(getattr(cls, "tasks", (MULTICLASS,)))


def hparams(cls: type) -> dict[str, Any]:
    """Keyword hyper-parameters of a loss with their defaults (injected arguments excluded).

    A parameter without a default is reported with the value ``inspect.Parameter.empty``.
    """
    out: dict[str, Any] = {}
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name == "self" or p.name in INJECTABLE or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        out[p.name] = p.default
    return out


def injected(cls: type) -> tuple[str, ...]:
    """The data-dependent arguments a loss names in its signature."""
    params = inspect.signature(cls.__init__).parameters
    return tuple(n for n in INJECTABLE if n in params)


def describe(name: str) -> dict[str, Any]:
    """Name, package, tasks, hyper-parameters and injected arguments of a loss (for ``imbal losses``)."""
    entry = entries()[name] if name in entries() else None
    if entry is None:
        get(name)  # raises the unknown-name error
    cls = entry.load()
    return {
        "name": name,
        "package": entry.package,
        "version": entry.version,
        "target": entry.value,
        "tasks": supported_tasks(cls),
        "hparams": hparams(cls),
        "injected": injected(cls),
        "summary": (inspect.getdoc(cls) or "").split("\n", 1)[0],
    }


def _stats_dict(stats: Any) -> dict[str, Any]:
    if stats is None:
        return {}
    if isinstance(stats, Mapping):
        return dict(stats)
    return {k: getattr(stats, k) for k in INJECTABLE if hasattr(stats, k)}


def build(name: str, *, stats: Any = None, **hparams_: Any) -> nn.Module:
    """Build the loss registered as ``name``.

    Args:
        name: entry-point name (``imbal.losses.available()`` lists them).
        stats: the data module's ``DataStats`` or a plain dict with
            ``class_counts``, ``num_classes``, ``task`` (and optionally
            ``test_prior``, ``num_train``).  The arguments of these that the loss names in its
            ``__init__`` are injected; an explicit keyword wins over ``stats``.
        **hparams_: the loss's own hyper-parameters.

    Raises:
        ImbalError: unknown name, unknown hyper-parameter, a data-dependent
            argument the data does not provide, or a task the loss does not support.
    """
    cls = get(name)
    sd = _stats_dict(stats)
    params = inspect.signature(cls.__init__).parameters
    accepts_kwargs = any(p.kind == p.VAR_KEYWORD for p in params.values())
    valid = hparams(cls)
    for key in hparams_:
        if key not in params and not accepts_kwargs:
            raise ImbalError(
                f"loss '{name}' has no hyper-parameter '{key}'; valid: {', '.join(valid) or '(none)'}"
            )
    task = hparams_.get("task", sd.get("task"))
    tasks = supported_tasks(cls)
    if task is not None and task not in tasks:
        raise ImbalError(f"loss '{name}' does not support task '{task}'; it supports: {', '.join(tasks)}")
    kwargs = dict(hparams_)
    for arg in injected(cls):
        if arg in kwargs:
            continue
        value = sd.get(arg)
        required = params[arg].default is inspect.Parameter.empty
        if value is None:
            if required:
                raise ImbalError(
                    f"loss '{name}' needs '{arg}' from the data, but the data module provides none"
                )
            continue
        kwargs[arg] = list(value) if arg in ("class_counts", "test_prior") else value
    return cls(**kwargs)


def origin(loss: Any) -> str:
    """``loss 'name' (package dist version)`` of a built loss, for messages about what it did."""
    for entry in entries().values():
        if entry._obj is not None and entry._obj is type(loss):
            where = " ".join(p for p in (entry.package, entry.version) if p)
            return f"loss '{entry.name}' (package {where})"
    return f"loss {type(loss).__module__}.{type(loss).__qualname__}"


def check_loss_output(loss: Any, value: Any) -> None:
    """Refuse, in one line naming the loss and its package, a loss value training cannot step on.

    ``ImbalanceTask`` checks its first training batch's loss: a one-element tensor with a gradient,
    not a Python number, a per-sample tensor, or a tensor cut from the graph.
    """
    import torch

    expected = "expected a scalar tensor with a gradient"
    if not isinstance(value, torch.Tensor):
        shown = f" ({value})" if isinstance(value, (int, float)) else ""
        raise ImbalError(f"{origin(loss)} returned a {type(value).__name__}{shown}, {expected}")
    if value.numel() != 1:
        raise ImbalError(f"{origin(loss)} returned a tensor of shape {list(value.shape)}, {expected} "
                         "(reduce it, e.g. .mean())")
    if not value.requires_grad:
        raise ImbalError(f"{origin(loss)} returned a tensor without a gradient (detached, or computed "
                         f"outside autograd), {expected}")
