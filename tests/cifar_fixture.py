"""Write small CIFAR-10/100 files in torchvision's python pickle layout (the real key names and shapes)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def _dump(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[N, 3072] uint8, rows in the CIFAR order (1024 R, 1024 G, 1024 B); class-dependent mean
    colour plus noise, so a small network can learn something."""
    n = len(labels)
    base = (labels[:, None] * 37 % 256).astype(np.float64)
    x = base + rng.normal(0, 40, size=(n, 3072))
    return np.clip(x, 0, 255).astype(np.uint8)


def write_cifar10(root: Path, per_class_train: int = 20, per_class_test: int = 4, seed: int = 0) -> Path:
    """root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}; returns root."""
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    y = rng.permutation(np.repeat(np.arange(10), per_class_train))
    for b, part in enumerate(np.array_split(y, 5), start=1):
        _dump(d / f"data_batch_{b}", {
            "batch_label": f"training batch {b} of 5", "labels": part.tolist(),
            "data": _images(part, rng), "filenames": [f"img_{b}_{i}.png" for i in range(len(part))],
        })
    yt = np.repeat(np.arange(10), per_class_test)
    _dump(d / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": yt.tolist(),
                             "data": _images(yt, rng), "filenames": [f"t_{i}.png" for i in range(len(yt))]})
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _dump(d / "batches.meta", {"num_cases_per_batch": len(y) // 5, "label_names": names, "num_vis": 3072})
    return root


def write_cifar100(root: Path, per_class_train: int = 6, per_class_test: int = 2, seed: int = 0) -> Path:
    """root/cifar-100-python/{train, test, meta}; returns root."""
    rng = np.random.default_rng(seed)
    d = root / "cifar-100-python"
    d.mkdir(parents=True, exist_ok=True)
    for split, per in (("train", per_class_train), ("test", per_class_test)):
        y = rng.permutation(np.repeat(np.arange(100), per))
        _dump(d / split, {"filenames": [f"{split}_{i}.png" for i in range(len(y))], "batch_label": split,
                          "fine_labels": y.tolist(), "coarse_labels": (y // 5).tolist(), "data": _images(y, rng)})
    _dump(d / "meta", {"fine_label_names": [f"class_{i:02d}" for i in range(100)],
                       "coarse_label_names": [f"super_{i:02d}" for i in range(20)]})
    return root
