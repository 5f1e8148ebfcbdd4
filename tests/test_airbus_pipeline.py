"""The two-stage Airbus pipeline: gate, F2 evaluation of a split, tune-seg, bad input, end to end.

The end-to-end part trains a tiny mask run and a tiny presence run (data=airbus, synthetic,
1 epoch, CPU) once for the module, then runs `imbal predict RUN --split test --gate PRES
--tta d4 -o OUT` as a subprocess.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from imbal.errors import ImbalError
from imbal.predict.evaluate import evaluate_split, image_f2
from imbal.predict.instances import instances
from imbal.predict.pipeline import Gate, Settings, f2_threshold, presence_transform, resolve_settings
from imbal.predict.tune import choose, grid_scores
from tests.conftest import REPO, compose_train
from tests.test_segmentation_metrics import box
from tests.test_segmentation_predict import Fixed


def rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


# -- the gate ------------------------------------------------------------------------------


class Square(Fixed):
    """A mask model predicting two separate squares in every image (Fixed's, and a second one)."""

    def forward(self, x):
        out = super().forward(x)
        out[:, :, 8:10, 8:12] = 10.0 + self.p
        return out


class Brightness(nn.Module):
    """A presence model: P(ship) high for a bright image (inputs in [-1, 1])."""

    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return 20 * x.mean(dim=(1, 2, 3)) + self.p


def test_gate_removes_every_instance_of_a_rejected_image(tmp_path):
    from PIL import Image

    from imbal.predict.airbus_submission import write_submission

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((16, 16, 3), 250, np.uint8)).save(images / "a.png")  # bright: kept
    Image.fromarray(np.full((16, 16, 3), 5, np.uint8)).save(images / "b.png")  # dark: rejected
    gate = Gate(Brightness(), 0.5, presence_transform(None))
    assert gate.prob(np.full((16, 16, 3), 250, np.uint8)) > 0.99 > 0.01 > gate.prob(np.full((16, 16, 3), 5, np.uint8))
    counts = write_submission(Square(), images, tmp_path / "gated.csv", gate=gate)
    assert counts == {"images": 2, "ships": 2, "rows": 3, "rejected_by_gate": 1}
    got = rows(tmp_path / "gated.csv")
    assert got[0] == ["ImageId", "EncodedPixels"]
    assert [r[0] for r in got[1:]] == ["a.png", "a.png", "b.png"]
    assert got[3] == ["b.png", ""]  # the rejected image: one empty row
    assert write_submission(Square(), images, tmp_path / "plain.csv")["ships"] == 4


def test_gate_threshold_maximises_image_f2():
    # P(ship) sorted: 0.1 (no), 0.3 (ship), 0.4 (no), 0.6 (no), 0.9 (ship).
    # Cut at 0.2 (keep >0.2): TP 2, FP 2, FN 0 -> 10/12 = 0.833; at 0.35: TP 1, FP 2, FN 1 -> 5/11;
    # at 0.05: TP 2, FP 3 -> 10/13; at 0.75: TP 1, FN 1 -> 5/9; reject all: 0.
    p = np.array([0.9, 0.1, 0.3, 0.4, 0.6])
    y = np.array([1, 0, 1, 0, 0])
    t, f = f2_threshold(p, y)
    assert t == pytest.approx(0.2) and f == pytest.approx(10 / 12)


# -- the F2 evaluation of a split ------------------------------------------------------------

#: (predicted mask, true instances, the score tests/test_segmentation_metrics.py works out by hand)
HAND = [
    (np.zeros((40, 40)), [], 1.0),
    (box(0, 1, 0, 1), [], 0.0),
    (np.zeros((40, 40)), [box(5, 15, 5, 25)], 0.0),
    (box(5, 15, 5, 25), [box(5, 15, 5, 25)], 1.0),
    (box(5, 15, 5, 17), [box(5, 15, 5, 25)], 0.2),
    (box(5, 15, 5, 20) | box(30, 32, 30, 32), [box(5, 15, 5, 25)], 0.5 * 5 / 6),
    (box(5, 15, 5, 15) | box(5, 15, 16, 26), [box(5, 15, 5, 26)], 0.0),
    (box(2, 6, 2, 12), [box(2, 6, 2, 12), box(20, 24, 20, 30)], 5 / 9),
]


class FakeData:
    """The parts of a segmentation data module evaluate_split reads: items, split_idx, loaders."""

    def __init__(self, cases):
        self.cases = cases
        self.items = [SimpleNamespace(image_id=f"{i}.png", index=i) for i in range(len(cases))]
        self.split_idx = {"val": np.arange(len(cases))}

    def load_image(self, item):
        return np.full((40, 40, 3), item.index, np.uint8)  # the case number, for the fakes below

    def load_instances(self, item):
        lab = np.zeros((40, 40), np.int32)
        for k, m in enumerate(self.cases[item.index][1], start=1):
            lab[np.asarray(m) > 0] = k
        return lab


