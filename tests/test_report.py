"""``imbal report``: means, sample stds and best marks over a synthetic set of summaries; bad runs listed."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from imbal.errors import ImbalError
from imbal.reporting.plots import png_size
from imbal.reporting.report import main, write_report
from imbal.reporting.sweep import build_report

# (data, loss, tau or None, seed) -> test balanced acc, macro-F1, few, post-hoc la balanced acc, wall time
RUNS = {
    ("digits_lt", "ce", None, 0): (0.80, 0.70, 0.40, 0.85, 10.0),
    ("digits_lt", "ce", None, 1): (0.82, 0.74, 0.44, 0.87, 12.0),
    ("digits_lt", "ce", None, 2): (0.84, 0.72, 0.48, 0.89, 14.0),
    ("digits_lt", "focal", None, 0): (0.90, 0.80, 0.60, 0.84, 20.0),
    ("digits_lt", "focal", None, 1): (0.86, 0.78, 0.50, 0.86, 22.0),
    ("digits_lt", "logit_adjusted", 1.0, 0): (0.88, 0.81, 0.70, 0.80, 11.0),
    ("digits_lt", "logit_adjusted", 1.0, 1): (0.88, 0.83, 0.72, 0.82, 11.0),
    ("digits_lt", "logit_adjusted", 2.0, 0): (0.70, 0.60, 0.90, 0.60, 30.0),
    ("gaussian_lt", "ce", None, 0): (0.60, 0.50, 0.10, 0.65, 3.0),
    ("gaussian_lt", "ce", None, 1): (0.62, 0.52, 0.12, 0.66, 5.0),
}


def _summary(data, loss, tau, seed, values) -> dict:
    bal, f1, few, ph, wall = values
    loss_cfg = {"name": loss, "reduction": "mean", **({"tau": tau} if tau is not None else {})}
    return {
        "data": data,
        "model": "mlp",
        "loss": loss,
        "seed": seed,
        "test": {"balanced_accuracy": bal, "macro_f1": f1, "few_shot_accuracy": few, "accuracy": bal},
        "posthoc": {"la": {"balanced_accuracy": ph, "tau": 1.0}},
        "wall_time_s": wall,
        "config": {
            "data": {"name": data, "seed": seed, "ratio": 10},
            "model": {"name": "mlp"},
            "loss": loss_cfg,
            "seed": seed,
            "run_dir": f"/somewhere/{data}/{loss}/{seed}",
            "logger": {"csv": {"save_dir": f"/somewhere/{data}/{loss}/{seed}"}},
        },
    }


@pytest.fixture
def sweep(tmp_path) -> Path:
    root = tmp_path / "sweep"
    for i, (key, values) in enumerate(RUNS.items()):
        run = root / str(i)
        (run / ".hydra").mkdir(parents=True)
        (run / "summary.json").write_text(json.dumps(_summary(*key, values)))
    # a run that crashed: .hydra but no summary.json
    (root / "crashed" / ".hydra").mkdir(parents=True)
    # a run whose summary.json was cut off mid-write
    (root / "corrupt" / ".hydra").mkdir(parents=True)
    (root / "corrupt" / "summary.json").write_text('{"test": {"balanced_accuracy": 0.9')
    return root


def _row(table, loss, data="digits_lt", config=None):
    sel = table[(table["data"] == data) & (table["loss"] == loss)]
    if config is not None:
        sel = sel[sel["config"] == config]
    assert len(sel) == 1, sel
    return sel.iloc[0]


def test_means_and_sample_stds_over_seeds(sweep):
    rep = build_report([sweep])
    t = rep.table
    assert rep.runs == 10 and len(t) == 5  # logit_adjusted tau=1 and tau=2 are two configurations
    ce = _row(t, "ce")
    assert ce["n_seeds"] == 3 and ce["seeds"] == "0 1 2"
    assert ce["balanced_accuracy_mean"] == pytest.approx(0.82)
    assert ce["balanced_accuracy_std"] == pytest.approx(0.02)  # sample std (ddof=1) of 0.80, 0.82, 0.84
    assert ce["macro_f1_mean"] == pytest.approx(0.72) and ce["macro_f1_std"] == pytest.approx(0.02)
    assert ce["few_shot_accuracy_mean"] == pytest.approx(0.44) and ce["few_shot_accuracy_std"] == pytest.approx(0.04)
    assert ce["posthoc_la_balanced_accuracy_mean"] == pytest.approx(0.87)
    assert ce["wall_time_s_mean"] == pytest.approx(12.0) and ce["wall_time_s_std"] == pytest.approx(2.0)
    focal = _row(t, "focal")
    assert focal["balanced_accuracy_mean"] == pytest.approx(0.88)
    assert focal["balanced_accuracy_std"] == pytest.approx(math.sqrt(0.0008))  # ddof=1 with two seeds: 0.0283
    la1 = _row(t, "logit_adjusted", config="logit_adjusted (tau=1)")
    assert la1["balanced_accuracy_std"] == pytest.approx(0.0)
    la2 = _row(t, "logit_adjusted", config="logit_adjusted (tau=2)")
    assert la2["n_seeds"] == 1 and math.isnan(la2["balanced_accuracy_std"])
    # absent metrics (many/medium) are not columns; data.seed (= seed) is not a configuration key
    assert "many_shot_accuracy_mean" not in t.columns and "data.seed" not in t.columns


def test_best_is_marked_per_data_set_and_column(sweep):
    rep = build_report([sweep])
    t = rep.table

    def best(metric):
        return {(t.iloc[i]["data"], t.iloc[i]["config"]) for i in rep.best[metric]}

    # focal 0.88 and logit_adjusted(tau=1) 0.88 tie on digits_lt: both marked;
    # gaussian_lt has a single configuration, so nothing there is marked
    assert best("balanced_accuracy") == {("digits_lt", "focal"), ("digits_lt", "logit_adjusted (tau=1)")}
    assert best("macro_f1") == {("digits_lt", "logit_adjusted (tau=1)")}
    assert best("few_shot_accuracy") == {("digits_lt", "logit_adjusted (tau=2)")}
    assert best("posthoc_la_balanced_accuracy") == {("digits_lt", "ce")}
    # wall time: lower is better
    assert best("wall_time_s") == {("digits_lt", "logit_adjusted (tau=1)")}


def test_failed_and_corrupt_runs_are_listed_by_path(sweep):
    rep = build_report([sweep])
    reasons = {p.path.name: p.reason for p in rep.problems}
    assert set(reasons) == {"crashed", "summary.json"}
    assert "no summary.json" in reasons["crashed"]
    corrupt = next(p for p in rep.problems if p.path.name == "summary.json")
    assert corrupt.path == (sweep / "corrupt" / "summary.json").resolve()
    assert corrupt.reason.startswith("corrupt summary.json")


def test_writes_md_csv_png_and_prints(sweep, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(sweep), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "| digits_lt | mlp | ce | 3 | 0.820 ± 0.020 | 0.720 ± 0.020 |" in md
    assert "**0.880 ± 0.028**" in md  # focal's tied best balanced accuracy, bold
    assert "| logit_adjusted (tau=2) | 1 | 0.700 |" in md  # one seed: no std
    assert str((sweep / "corrupt" / "summary.json").resolve()) in md
    assert str((sweep / "crashed").resolve()) in md
    with open(out / "report.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 5
    ce = next(r for r in rows if r["data"] == "digits_lt" and r["loss"] == "ce")
    assert float(ce["balanced_accuracy_mean"]) == pytest.approx(0.82)
    assert float(ce["balanced_accuracy_std"]) == pytest.approx(0.02)
    assert ce["best"] == "posthoc_la_balanced_accuracy"
    assert json.loads(ce["loss_hparams"]) == {"reduction": "mean"}
    # 4 panels (bal. acc, macro-F1, few, post-hoc la) in 2 x 2, 5 bars each: 2 * 550 x (2 * 430 + 90)
    assert png_size(out / "report.png") == (1100, 950)
    printed = capsys.readouterr().out
    assert "0.820 ± 0.020" in printed and "crashed" in printed and "report.md" in printed


def test_several_paths_and_a_summary_file(sweep, tmp_path):
    rep = build_report([sweep / "0", sweep / "1" / "summary.json", sweep / "8"])
    assert rep.runs == 3 and rep.problems == []
    assert sorted(rep.table["data"]) == ["digits_lt", "gaussian_lt"]


def test_bad_paths_are_one_line_errors(tmp_path):
    with pytest.raises(ImbalError, match=r"nope: no such file or directory"):
        build_report([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImbalError, match=r"no summary.json under .*empty"):
        build_report([tmp_path / "empty"])
    bad = tmp_path / "bad" / "0"
    (bad / ".hydra").mkdir(parents=True)
    (bad / "summary.json").write_text("[1, 2]")
    with pytest.raises(ImbalError, match=r"no complete run .*0/summary.json: corrupt summary.json: expected a JSON object"):
        write_report([tmp_path / "bad"], tmp_path / "out")


def test_a_swept_optimizer_setting_splits_configurations(tmp_path):
    for i, lr in enumerate([0.1, 0.1, 0.01]):
        s = _summary("digits_lt", "ce", None, i, (0.5 + i / 10, 0.5, 0.5, 0.5, 1.0))
        s["config"]["optimizer"] = {"optim": {"lr": lr}}
        (tmp_path / str(i)).mkdir()
        (tmp_path / str(i) / "summary.json").write_text(json.dumps(s))
    t = build_report([tmp_path]).table
    assert list(t["optimizer.optim.lr"]) == ["0.01", "0.1"]
    assert list(t["n_seeds"]) == [1, 2]


def test_minority_recall_is_the_rarest_training_class_recall(tmp_path):
    """Column "minority recall": test recall of argmin(class_counts), averaged over seeds."""
    for seed, recalls in enumerate(([0.99, 0.60, 0.90], [0.98, 0.70, 0.80])):
        s = _summary("text", "ce", None, seed, (0.8, 0.7, 0.5, 0.8, 1.0))
        s["class_counts"] = [500, 12, 80]  # class 1 is the rarest
        s["test"]["per_class_recall"] = recalls
        run = tmp_path / str(seed)
        run.mkdir()
        (run / "summary.json").write_text(json.dumps(s))
    row = _row(build_report([tmp_path]).table, "ce", data="text")
    assert row["minority_recall_mean"] == pytest.approx(0.65)
    assert row["minority_recall_std"] == pytest.approx(math.sqrt(0.005))


def test_minority_recall_absent_without_class_counts(sweep):
    assert "minority_recall_mean" not in build_report([sweep]).table.columns


def test_stage_two_runs_group_over_seeds_and_name_their_recipe(tmp_path):
    """cRT runs from three stage-1 runs (one init_from path per seed) are one configuration, told apart
    from the stage-1 CE runs by their stage in the label; the stage-1 loss is what identifies init_from."""
    for i in range(3):
        s1 = _summary("digits_lt", "ce", None, i, (0.6 + i / 100, 0.5, 0.5, 0.5, 1.0))
        s2 = _summary("digits_lt", "ce", None, i, (0.7 + i / 100, 0.5, 0.5, 0.5, 1.0))
        s2["config"]["stage"] = {"name": "crt"}
        s2["config"]["init_from"] = f"/runs/ce/{i}_seed={i}"
        s2["init_from"] = {"path": f"/runs/ce/{i}_seed={i}", "loss": "ce"}
        for name, s in (("s1", s1), ("s2", s2)):
            (tmp_path / f"{name}_{i}").mkdir()
            (tmp_path / f"{name}_{i}" / "summary.json").write_text(json.dumps(s))
    t = build_report([tmp_path]).table
    assert sorted(t["config"]) == ["ce", "ce stage=crt"]
    assert list(t["n_seeds"]) == [3, 3]
    crt = t[t["config"] == "ce stage=crt"].iloc[0]
    assert crt["balanced_accuracy_mean"] == pytest.approx(0.71) and crt["init_from.loss"] == "ce"
