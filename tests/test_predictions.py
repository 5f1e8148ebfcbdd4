"""predictions/{val,test}.npz of a run, imbal.load_run, predict_step and ImbalanceTask.load_from_checkpoint.

Every number a run's summary.json reports for the test split is recomputed from the stored
predictions, and the model loaded back from the run dir reproduces the stored logits.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

import imbal
from imbal.data.stats import DataStats
from imbal.errors import ImbalError
from imbal.kinds import BINARY, MASK, MULTICLASS, MULTILABEL, SEGMENTATION
from imbal.metrics import ClassificationMetrics
from imbal.runner.predictions import gathered_index, read_predictions, split_arrays, write_predictions

COMMON = ("trainer=cpu", "trainer.enable_progress_bar=false", "logger={}")
GAUSS = ("data=gaussian_lt", "data.num_classes=3", "data.n_max=120", "data.ratio=10", "data.val_per_class=20",
         "data.test_per_class=30", "data.batch_size=32", "trainer.max_epochs=2")


def train_run(make_cfg, tmp_path, *overrides):
    from imbal.runner import train

    cfg = make_cfg(*COMMON, *overrides)
    train(cfg)
    return tmp_path / "run"


def balanced_accuracy(stats: DataStats, logits: np.ndarray, targets: np.ndarray) -> float:
    m = ClassificationMetrics(stats)
    m.update(torch.from_numpy(logits), torch.from_numpy(targets))
    return float(m.compute()["balanced_accuracy"])


def check_predictions_match_summary(run_dir) -> dict:
    """Both splits' npz against summary.json: every balanced accuracy recomputed to 1e-6."""
    run_dir_summary = json.loads((run_dir / "summary.json").read_text())
    stats = DataStats.from_dict(json.loads((run_dir / "data_stats.json").read_text()))
    preds = {split: read_predictions(run_dir, split) for split in ("val", "test")}
    for split, p in preds.items():
        n = run_dir_summary[split]["num_samples"]
        assert p["index"].dtype == np.int64 and p["index"].tolist() == list(range(n))
        assert p["logits"].dtype == np.float32 and len(p["logits"]) == len(p["targets"]) == n
        assert str(p["task"]) == stats.task and p["class_names"].tolist() == stats.class_names
        got = balanced_accuracy(stats, p["logits"], p["targets"])
        assert got == pytest.approx(run_dir_summary[split]["balanced_accuracy"], abs=1e-6)
    test = preds["test"]
    assert sorted(k for k in test if k.startswith("posthoc_")) == sorted(f"posthoc_{k}" for k in run_dir_summary["posthoc"])
    for name, entry in run_dir_summary["posthoc"].items():
        got = balanced_accuracy(stats, test[f"posthoc_{name}"], test["targets"])
        assert got == pytest.approx(entry["balanced_accuracy"], abs=1e-6)
    assert not any(k.startswith("posthoc_") for k in preds["val"])
    assert not list((run_dir / "predictions").glob(".*tmp*"))  # atomic writes left nothing behind
    return preds


