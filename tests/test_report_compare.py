"""``imbal report``'s differences against a baseline: paired t over seeds, paired bootstrap over test samples."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from imbal.reporting.compare import compare, paired_bootstrap, paired_t
from imbal.reporting.plots import png_size
from imbal.reporting.report import main, write_report
from imbal.reporting.sweep import build_report
from tests.test_ensemble import C, N_TEST, make_stats, metrics_of, write_run

# a hand case: differences 0.02, 0.01, 0.04 -> mean 0.07/3, sd sqrt(7/30000) (ddof=1), t(0.975, 2) = 4.302653
A, B = [0.80, 0.82, 0.84], [0.78, 0.81, 0.80]
MEAN = 0.07 / 3
HALF = 4.302652729911275 * math.sqrt(7 / 30000) / math.sqrt(3)


def test_paired_t_interval_by_hand():
    d, lo, hi = paired_t(A, B)
    assert d == pytest.approx(MEAN, abs=1e-12)
    assert lo == pytest.approx(MEAN - HALF, abs=1e-9) and hi == pytest.approx(MEAN + HALF, abs=1e-9)
    assert lo == pytest.approx(-0.014613, abs=1e-6) and hi == pytest.approx(0.061280, abs=1e-6)  # contains 0
    with pytest.raises(ValueError):
        paired_t([0.1], [0.2])


def _test_arrays(quality: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    y = np.arange(N_TEST) % C
    z = rng.normal(size=(N_TEST, C)).astype(np.float32)
    z[np.arange(N_TEST), y] += quality
    return {"targets": y, "logits": z}


def test_bootstrap_of_identical_runs_is_zero_and_not_significant():
    a = _test_arrays(1.0, 0)
    d, lo, hi = paired_bootstrap(a, dict(a), "balanced_accuracy", None, 500, seed=0)
    assert (d, lo, hi) == (0.0, 0.0, 0.0)
    assert lo <= 0 <= hi


def test_bootstrap_of_a_clearly_better_model_excludes_zero():
    good, bad = _test_arrays(3.0, 1), _test_arrays(0.3, 2)
    bad["targets"] = good["targets"]
    for key in ("balanced_accuracy", "macro_f1", "accuracy", "few_shot_accuracy", "minority_recall"):
        d, lo, hi = paired_bootstrap(good, bad, key, [120, 40, 15, 5], 1000, seed=0)
        assert 0 < lo <= d <= hi, key
    # seeded: the same interval twice; another seed, another (close) interval
    assert paired_bootstrap(good, bad, "macro_f1", None, 300, 4) == paired_bootstrap(good, bad, "macro_f1", None, 300, 4)


def test_bootstrap_point_difference_is_imbal_metrics_difference():
    good, bad = _test_arrays(1.5, 3), _test_arrays(0.8, 4)
    stats = make_stats()
    for key in ("balanced_accuracy", "macro_f1", "accuracy", "few_shot_accuracy"):
        d, _, _ = paired_bootstrap(good, bad, key, stats.class_counts, 20, seed=0)
        ref = metrics_of(stats, good["logits"], good["targets"])[key] - metrics_of(stats, bad["logits"], bad["targets"])[key]
        assert d == pytest.approx(ref, abs=1e-6), key


@pytest.fixture
def sweep(tmp_path):
    """ce and l1 over seeds 0-2 (paired t); single runs 'solo' (better) and 'twin' (= ce seed 0's predictions)."""
    root = tmp_path / "sweep"
    for seed in range(3):
        write_run(root / f"ce_{seed}", seed=seed, quality=1.0, loss="ce")
        write_run(root / f"l1_{seed}", seed=seed, quality=1.6, loss="l1")
    write_run(root / "solo", seed=0, quality=4.0, loss="solo")
    write_run(root / "twin", seed=0, quality=1.0, loss="twin")  # same predictions as ce seed 0
    return root


def _comp(comps, rep, config, metric="balanced_accuracy"):
    return next(c for c in comps if rep.table["config"].iloc[c.row] == config and c.metric == metric)


def test_comparisons_of_a_sweep(sweep):
    rep = build_report([sweep])
    comps = compare([sweep], rep, baseline="loss=ce", n_boot=400, seed=0)
    t = rep.table
    l1 = _comp(comps, rep, "l1")
    assert l1.method == "t (3 seeds)" and l1.note == ""
    ce = t[t["config"] == "ce"].iloc[0]
    assert l1.diff == pytest.approx(t[t["config"] == "l1"].iloc[0]["balanced_accuracy_mean"] - ce["balanced_accuracy_mean"])
    solo = _comp(comps, rep, "solo")  # one seed each side, seed 0 shared: bootstrap on that pair
    assert solo.method == "bootstrap (400)" and solo.significant is True and solo.lo > 0
    twin = _comp(comps, rep, "twin")
    assert twin.method == "bootstrap (400)" and (twin.diff, twin.lo, twin.hi) == (0.0, 0.0, 0.0)
    assert twin.significant is False
    assert not any(c.metric == "wall_time_s" for c in comps)


def test_report_writes_differences_in_md_csv_and_plot(sweep, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(sweep), "-o", str(out), "--baseline", "loss=ce", "--bootstrap", "200"]) == 0
    md = (out / "report.md").read_text()
    assert "## Differences against the baseline" in md
    assert "| synthetic | twin | ce | bootstrap (200) | +0.000 [+0.000, +0.000] n.s. |" in md
    assert "![differences from the baseline with 95 % intervals](report_diff.png)" in md
    with open(out / "report.csv", newline="") as fh:
        rows = {r["config"]: r for r in csv.DictReader(fh)}
    assert rows["twin"]["balanced_accuracy_diff_significant"] == "false"
    assert rows["solo"]["balanced_accuracy_diff_significant"] == "true"
    assert rows["ce"]["balanced_accuracy_diff"] == "" and rows["l1"]["baseline"] == "ce"
    w, h = png_size(out / "report_diff.png")
    assert w > 0 and h > 0
    printed = capsys.readouterr().out
    assert "difference from the baseline" in printed and "n.s." in printed


