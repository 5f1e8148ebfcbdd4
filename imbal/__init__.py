"""imbal: experiments for learning under class imbalance."""

__version__ = "0.1.0"

from imbal.errors import ImbalError  # noqa: E402,F401

#: names imported on first use, so ``import imbal`` imports no torch
_LAZY = {"load_run": "imbal.api", "Run": "imbal.api"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'imbal' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
