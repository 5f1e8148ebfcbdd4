"""``data=tensors``: bring your own arrays in one ``.npz`` file (loaded without pickle)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from imbal.data.base import InMemoryDataModule
from imbal.errors import ImbalError
from imbal.kinds import IMAGE, MULTICLASS, VECTOR

SPLITS = ("train", "val", "test")


class TensorFileDataModule(InMemoryDataModule):
    """Arrays ``x_train, y_train, x_val, y_val, x_test, y_test`` from one ``.npz`` file.

    ``x_*`` are float arrays ``[N, ...]`` (vectors ``[N, D]`` or images
    ``[N, C, H, W]``), ``y_*`` integer class ids in ``[0, num_classes)``.
    ``class_names`` (optional, an array of strings) sets the class count;
    otherwise ``num_classes`` does, else the largest training label + 1.
    The file is read with ``allow_pickle=False``: it can hold data, not code.

    Args:
        path: the ``.npz`` file.
        num_classes: number of classes (labels outside ``[0, num_classes)`` are refused).
        modality: ``vector`` or ``image`` (decides which backbones fit).
    """

    name = "tensors"
    task = MULTICLASS

    def __init__(self, *, path: str | None = None, num_classes: int | None = None, modality: str = VECTOR, **kwargs):
        super().__init__(**kwargs)
        if not path:
            raise ImbalError("data=tensors needs data.path=<file.npz> with x_train, y_train, x_val, y_val, x_test, y_test")
        self.path = Path(path).expanduser()
        self.num_classes = num_classes
        if modality not in (VECTOR, IMAGE):
            raise ImbalError(f"data.modality={modality!r}: expected 'vector' or 'image'")
        self.modality = modality

    def build(self) -> None:
        if not self.path.is_file():
            raise ImbalError(f"data.path: file not found: {self.path} (expected an .npz with x_train, y_train, ...)")
        if self.path.stat().st_size == 0:
            raise ImbalError(f"{self.path}: the file is empty (0 bytes); expected an .npz with x_train, y_train, ...")
        try:
            arrays = np.load(self.path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise ImbalError(f"{self.path}: not a readable .npz file without pickled objects ({exc})") from exc
        if not hasattr(arrays, "files"):  # a bare .npy array, not an archive of named arrays
            raise ImbalError(f"{self.path}: a single .npy array, expected an .npz with x_train, y_train, ...")
        missing = [k for s in SPLITS for k in (f"x_{s}", f"y_{s}") if k not in arrays.files]
        if missing:
            raise ImbalError(f"{self.path}: missing array(s) {', '.join(missing)} (has: {', '.join(arrays.files)})")
        if "class_names" in arrays.files:
            self.class_names = [str(c) for c in self._array(arrays, "class_names")]
        else:
            c = self.num_classes if self.num_classes is not None else int(self._array(arrays, "y_train").max()) + 1
            self.class_names = [str(i) for i in range(int(c))]
        c = len(self.class_names)
        self.splits = {}
        for split in SPLITS:
            x, y = self._array(arrays, f"x_{split}"), self._array(arrays, f"y_{split}")
            if len(x) == 0:
                raise ImbalError(f"{self.path}: x_{split} has 0 rows; expected at least one sample per split")
            if len(x) != len(y):
                raise ImbalError(f"{self.path}: x_{split} has {len(x)} rows but y_{split} has {len(y)}")
            if np.iscomplexobj(x):
                raise ImbalError(f"{self.path}: x_{split} has complex dtype {x.dtype}; expected real numbers "
                                 "(the imaginary part would be dropped)")
            if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
                raise ImbalError(f"{self.path}: x_{split} has dtype {x.dtype}; expected a float array")
            if split != "train" and x.shape[1:] != self.splits["train"].tensors[0].shape[1:]:
                raise ImbalError(
                    f"{self.path}: x_{split} has samples of shape {tuple(x.shape[1:])} but x_train has "
                    f"{tuple(self.splits['train'].tensors[0].shape[1:])}; expected the same shape in every split"
                )
            if not np.issubdtype(y.dtype, np.integer):
                raise ImbalError(f"{self.path}: y_{split} must hold integer class ids, got dtype {y.dtype}")
            bad = np.flatnonzero((y < 0) | (y >= c))
            if len(bad):
                raise ImbalError(
                    f"{self.path}: y_{split} row {int(bad[0])} has label {int(y[bad[0]])}, "
                    f"expected a class id in [0, {c}) ({len(bad)} such rows)"
                )
            self.splits[split] = TensorDataset(
                torch.as_tensor(np.asarray(x, dtype=np.float32)), torch.as_tensor(y.astype(np.int64))
            )
        self.manifest = {"path": str(self.path), "sizes": {s: len(self.splits[s]) for s in SPLITS}}

    def _array(self, arrays, key: str) -> np.ndarray:
        """One array of the archive; an object array (pickled, refused) or a 0-d array is one line naming the key."""
        try:
            a = arrays[key]
        except ValueError as exc:  # "Object arrays cannot be loaded when allow_pickle=False"
            raise ImbalError(f"{self.path}: array '{key}' holds Python objects (dtype object), which are not loaded "
                             "without pickle; save it as a numeric or string array") from exc
        except Exception as exc:  # noqa: BLE001 - zipfile/zlib errors of a damaged member
            raise ImbalError(f"{self.path}: array '{key}' cannot be read ({type(exc).__name__}: {exc})") from exc
        if a.ndim == 0:
            raise ImbalError(f"{self.path}: array '{key}' is a single value (0-d); expected one row per sample")
        return a
