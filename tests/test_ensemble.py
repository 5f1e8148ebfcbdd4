"""``imbal ensemble``: members fitted on validation only, scored once on test, refused when they differ.

Member run dirs are synthetic, written with the runner's own writers (RunSummary, data_stats.json,
data_manifest.json, predictions/{val,test}.npz); one test trains two tiny real runs end to end.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from imbal.cli import main as cli_main
from imbal.data.stats import DataStats
from imbal.ensemble import build_ensemble
from imbal.ensemble.methods import OBJECTIVES, cm_balanced_accuracy, cm_macro_f1, confusion
from imbal.errors import ImbalError
from imbal.io import write_json_atomic
from imbal.kinds import IMAGE, MULTICLASS
from imbal.metrics import ClassificationMetrics
from imbal.runner.predictions import write_predictions
from imbal.runner.rundir import write_stats
from imbal.runner.summary import RunSummary

C = 4
COUNTS = [120, 40, 15, 5]
N_VAL, N_TEST = 160, 200
#: how far each member's logit of the true class is raised: member 0 is the best
QUALITY = (2.2, 1.4, 0.8)


def make_stats(val_from: str | None = None, names=None) -> DataStats:
    return DataStats(task=MULTICLASS, num_classes=C, class_counts=COUNTS, class_names=names or [f"c{i}" for i in range(C)],
                     modality=IMAGE, input_shape=(2,), val_from=val_from)


def split_logits(rng, n: int, quality: float) -> tuple[np.ndarray, np.ndarray]:
    y = np.arange(n) % C
    z = rng.normal(size=(n, C)).astype(np.float32)
    z[np.arange(n), y] += quality
    z[:, 0] += 0.5  # a head-class bias, as a long-tailed model has
    return y.astype(np.int64), z


def metrics_of(stats, logits, targets) -> dict:
    m = ClassificationMetrics(stats)
    m.update(torch.from_numpy(logits), torch.from_numpy(targets))
    return {**m.compute(), "num_samples": len(targets)}


def write_run(run_dir: Path, seed: int, quality: float, *, loss: str = "ce", data_seed: int = 0,
              stats: DataStats | None = None, targets_from: int = 0) -> Path:
    """A finished run dir as the runner writes it (summary numbers recomputed from its predictions)."""
    stats = stats or make_stats()
    rng = np.random.default_rng(1000 + seed)
    yv, zv = split_logits(np.random.default_rng([targets_from, seed, 1]), N_VAL, quality)
    yt, zt = split_logits(np.random.default_rng([targets_from, seed, 2]), N_TEST, quality)
    del rng
    outputs = {"val": {"targets": yv, "logits": zv}, "test": {"targets": yt, "logits": zt}}
    run_dir.mkdir(parents=True)
    write_predictions(run_dir, outputs, stats)
    write_stats(stats, run_dir)
    write_json_atomic(run_dir / "data_manifest.json", {"data": "synthetic", "seed": data_seed, "class_counts": COUNTS})
    RunSummary(data="synthetic", model="mlp", loss=loss, seed=seed, task=MULTICLASS, class_counts=COUNTS,
               class_names=list(stats.class_names), val=metrics_of(stats, zv, yv), test=metrics_of(stats, zt, yt),
               config={"seed": seed, "loss": {"name": loss}, "data": {"name": "synthetic", "seed": data_seed}}
               ).write(run_dir)
    return run_dir


@pytest.fixture
def sweep(tmp_path) -> Path:
    root = tmp_path / "sweep"
    for i, q in enumerate(QUALITY):
        write_run(root / f"{i}_loss=l{i}", seed=i, quality=q, loss=f"l{i}")
    return root


def run_cli(args, capsys) -> tuple[int, str]:
    try:
        code = cli_main(args)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("imbal: error: ensemble: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


# -- results ----------------------------------------------------------------------------
def test_mean_of_one_member_is_that_member_exactly(sweep, tmp_path):
    run = sweep / "1_loss=l1"
    rec = build_ensemble([run], tmp_path / "e", method="mean")
    summary = RunSummary.read(run)
    assert rec["weights"] == [1.0]
    assert rec["val"] == summary.val and rec["test"] == summary.test  # every number, bit for bit
    assert rec["member_metrics"][0]["test"] == summary.test
    with np.load(run / "predictions" / "test.npz") as a, np.load(tmp_path / "e" / "predictions" / "test.npz") as b:
        assert np.array_equal(a["logits"], b["logits"]) and np.array_equal(a["targets"], b["targets"])
        assert np.array_equal(b["index"], np.arange(N_TEST))


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("method", ["weighted", "greedy"])
def test_fitted_ensembles_match_the_best_single_member_on_validation(sweep, tmp_path, method, objective):
    rec = build_ensemble([sweep], tmp_path / "e", method=method, objective=objective, seed=3)
    vals = [m["val"][objective] for m in rec["member_metrics"]]
    if objective == "log_loss":
        assert rec["val"]["log_loss"] <= min(vals) + 1e-6
    else:
        assert rec["val"][objective] >= max(vals)
    assert rec["best_single"]["val"][objective] == (min(vals) if objective == "log_loss" else max(vals))
    w = np.asarray(rec["weights"])
    assert (w >= 0).all() and w.sum() == pytest.approx(1.0)


def test_the_search_objective_is_imbal_metrics_number(sweep):
    """The numpy scores the weighted search and greedy optimise equal imbal.metrics' (all classes present)."""
    with np.load(sweep / "2_loss=l2" / "predictions" / "val.npz") as a:
        y, z = a["targets"], a["logits"]
    cm = confusion(z.argmax(1), y, C)
    ref = metrics_of(make_stats(), z, y)
    assert cm_balanced_accuracy(cm) == pytest.approx(ref["balanced_accuracy"], abs=1e-6)
    assert cm_macro_f1(cm) == pytest.approx(ref["macro_f1"], abs=1e-6)


