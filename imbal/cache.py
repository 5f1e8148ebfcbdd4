"""Where imbal keeps what it computes once: generated data sets, trained tokenizers, the loss listing."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$IMBAL_CACHE``, else ``$XDG_CACHE_HOME/imbal``, else ``~/.cache/imbal``."""
    env = os.environ.get("IMBAL_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "imbal"


def keyed_json(name: str, key: str | None, compute, *, keep=lambda result: True) -> dict:
    """``compute()``'s dict, cached as ``<cache_root>/<name>`` under ``key``.

    A cached file whose key matches is returned as is; otherwise ``compute()`` runs and, when
    ``keep(result)``, is written atomically (a concurrent reader never sees half a file).
    ``key=None`` bypasses the cache.  An unreadable or read-only cache only costs the speed-up.
    """
    import json

    from imbal.io import write_text_atomic

    path = cache_root() / name
    if key is not None:
        try:
            cached = json.loads(path.read_text())
            if cached.get("key") == key:
                return cached
        except (OSError, ValueError):
            pass
    result = compute()
    if key is not None and keep(result):
        try:
            text = json.dumps({"key": key, **result})
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, text)
        except (OSError, TypeError, ValueError):
            pass  # a value JSON cannot hold, or a read-only cache
    return result