def test_fewer_than_three_seeds_is_noted(tmp_path):
    for seed in range(2):
        write_run(tmp_path / f"ce_{seed}", seed=seed, quality=1.0, loss="ce")
        write_run(tmp_path / f"l1_{seed}", seed=seed, quality=1.5, loss="l1")
    rep = write_report([tmp_path], tmp_path / "out", bootstrap=50)
    c = _comp(rep.comparisons, rep, "l1")
    assert c.method == "t (2 seeds)" and c.note == "fewer than 3 seeds: a wide, fragile interval"
    assert "l1 vs ce (synthetic): fewer than 3 seeds: a wide, fragile interval" in (tmp_path / "out" / "report.md").read_text()


def test_bad_baseline_is_one_line_error(sweep, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(sweep), "-o", str(tmp_path / "o"), "--baseline", "colour=red"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("imbal: error: report: --baseline 'colour=red': expected KEY=VALUE with KEY one of: data, ")
    with pytest.raises(SystemExit) as exc:
        main([str(sweep), "-o", str(tmp_path / "o"), "--baseline", "loss=cee"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1
    assert err.strip() == ("imbal: error: report: --baseline loss=cee matches no configuration "
                           "(configurations: ce, l1, solo, twin)")


def test_report_of_ensemble_dirs_only(sweep, tmp_path):
    from imbal.ensemble import build_ensemble

    build_ensemble([sweep / "ce_0", sweep / "l1_0"], tmp_path / "ens" / "ensemble_mean", method="mean")
    assert write_report([tmp_path / "ens"], tmp_path / "out") is None
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Ensembles" in md and "| ensemble_mean | mean | – | 2 |" in md
    rec = json.loads((tmp_path / "ens" / "ensemble_mean" / "ensemble.json").read_text())
    assert f"| {rec['val']['balanced_accuracy']:.3f} | {rec['test']['balanced_accuracy']:.3f} |" in md