class FakeSegmenter:
    def __init__(self, cases):
        self.cases = cases

    def probs(self, img, tta, image_id=""):
        p = np.where(np.asarray(self.cases[int(img[0, 0, 0])][0]) > 0, 0.9, 0.1).astype(np.float32)
        return p, p


class FakeGate:
    """Rejects the images whose case number is listed."""

    run_dir, threshold, source = "fake", 0.5, "given"

    def __init__(self, rejected):
        self.rejected = set(rejected)

    def prob(self, img):
        return 0.0 if int(img[0, 0, 0]) in self.rejected else 1.0

    def accepts(self, p):
        return p > self.threshold


def test_f2_evaluation_equals_the_hand_cases(tmp_path):
    for pred, truth, want in HAND:
        lab, n = instances(pred.astype(float))
        assert image_f2(lab, n, truth) == pytest.approx(want)
    s = evaluate_split("unused", "val", tmp_path, gate=FakeGate({1, 3}), settings=Settings(),
                       segmenter=FakeSegmenter(HAND), datamodule=FakeData(HAND))
    scores = [w for _, _, w in HAND]
    assert s["images"] == 8 and s["images_with_ships"] == 6
    assert s["all_background_f2"] == pytest.approx(2 / 8)
    assert [(x["gate"], x["tta"]) for x in s["steps"]] == [(False, "none"), (True, "none")]
    assert s["steps"][0]["airbus_f2"] == pytest.approx(np.mean(scores))
    # the gate rejects case 1 (a false ship on an empty image: 0 -> 1) and case 3 (a perfect ship: 1 -> 0)
    assert s["steps"][1]["airbus_f2"] == pytest.approx(np.mean(scores)) and s["rejected_by_gate"] == 2
    s = evaluate_split("unused", "val", tmp_path, gate=FakeGate({1}), settings=Settings(),
                       segmenter=FakeSegmenter(HAND), datamodule=FakeData(HAND))
    assert s["steps"][1]["airbus_f2"] == pytest.approx((sum(scores) + 1) / 8)
    # the CSV: one row per predicted instance, one empty row per image without one, gated rows empty
    got = rows(tmp_path / "submission.csv")[1:]
    per_image = {i: [r[1] for r in got if r[0] == f"{i}.png"] for i in range(8)}
    assert per_image[0] == [""] and per_image[1] == [""] and per_image[2] == [""]
    assert len(per_image[5]) == 2 and len(per_image[6]) == 2 and len(per_image[3]) == 1
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == s["steps"]


# -- tune-seg -------------------------------------------------------------------------------


def test_tune_picks_the_hand_known_threshold_and_min_size():
    # One ship (4x4 = 16 px) at P 0.9 inside a ring at P 0.6 (6x6 = 36 px: IoU 16/36 < 0.5 when
    # kept), and a 5 px false blob at P 0.95.  threshold >= 0.6 (strict: 0.6 itself drops the
    # ring) finds the ship alone; min size 10 drops the blob, 20 the ship too.  Best: 0.6 (nearest
    # 0.5 of the tied 0.6..0.8), 10 px, F2 1.  Image 2, without ships: a 12 px blob at P 0.7.
    p1 = np.full((30, 30), 0.05)
    p1[4:10, 4:10] = 0.6
    p1[5:9, 5:9] = 0.9
    p1[20, 20:25] = 0.95
    truth1 = [box(5, 9, 5, 9, (30, 30))]
    p2 = np.full((30, 30), 0.05)
    p2[10:13, 10:14] = 0.7
    s1, s2 = grid_scores(p1, truth1), grid_scores(p2, [])
    th = [round(0.3 + 0.05 * i, 2) for i in range(11)]
    assert s1[th.index(0.6), 1] == 1.0 and s1[th.index(0.55), 1] == 0.0 and s1[th.index(0.6), 0] == pytest.approx(5 / 6)
    assert s1[th.index(0.6), 2] == 0.0
    best = choose(np.stack([s1, s2]), np.array([0.0, 1.0]))
    # image 2's blob (12 px, P 0.7) is dropped by 20 px only, which also drops the ship, or by a
    # threshold of 0.7 (strict: P 0.7 is not above it), which keeps the ship: 0.7, 10 px, F2 (1 + 1) / 2
    assert best == {"threshold": 0.7, "min_size": 10, "gate_threshold": None, "val_f2": 1.0}
    only1 = choose(s1[None], np.array([0.0]))
    assert (only1["threshold"], only1["min_size"], only1["val_f2"]) == (0.6, 10, 1.0)
    # with a gate rejecting image 2 (P 0.1) and keeping image 1 (P 0.8): 0.6 / 10 px everywhere
    gated = choose(np.stack([s1, s2]), np.array([0.0, 1.0]), gate_probs=np.array([0.8, 0.1]))
    assert (gated["threshold"], gated["min_size"], gated["val_f2"]) == (0.6, 10, 1.0)
    assert gated["gate_threshold"] == pytest.approx(0.45)


