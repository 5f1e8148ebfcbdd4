"""Checks of a post-hoc correction's parameters from its signature: names, annotated types, value rules.

A correction's keyword parameters say what they take (``tau: float = 1.0``,
``grid: Sequence[float] = ...``, ``test_prior: str | Sequence[float] | None``); a value of another
type, an unknown parameter or a value its rules refuse is reported in one line naming
``posthoc.<name>.<param>``, the value and what is expected, before any training.
"""

from __future__ import annotations

import collections.abc
import inspect
import math
import types
import typing
from typing import Any, Callable, Mapping


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    if hint is type(None) or hint is None:
        return "null"
    if origin is not None and origin in (list, tuple, collections.abc.Sequence):
        args = typing.get_args(hint)
        inner = _describe(args[0]) if args else "value"
        return f"a list of {inner.removeprefix('a ').removeprefix('an ')}s"
    return {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}.get(hint, "a value")


def fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` (plain config data) is of the annotated type ``hint`` (unknown hints pass)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, h) for h in typing.get_args(hint))
    if hint is type(None) or hint is None:
        return value is None
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    if origin is not None and origin in (list, tuple, collections.abc.Sequence):
        args = typing.get_args(hint)
        return isinstance(value, (list, tuple)) and (not args or all(fits(v, args[0]) for v in value))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    return True


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_shown(v) for v in value) + "]"
    if isinstance(value, str):
        return repr(value)
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def check_params(name: str, fn: Callable, params: Mapping[str, Any],
                 rules: Mapping[str, tuple[Callable[[Any], bool], str]]) -> None:
    """Refuse an unknown parameter of correction ``name``, or a value of the wrong type or range."""
    from imbal.errors import ImbalError

    sig = inspect.signature(fn)
    own = [p for p in list(sig.parameters.values())[1:] if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    takes_any = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - an annotation that does not evaluate: names are still checked
        hints = {}
    names = [p.name for p in own]
    for key, value in params.items():
        where = f"posthoc.{name}.{key}"
        if key not in names:
            if takes_any:
                continue
            raise ImbalError(f"{where}: post-hoc '{name}' has no parameter '{key}'; valid: {', '.join(names) or '(none)'}")
        hint = hints.get(key, inspect.Parameter.empty)
        if not fits(value, hint):
            raise ImbalError(f"{where}={_shown(value)}: expected {_describe(hint)}")
        rule = rules.get(key)
        if rule is not None and not rule[0](value):
            raise ImbalError(f"{where}={_shown(value)}: expected {rule[1]}")
