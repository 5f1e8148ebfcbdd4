"""End-to-end runs: the default experiment learns, LA beats CE, bad choices fail in one line."""

from __future__ import annotations

import json

import pytest

from imbal.runner import train
from tests.conftest import run_train


def test_fast_dev_run_subprocess(tmp_path):
    out = tmp_path / "run"
    proc = run_train("trainer.fast_dev_run=true", f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "log_loss"):
        assert 0.0 <= summary["test"][key] or key == "log_loss"
    assert summary["class_counts"] == [104, 80, 62, 48, 37, 28, 22, 17, 13, 10]
    assert "wall_time_s" in summary and summary["config"]["loss"]["name"] == "ce"


@pytest.mark.parametrize(
    "args,expected",
    [
        (["loss=nope"], "unknown loss 'nope'; choose one of: "),
        (["data=digits_lt", "model=mlp"], "model 'mlp' accepts vector inputs, but data 'digits_lt' gives image; choose model= one of: resnet18, resnet32, resnet50, small_cnn, timm"),
        (["data=nope"], "unknown data 'nope'; choose one of: "),
    ],
)
def test_bad_choice_is_one_line(tmp_path, args, expected):
    out = tmp_path / "run"
    proc = run_train(*args, f"hydra.run.dir={out}", "trainer.max_epochs=1")
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("imbal: error:")]
    assert len(lines) == 1 and expected in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (out / "summary.json").exists()


def test_digits_default_learns(make_cfg, tmp_path):
    """The default run (digits_lt, ratio 10, CE) reaches test balanced accuracy > 0.85."""
    cfg = make_cfg("trainer.enable_progress_bar=false")
    val = train(cfg)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["test"]["balanced_accuracy"] > 0.85, summary["test"]
    assert val == summary["val"]["balanced_accuracy"]
    assert len(summary["test"]["per_class_recall"]) == 10
    assert (tmp_path / "run" / "csv" / "metrics.csv").is_file()
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def test_logit_adjusted_beats_ce_on_gaussian_lt(make_cfg, tmp_path):
    """Ratio 100: the logit-adjusted loss ends with a lower test balanced error than CE (fixed seed)."""
    errs = {}
    for loss in ("ce", "logit_adjusted"):
        rd = tmp_path / loss
        cfg = make_cfg(
            "data=gaussian_lt", "data.ratio=100", f"loss={loss}", "trainer.max_epochs=15",
            "trainer.enable_progress_bar=false", "seed=0", run_dir=rd,
        )
        train(cfg)
        s = json.loads((rd / "summary.json").read_text())
        errs[loss] = 1 - s["test"]["balanced_accuracy"]
        bayes = s["data_extra"]["bayes_balanced_error"]
    assert bayes == pytest.approx(0.1203, abs=1e-3)
    assert errs["logit_adjusted"] < errs["ce"] - 0.01, errs
    # and no classifier beats the Bayes-optimal balanced error by more than sampling noise
    assert errs["logit_adjusted"] > bayes - 0.03, (errs, bayes)
