"""The house rules of the code base, checked: lint clean, modules of a readable size, no tracker
numbers or missing design references in the code, and one name per task kind."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SOURCES = sorted(p for d in ("imbal", "tests", "bench") for p in (REPO / d).rglob("*.py")) + [REPO / "train.py"]


def test_ruff_is_clean():
    # ruff is part of the [dev] install the test suite needs (as pytest-xdist is): missing is a failure
    ruff = shutil.which("ruff") or shutil.which("ruff", path=str(Path(sys.executable).parent))
    assert ruff, "ruff is not installed: pip install -e '.[dev]'"
    res = subprocess.run([ruff, "check", "--output-format", "concise", str(REPO)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:]


def test_no_module_above_400_lines():
    long = {str(p.relative_to(REPO)): n for p in (REPO / "imbal").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 410}
    assert not long, long


def test_no_tracker_numbers_or_missing_design_doc_in_code():
    bad = []
    for path in SOURCES:
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\b[Ii]ssue #?\d|\(#\d+\)|DESIGN\.md", line) and "keras-team" not in line:
                bad.append(f"{path.relative_to(REPO)}:{i}: {line.strip()}")
    assert not bad, bad
    assert (REPO / "docs" / "design.md").is_file()


def test_task_kinds_are_one_set_of_constants():
    import imbal.kinds as k
    from imbal.data.stats import DataStats

    assert k.TASKS == ("multiclass", "binary", "multilabel", "segmentation")
    assert set(k.CLASSIFICATION) | {k.SEGMENTATION} == set(k.TASKS)
    with pytest.raises(ValueError, match="modality"):
        DataStats(task=k.MULTICLASS, num_classes=2, class_counts=[1, 1], class_names=["a", "b"], modality="audio")


def test_data_stats_round_trip_is_exact():
    from imbal.data.stats import DataStats, TextInfo
    from imbal.errors import ImbalError

    s = DataStats(task="binary", num_classes=2, class_counts=[9, 1], class_names=["no", "yes"], modality="text",
                  input_shape=(64,), test_prior=[0.8, 0.2], num_train=10, val_from="train",
                  text=TextInfo(vocab_size=100, pad_id=1, tokenizer_file="tok.json", pair=True, max_length=64),
                  extra={"note": 1})
    import json

    back = DataStats.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back == s and back.text.pair is True and back.input_shape == (64,)
    with pytest.raises(ImbalError, match="unknown key 'vocab'"):
        DataStats.from_dict({**s.to_dict(), "vocab": 3}, where="x.json")


def test_imbal_report_imports_no_torch():
    code = ("import sys, imbal.reporting.report, imbal.runner.summary; "
            "print('torch' in sys.modules, 'lightning' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO).stdout.strip()
    assert out == "False False"