def test_multiclass_predictions_model_and_checkpoint_round_trip(make_cfg, tmp_path):
    """gaussian_lt with LDAM (a cosine head: eval logits are s * cos): the stored logits are the scored ones,
    and imbal.load_run's model, predict_step, trainer.predict and load_from_checkpoint reproduce them."""
    import lightning as L

    from imbal.runner.build import build_data
    from imbal.task import ImbalanceTask

    run_dir = train_run(make_cfg, tmp_path, *GAUSS, "loss=ldam", "+posthoc.la_tuned={}")
    preds = check_predictions_match_summary(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["task"] == MULTICLASS and set(summary["posthoc"]) == {"la", "la_tuned"}
    assert json.loads((run_dir / "predictions" / "meta.json").read_text())["splits"]["test"]["rows"] == 90

    run = imbal.load_run(run_dir)
    assert isinstance(run, imbal.Run) and not run.model.training
    assert run.model.eval_logit_scale == 30.0  # LDAM's s: the stored logits are scaled
    assert run.checkpoint == run_dir / summary["best_checkpoint"] and run.summary.test == summary["test"]
    assert run.stats.to_dict() == json.loads((run_dir / "data_stats.json").read_text())
    assert run.config["loss"]["name"] == "ldam"
    for key in ("index", "targets", "logits", "posthoc_la", "posthoc_la_tuned"):
        assert np.array_equal(run.predictions("test")[key], preds["test"][key])

    # the test inputs, from a data module rebuilt from the run's own config
    dm = build_data(OmegaConf.create(run.config))
    loader = dm.loader("test")
    xs, ys = zip(*loader)
    assert np.array_equal(torch.cat(ys).numpy(), preds["test"]["targets"])
    with torch.no_grad():
        mine = torch.cat([run.model.predict_step(x) for x in xs]).numpy()  # a bare x batch
        again = torch.cat([run.model.predict_step((x, y), i) for i, (x, y) in enumerate(zip(xs, ys))]).numpy()
    np.testing.assert_allclose(mine, preds["test"]["logits"], atol=1e-6, rtol=0)
    assert np.array_equal(mine, again)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_checkpointing=False)
    out = torch.cat(trainer.predict(run.model, dataloaders=loader)).numpy()
    np.testing.assert_allclose(out, preds["test"]["logits"], atol=1e-6, rtol=0)

    # the checkpoint holds plain data: it loads with weights_only, and rebuilds the task on its own
    ckpt = torch.load(run.checkpoint, map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["stats"] == run.stats.to_dict()
    assert ckpt["hyper_parameters"]["config"] == run.config
    task = ImbalanceTask.load_from_checkpoint(run.checkpoint).eval()
    assert type(task) is ImbalanceTask
    with torch.no_grad():
        from_ckpt = torch.cat([task.predict_step(x) for x in xs]).numpy()
    assert np.array_equal(from_ckpt, mine)
    for (k, a), (k2, b) in zip(task.state_dict().items(), ckpt["state_dict"].items()):
        assert k == k2 and torch.equal(a, b)

    # imbal.predict.load_run_model is load_run's model
    from imbal.predict import load_run_model

    with torch.no_grad():
        via_predict = torch.cat([load_run_model(run_dir).predict_step(x) for x in xs]).numpy()
    np.testing.assert_allclose(via_predict, preds["test"]["logits"], atol=1e-6, rtol=0)


def test_load_run_from_a_moved_run_dir_and_an_old_checkpoint(make_cfg, tmp_path):
    """A run dir moved elsewhere still finds its best checkpoint; a checkpoint without the rebuild record
    (written before tasks stored it) is rebuilt from the run dir's config and data_stats.json."""
    import shutil

    run_dir = train_run(make_cfg, tmp_path, *GAUSS, "trainer.max_epochs=1")
    moved = tmp_path / "moved"
    shutil.move(str(run_dir), moved)
    run = imbal.load_run(moved)
    assert run.checkpoint.parent == moved / "checkpoints"
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32))
    with torch.no_grad():
        want = run.model(x)

    ckpt = torch.load(run.checkpoint, map_location="cpu", weights_only=True)
    del ckpt["hyper_parameters"]
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    with torch.no_grad():
        assert torch.equal(imbal.load_run(moved, checkpoint=old).model(x), want)
    from imbal.task import ImbalanceTask

    with pytest.raises(ImbalError, match=r"^checkpoint .*old.ckpt records no config and data stats; pass config="):
        ImbalanceTask.load_from_checkpoint(old)
    with pytest.raises(ImbalError, match=r"^predict: checkpoint .*nope.ckpt not found$"):
        imbal.load_run(moved, checkpoint=tmp_path / "nope.ckpt")
    with pytest.raises(ImbalError, match=r"^predictions: split 'train' unknown; expected one of: val, test$"):
        run.predictions("train")


