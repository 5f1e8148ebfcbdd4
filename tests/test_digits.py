"""digits_lt reads scikit-learn's bundled digits file itself (no sklearn import at run time)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np


def test_arrays_equal_sklearn_load_digits():
    from sklearn.datasets import load_digits

    from imbal.data.digits import load_digits_arrays

    images, target = load_digits_arrays()
    ref = load_digits()
    assert images.shape == (1797, 8, 8)
    assert np.array_equal(images, ref.images) and np.array_equal(target, ref.target)


def test_building_digits_does_not_import_sklearn():
    code = (
        "import sys; from imbal.data.digits import DigitsLTDataModule as D; "
        "d = D(ratio=10, seed=0); d.setup('fit'); "
        "print(len(d.splits['train']), 'sklearn' in sys.modules, 'pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[1:] == ["False", "False"] and int(out[0]) > 100
