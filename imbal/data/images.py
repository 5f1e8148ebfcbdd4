"""Reading image files: one decoder for every image loader, and the checks run while a data set is indexed.

* :func:`read_image` decodes a file to uint8 RGB (or L).  16-bit and 32-bit images are scaled to
  8 bits first (:func:`to_8bit`): PIL's own ``I;16`` -> ``RGB`` conversion clips every value above
  255, so a 16-bit PNG would otherwise read as all white.
* :func:`read_mask_values` reads a mask's stored values unscaled (a 16-bit mask keeps 0/1 or 0/65535),
  for a loader to binarise.
* :func:`probe_image` is the cheap check of the index (``data.on_bad_image``): the file exists and is
  not empty, PIL identifies it, its declared size is under ``Image.MAX_IMAGE_PIXELS`` (a decompression
  bomb is refused, PIL's warning included), ``verify()`` passes (PNG: every chunk and CRC), and a
  JPEG without its end-of-image marker is decoded once to tell a truncated file from trailing bytes.
  Pixels are not decoded otherwise (a full decode of 190k Airbus JPEGs takes many minutes); a file
  that passes and still fails to decode later stops the run with one line naming it
  (:class:`BadImageError`, one line even from a DataLoader worker).
* :class:`BadImages` applies ``data.on_bad_image``: ``error`` (default) refuses the first bad file,
  ``skip`` leaves bad files out of the index, counts them and says so in one line.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

from imbal.errors import ImbalError

#: Values of ``data.on_bad_image``.
ON_BAD_IMAGE = ("error", "skip")
#: The key a loader records the skipped count under in ``DataStats.extra`` (``summary.json`` ``data_extra``).
SKIPPED_KEY = "unreadable_images_skipped"
#: PIL modes of 16-bit (and 32-bit integer) pixels, scaled by 255 / 65535.
WIDE_INT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class BadImageError(ImbalError):
    """An image that cannot be decoded.

    A DataLoader worker's exception reaches the main process re-created from the text of the
    worker's traceback; this class keeps only the original one-line message from it.
    """

    def __init__(self, message: str):
        text = str(message)
        marker = f"{type(self).__name__}: "
        if "Original Traceback" in text and marker in text:
            text = text.rsplit(marker, 1)[1].strip()
        super().__init__(text)


def to_8bit(im):
    """A PIL image with 8-bit channels: ``I;16*`` and ``I`` scaled as ``round(v * 255 / 65535)``
    (``(v * 255 + 32767) // 65535``, values clipped to [0, 65535]), ``F`` likewise, or as
    ``round(v * 255)`` when its largest value is at most 1 (a float image in [0, 1]); other modes unchanged."""
    from PIL import Image

    if im.mode in WIDE_INT_MODES:
        v = np.clip(np.asarray(im).astype(np.int64), 0, 65535)
        return Image.fromarray(((v * 255 + 32767) // 65535).astype(np.uint8), "L")
    if im.mode == "F":
        v = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if v.size and v.max() <= 1.0 else 255.0 / 65535.0
        return Image.fromarray(np.clip(np.rint(v * scale), 0, 255).astype(np.uint8), "L")
    return im


@contextlib.contextmanager
def _bombs_are_errors() -> Iterator[None]:
    """PIL warns above ``Image.MAX_IMAGE_PIXELS`` and raises only above twice that; both are refused."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def _reason(exc: BaseException) -> str:
    """A short reason for a failed open/decode."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        found = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = f"{found.group(1)} pixels" if found else "too many pixels"
        return f"{pixels}, more than PIL's limit Image.MAX_IMAGE_PIXELS={Image.MAX_IMAGE_PIXELS} (a decompression bomb?)"
    if isinstance(exc, UnidentifiedImageError):
        return "not an image file PIL can identify"
    if "truncated" in str(exc).lower():  # PIL: "Truncated File Read", "image file is truncated (N bytes ...)"
        return "truncated file"
    return str(exc) or type(exc).__name__


def _decode_errors() -> tuple[type[BaseException], ...]:
    """What PIL raises for a file it cannot open or decode."""
    import struct
    import zlib

    from PIL import Image

    return (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, Image.DecompressionBombError,
            Image.DecompressionBombWarning)


def read_image(path: str | Path, *, where: str, mode: str = "RGB") -> np.ndarray:
    """An image file as uint8 ``[H, W, 3]`` (``mode="RGB"``) or ``[H, W]`` (``mode="L"``), 16-bit scaled.

    Raises:
        BadImageError: ``<where>: image <path> does not exist`` or
            ``<where>: cannot read image <path> (<reason>); expected a readable <mode> image``.
    """
    return np.array(open_image(path, where=where, mode=mode))


def open_image(path: str | Path, *, where: str, mode: str = "RGB"):
    """The decoded PIL image in ``mode`` (``RGB`` or ``L``), 16-bit scaled; see :func:`read_image`."""
    from PIL import Image

    try:
        with _bombs_are_errors(), Image.open(path) as im:
            im.load()
            return to_8bit(im).convert(mode)
    except FileNotFoundError:
        raise BadImageError(f"{where}: image {path} does not exist") from None
    except _decode_errors() as exc:
        raise BadImageError(
            f"{where}: cannot read image {path} ({_reason(exc)}); expected a readable {mode} image"
        ) from None


def read_mask_values(path: str | Path, *, where: str) -> np.ndarray:
    """A mask's stored values, 2-D and unscaled: ``L``, ``1``, ``P``, ``I``, ``I;16*`` and ``F`` as stored
    (a 16-bit 0/65535 or 0/1 mask keeps those values), other modes converted to ``L``."""
    from PIL import Image

    try:
        with _bombs_are_errors(), Image.open(path) as im:
            keep = im.mode in ("L", "1", "P", "F", *WIDE_INT_MODES)
            return np.array(im if keep else im.convert("L"))
    except FileNotFoundError:
        raise BadImageError(f"{where}: mask {path} does not exist") from None
    except _decode_errors() as exc:
        raise BadImageError(f"{where}: cannot read mask {path} ({_reason(exc)}); expected a PNG mask") from None


class UnreadableImage(Exception):
    """Raised by :func:`probe_image` with the reason a file is refused."""


def probe_image(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` of an image file, after the cheap checks of the module docstring.

    Raises:
        UnreadableImage: with a short reason (dangling symlink, empty file, not an image, too many
            pixels, broken PNG chunk, truncated JPEG, ...).
    """
    from PIL import Image

    p = Path(path)
    if p.is_symlink() and not p.exists():
        raise UnreadableImage(f"dangling symlink to {os.readlink(p)}")
    if not p.exists():
        raise UnreadableImage("does not exist")
    if not p.is_file():
        raise UnreadableImage("not a regular file")
    if p.stat().st_size == 0:
        raise UnreadableImage("empty file: 0 bytes")
    try:
        with _bombs_are_errors():
            with Image.open(p) as im:
                size, fmt = (im.height, im.width), im.format
                im.verify()
            if fmt == "JPEG" and not _ends_with_eoi(p):
                with Image.open(p) as im:  # truncated, or bytes after the end marker: decode to tell
                    im.load()
    except _decode_errors() as exc:
        raise UnreadableImage(_reason(exc)) from None
    return size


def _ends_with_eoi(path: Path) -> bool:
    """Whether a JPEG file ends with its end-of-image marker (FF D9), ignoring trailing zero bytes."""
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 64))
        tail = f.read().rstrip(b"\x00")
    return tail.endswith(b"\xff\xd9")