def text_run(make_cfg, tmp_path, rows, *overrides):
    pd.DataFrame(rows).to_json(tmp_path / "d.jsonl", orient="records", lines=True)
    return train_run(
        make_cfg, tmp_path, "data=text", f"data.train_path={tmp_path / 'd.jsonl'}",
        f"data.tokenizer.cache_dir={tmp_path / 'tok'}", "model.embed_dim=8", "model.num_filters=4",
        "data.batch_size=16", "trainer.max_epochs=2", "data.min_length=1", *overrides,
    )


def test_binary_text_predictions_match_summary(make_cfg, tmp_path):
    rng = np.random.default_rng(0)
    rows = [{"text": f"{'win free prize' if y else 'lunch meeting call'} w{int(rng.integers(50))} n{i}",
             "label": int(y)} for i, y in enumerate(rng.random(200) < 0.25)]
    run_dir = text_run(make_cfg, tmp_path, rows, "data.task=binary", "loss=focal")
    preds = check_predictions_match_summary(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["task"] == BINARY and "threshold" in summary["posthoc"]
    assert preds["test"]["logits"].ndim == 1 and set(np.unique(preds["test"]["targets"])) <= {0.0, 1.0}


def test_multilabel_text_predictions_match_summary(make_cfg, tmp_path):
    rng = np.random.default_rng(1)
    rows = []
    for i in range(200):
        tags = [t for t, p in (("a", 0.5), ("b", 0.2), ("c", 0.05)) if rng.random() < p]
        rows.append({"text": " ".join([f"tag{t}" for t in tags] + [f"w{int(rng.integers(30))}", f"n{i}"]), "tags": tags})
    run_dir = text_run(make_cfg, tmp_path, rows, "data.label_column=tags", "data.multilabel=true", "loss=focal")
    preds = check_predictions_match_summary(run_dir)
    assert json.loads((run_dir / "summary.json").read_text())["task"] == MULTILABEL
    assert preds["test"]["logits"].shape == preds["test"]["targets"].shape == (len(preds["test"]["index"]), 3)


def test_ddp_gathered_rows_go_back_to_split_order():
    """Under DDP rank r evaluates range(n)[r::W]; the gathered rows are put back into split order."""
    assert gathered_index(7, 3).tolist() == [0, 3, 6, 1, 4, 2, 5]
    assert gathered_index(2, 4).tolist() == [0, 1]  # ranks 2 and 3 had nothing
    order = gathered_index(7, 3)
    logits = torch.tensor(order, dtype=torch.float64)[:, None].repeat(1, 2)  # row = its sample's index
    arrays = split_arrays({"logits": logits, "targets": torch.tensor(order)}, world_size=3,
                          posthoc={"la": logits + 1})
    assert arrays["index"].tolist() == list(range(7)) and arrays["targets"].tolist() == list(range(7))
    assert arrays["logits"].dtype == np.float32 and arrays["logits"][:, 0].tolist() == list(range(7))
    assert arrays["posthoc_la"][:, 1].tolist() == list(range(1, 8))


def test_segmentation_mask_records_and_their_order(tmp_path):
    """A segmentation task keeps no npz outputs; its per-image RLE records go to <split>.jsonl in split order."""
    from imbal.data.segmentation.rle import rle_decode, rle_encode
    from imbal.runner.predictions import instance_rles, mask_records, write_mask_predictions

    stats = DataStats(task=SEGMENTATION, num_classes=2, class_counts=[90, 10], class_names=["bg", "ship"],
                      modality=MASK)
    assert write_predictions(tmp_path, {}, stats) == []
    assert not (tmp_path / "predictions").exists()
    with pytest.raises(ImbalError, match=r"predictions/test.npz not found; expected a finished run$"):
        read_predictions(tmp_path, "test")

    # one column-major pass gives rle_encode(labels == k) for every label present, in label order
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=(7, 5)) * (rng.random((7, 5)) < 0.6)
    labels[labels == 2] = 0  # a gap in the labels
    want = [rle_encode(labels == k) for k in (1, 3)]
    assert instance_rles(labels) == want and instance_rles(np.zeros((3, 3), int)) == []
    assert instance_rles(np.ones((2, 3), int)) == ["1 6"]  # runs cross columns

    # the mask the metrics score: sigmoid(logit) > 0.5, i.e. logit > 0 (0 itself is background)
    logits = torch.tensor([[[[0.0, 1.0], [-1.0, 2.0]]], [[[-3.0, -3.0], [-3.0, -3.0]]]])  # [2, 1, 2, 2]
    inst = torch.tensor([[[0, 1], [0, 2]], [[0, 0], [0, 0]]], dtype=torch.int32)
    recs = mask_records(logits, (inst > 0).float(), inst, 0.5)
    assert recs == [{"shape": [2, 2], "pred": "3 2", "true_instances": ["3 1", "4 1"]},
                    {"shape": [2, 2], "pred": "", "true_instances": []}]
    assert mask_records(logits, (inst > 0).float(), None, 0.5)[0]["true_instances"] == ["3 2"]  # components
    assert rle_decode("3 2", (2, 2)).tolist() == [[0, 1], [0, 1]]

    # 3 ranks, 7 images: rank r evaluated range(7)[r::3]; rows go back to split order with their ids
    rows = [{"shape": [2, 2], "pred": str(j), "true_instances": []} for j in gathered_index(7, 3)]
    ids = [f"im{j}.jpg" for j in range(7)]
    written = write_mask_predictions(tmp_path, {"test": rows}, stats, 0.5, {"test": ids}, world_size=3)
    assert [p.name for p in written] == ["test.jsonl", "meta.json"]
    got = read_predictions(tmp_path, "test")
    assert [r["index"] for r in got] == list(range(7)) and [r["pred"] for r in got] == [str(j) for j in range(7)]
    assert [r["image_id"] for r in got] == ids
    meta = json.loads((tmp_path / "predictions" / "meta.json").read_text())
    assert meta == {"task": SEGMENTATION, "threshold": 0.5, "class_names": ["bg", "ship"],
                    "splits": {"test": {"rows": 7, "fields": ["index", "image_id", "shape", "pred", "true_instances"]}}}
    with pytest.raises(ImbalError, match=r"^predictions: 6 test masks were evaluated but the split has 7 images$"):
        write_mask_predictions(tmp_path, {"test": rows[:6]}, stats, 0.5, {"test": ids})


