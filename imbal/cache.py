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