class BadImages:
    """``data.on_bad_image`` while indexing: refuse the first bad file, or leave bad files out and count them.

    Args:
        policy: ``error`` or ``skip``.
        where: the start of messages, e.g. ``data 'airbus'``.
    """

    def __init__(self, policy: str, *, where: str):
        if policy not in ON_BAD_IMAGE:
            raise ImbalError(f"data.on_bad_image must be one of {', '.join(ON_BAD_IMAGE)}; got {policy!r}")
        self.policy, self.where = policy, where
        self.skipped: list[tuple[str, str]] = []

    def check(self, path: str | Path, where: str | None = None) -> tuple[int, int] | None:
        """``(height, width)`` of a good image; None for a bad one under ``skip``.

        Raises:
            ImbalError: under ``error``: ``<where>: cannot read image <path> (<reason>); expected a
                readable image (or set data.on_bad_image=skip to leave unreadable images out)``;
                ``where`` defaults to the one given to the constructor.
        """
        try:
            return probe_image(path)
        except UnreadableImage as exc:
            if self.policy == "error":
                raise ImbalError(
                    f"{where or self.where}: cannot read image {path} ({exc}); expected a readable image "
                    f"(or set data.on_bad_image=skip to leave unreadable images out)"
                ) from None
            self.skipped.append((str(path), str(exc)))
            return None

    def report(self) -> dict[str, int]:
        """Say once, in one line, how many files were left out; the ``DataStats.extra`` entry to record."""
        if not self.skipped:
            return {}
        path, reason = self.skipped[0]
        msg = f"skipped {len(self.skipped)} unreadable images (first: {path}: {reason})"
        import logging

        if logging.getLogger().handlers:  # e.g. Hydra's run log file
            logging.getLogger("imbal").warning(msg)
        print(f"imbal: {msg}", file=sys.stderr, flush=True)
        return {SKIPPED_KEY: len(self.skipped)}