def recompute_segmentation(records: list[dict]) -> dict[str, float]:
    """summary.json's segmentation metrics from the stored records alone, in NumPy, and through a fresh
    SegmentationMetrics fed the decoded masks as logits +-20."""
    from imbal.data.segmentation.rle import rle_decode, rle_decode_instances
    from imbal.metrics.segmentation import SegmentationMetrics, airbus_f2

    tp = fp = fn = tn = 0
    f2, correct = [], 0
    fresh = SegmentationMetrics()
    for r in records:
        shape = tuple(r["shape"])
        pred = rle_decode(r["pred"], shape).astype(bool)
        insts = [rle_decode(t, shape).astype(bool) for t in r["true_instances"]]
        true = np.zeros(shape, bool) if not insts else np.logical_or.reduce(insts)
        tp += int((pred & true).sum())
        fp += int((pred & ~true).sum())
        fn += int((~pred & true).sum())
        tn += int((~pred & ~true).sum())
        f2.append(airbus_f2(pred, insts))
        correct += int(pred.any() == true.any())
        labels = torch.from_numpy(np.ascontiguousarray(rle_decode_instances(r["true_instances"], shape)))
        fresh.update(torch.from_numpy(np.where(pred, 20.0, -20.0))[None, None], (labels > 0).float()[None], labels[None])
    mine = {
        "dice": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
        "iou": tp / (tp + fp + fn) if tp + fp + fn else 1.0,
        "balanced_accuracy": 0.5 * ((tp / (tp + fn) if tp + fn else 1.0) + (tn / (tn + fp) if tn + fp else 1.0)),
        "airbus_f2": float(np.mean(f2)),
        "image_accuracy": correct / len(records),
    }
    again = fresh.compute()
    for k, v in mine.items():
        assert again[k] == pytest.approx(v, abs=1e-9), k
    return again