def test_output_files_and_a_second_level_ensemble(sweep, tmp_path, capsys):
    code, err = run_cli(["ensemble", str(sweep), "--method", "stacking", "--posthoc", "la", "--seed", "1"], capsys)
    assert code == 0, err
    out = sweep / "ensemble_stacking"  # the default OUT
    rec = json.loads((out / "ensemble.json").read_text())
    assert rec["method"] == "stacking" and len(rec["members"]) == 3 and rec["seed"] == 1
    assert rec["files_read"]["fitting"] == [str(sweep.resolve() / f"{i}_loss=l{i}" / "predictions" / "val.npz")
                                            for i in range(3)]
    assert rec["files_read"]["scoring"] == [f.replace("val.npz", "test.npz") for f in rec["files_read"]["fitting"]]
    assert set(rec["posthoc"]) == {"la"} and rec["posthoc"]["la"]["tau"] == 1.0
    meta = json.loads((out / "predictions" / "meta.json").read_text())
    assert meta["splits"]["test"]["arrays"] == ["index", "logits", "posthoc_la", "targets"]
    stats = make_stats()
    with np.load(out / "predictions" / "test.npz") as t:
        assert metrics_of(stats, t["logits"], t["targets"]) == rec["test"]
        assert metrics_of(stats, t["posthoc_la"], t["targets"])["balanced_accuracy"] == \
            rec["posthoc"]["la"]["balanced_accuracy"]
    # an ensemble dir is a member itself; a sweep's own ensemble dirs are never picked up by a later run
    again = build_ensemble([sweep], tmp_path / "mean", method="mean")
    assert len(again["members"]) == 3
    second = build_ensemble([out, sweep / "0_loss=l0"], tmp_path / "second", method="logit_mean")
    assert [m["kind"] for m in second["members"]] == ["ensemble", "run"]


