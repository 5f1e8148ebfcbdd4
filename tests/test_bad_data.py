"""Data that used to be read silently wrong: each case now stops in one line (exit 2) before training, or is
read the one right way (a class absent from a split, numeric labels, a JSONL file with a BOM).

The refusals run ``train.py`` in-process (``run_inprocess``, as in tests/test_bad_inputs.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.test_bad_inputs import run_inprocess

NL = chr(10)


def csv_rows(n: int = 40) -> str:
    """A small, valid two-class training CSV (header and ``n`` rows)."""
    rows = [f"document {i} about {'spam' if i % 4 == 0 else 'ham'},{'spam' if i % 4 == 0 else 'ham'}" for i in range(n)]
    return NL.join(["text,label", *rows]) + NL


def text_args(tmp: Path, train: str | bytes, suffix: str = "csv", **splits: str | bytes) -> list[str]:
    """Write the training file (and any val/test file) and return the data=text arguments naming them."""
    def put(name: str, body: str | bytes) -> Path:
        p = tmp / name
        p.write_bytes(body if isinstance(body, bytes) else body.encode())
        return p

    args = ["data=text", f"data.train_path={put(f'train.{suffix}', train)}",
            f"data.tokenizer.cache_dir={tmp / 'tok'}"]
    for split, body in splits.items():
        name = f"{split}.{suffix}"
        args.append(f"data.{split}_path={put(name, body)}")
    return args


def jsonl(records: list) -> str:
    return NL.join(json.dumps(r) for r in records) + NL


JSONL_TRAIN = [{"text": f"doc {i} {'spam' if i % 4 == 0 else 'ham'}", "label": "spam" if i % 4 == 0 else "ham"}
               for i in range(40)]


def parquet_args(tmp: Path, column: str, value) -> list[str]:
    """A Parquet training file whose ``column`` holds ``value`` in every row (Arrow columns have one type)."""
    df = pd.DataFrame([{"text": r["text"], "label": r["label"]} for r in JSONL_TRAIN])
    df[column] = [value] * len(df)
    df.to_parquet(tmp / "train.parquet")
    return ["data=text", f"data.train_path={tmp / 'train.parquet'}", f"data.tokenizer.cache_dir={tmp / 'tok'}"]


def npz_args(tmp: Path, **change) -> list[str]:
    """A valid 3-class npz (3 features) with the arrays in ``change`` replaced."""
    r = np.random.default_rng(0)
    arrays = dict(x_train=r.normal(size=(30, 3)), y_train=np.arange(30) % 3, x_val=r.normal(size=(6, 3)),
                  y_val=np.arange(6) % 3, x_test=r.normal(size=(6, 3)), y_test=np.arange(6) % 3)
    arrays.update(change)
    np.savez(tmp / "d.npz", **arrays)
    return ["data=tensors", f"data.path={tmp / 'd.npz'}", "data.num_classes=3"]


def empty_npz(tmp: Path) -> list[str]:
    (tmp / "d.npz").write_bytes(b"")
    return ["data=tensors", f"data.path={tmp / 'd.npz'}", "data.num_classes=3"]


CASES = {
    # empty text files: zero bytes or a header only, for each split
    "zero-byte training CSV": (
        lambda t: text_args(t, ""), "train.csv: no data rows (the file is empty, 0 bytes); expected at least one labelled row",
    ),
    "header-only test CSV": (
        lambda t: text_args(t, csv_rows(), test="text,label" + NL),
        "test.csv: no data rows (only a header line); expected at least one labelled row",
    ),
    "zero-byte validation JSONL": (
        lambda t: text_args(t, jsonl(JSONL_TRAIN), "jsonl", val=""),
        "val.jsonl: no data rows (the file is empty, 0 bytes)",
    ),
    "blank-lines-only JSONL": (
        lambda t: text_args(t, NL + NL, "jsonl"), "train.jsonl: no data rows (no records)",
    ),
    # JSONL lines that are not objects, and encodings
    "JSONL line that is an array": (
        lambda t: text_args(t, jsonl(JSONL_TRAIN[:2] + [["a", "b"]] + JSONL_TRAIN[2:]), "jsonl"),
        "train.jsonl, line 3: not a JSON object (a JSON array); expected one object per line",
    ),
    "JSONL line that is a number": (
        lambda t: text_args(t, jsonl([7] + JSONL_TRAIN), "jsonl"), "train.jsonl, line 1: not a JSON object (a JSON number)",
    ),
    "non-UTF-8 JSONL": (
        # line 1 is 23 bytes; the Latin-1 e-acute is byte 12 of line 2
        lambda t: text_args(t, b'{"text":"a","label":1}' + NL.encode() + b'{"text":"caf\xe9","label":1}' + NL.encode(), "jsonl"),
        "train.jsonl, line 2: not UTF-8 text (byte 0xe9 at byte offset 35); save the file as UTF-8",
    ),
    "non-UTF-8 CSV": (
        lambda t: text_args(t, csv_rows(5).encode() + b"caf\xe9 au lait,ham" + NL.encode()),
        "train.csv, line 7: not UTF-8 text (byte 0xe9 at byte offset",
    ),
    # values str() would have turned into text
    "Parquet list in the text column": (
        lambda t: parquet_args(t, "text", ["two", "words"]),
        "train.parquet, row 1: column 'text' holds a list value (['two', 'words']); expected text",
    ),
    "Parquet bytes in the label column": (
        lambda t: parquet_args(t, "label", b"ham"),
        "train.parquet, row 1: column 'label' holds a bytes value (b'ham'); expected a label (a string or a number)",
    ),
    "data.max_length=0": (
        lambda t: [*text_args(t, csv_rows()), "data.max_length=0"],
        "data.max_length=0: expected an integer >= 1 (tokens kept per text; 0 trains on padding)",
    ),
    "data.n_max=0 (text_synth)": (
        ["data=text_synth", "data.n_max=0"], "data.n_max=0: expected an integer >= 1 (training samples of the head class; 0 trains on nothing)",
    ),
    # npz arrays
    "npz with a complex feature array": (
        lambda t: npz_args(t, x_val=np.ones((6, 3)) * (1 + 2j)),
        "d.npz: x_val has complex dtype complex128; expected real numbers (the imaginary part would be dropped)",
    ),
    "npz with an object array": (
        lambda t: npz_args(t, x_train=np.array([[1.0, 2.0], [3.0]] * 15, dtype=object)),
        "d.npz: array 'x_train' holds Python objects (dtype object), which are not loaded without pickle",
    ),
    "npz with an empty split": (
        lambda t: npz_args(t, x_test=np.zeros((0, 3)), y_test=np.zeros(0, int)),
        "d.npz: x_test has 0 rows; expected at least one sample per split",
    ),
    "zero-byte npz": (empty_npz, "d.npz: the file is empty (0 bytes)"),
    "npz whose splits differ in feature dimension": (
        lambda t: npz_args(t, x_val=np.zeros((6, 4))),
        "d.npz: x_val has samples of shape (4,) but x_train has (3,); expected the same shape in every split",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_data_is_refused_in_one_line(name, tmp_path, capsys):
    spec, expected = CASES[name]
    args = spec(tmp_path) if callable(spec) else list(spec)
    run_dir = tmp_path / "run"
    code, err = run_inprocess([*args, f"hydra.run.dir={run_dir}", "trainer.max_epochs=1",
                               "trainer.enable_progress_bar=false"], capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err[-2000:]
    assert len(lines) == 1 and lines[0].startswith("imbal: error: "), err[-2000:]
    assert expected in lines[0], lines[0]
    assert "Traceback" not in err
    assert not (run_dir / "summary.json").exists()
    assert not (run_dir / "checkpoints").exists()  # stopped before training


# -- read the one right way ------------------------------------------------------------------
def test_absent_test_class_is_listed_and_left_out_of_the_macro_metrics(tmp_path, capsys):
    """Class 2 has no test sample: balanced accuracy is the mean recall of classes 0 and 1, as computed by
    hand from the stored test predictions; summary.json lists the class and its recall is null."""
    r = np.random.default_rng(0)
    y_test = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    args = npz_args(tmp_path, x_test=r.normal(size=(8, 3)), y_test=y_test)
    run_dir = tmp_path / "run"
    code, err = run_inprocess([*args, f"hydra.run.dir={run_dir}", "trainer.max_epochs=1",
                               "trainer.enable_progress_bar=false"], capsys)
    assert code == 0, err[-2000:]
    warnings = [ln for ln in err.splitlines() if ln.startswith("imbal: warning:")]
    assert warnings == ["imbal: warning: the test split has no sample of class(es) 2; "
                        "macro metrics average over the classes present"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["absent_classes"] == {"test": ["2"]}
    pred = np.load(run_dir / "predictions" / "test.npz")
    assert pred["targets"].tolist() == y_test.tolist()
    hard = pred["logits"].argmax(-1)
    recalls = [float((hard[y_test == c] == c).mean()) for c in (0, 1)]
    test = summary["test"]
    assert test["per_class_recall"][:2] == pytest.approx(recalls) and test["per_class_recall"][2] is None
    assert test["balanced_accuracy"] == pytest.approx(sum(recalls) / 2)
    assert test["accuracy"] == pytest.approx(float((hard == y_test).mean()))
    assert "absent_classes" not in summary or "val" not in summary["absent_classes"]

    from imbal.runner.summary import RunSummary

    assert RunSummary.read(run_dir).absent_classes == {"test": ["2"]}


def test_older_summary_without_absent_classes_still_reads():
    from imbal.runner.summary import RunSummary

    s = RunSummary.from_dict({"data": "d", "model": "m", "loss": "l", "seed": 0, "task": "multiclass",
                              "class_counts": [1, 2], "class_names": ["a", "b"], "schema": 2})
    assert s.absent_classes == {}


def test_summary_writes_nan_as_null(tmp_path):
    from imbal.runner.summary import RunSummary

    s = RunSummary(data="d", model="m", loss="l", seed=0, task="multiclass", class_counts=[1, 1, 1],
                   class_names=list("abc"), test={"per_class_recall": [1.0, 0.5, float("nan")]})
    text = s.write(tmp_path).read_text()
    assert "NaN" not in text
    assert json.loads(text)["test"]["per_class_recall"] == [1.0, 0.5, None]


def make_text(tmp_path, **kw):
    from imbal.data.text import TextDataModule

    dm = TextDataModule(tokenizer={"cache_dir": str(tmp_path / "tok")}, batch_size=8, **kw)
    dm.setup("fit")
    return dm


def test_numeric_labels_1_and_1_0_are_one_class(tmp_path):
    """A label column of numbers: 1, 1.0, 01 and ' 1 ' are the class '1'; 2 and 2.0 are '2'."""
    ones, twos = ["1", "1.0", "01", " 1 "], ["2", "2.0"]
    rows = [f"text number {i},{ones[i % 4] if i % 3 else twos[i % 2]}" for i in range(60)]
    (tmp_path / "d.csv").write_text(NL.join(["text,label", *rows]) + NL)
    test_rows = [f"held out {i},{'1.0' if i % 2 else '2'}" for i in range(10)]
    (tmp_path / "t.csv").write_text(NL.join(["text,label", *test_rows]) + NL)
    dm = make_text(tmp_path, train_path=str(tmp_path / "d.csv"), test_path=str(tmp_path / "t.csv"))
    n_two = sum(1 for i in range(60) if i % 3 == 0)
    assert dm.stats.class_names == ["1", "2"]
    assert dm.manifest["label_map"] == {"1": 0, "2": 1}
    assert dm.manifest["class_counts"]["test"] == [5, 5]
    counts = dm.manifest["class_counts"]
    assert [counts["train"][k] + counts["val"][k] for k in (0, 1)] == [60 - n_two, n_two]
    # classes given as numbers (data.classes=[2.0,1]) name the same two classes, in that order
    dm = make_text(tmp_path, train_path=str(tmp_path / "d.csv"), test_path=str(tmp_path / "t.csv"), classes=[2.0, 1])
    assert dm.stats.class_names == ["2", "1"] and dm.manifest["class_counts"]["test"] == [5, 5]


def test_labels_that_are_not_all_numbers_stay_text(tmp_path):
    from imbal.data.text.readers import canonical_labels, numeric_label

    assert canonical_labels(["1", "1.0", "x"]) == (["1", "1.0", "x"], None)
    assert canonical_labels(["1", "1.0", "1.50", "-0"]) == (["1", "1", "1.5", "0"], None)
    assert canonical_labels([["1", "2.0"], ["3"]], ["1.0", "2", "3"]) == ([["1", "2"], ["3"]], ["1", "2", "3"])
    assert canonical_labels(["01", "02"], ["01", "02", "x"]) == (["01", "02"], ["01", "02", "x"])  # names decide too
    assert numeric_label("1e400000") is None and numeric_label("nan") is None


def test_jsonl_with_bom_reads_like_without(tmp_path):
    from imbal.data.text.readers import read_table

    body = jsonl(JSONL_TRAIN).encode()
    (tmp_path / "plain.jsonl").write_bytes(body)
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + body)
    plain, _ = read_table(tmp_path / "plain.jsonl", fmt="jsonl")
    bom, _ = read_table(tmp_path / "bom.jsonl", fmt="jsonl")
    assert list(bom.columns) == ["text", "label"]
    pd.testing.assert_frame_equal(plain, bom)
    a = make_text(tmp_path, train_path=str(tmp_path / "plain.jsonl"), seed=1)
    b = make_text(tmp_path, train_path=str(tmp_path / "bom.jsonl"), seed=1)
    assert a.manifest["class_counts"] == b.manifest["class_counts"] == {"train": [21, 7], "val": [3, 1], "test": [6, 2]}
    assert a.splits["train"].y.tolist() == b.splits["train"].y.tolist()