def test_segmentation_predictions_recompute_summary(make_cfg, tmp_path, monkeypatch):
    """A tiny airbus run: predictions/{val,test}.jsonl hold every image of the split, in split order with its
    ImageId, and every test and val metric of summary.json is recomputed from them alone."""
    from imbal.runner import train
    from imbal.runner.build import build_data
    from tests.test_segmentation_train import TINY

    monkeypatch.setenv("IMBAL_CACHE", str(tmp_path / "cache"))
    # prior 0.5 (output bias 0): after one epoch the masks are partly right, not all background
    train(make_cfg(*TINY, "loss=dice", "model.prior=0.5"))
    run_dir = tmp_path / "run"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["task"] == SEGMENTATION and 0 < summary["test"]["dice"] < 1  # measured 0.145
    assert not list((run_dir / "predictions").glob("*.npz")) and not list((run_dir / "predictions").glob(".*tmp*"))
    meta = json.loads((run_dir / "predictions" / "meta.json").read_text())
    assert meta["task"] == SEGMENTATION and meta["threshold"] == 0.5 and meta["class_names"] == summary["class_names"]
    run = imbal.load_run(run_dir)
    dm = build_data(OmegaConf.create(run.config))
    dm.setup()
    for split in ("val", "test"):
        records = run.predictions(split)
        assert records == read_predictions(run_dir, split)
        ids = dm.split_ids(split)
        assert len(records) == len(ids) == meta["splits"][split]["rows"] == 3  # 12 images, a quarter each
        assert [r["index"] for r in records] == list(range(3)) and [r["image_id"] for r in records] == ids
        assert ids == json.loads((run_dir / "data_manifest.json").read_text())[f"{split}_ids"]
        # the true instances are the loader's
        _, _, inst = (torch.cat(t) for t in zip(*dm.loader(split)))
        for r, lab in zip(records, inst.numpy()):
            assert r["shape"] == list(lab.shape) == [48, 48]
            assert sorted(r["true_instances"]) == sorted(rle_encode_labels(lab))
        assert any(r["pred"] for r in records) and any(r["true_instances"] for r in records)
        got = recompute_segmentation(records)
        keys = [k for k in summary[split] if k in got]
        assert set(keys) >= {"dice", "iou", "airbus_f2", "image_accuracy", "balanced_accuracy"}
        for k in keys:
            assert got[k] == pytest.approx(summary[split][k], abs=1e-6), (split, k)


def rle_encode_labels(lab: np.ndarray) -> list[str]:
    from imbal.data.segmentation.rle import rle_encode

    return [rle_encode(lab == k) for k in np.unique(lab) if k]


@pytest.mark.slow
def test_ddp_predictions_are_in_split_order(tmp_path):
    """Two gloo ranks with unequal shares (31 test rows per class): the stored rows are in split order, so
    the model loaded in one process reproduces them row by row, and the summary is recomputed from them."""
    from tests.conftest import run_train

    out = tmp_path / "run"
    proc = run_train("trainer=ddp_cpu", *GAUSS[:-1], "data.test_per_class=31", "data.val_per_class=21",
                     "trainer.max_epochs=1", "trainer.enable_progress_bar=false", f"hydra.run.dir={out}", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    preds = check_predictions_match_summary(out)
    assert len(preds["test"]["index"]) == 93 and len(preds["val"]["index"]) == 63
    run = imbal.load_run(out)
    from imbal.runner.build import build_data

    cfg = OmegaConf.create({**run.config, "trainer": {**run.config["trainer"], "devices": 1, "strategy": "auto"}})
    with torch.no_grad():
        for split in ("val", "test"):
            xs, ys = zip(*build_data(cfg).loader(split))
            assert np.array_equal(torch.cat(ys).numpy(), preds[split]["targets"])
            logits = torch.cat([run.model.predict_step(x) for x in xs]).numpy()
            np.testing.assert_allclose(logits, preds[split]["logits"], atol=1e-6, rtol=0)
