"""RunSummary is the schema of summary.json: an exact round trip, schema-1 summaries read, one-line errors."""

from __future__ import annotations

import json

import pytest

from imbal.errors import ImbalError
from imbal.runner.summary import SCHEMA_VERSION, RunSummary


def make() -> RunSummary:
    return RunSummary(data="gaussian_lt", model="mlp", loss="focal", seed=3, task="multiclass",
                      class_counts=[100, 10], class_names=["a", "b"], val={"balanced_accuracy": 0.75},
                      test={"balanced_accuracy": 0.5, "per_class_recall": [1.0, 0.0]},
                      loss_hparams={"gamma": 2.0}, data_extra={"bayes_balanced_error": 0.12})


def test_write_read_round_trip_is_exact(tmp_path):
    s = make()
    s.write(tmp_path)
    back = RunSummary.read(tmp_path)
    assert back == s and back.schema == SCHEMA_VERSION
    assert back.metric("val/balanced_accuracy") == 0.75 and back.metric("test/nope") is None
    assert not list(tmp_path.glob(".*tmp*"))  # the atomic write left no temporary file


def test_schema_1_summary_keeps_its_extras_apart():
    old = {"val": {}, "test": {"balanced_accuracy": 0.4}, "seed": 1, "task": "multiclass", "class_counts": [2, 1],
           "class_names": ["x", "y"], "bayes_balanced_error": 0.12, "vocab_size": 50,
           "config": {"data": {"name": "gaussian_lt"}, "model": {"name": "mlp"}, "loss": {"name": "ce", "tau": 1.0}}}
    s = RunSummary.from_dict(old)
    assert (s.data, s.model, s.loss, s.schema) == ("gaussian_lt", "mlp", "ce", 1)
    assert s.data_extra == {"bayes_balanced_error": 0.12, "vocab_size": 50}
    assert s.loss_hparams == {"tau": 1.0}


def test_bad_files_are_one_line(tmp_path):
    with pytest.raises(ImbalError, match="summary.json not found"):
        RunSummary.read(tmp_path)
    (tmp_path / "summary.json").write_text("{nope")
    with pytest.raises(ImbalError, match=r"summary.json: not valid JSON \(.* at line 1\)"):
        RunSummary.read(tmp_path)
    (tmp_path / "summary.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ImbalError, match="expected a JSON object, got list"):
        RunSummary.read(tmp_path)
