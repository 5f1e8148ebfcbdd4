"""End-to-end text runs through imbal.runner.train on tiny data (fast), and on the real corpora (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imbal.config import conf_dir, register_configs

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def compose(overrides):
    from hydra import compose as hcompose
    from hydra import initialize_config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return hcompose("train", overrides=overrides)


def run(tmp_path, overrides):
    from imbal.runner import train

    cfg = compose(
        [
            f"run_dir={tmp_path}",
            "trainer=cpu",
            "trainer.enable_progress_bar=false",
            "logger={}",
            f"data.tokenizer.cache_dir={tmp_path / 'tok'}",
            *overrides,
        ]
    )
    train(cfg)
    summary = json.loads((tmp_path / "summary.json").read_text())
    # the tokenizer facts are stored beside the summary, in the run's data_stats.json
    summary["data_stats"] = json.loads((tmp_path / "data_stats.json").read_text())
    return summary


def test_text_synth_config_composes_with_textcnn_by_default():
    cfg = compose(["data=text_synth"])
    assert cfg.model.name == "textcnn" and cfg.data.name == "text_synth"
    for preset in ("sms_spam", "emotion", "quora_pairs", "text"):
        c = compose([f"data={preset}"])
        assert c.model.name == "textcnn" and c.data._target_ == "imbal.data.text.TextDataModule"
    assert compose(["data=quora_pairs"]).data.text_columns == ["question1", "question2"]


def test_text_synth_trains_and_writes_summary(tmp_path):
    s = run(
        tmp_path,
        [
            "data=text_synth", "data.n_max=90", "data.val_per_class=20", "data.test_per_class=20",
            "data.signal=0.5", "model.embed_dim=32", "model.num_filters=16", "trainer.max_epochs=5",
            "optimizer.optim.lr=0.01", "data.batch_size=16",
        ],
    )
    assert s["model"] == "textcnn" and s["data"] == "text_synth"
    assert s["class_counts"] == [90, 41, 19, 9]  # 90 * 10^(-i/3), truncated
    assert s["data_stats"]["text"]["vocab_size"] > 100 and s["data_stats"]["text"]["pair"] is False
    assert 0.0 <= s["test"]["balanced_accuracy"] <= 1.0
    # a learnable corpus: well above chance (0.25) after 5 epochs
    assert s["test"]["balanced_accuracy"] > 0.5
    assert json.loads((tmp_path / "label_map.json").read_text()) == {f"topic_{i}": i for i in range(4)}
    assert "threshold" not in s["posthoc"] and "prior_shift" not in s["posthoc"]  # 4 classes, no test prior


def test_binary_pairs_run_with_posthoc(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(240):
        dup = rng.random() < 0.37
        w = f"topic{i % 60}"
        q2 = f"what is the best way to learn {w}" if dup else f"where can i buy cheap item{i}"
        rows.append({"question1": f"how do i learn {w} quickly", "question2": q2, "is_duplicate": int(dup)})
    pd.DataFrame(rows).to_csv(tmp_path / "train.csv", index=False)
    s = run(
        tmp_path / "run",
        [
            "data=quora_pairs", f"data.root={tmp_path}", "data.task=binary", "loss=focal",
            "model=gru", "model.embed_dim=16", "model.hidden=8", "trainer.max_epochs=3",
            "data.test_prior=[0.835,0.165]",
        ],
    )
    assert s["task"] == "binary" and s["data_stats"]["text"]["pair"] is True
    ps, th = s["posthoc"]["prior_shift"], s["posthoc"]["threshold"]
    assert ps["test_prior"] == pytest.approx([0.835, 0.165])
    assert ps["train_prior"][1] == pytest.approx(s["class_counts"][1] / sum(s["class_counts"]))
    assert 0.0 < th["threshold"] < 1.0 and 0.0 <= th["test_fbeta"] <= 1.0


@pytest.mark.slow
def test_cli_text_synth(tmp_path):
    """``python train.py data=text_synth`` with its defaults, through the real entry point."""
    env = {**os.environ, "IMBAL_CACHE": str(tmp_path / "cache")}
    r = subprocess.run(
        [sys.executable, "train.py", "data=text_synth", f"run_dir={tmp_path}", f"hydra.run.dir={tmp_path}",
         "trainer.enable_progress_bar=false"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["test"]["balanced_accuracy"] > 0.6


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "sms_spam" / "SMSSpamCollection").is_file(), reason="../shared/data/sms_spam absent")
def test_sms_spam_preset_reads_the_real_file(tmp_path):
    from imbal.runner.build import instantiate as _instantiate

    cfg = compose(["data=sms_spam", f"data.root={SHARED / 'sms_spam'}", f"data.tokenizer.cache_dir={tmp_path}"])
    dm = _instantiate(cfg.data)
    dm.setup("fit")
    m = dm.manifest
    assert sum(m["sizes"].values()) == 5574  # every line read, none bad
    total = [sum(m["class_counts"][s][k] for s in ("train", "val", "test")) for k in (0, 1)]
    assert total == [4827, 747]  # SOURCE.md counts
    assert m["texts_also_in_train"] == {"val": 0, "test": 0}  # 403 repeated texts, none across splits
    assert dm.stats.class_names == ["ham", "spam"]


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "emotion" / "train.txt").is_file(), reason="../shared/data/emotion absent")
def test_emotion_preset_reads_the_real_files(tmp_path):
    from imbal.runner.build import instantiate as _instantiate

    cfg = compose(["data=emotion", f"data.root={SHARED / 'emotion'}", f"data.tokenizer.cache_dir={tmp_path}"])
    dm = _instantiate(cfg.data)
    dm.setup("fit")
    names = dm.stats.class_names
    counts = dict(zip(names, dm.stats.class_counts))
    assert counts == {"joy": 5362, "sadness": 4666, "anger": 2159, "fear": 1937, "love": 1304, "surprise": 572}
    assert dm.manifest["sizes"] == {"train": 16000, "val": 2000, "test": 2000}
    assert dm.manifest["texts_also_in_train"]["test"] == 11  # SOURCE.md: 11 texts shared by train and test


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "sms_spam" / "SMSSpamCollection").is_file(), reason="../shared/data/sms_spam absent")
def test_sms_spam_gru_focal_runs(tmp_path):
    s = run(
        tmp_path,
        ["data=sms_spam", f"data.root={SHARED / 'sms_spam'}", "model=gru", "loss=focal", "trainer.max_epochs=2",
         "model.hidden=64", "model.embed_dim=64"],
    )
    assert s["test"]["macro_f1"] > 0.8
    assert "threshold" in s["posthoc"]