def test_binary_members(tmp_path):
    """Binary runs store logits [N]: the ensemble writes [N] logits too, and threshold tuning applies."""
    stats = DataStats(task="binary", num_classes=2, class_counts=[90, 10], class_names=["neg", "pos"],
                      modality=IMAGE, input_shape=(2,))
    for i, q in enumerate((2.0, 1.0)):
        rng = np.random.default_rng(i)
        outputs = {}
        for split, n in (("val", 120), ("test", 150)):
            y = (np.arange(n) % 4 == 0).astype(np.float32)
            outputs[split] = {"targets": y, "logits": (rng.normal(size=n) + q * (2 * y - 1) - 1).astype(np.float32)}
        run = tmp_path / "sweep" / str(i)
        run.mkdir(parents=True)
        write_predictions(run, outputs, stats)
        write_stats(stats, run)
        write_json_atomic(run / "data_manifest.json", {"data": "bin", "seed": 0})
        RunSummary(data="bin", model="mlp", loss="bce", seed=i, task="binary", class_counts=[90, 10],
                   class_names=["neg", "pos"], test=metrics_of(stats, outputs["test"]["logits"], outputs["test"]["targets"])
                   ).write(run)
    one = build_ensemble([tmp_path / "sweep" / "1"], tmp_path / "one", method="mean")
    assert one["test"] == RunSummary.read(tmp_path / "sweep" / "1").test
    for method in ("weighted", "stacking", "greedy"):
        rec = build_ensemble([tmp_path / "sweep"], tmp_path / method, method=method, posthoc=["threshold"],
                             objective="balanced_accuracy")
        assert 0.0 < rec["posthoc"]["threshold"]["threshold"] < 1.0
        with np.load(tmp_path / method / "predictions" / "test.npz") as t:
            assert t["logits"].shape == (150,) and t["posthoc_threshold"].shape == (150,)
            assert metrics_of(stats, t["logits"], t["targets"]) == rec["test"]


# -- no leakage ---------------------------------------------------------------------------
@pytest.mark.parametrize("method,objective", [("weighted", "balanced_accuracy"), ("weighted", "log_loss"),
                                              ("greedy", "macro_f1"), ("stacking", "log_loss")])
def test_weights_do_not_depend_on_the_test_files(sweep, tmp_path, method, objective):
    before = build_ensemble([sweep], tmp_path / "a", method=method, objective=objective, seed=5)
    rng = np.random.default_rng(0)
    for f in sweep.glob("*/predictions/test.npz"):
        with np.load(f) as a:
            arrays = {k: a[k] for k in a.files}
        arrays["logits"] = arrays["logits"][rng.permutation(len(arrays["logits"]))]  # shuffled rows
        with open(f, "wb") as fh:
            np.savez(fh, **arrays)
    after = build_ensemble([sweep], tmp_path / "b", method=method, objective=objective, seed=5)
    assert after["weights"] == before["weights"] and after["fit"] == before["fit"]
    assert after["val"] == before["val"]
    assert after["test"] != before["test"]  # the test files did change, and were scored
    assert all(f.endswith("val.npz") for f in after["files_read"]["fitting"])


@pytest.mark.parametrize("method", ["weighted", "stacking"])
def test_fixed_seed_is_deterministic(sweep, tmp_path, method):
    kw = {"objective": "macro_f1"} if method == "weighted" else {}
    a = build_ensemble([sweep], tmp_path / "a", method=method, seed=7, **kw)
    b = build_ensemble([sweep], tmp_path / "b", method=method, seed=7, **kw)
    assert a["weights"] == b["weights"] and a["fit"] == b["fit"] and a["test"] == b["test"]
    for split in ("val", "test"):
        with np.load(tmp_path / "a" / "predictions" / f"{split}.npz") as x, \
                np.load(tmp_path / "b" / "predictions" / f"{split}.npz") as y:
            assert np.array_equal(x["logits"], y["logits"])


# -- refusals -------------------------------------------------------------------------------
def test_val_from_test_runs_are_refused_for_fitting(tmp_path, capsys):
    root = tmp_path / "cifar"
    for i, q in enumerate(QUALITY[:2]):
        write_run(root / str(i), seed=i, quality=q, stats=make_stats(val_from="test"))
    code, err = run_cli(["ensemble", str(root), "--method", "weighted", "-o", str(tmp_path / "w")], capsys)
    assert_one_line_error(code, err, "--method weighted fits on validation", "data.val_from=test",
                          "would tune on the test set", str((root / "0").resolve()))
    assert not (tmp_path / "w").exists()
    code, err = run_cli(["ensemble", str(root), "--posthoc", "la_tuned", "-o", str(tmp_path / "t")], capsys)
    assert_one_line_error(code, err, "--posthoc la_tuned is tuned on validation")
    # mean fits nothing: allowed, and the "best single member" says it was picked on the test split
    rec = build_ensemble([root], tmp_path / "m", method="mean")
    assert rec["best_single"]["chosen_by"] == "val log_loss (val_from=test: this is the test split)"


