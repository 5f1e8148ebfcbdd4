"""The one error type for user mistakes.

An :class:`ImbalError` carries a one-line message naming the file, row, key or
value at fault and what was expected.  The entry points (``train.py``,
``imbal``) print it without a traceback and exit non-zero; programming errors
are any other exception and keep their traceback.  ``IMBAL_DEBUG=1`` or
``HYDRA_FULL_ERROR=1`` shows the traceback of an ImbalError too.
"""

from __future__ import annotations

import os
import sys

EXIT_USER_ERROR = 2


class ImbalError(ValueError):
    """A mistake in the user's input: config, data files, plugin choice.

    Subclasses ValueError so code that validates arguments the torchvision way
    (``ValueError`` for a bad value) can be caught the same way.
    """

    def __init__(self, message: str):
        # One line, always: newlines would break the "one line" contract.
        super().__init__(" ".join(str(message).split("\n")))


def debug_enabled() -> bool:
    return any(os.environ.get(k, "") not in ("", "0") for k in ("IMBAL_DEBUG", "HYDRA_FULL_ERROR"))


def exit_with(err: BaseException, code: int = EXIT_USER_ERROR) -> None:
    """Print ``imbal: error: <message>`` on stderr and exit with ``code``."""
    if debug_enabled():
        raise err
    print(f"imbal: error: {err}", file=sys.stderr, flush=True)
    sys.exit(code)
