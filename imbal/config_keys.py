"""Config keys the command line names but the composed config lacks: one line naming the closest keys.

``python train.py loss.gama=2`` gets Hydra's six-line struct error and exit 1; inside
:func:`one_line_key_errors` it gets ``imbal: error: unknown config key 'loss.gama' (did you mean
loss.gamma?); add a new key with +loss.gama=2`` and exit 2.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterable

from imbal.config import config_search
from imbal.errors import ImbalError


def config_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Every key of a composed config as a full dotted path (``hydra`` left out; lists not entered)."""
    from omegaconf import DictConfig

    keys = []
    for key in cfg.keys() if isinstance(cfg, DictConfig) else ():
        if not prefix and key == "hydra":
            continue
        path = f"{prefix}{key}"
        keys.append(path)
        node = cfg._get_node(key)
        if isinstance(node, DictConfig) and not node._is_none() and not node._is_missing():
            keys.extend(config_keys(node, f"{path}."))
    return keys


def closest(word: str, options: Iterable[str], n: int = 3) -> list[str]:
    """The options most like ``word`` (difflib's ratio >= 0.6), the best first, none far behind the best."""
    import difflib

    scored = sorted(((difflib.SequenceMatcher(None, word, o).ratio(), o) for o in set(options)), key=lambda t: (-t[0], t[1]))
    scored = [(r, o) for r, o in scored if r >= 0.6]
    return [o for r, o in scored if r >= scored[0][0] - 0.1][:n] if scored else []


def unknown_key_message(key: str, input_line: str, cfg: Any, groups: Iterable[str] = ()) -> str:
    """One line for an override of a key ``cfg`` lacks, naming the closest keys (or groups, for a bare name)."""
    keys = config_keys(cfg)
    parent, _, leaf = key.rpartition(".")
    if not parent:  # a bare name: a config group (loss=...) or a top-level key (seed=...)
        close = closest(key, set(groups) | {k for k in keys if "." not in k})
        what = "config group or key"
    else:
        # the same name elsewhere in its group (optimizer.lr -> optimizer.optim.lr), else a near name beside it,
        # else the nearest full path
        top = key.split(".")[0]
        close = [k for k in keys if k.endswith(f".{leaf}") and k.split(".")[0] == top][:3]
        close = close or [f"{parent}.{m}" for m in closest(leaf, [k.rpartition(".")[2] for k in keys
                                                                  if k.rpartition(".")[0] == parent])]
        ancestors = {key.rsplit(".", n)[0] for n in range(1, key.count(".") + 1)}
        close = close or closest(key, [k for k in keys if k not in ancestors])
        what = "config key"
    hint = f"did you mean {', '.join(close)}?" if close else "no similar key"
    return f"unknown {what} '{key}' ({hint}); add a new key with +{input_line}"


@contextmanager
def one_line_key_errors(argv: Iterable[str] = ()):
    """While Hydra composes: an override of a key the config lacks exits 2 with one line naming the closest keys.

    Hydra reports it (``Could not override 'loss.gama'``) in six lines and exits 1 from inside
    ``hydra.main``; the composed config at hand there knows every valid key, so the check costs
    nothing on a good command line.  Hydra has no hook for this: its override step
    (``hydra._internal``'s ``ConfigLoaderImpl._apply_overrides_to_config``) is wrapped for the
    duration of the ``with`` block.
    """
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.errors import ConfigCompositionException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    from imbal.errors import exit_with

    original = ConfigLoaderImpl.__dict__["_apply_overrides_to_config"]

    def apply(overrides, cfg) -> None:
        try:
            original.__func__(overrides, cfg)
        except ConfigCompositionException as exc:
            if not isinstance(exc.__cause__, (ConfigAttributeError, ConfigKeyError)):
                raise
            failed = next((o for o in overrides if f"'{o.key_or_group}'" in str(exc)), None)
            if failed is None:
                raise
            try:
                groups = config_search(argv).groups() if "." not in failed.key_or_group else []
            except Exception:  # noqa: BLE001 - the suggestion is a courtesy; the key is still named
                groups = []
            # SystemExit, not an exception: Hydra would print any Exception in many lines and exit 1
            exit_with(ImbalError(unknown_key_message(failed.key_or_group, failed.input_line, cfg, groups)))

    ConfigLoaderImpl._apply_overrides_to_config = staticmethod(apply)
    try:
        yield
    finally:
        ConfigLoaderImpl._apply_overrides_to_config = original


def check_override_syntax(overrides: list[str]) -> None:
    """An override Hydra's grammar cannot read (a path holding ``=`` or ``,``, as every sweep job dir
    does), in one line naming it and the fix, instead of Hydra's parser error."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for override in overrides:
        try:
            parser.parse_overrides([override])
        except OverrideParseException as exc:
            reason = str(exc).splitlines()[0]
            key, _, value = override.partition("=")
            raise ImbalError(f"cannot read the override {override!r} ({reason}); a value holding '=', ',', "
                             f"spaces or brackets needs quotes: \"{key}='{value}'\"") from None
