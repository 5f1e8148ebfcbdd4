"""One registry for the parts a config chooses by name: samplers, heads, post-hoc corrections.

A :class:`Registry` maps names to objects (classes or factory functions) of one
kind.  Built-in parts register themselves on import; a user adds one the same
way, or skips the registry and names their own class by its dotted path with
``_target_`` (as in Hydra)::

    HEADS = Registry("head kind")

    @HEADS.register("linear")
    class Linear(nn.Linear): ...

    HEADS.register("mlp", MyHead)                # the call form
    HEADS.build("linear", 512, 10)               # a registered name
    HEADS.build({"name": "linear"}, 512, 10)     # a node: name plus parameters
    HEADS.build("mypkg.heads.MyHead", 512, 10)   # a dotted path, no registration
    HEADS.build({"_target_": "mypkg.heads.MyHead", "dropout": 0.1}, 512, 10)

Every user mistake is one :class:`~imbal.errors.ImbalError` line: an unknown
name lists the choices (``unknown head kind 'x'; choose one of: linear,
cosine``), a ``_target_`` that cannot be imported names the path, a parameter
the part does not take names the ones it does.  Losses are not here: they are
entry points (:mod:`imbal.losses.registry`) so that packages can add them.

The module imports neither torch nor Hydra: a ``_target_`` is imported with
:mod:`importlib` only when it is built.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable, Generic, Iterator, Mapping, TypeVar, overload

from imbal.errors import ImbalError

T = TypeVar("T")

#: Keys of a config node that describe it rather than parametrise it: ``name``
#: labels the node (messages, listings), the others are Hydra's instantiate options.
META_KEYS = ("name", "_target_", "_partial_", "_recursive_", "_convert_")

_MISSING: Any = object()


def locate(path: str, *, kind: str = "object") -> Any:
    """The object a dotted path names: ``pkg.mod.Attr`` or ``pkg.mod:Attr`` (nested attributes allowed).

    Raises:
        ImbalError: one line naming ``path`` when it is not a dotted path, its
            module cannot be imported or the attribute does not exist.
    """
    if not isinstance(path, str) or not path.strip():
        raise ImbalError(f"{kind} _target_ must be a dotted path such as 'mypkg.module.Class', got {path!r}")
    path = path.strip()
    if ":" in path:
        module_name, _, attr = path.partition(":")
        candidates = [(module_name, attr.split(".") if attr else [])]
    else:
        parts = path.split(".")
        if len(parts) < 2:
            raise ImbalError(f"{kind} _target_ '{path}' is not a dotted path such as 'mypkg.module.Class'")
        # the longest importable module prefix wins: "a.b.C.D" tries a.b.C, then a.b, then a
        candidates = [(".".join(parts[:i]), parts[i:]) for i in range(len(parts) - 1, 0, -1)]
    missing: ModuleNotFoundError | None = None  # of the longest module prefix tried
    for module_name, attrs in candidates:
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
                missing = missing or exc  # this prefix is no module: try a shorter one
                continue
            # the module exists but imports something that does not
            raise ImbalError(f"{kind} _target_ '{path}': importing {module_name} failed: "
                             f"{type(exc).__name__}: {exc}") from exc
        except Exception as exc:  # the user's module raised while importing
            raise ImbalError(f"{kind} _target_ '{path}': importing {module_name} failed: "
                             f"{type(exc).__name__}: {exc}") from exc
        for i, attr in enumerate(attrs):
            if not hasattr(obj, attr):
                if missing is not None and i == 0:
                    break  # "pkg.nomodule.Class": report the missing module, not the attribute
                where = ".".join([module_name, *attrs[:i]])
                raise ImbalError(f"{kind} _target_ '{path}' cannot be imported: {where} has no attribute '{attr}'")
            obj = getattr(obj, attr)
        else:
            return obj
        break
    raise ImbalError(f"{kind} _target_ '{path}' cannot be imported: {missing}")


def _label(obj: Any) -> str:
    return getattr(obj, "__qualname__", None) or getattr(getattr(obj, "func", None), "__qualname__", None) or repr(obj)


class Registry(Generic[T]):
    """Name -> object for one kind of part; names keep their registration order.

    Args:
        kind: what the names are, as messages say it (``"sampler"``, ``"head kind"``).
        hint: the words before the list of choices in the unknown-name message.
        sort: list the choices alphabetically in that message (default: registration order).
    """

    def __init__(self, kind: str, *, hint: str = "choose one of", sort: bool = False):
        self.kind, self.hint, self.sort = kind, hint, sort
        self._items: dict[str, T] = {}

    # -- registration ------------------------------------------------------------------

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, obj: T) -> T: ...

    def register(self, name: str, obj: Any = _MISSING) -> Any:
        """Register ``obj`` as ``name``: ``@reg.register("x")`` or ``reg.register("x", obj)``.

        Registering a name again replaces its object (a user may override a built-in).
        Returns the object (the decorator returns it unchanged).
        """
        if not isinstance(name, str) or not name:
            raise ImbalError(f"{self.kind} name must be a non-empty string, got {name!r}")

        def deco(o: T) -> T:
            self._items[name] = o
            return o

        return deco if obj is _MISSING else deco(obj)

    def unregister(self, name: str) -> T:
        """Remove ``name`` (tests, or a user replacing a part); returns its object."""
        self.get(name)
        return self._items.pop(name)

    # -- lookup ------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._items)

    available = names

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._items
        except TypeError:  # unhashable
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._items)})"

    def unknown(self, name: Any) -> ImbalError:
        """The one-line error for a name that is not registered."""
        listing = sorted(self._items) if self.sort else list(self._items)
        return ImbalError(f"unknown {self.kind} '{name}'; {self.hint}: {', '.join(listing) or '(none registered)'}")

    def get(self, name: str) -> T:
        """The object registered as ``name``; ImbalError listing the choices otherwise."""
        try:
            return self._items[name]
        except (KeyError, TypeError):  # TypeError: an unhashable "name"
            raise self.unknown(name) from None

    # -- building ----------------------------------------------------------------------

    def resolve(self, spec: Any) -> tuple[Any, dict[str, Any], str]:
        """``(object, parameters, label)`` of a spec, without calling anything.

        ``spec`` is a registered name; a dotted path (``"pkg.mod.Class"``; a
        registered name wins over a path); a mapping with ``_target_`` (a dotted path) and parameters;
        a mapping with ``name`` (a registered name) and parameters; or the
        class/function itself.  In a ``_target_`` mapping, ``name`` only labels
        the node and Hydra's ``_partial_``/``_recursive_``/``_convert_`` are dropped.
        """
        if isinstance(spec, str):
            if spec in self._items:
                return self._items[spec], {}, spec
            if "." in spec or ":" in spec:
                return self._target(spec), {}, spec
            raise self.unknown(spec)
        if isinstance(spec, Mapping):
            params = {str(k): v for k, v in spec.items() if k not in META_KEYS}
            if "_target_" in spec:
                target = spec["_target_"]
                return self._target(target), params, str(spec.get("name") or target)
            if "name" not in spec:
                raise ImbalError(f"a {self.kind} node needs 'name' (one of: {', '.join(self._items)}) "
                                 f"or '_target_' (a dotted path), got keys {sorted(map(str, spec))}")
            name = spec["name"]
            return self.get(name), params, str(name)
        if callable(spec):
            return spec, {}, _label(spec)
        raise ImbalError(f"a {self.kind} must be a name, a dotted path or a node with _target_, got {spec!r}")

    def _target(self, path: Any) -> Any:
        obj = locate(path, kind=self.kind)
        if not callable(obj):
            raise ImbalError(f"{self.kind} _target_ '{path}' is a {type(obj).__name__}, not a class or function")
        return obj

    def build(self, spec: Any, *args: Any, **kwargs: Any) -> Any:
        """Resolve ``spec`` and call its object with ``*args, **kwargs`` and the spec's parameters.

        ``args``/``kwargs`` are what the caller supplies (labels, feature sizes);
        the spec's own parameters may not repeat them.  A parameter the object
        does not take is refused in one line listing the ones it does take.
        """
        obj, params, label = self.resolve(spec)
        check_params(obj, params, label=f"{self.kind} '{label}'", n_args=len(args), supplied=kwargs)
        return obj(*args, **kwargs, **params)


def check_params(obj: Any, params: Mapping[str, Any], *, label: str, n_args: int = 0,
                 supplied: Mapping[str, Any] | None = None) -> None:
    """Refuse, in one line, a call of ``obj`` that its signature does not allow.

    ``n_args`` positional and ``supplied`` keyword arguments come from the caller
    (imbal); ``params`` from the config.  An unknown config key is named together
    with the parameters left for a config to set.
    """
    supplied = dict(supplied or {})
    clash = sorted(set(params) & set(supplied))
    if clash:
        raise ImbalError(f"{label} got keys {clash} that imbal sets itself; remove them from the config")
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):  # a builtin without a signature: let the call decide
        return
    ps = list(sig.parameters.values())
    if not any(p.kind is p.VAR_KEYWORD for p in ps):
        keywords = {p.name for p in ps if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        refused = [k for k in supplied if k not in keywords]
        if refused:
            raise ImbalError(f"{label} must take the keyword arguments imbal passes ({', '.join(supplied)}); "
                             f"its signature {sig} has no {', '.join(refused)}")
        positional = [p for p in ps if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][:n_args]
        settable = [p.name for p in ps if p not in positional and p.name not in supplied
                    and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        unknown = sorted(k for k in params if k not in settable)
        if unknown:
            raise ImbalError(f"{label} got unknown keys {unknown}; it takes: {', '.join(settable) or '(none)'}")
    try:
        sig.bind(*range(n_args), **supplied, **params)
    except TypeError as exc:
        call = ", ".join([f"<{n_args} positional>"] * bool(n_args) + [f"{k}=..." for k in [*supplied, *params]])
        raise ImbalError(f"{label} cannot be called as {getattr(obj, '__name__', None) or _label(obj)}({call}): {exc}") from None
