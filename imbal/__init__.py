"""imbal: experiments for learning under class imbalance."""

__version__ = "0.1.0"

from imbal.errors import ImbalError  # noqa: E402,F401