def test_members_that_differ_are_refused_in_one_line(sweep, tmp_path, capsys):
    out = tmp_path / "out"
    odd = write_run(tmp_path / "other_seed", seed=9, quality=1.0, data_seed=1)
    code, err = run_cli(["ensemble", str(sweep), str(odd), "-o", str(out)], capsys)
    assert_one_line_error(code, err, str(odd.resolve()), "data_manifest.json differs", "at 'seed' (1 vs 0)")

    odd = write_run(tmp_path / "other_classes", seed=9, quality=1.0, stats=make_stats(names=["a", "b", "c", "d"]))
    code, err = run_cli(["ensemble", str(sweep), str(odd), "-o", str(out)], capsys)
    assert_one_line_error(code, err, str(odd.resolve()), "has classes ['a', 'b', 'c', 'd']", "must share the classes")

    odd = write_run(tmp_path / "no_test", seed=9, quality=1.0)
    (odd / "predictions" / "test.npz").unlink()
    code, err = run_cli(["ensemble", str(sweep), str(odd), "-o", str(out)], capsys)
    assert_one_line_error(code, err, f"{odd.resolve()}/predictions/test.npz not found")

    odd = write_run(tmp_path / "other_split", seed=9, quality=1.0, targets_from=1)
    with np.load(odd / "predictions" / "val.npz") as a:
        arrays = {k: a[k] for k in a.files}
    arrays["targets"] = np.roll(arrays["targets"], 1)
    with open(odd / "predictions" / "val.npz", "wb") as fh:
        np.savez(fh, **arrays)
    code, err = run_cli(["ensemble", str(sweep), str(odd), "-o", str(out), "--method", "weighted"], capsys)
    assert_one_line_error(code, err, f"{odd.resolve()}/predictions/val.npz", "must share the val split")
    assert not (out / "ensemble.json").exists()


def test_bad_arguments_are_one_line_errors(sweep, tmp_path, capsys):
    code, err = run_cli(["ensemble", str(tmp_path / "nope")], capsys)
    assert_one_line_error(code, err, "nope: no such file or directory")
    (tmp_path / "empty").mkdir()
    code, err = run_cli(["ensemble", str(tmp_path / "empty")], capsys)
    assert_one_line_error(code, err, "no finished run")
    code, err = run_cli(["ensemble", str(sweep), "--posthoc", "tau_norm", "-o", str(tmp_path / "o")], capsys)
    assert_one_line_error(code, err, "--posthoc tau_norm does not apply to an ensemble")
    with pytest.raises(ImbalError, match="a class has only 1 validation sample"):
        from imbal.ensemble.methods import fit_stacking

        fit_stacking([np.eye(3), np.eye(3)], np.array([0, 1, 2]), seed=0, folds=5)


# -- one real run, end to end ---------------------------------------------------------------
@pytest.mark.slow
def test_real_runs_end_to_end(make_cfg, tmp_path, capsys):
    """Two tiny gaussian_lt runs (same data seed, two model seeds, two losses): every method runs on them,
    and `imbal report` over the sweep shows the ensemble section."""
    from imbal.runner import train

    common = ("trainer=cpu", "trainer.enable_progress_bar=false", "logger={}", "data=gaussian_lt",
              "data.num_classes=3", "data.n_max=120", "data.ratio=10", "data.val_per_class=20",
              "data.test_per_class=30", "data.batch_size=32", "trainer.max_epochs=2", "data.seed=0")
    sweep = tmp_path / "sweep"
    for i, loss in enumerate(("ce", "focal")):
        train(make_cfg(*common, f"loss={loss}", f"seed={i}", run_dir=sweep / str(i)))
    for method in ("mean", "logit_mean", "weighted", "greedy", "stacking"):
        rec = build_ensemble([sweep], None, method=method, posthoc=["la"])
        assert Path(rec["out_dir"]) == sweep / f"ensemble_{method}"
        assert len(rec["member_metrics"]) == 2 and "la" in rec["posthoc"]
        for m in rec["member_metrics"]:  # members' numbers are the runs' own (the run sums ECE and log-loss
            run = RunSummary.read(m["path"]).test  # batch by batch: the same to float rounding)
            assert set(m["test"]) == set(run)
            for key, value in run.items():
                assert m["test"][key] == (pytest.approx(value, abs=1e-6) if key in ("ece", "log_loss") else value)
    from imbal.reporting.report import main as report_main

    assert report_main([str(sweep), "-o", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Ensembles" in md and "| ensemble_stacking | stacking |" in md
    assert "## Differences against the baseline" in md