def test_settings_from_the_tuning_file_and_flags(tmp_path):
    assert (resolve_settings(tmp_path).threshold, resolve_settings(tmp_path).min_size) == (0.5, 0)
    (tmp_path / "seg_tuning.json").write_text(json.dumps({"threshold": 0.65, "min_size": 20}))
    s = resolve_settings(tmp_path)
    assert (s.threshold, s.min_size) == (0.65, 20)
    assert s.describe() == "threshold=0.65 (seg_tuning.json), min_size=20 (seg_tuning.json)"
    s = resolve_settings(tmp_path, threshold=0.4)
    assert (s.threshold, s.min_size) == (0.4, 20) and s.sources["threshold"] == "given"
    (tmp_path / "seg_tuning.json").write_text(json.dumps({"threshold": 1.2}))
    with pytest.raises(ImbalError, match=r"seg_tuning.json threshold 1.2: expected a probability in \(0, 1\)$"):
        resolve_settings(tmp_path)


# -- real runs: bad input and the end-to-end command -------------------------------------------

COMMON = [
    "data=airbus",
    "data.synthetic.n_images=12",
    "data.synthetic.image_size=48",
    "data.synthetic.ship_image_share=0.5",
    "data.val_fraction=0.25",
    "data.test_fraction=0.25",
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "logger=csv",
]
MASK = [*COMMON, "data.crop=32", "data.samples_per_epoch=8", "model.depth=2", "model.base_width=4"]
PRESENCE = [*COMMON, "data.target=presence", "model=small_cnn", "model.width=8"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(mask run dir, presence run dir) trained in this process, on one synthetic set."""
    from imbal.runner import train

    root = tmp_path_factory.mktemp("pipeline")
    mp = pytest.MonkeyPatch()
    mp.setenv("IMBAL_CACHE", str(root / "cache"))
    out = []
    try:
        for name, overrides in (("mask", MASK), ("presence", PRESENCE)):
            train(compose_train(root / name, *overrides))
            out.append(root / name)
        yield out[0], out[1], root
    finally:
        mp.undo()


def cli(*args: str) -> int:
    from imbal.cli import main

    try:
        return main(list(args))
    except SystemExit as exc:
        return int(exc.code)


def refused(capsys, *args: str) -> str:
    assert cli(*args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("imbal: error: ")
    return err[0][len("imbal: error: "):]


def test_bad_input_one_line_each(runs, tmp_path, capsys, monkeypatch):
    mask, pres, root = runs
    monkeypatch.setenv("IMBAL_CACHE", str(root / "cache"))
    out = str(tmp_path / "out")
    msg = refused(capsys, "predict", str(mask), "--split", "test", "--gate", str(mask), "-o", out)
    assert msg == (f"--gate {mask}: a segmentation run (data_stats.json task 'segmentation'); the gate is a "
                   "ship-presence classifier, a binary run (data=airbus data.target=presence)")
    msg = refused(capsys, "predict", str(pres), "--split", "test", "-o", out)
    assert msg.startswith(f"predict: run dir {pres} is a binary run (data_stats.json task 'binary')")
    # a gate trained on other images: its manifest's val_ids differ
    other = tmp_path / "other_gate"
    shutil.copytree(pres, other)
    man = json.loads((other / "data_manifest.json").read_text())
    man["val_ids"] = [*man["val_ids"][:-1], "elsewhere.jpg"]
    (other / "data_manifest.json").write_text(json.dumps(man))
    msg = refused(capsys, "predict", str(mask), "--split", "test", "--gate", str(other), "-o", out)
    assert msg.startswith(f"gate run {other} was trained on a different split: data_manifest.json 'val_ids' has "
                          f"{len(man['val_ids'])} ids, the segmenter run {mask} {len(man['val_ids'])} (2 image id(s) "
                          "differ)")
    # --split on a run whose data module is not imbal's Airbus / mask-folder one
    foreign = tmp_path / "foreign"
    shutil.copytree(mask, foreign)
    summ = json.loads((foreign / "summary.json").read_text())
    summ["config"]["data"]["_target_"] = "my.pkg.Data"
    (foreign / "summary.json").write_text(json.dumps(summ))
    msg = refused(capsys, "predict", str(foreign), "--split", "val", "-o", out)
    assert msg.startswith(f"--split val: run dir {foreign} records data._target_='my.pkg.Data' in summary.json")
    assert refused(capsys, "predict", str(mask), "--split", "val", "--threshold", "1.5", "-o", out) == (
        "--threshold 1.5: expected a probability in (0, 1)")
    assert refused(capsys, "predict", str(mask), "--split", "val") == (
        "predict: --split val needs -o OUT_DIR (for submission.csv and summary.json)")
    assert refused(capsys, "predict", str(mask), "--split", "val", "--gate-threshold", "0.3", "-o", out) == (
        "--gate-threshold needs --gate GATE_RUN_DIR (the ship-presence run it applies to)")
    assert refused(capsys, "tune-seg", str(mask), "--thresholds", "0.2,1.5") == (
        "threshold grid value 1.5: expected a probability in (0, 1)")
    assert refused(capsys, "tune-seg", str(mask), "--min-sizes", "10,big") == (
        "tune-seg: --min-sizes '10,big': expected comma-separated int values")
    # rotations on non-square images
    from PIL import Image

    images = tmp_path / "wide"
    images.mkdir()
    Image.fromarray(np.zeros((16, 24, 3), np.uint8)).save(images / "w.png")
    assert refused(capsys, "predict", str(mask), str(images), str(tmp_path / "w.csv"), "--tta", "d4") == (
        "--tta d4: image w.png is 16x24; 90-degree rotations need square inputs (use --tta flips, or "
        "data.resize for square inputs)")
    assert cli("predict", str(mask), str(images), str(tmp_path / "w.csv"), "--tta", "flips") == 0
    assert rows(tmp_path / "w.csv")[0] == ["ImageId", "EncodedPixels"]


def test_tune_seg_then_predict_uses_its_values(runs, tmp_path, capsys, monkeypatch):
    mask, pres, root = runs
    monkeypatch.setenv("IMBAL_CACHE", str(root / "cache"))
    run = tmp_path / "mask"
    shutil.copytree(mask, run)
    assert cli("tune-seg", str(run), "--gate", str(pres), "--tta", "d4") == 0
    tuned = json.loads((run / "seg_tuning.json").read_text())
    assert tuned["split"] == "val" and tuned["images"] == len(json.loads((run / "data_manifest.json").read_text())["val_ids"])
    assert tuned["threshold"] in [round(0.3 + 0.05 * i, 2) for i in range(11)] and tuned["min_size"] in (0, 10, 20, 50, 100)
    assert tuned["val_f2"] >= max(tuned["val_f2_untuned"], tuned["all_background_f2"]) - 1e-12
    assert tuned["gate"]["run_dir"] == str(pres.resolve()) and 0 < tuned["gate"]["threshold"] < 1
    capsys.readouterr()
    assert cli("predict", str(run), "--split", "val", "--gate", str(pres), "--tta", "d4", "-o", str(tmp_path / "ev")) == 0
    said = capsys.readouterr().out
    assert (f"threshold={tuned['threshold']:g} (seg_tuning.json), min_size={tuned['min_size']} (seg_tuning.json)"
            in said and "(seg_tuning.json (val F2" in said)
    s = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert s["gate"]["threshold"] == tuned["gate"]["threshold"] and tuned["tta"] == "d4"
    assert [(x["gate"], x["tta"]) for x in s["steps"]] == [(False, "none"), (False, "d4"), (True, "none"), (True, "d4")]
    assert s["steps"][-1]["airbus_f2"] == pytest.approx(tuned["val_f2"])  # the same split, the same choice


@pytest.mark.slow  # ~20-45 s: a fresh interpreter imports torch and Lightning; the test above runs it in-process
def test_two_stage_pipeline_end_to_end_as_a_subprocess(runs, tmp_path):
    mask, pres, root = runs
    out = tmp_path / "eval"
    env = {**os.environ, "IMBAL_CACHE": str(root / "cache"), "PYTHONUNBUFFERED": "1"}
    r = subprocess.run([sys.executable, "-m", "imbal.cli", "predict", str(mask), "--split", "test", "--gate", str(pres),
                        "--tta", "d4", "-o", str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "summary.json").read_text())
    test_ids = json.loads((mask / "data_manifest.json").read_text())["test_ids"]
    assert s["images"] == len(test_ids) and s["images_with_ships"] >= 1 and s["split"] == "test"
    assert [(x["gate"], x["tta"]) for x in s["steps"]] == [(False, "none"), (False, "d4"), (True, "none"), (True, "d4")]
    assert all(0.0 <= x["airbus_f2"] <= 1.0 for x in s["steps"])
    assert 0 < s["all_background_f2"] < 1
    assert "gate   tta    airbus_f2" in r.stdout and "(all background)" in r.stdout
    got = rows(out / "submission.csv")
    assert got[0] == ["ImageId", "EncodedPixels"] and sorted({r[0] for r in got[1:]}) == sorted(test_ids)
