"""The bad-input matrix: each user mistake exits 2 with one line naming what is wrong, and leaves no summary.json.

Each case runs ``train.py`` in-process (as ``python train.py ARGS`` would, through
``runpy``) so the matrix stays fast; ``tests/test_e2e.py`` checks the same error
path in real subprocesses.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO


def _drop_stream_handlers() -> None:
    """Hydra's logging config of an earlier in-process run keeps handlers on that test's (now closed)
    captured stderr; a real process starts clean, so the harness does too."""
    import logging

    for logger in [logging.getLogger(), *[logging.getLogger(n) for n in list(logging.root.manager.loggerDict)]]:
        for h in list(getattr(logger, "handlers", [])):
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                logger.removeHandler(h)


def run_inprocess(args: list[str], capsys) -> tuple[int, str]:
    _drop_stream_handlers()
    old = sys.argv
    sys.argv = [str(REPO / "train.py"), *args]
    try:
        runpy.run_path(str(REPO / "train.py"), run_name="__main__")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = old
    return code, capsys.readouterr().err


# --- data builders: each writes a broken input in the real format and returns the args to use ---

def npz_label_out_of_range(tmp: Path) -> list[str]:
    r = np.random.default_rng(0)
    y = np.r_[np.zeros(20, int), np.ones(5, int)]
    np.savez(tmp / "d.npz", x_train=r.normal(size=(25, 3)), y_train=y, x_val=r.normal(size=(4, 3)),
             y_val=np.array([0, 1, 0, 1]), x_test=r.normal(size=(4, 3)), y_test=np.array([0, 1, 7, 1]))
    return ["data=tensors", f"data.path={tmp / 'd.npz'}", "data.num_classes=2"]


def text_csv(tmp: Path, name: str, body: str) -> Path:
    p = tmp / name
    p.write_text(body)
    return p


def text_missing_column(tmp: Path) -> list[str]:
    return ["data=text", f"data.train_path={text_csv(tmp, 'a.csv', 'text,lab' + chr(10) + 'hi there,a' + chr(10))}"]


def text_empty_row(tmp: Path) -> list[str]:
    return ["data=text", f"data.train_path={text_csv(tmp, 'e.csv', 'text,label' + chr(10) + 'hello,a' + chr(10) + ',b' + chr(10))}"]


def text_unseen_test_label(tmp: Path) -> list[str]:
    rows = ["text,label"] + [f"document {i} about {'spam' if i % 4 == 0 else 'ham'},{'spam' if i % 4 == 0 else 'ham'}" for i in range(40)]
    train = text_csv(tmp, "train.csv", chr(10).join(rows) + chr(10))
    test = text_csv(tmp, "test.csv", "text,label" + chr(10) + "some text,ham" + chr(10) + "other text,eggs" + chr(10))
    return ["data=text", f"data.train_path={train}", f"data.test_path={test}"]


def airbus_layout(tmp: Path, bad_rle: str = "10 2", *, missing: bool = False, corrupt: bool = False) -> list[str]:
    """A Kaggle Airbus layout (64x64 images) whose last CSV row, bad.jpg, is broken as asked."""
    from PIL import Image

    (tmp / "train_v2").mkdir()
    rows = [(f"img{i}.jpg", "100 5" if i % 2 == 0 else "") for i in range(12)] + [("bad.jpg", bad_rle)]
    pixels = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype("uint8")
    for image_id, _ in rows:
        path = tmp / "train_v2" / image_id
        if image_id == "bad.jpg" and missing:
            continue
        if image_id == "bad.jpg" and corrupt:
            path.write_bytes(b"not a jpeg")
            continue
        Image.fromarray(pixels).save(path)
    lines = ["ImageId,EncodedPixels"] + [f"{i},{r}" for i, r in rows]
    (tmp / "train_ship_segmentations_v2.csv").write_text(chr(10).join(lines) + chr(10))
    return ["data=airbus", f"data.root={tmp}", "data.image_size=64", "data.crop=32"]


CASES = {
    "missing data dir": (
        lambda tmp: ["data=cifar10_lt", f"data.root={tmp / 'nope'}"],
        "CIFAR-10 files not found in",
    ),
    "CSV with a missing column": (text_missing_column, "a.csv: no column 'label' (columns: text, lab)"),
    "row with an empty text": (text_empty_row, "e.csv, row 2: empty text in column 'text'"),
    "label unseen in training, in test": (text_unseen_test_label, "test.csv, row 2: unknown label 'eggs'; expected one of: ham, spam"),
    "RLE with an odd token count": (
        lambda tmp: airbus_layout(tmp, "1 3 5"), "row 14: ImageId bad.jpg: EncodedPixels has 3 numbers (odd)",
    ),
    "RLE run past the image": (
        lambda tmp: airbus_layout(tmp, "4090 10"), "ImageId bad.jpg: pair 1 (4090 10) runs past the image",
    ),
    "RLE overlapping runs": (
        lambda tmp: airbus_layout(tmp, "1 5 3 2"), "ImageId bad.jpg: pair 2 (3 2) overlaps pair 1 (1 5)",
    ),
    "image file missing for a CSV row": (
        lambda tmp: airbus_layout(tmp, missing=True), "train_v2/bad.jpg for train_ship_segmentations_v2.csv row 14 (ImageId bad.jpg) does not exist",
    ),
    "corrupt JPEG": (lambda tmp: airbus_layout(tmp, corrupt=True), "cannot read image"),
    # name: (args or builder, expected fragment of the one-line message)
    "unknown loss": (["loss=nope"], "unknown loss 'nope'; choose one of:"),
    "unknown data": (["data=nope"], "unknown data 'nope'; choose one of:"),
    "unknown model": (["model=nope"], "unknown model 'nope'; choose one of:"),
    "incompatible data x model": (["model=mlp"], "model 'mlp' accepts vector inputs, but data 'digits_lt' gives image"),
    "label index >= num_classes": (npz_label_out_of_range, "y_test row 2 has label 7, expected a class id in [0, 2)"),
    "zero-sample class for a log-n loss": (
        ["data.n_max=5", "data.ratio=100", "loss=logit_adjusted"],
        "loss 'logit_adjusted' takes log of the class counts, but class 4 has zero training samples",
    ),
    "cost matrix of the wrong shape": (
        ["loss=cost_sensitive", "loss.costs=[[0,1],[1,0]]"], "loss 'cost_sensitive': costs has shape (2, 2), expected (10, 10)",
    ),
    "negative imbalance ratio": (["data.ratio=-5"], "imbalance ratio must be a number >= 1 (n_max / n_min), got -5"),
    "unwritable output dir": (["hydra.run.dir=/etc/hostname/run"], "cannot create output dir /etc/hostname/run"),
    "missing required config value": (["data=tensors"], "missing value for data.path"),
    "loss on a task it does not support": (["loss=dice"], "loss 'dice' does not support task 'multiclass'"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, tmp_path, capsys):
    spec, expected = CASES[name]
    args = spec(tmp_path) if callable(spec) else list(spec)
    run_dir = tmp_path / "run"
    if not any(a.startswith("hydra.run.dir=") for a in args):
        args.append(f"hydra.run.dir={run_dir}")
    code, err = run_inprocess([*args, "trainer.max_epochs=1", "trainer.enable_progress_bar=false"], capsys)
    lines = [ln for ln in err.splitlines() if ln.startswith("imbal: error:")]
    assert code == 2, err[-2000:]
    assert len(lines) == 1, err[-2000:]
    assert expected in lines[0], lines[0]
    assert "Traceback" not in err
    assert not (run_dir / "summary.json").exists()


def test_posthoc_that_cannot_apply_is_skipped_not_fatal(tmp_path, capsys):
    """A finished run is never lost to a post-hoc correction: LA on a class with no training samples is skipped."""
    r = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=r.normal(size=(30, 3)), y_train=np.r_[np.zeros(20, int), np.ones(10, int)],
             x_val=r.normal(size=(6, 3)), y_val=np.array([0, 1, 2, 0, 1, 2]), x_test=r.normal(size=(6, 3)),
             y_test=np.array([0, 1, 2, 0, 1, 2]))
    run_dir = tmp_path / "run"
    code, err = run_inprocess(["data=tensors", f"data.path={tmp_path / 'd.npz'}", "data.num_classes=3",
                               "trainer.max_epochs=1", "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}"], capsys)
    assert code == 0, err[-2000:]
    import json

    summary = json.loads((run_dir / "summary.json").read_text())
    assert "class 2 has zero training samples" in summary["posthoc_skipped"]["la"]
    assert "la" not in summary["posthoc"]
