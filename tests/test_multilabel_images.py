"""data=multilabel_images (CSV / JSONL / COCO json lists), the multilabel metrics and the post-hoc threshold."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from imbal.data.multilabel_images import MultilabelImagesDataModule
from imbal.data.stats import DataStats
from imbal.errors import ImbalError

COUNTS = {"cat": 120, "dog": 40, "eel": 5}  # head / medium / tail by training positives


def train_rows():
    """130 rows: 120 with cat (the first 40 also dog), 5 eel only, 5 with no label."""
    rows = []
    for i in range(130):
        labels = (["cat"] if i < 120 else []) + (["dog"] if i < 40 else []) + (["eel"] if 120 <= i < 125 else [])
        rows.append((f"train/s{i % 3}/{i:03d}.png", labels))
    return rows


def eval_rows():
    return [(f"t{i:02d}.png", [c for k, c in enumerate(COUNTS) if (i >> k) & 1]) for i in range(16)]


def write_images(folder, names, size=12):
    rng = np.random.default_rng(0)
    for n in names:
        p = folder / n
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(p)


def write_csv(path, rows, *, json_lists=False):
    lines = ["path,labels"]
    for p, labs in rows:
        cell = '"' + json.dumps(labs).replace('"', '""') + '"' if json_lists else " ".join(labs)
        lines.append(f"{p},{cell}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps({"path": p, "labels": labs}) + "\n" for p, labs in rows))
    return path


def coco(rows, *, cat_ids=(3, 1, 2)):
    """A COCO instances dict: categories listed out of id order (names sort by id: cat, dog, eel)."""
    names = {1: "cat", 2: "dog", 3: "eel"}
    cats = [{"id": i, "name": names[i], "supercategory": "x"} for i in cat_ids]
    images, anns = [], []
    for k, (p, labs) in enumerate(rows):
        images.append({"id": 1000 + k, "file_name": p, "width": 12, "height": 12})
        for lab in labs:
            cid = {v: i for i, v in names.items()}[lab]
            for _ in range(2):  # two boxes of one class: one label
                anns.append({"id": len(anns), "image_id": 1000 + k, "category_id": cid, "bbox": [0, 0, 5, 5], "area": 25})
    return {"images": images, "annotations": anns, "categories": cats}


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "imgs"
    write_images(root, [p for p, _ in train_rows()])
    write_images(root / "test", [p for p, _ in eval_rows()])
    return root


def module(root, train, test, **kw):
    kw.setdefault("test_images", "test")
    return MultilabelImagesDataModule(root=str(root), train_list=str(train), test_list=str(test), image_size=16,
                                      num_workers=0, batch_size=8, **kw)


def test_csv_and_jsonl_lists(tree, tmp_path):
    train = write_csv(tmp_path / "train.csv", train_rows())
    test = write_jsonl(tmp_path / "test.jsonl", eval_rows())
    dm = module(tree, train, test)
    dm.setup()
    s = dm.stats
    assert (s.task, s.class_names, s.class_counts, s.num_train, s.val_from) == (
        "multilabel", ["cat", "dog", "eel"], [120, 40, 5], 130, "test_list")
    assert len(dm.splits["test"]) == 16 and len(dm.splits["val"]) == 16
    y = dm.splits["test"].targets
    assert y[5].tolist() == [1.0, 0.0, 1.0] and y[0].tolist() == [0.0, 0.0, 0.0]
    assert dm.manifest["all_negative_rows"] == {"train": 5, "val": 2, "test": 2}
    x, t = next(iter(dm.loader("train")))
    assert x.shape == (8, 3, 16, 16) and t.dtype == torch.float32 and t.shape == (8, 3)
    # numeric class names sort as numbers (2 before 10)
    numeric = [(p, ["10" if lab == "cat" else "2" if lab == "dog" else "3" for lab in labs]) for p, labs in train_rows()]
    dm3 = module(tree, write_csv(tmp_path / "numeric.csv", numeric), write_jsonl(tmp_path / "t.jsonl", [("t00.png", [])]))
    dm3.setup()
    assert dm3.stats.class_names == ["2", "3", "10"] and dm3.stats.class_counts == [40, 5, 120]
    # labels as JSON lists in CSV cells read the same
    dm2 = module(tree, write_csv(tmp_path / "train2.csv", train_rows(), json_lists=True), test)
    dm2.setup()
    assert torch.equal(dm2.splits["train"].targets, dm.splits["train"].targets)


def test_coco_json_with_id_list(tree, tmp_path):
    rows = train_rows()
    data = coco(rows)
    data["annotations"].append({"id": 9999, "image_id": 1129, "category_id": 3, "bbox": [0, 0, 5, 5], "area": 25,
                                "ignore": True})  # skipped: row 129 stays all-negative
    data["annotations"].append({"id": 9998, "image_id": 1128, "category_id": 3, "bbox": [0, 0, 0.5, 5], "area": 2})
    (tmp_path / "instances_train.json").write_text(json.dumps(data))
    (tmp_path / "instances_test.json").write_text(json.dumps(coco(eval_rows())))
    ids = tmp_path / "img_id.pkl"  # COCO-MLT's id list: a text file despite its name
    ids.write_text("".join(f"{1000 + k}\n" for k in range(130) if k != 7))
    dm = module(tree, tmp_path / "instances_train.json", tmp_path / "instances_test.json", train_ids=str(ids))
    dm.setup()
    assert dm.stats.class_names == ["cat", "dog", "eel"]  # by category id, not listing order
    assert dm.stats.class_counts == [119, 39, 5] and dm.stats.num_train == 129
    assert dm.splits["train"].targets[-2:].sum().item() == 0  # ignore / degenerate boxes are no label
    with pytest.raises(ImbalError, match=r"^data.train_ids: line 1: image id '5' is not in .*instances_train.json "
                                         r"\(1 such ids\)$"):
        ids.write_text("5\n1000\n")
        module(tree, tmp_path / "instances_train.json", tmp_path / "instances_test.json", train_ids=str(ids)).setup()
    with pytest.raises(ImbalError, match=r"^data.train_ids=.*img_id.pkl is a Python pickle; expected a text file"):
        ids.write_bytes(b"\x80\x02]q\x00.")
        module(tree, tmp_path / "instances_train.json", tmp_path / "instances_test.json", train_ids=str(ids)).setup()


def test_listing_errors_one_line(tree, tmp_path):
    test = write_jsonl(tmp_path / "test.jsonl", eval_rows())
    rows = train_rows()

    def err(train_rows_, pattern, *, fmt="csv", **kw):
        path = tmp_path / f"bad.{fmt}"
        if fmt == "csv":
            write_csv(path, train_rows_)
        else:
            write_jsonl(path, train_rows_)
        with pytest.raises(ImbalError, match=pattern):
            module(tree, path, kw.pop("test", test), **kw).setup()

    gone = [("train/s0/nope1.png", ["cat"]), ("train/s1/nope2.png", ["cat"]), ("x.png", ["dog"]), ("y.png", ["dog"])]
    err(rows + gone, r"^.*bad.csv: 4 of 134 listed images are missing under .*imgs \(first: train/s0/nope1.png "
                     r"\(row 131\), train/s1/nope2.png \(row 132\), x.png \(row 133\)\); check data.root and "
                     r"data.train_images$")
    err(rows + [("../out.png", ["cat"])], r"^.*bad.csv, row 131: path '../out.png' is not a relative path inside "
                                          r".*imgs \(expected e.g. images/0001.jpg, without '..' or a leading '/'\)$")
    err(rows + [("", ["cat"])], r"^.*bad.jsonl, row 131: no path \(got ''\); expected an image path", fmt="jsonl")
    err(rows, r"^.*bad_test.jsonl, row 2: unknown class 'ant'; expected one of: cat, dog, eel$",
        test=write_jsonl(tmp_path / "bad_test.jsonl", [("t00.png", []), ("t01.png", ["dog", "ant"])]))
    err(rows, r"^.*bad.csv, row 1: unknown class 'dog'; expected one of: ant, cat, eel$",
        class_names=str(_names(tmp_path, "ant cat eel")))
    err([r for r in rows if "eel" not in r[1]], r"^.*bad.csv: class 'eel' has no training positive \(1 such classes\); "
                                               r"every class needs one", class_names=str(_names(tmp_path, "cat dog eel")))
    bad_jsonl = tmp_path / "broken.jsonl"
    bad_jsonl.write_text('{"path": "a.png", "labels": ["cat"]}\n{"path": "b.png", "labels": [\n')
    with pytest.raises(ImbalError, match=r"^.*broken.jsonl, line 2: not a JSON object \(.*\); expected one object per line"):
        module(tree, bad_jsonl, test).setup()
    bad_json = tmp_path / "instances_bad.json"
    bad_json.write_text('{"images": [],\n "annotations": [,]}')
    with pytest.raises(ImbalError, match=r"^.*instances_bad.json, line 2: not valid JSON \(Expecting value, column 18\); "
                                         r"expected a COCO instances file$"):
        module(tree, bad_json, test).setup()
    bad_json.write_text('{"images": []}')
    with pytest.raises(ImbalError, match=r"^.*instances_bad.json: not a COCO instances file \(expected lists 'images', "
                                         r"'annotations' and 'categories'; found images\)$"):
        module(tree, bad_json, test).setup()
    with pytest.raises(ImbalError, match=r"^data.train_list=.*train.txt: cannot tell the list format from the suffix "
                                         r"'.txt'; expected .csv or .jsonl"):
        module(tree, tmp_path / "train.txt", test).setup()
    (tmp_path / "nolabels.csv").write_text("path,tags\na.png,cat\n")
    with pytest.raises(ImbalError, match=r"^.*nolabels.csv: no column 'labels' \(columns: path, tags\); expected "
                                         r"columns path and labels$"):
        module(tree, tmp_path / "nolabels.csv", test).setup()
    with pytest.raises(ImbalError, match=r"^sampler 'class_balanced' needs one class per sample; data "
                                         r"'multilabel_images' is multilabel: use sampler=none$"):
        module(tree, tmp_path / "x.csv", test, sampler={"name": "class_balanced"})


def _names(tmp_path, names):
    p = tmp_path / "classes.txt"
    p.write_text("\n".join(names.split()) + "\n")
    return p


# -- metrics ------------------------------------------------------------------
def test_map_and_group_aps_against_sklearn():
    from sklearn.metrics import average_precision_score, f1_score

    from imbal.metrics import ClassificationMetrics

    stats = DataStats(task="multilabel", num_classes=4, class_counts=[150, 50, 5, 3], class_names=list("abcd"),
                      modality="image", num_train=200)
    rng = np.random.default_rng(0)
    y = (rng.random((40, 4)) < 0.4).astype(np.float32)
    y[:, 3] = 0  # class d: no positive in this split, no AP
    z = rng.normal(size=(40, 4)) + 1.5 * y
    m = ClassificationMetrics(stats)
    for part in (slice(0, 13), slice(13, 40)):
        m.update(torch.tensor(z[part], dtype=torch.float32), torch.tensor(y[part]))
    r = m.compute()
    want = [average_precision_score(y[:, i], z[:, i]) for i in range(3)]
    assert r["per_class_ap"][:3] == pytest.approx(want, rel=1e-6) and r["per_class_ap"][3] != r["per_class_ap"][3]
    assert r["mAP"] == pytest.approx(np.mean(want), rel=1e-6)
    assert (r["head_ap"], r["medium_ap"]) == pytest.approx((want[0], want[1]), rel=1e-6)
    assert r["tail_ap"] == pytest.approx(want[2], rel=1e-6)  # d (3 training positives) is absent here
    assert r["micro_f1"] == pytest.approx(f1_score(y, (z > 0).astype(int), average="micro"), rel=1e-9)
    # by hand: scores 0.9 > 0.8 > 0.7 > 0.6 with targets 1, 0, 1, 0: AP = (1/1 + 2/3) / 2
    m = ClassificationMetrics(DataStats(task="multilabel", num_classes=2, class_counts=[30, 3], class_names=["a", "b"],
                                        modality="image", num_train=40))
    logit = torch.logit(torch.tensor([0.9, 0.8, 0.7, 0.6]))
    m.update(torch.stack([logit, -logit], 1), torch.tensor([[1.0, 1], [0, 0], [1, 0], [0, 0]]))
    r = m.compute()
    # class b: its one positive has the lowest score: AP = 1/4
    assert r["per_class_ap"] == pytest.approx([5 / 6, 1 / 4]) and r["mAP"] == pytest.approx(13 / 24)
    assert "head_ap" not in r and r["medium_ap"] == pytest.approx(5 / 6) and r["tail_ap"] == pytest.approx(1 / 4)


def test_posthoc_threshold_multilabel_by_hand():
    from imbal.posthoc import PosthocContext
    from imbal.posthoc.threshold import threshold_tuning

    stats = DataStats(task="multilabel", num_classes=2, class_counts=[3, 3], class_names=["a", "b"], modality="image",
                      num_train=5)
    # validation macro-F1 of the rule score >= u: u=-2: 2/3, u=-1: 0.8, u=0.5: 1.0 (both classes), u=1: 1/2 ...
    zv = torch.tensor([[2.0, -1.0], [1.0, 0.5], [-1.0, 1.5], [-2.0, -2.0]])
    yv = torch.tensor([[1.0, 0], [1, 1], [0, 1], [0, 0]])
    zt = torch.tensor([[-0.2, -0.3], [0.3, 0.2], [-1.0, -1.0]])
    yt = torch.tensor([[1.0, 0], [1, 1], [0, 0]])
    ctx = PosthocContext(stats=stats, val_logits=zv, val_targets=yv, test_logits=zt, test_targets=yt)
    out = threshold_tuning(ctx, beta=1.0)
    info = ctx.info["threshold"]
    assert info["threshold_logit"] == pytest.approx(-0.25) and info["val_macro_fbeta"] == pytest.approx(1.0)
    assert info["threshold"] == pytest.approx(1 / (1 + np.exp(0.25)))
    # test at -0.25: a: predicted rows 0, 1 (tp 2) F1 1; b: rows 1 (tp 1) -> F1 1 ... b's row 0 (-0.3) is not predicted
    assert info["test_macro_fbeta"] == pytest.approx(1.0) and info["test_micro_fbeta"] == pytest.approx(1.0)
    # at 0.5 (logit 0): a: row 1 only (tp 1 of 2) F1 2/3; b: row 1 (tp 1 of 1) F1 1
    assert info["test_macro_fbeta_at_0.5"] == pytest.approx((2 / 3 + 1) / 2)
    assert torch.allclose(out["threshold"], zt + 0.25)


# -- end to end -----------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "coco"])
def test_trains_one_epoch_and_reports_map(make_cfg, tree, tmp_path, fmt):
    from imbal.runner import train

    if fmt == "csv":
        train_list = write_csv(tmp_path / "train.csv", train_rows())
        test_list = write_jsonl(tmp_path / "test.jsonl", eval_rows())
    else:
        train_list, test_list = tmp_path / "instances_train.json", tmp_path / "instances_test.json"
        train_list.write_text(json.dumps(coco(train_rows())))
        test_list.write_text(json.dumps(coco(eval_rows())))
    rd = tmp_path / f"run_{fmt}"
    cfg = make_cfg("data=multilabel_images", f"data.root={tree}", f"data.train_list={train_list}",
                   f"data.test_list={test_list}", "data.test_images=test", "data.image_size=16", "data.num_workers=0",
                   "data.batch_size=32", "model=small_cnn", "model.width=8", "loss=distribution_balanced",
                   "trainer=cpu", "trainer.max_epochs=1", "trainer.enable_progress_bar=false", f"hydra.run.dir={rd}",
                   run_dir=rd)
    assert cfg.optimized_metric == "val/mAP" and cfg.callbacks.model_checkpoint.monitor == "val/mAP"
    value = train(cfg)
    s = json.loads((rd / "summary.json").read_text())
    assert s["class_counts"] == [120, 40, 5] and s["task"] == "multilabel"
    test = s["test"]
    assert 0 <= test["mAP"] <= 1 and len(test["per_class_ap"]) == 3 and test["num_samples"] == 16
    assert {"head_ap", "medium_ap", "tail_ap", "micro_f1", "macro_f1"} <= set(test)
    assert test["head_ap"] == pytest.approx(test["per_class_ap"][0])
    assert test["mAP"] == pytest.approx(np.mean(test["per_class_ap"]))
    assert value == pytest.approx(s["val"]["mAP"])
    th = s["posthoc"]["threshold"]
    assert 0 < th["threshold"] < 1 and th["macro_f1"] == pytest.approx(th["test_macro_fbeta"])
    assert s["loss_hparams"]["neg_scale"] == 2.0
    if fmt == "coco":  # the run dir rebuilds its model and loss (num_train from data_stats.json)
        import imbal

        run = imbal.load_run(rd)
        assert run.stats.num_train == 130 and run.model.loss_fn.num_train == 130


# -- the presets ------------------------------------------------------------------
def test_coco_mlt_preset_reads_the_coco_layout(make_cfg, tmp_path):
    from imbal.runner.build import build_data

    root = tmp_path / "coco"
    rows = [(f"{k:012d}.jpg", labs) for k, (_, labs) in enumerate(train_rows()[:45] + train_rows()[120:126])]
    tests = [(f"v{k:011d}.jpg", labs) for k, (_, labs) in enumerate(eval_rows())]
    write_images(root / "train2017", [p for p, _ in rows])
    write_images(root / "val2017", [p for p, _ in tests])
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(coco(rows)))
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(coco(tests)))
    ids = tmp_path / "img_id.pkl"
    ids.write_text("".join(f"{1000 + k}\n" for k in range(len(rows)) if k % 2 == 0 or k >= 45))
    cfg = make_cfg("data=coco_mlt", f"data.root={root}", f"data.train_ids={ids}", "data.image_size=16",
                   "data.num_workers=0")
    assert (cfg.model.name, cfg.loss.name, cfg.trainer.max_epochs, cfg.optimized_metric) == ("resnet50", "bce", 8, "val/mAP")
    dm = build_data(cfg)
    # kept: rows 0, 2, ..., 44 (23; cat, dog on the 20 of them below 40) and the 6 rows from 120 (5 eel, 1 empty)
    assert dm.stats.class_counts == [23, 20, 5] and dm.stats.num_train == 29 and dm.stats.val_from == "test_list"
    assert len(dm.splits["test"]) == 16 and dm.manifest["image_dirs"]["val"] == str(root / "val2017")


def test_voc_mlt_preset_and_xml_conversion(make_cfg, tmp_path):
    from imbal.data.multilabel_images import voc_list
    from imbal.runner.build import build_data

    root = tmp_path / "VOCdevkit"
    for year, rows in (("VOC2012", [("2008_000001", ["cat", "dog"]), ("2008_000002", ["eel"]), ("2008_000003", ["cat"])]),
                       ("VOC2007", [("000001", ["dog"]), ("000002", [])])):
        write_images(root / year / "JPEGImages", [f"{i}.jpg" for i, _ in rows])
        (root / year / "Annotations").mkdir(parents=True)
        for i, labs in rows:
            objs = "".join(f"<object><name>{n}</name><difficult>{k % 2}</difficult></object>" for k, n in enumerate(labs * 2))
            (root / year / "Annotations" / f"{i}.xml").write_text(f"<annotation><filename>{i}.jpg</filename>{objs}</annotation>")
        (tmp_path / f"{year}.txt").write_text("".join(f"{i}\n" for i, _ in rows))
        assert voc_list(root / year, tmp_path / f"{year}.txt", tmp_path / f"{year}.jsonl") == len(rows)
    first = json.loads((tmp_path / "VOC2012.jsonl").read_text().splitlines()[0])
    assert first == {"path": "JPEGImages/2008_000001.jpg", "labels": ["cat", "dog"]}
    cfg = make_cfg("data=voc_mlt", f"data.root={root}", f"data.train_list={tmp_path / 'VOC2012.jsonl'}",
                   f"data.test_list={tmp_path / 'VOC2007.jsonl'}", "data.image_size=16", "data.num_workers=0")
    dm = build_data(cfg)
    assert dm.stats.class_names == ["cat", "dog", "eel"] and dm.stats.class_counts == [2, 1, 1]
    assert dm.splits["test"].targets.tolist() == [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    with pytest.raises(ImbalError, match=r"^.*VOC2007.txt, line 1: no annotation .*VOC2012/Annotations/000001.xml; "
                                         r"expected a VOC folder with Annotations/$"):
        voc_list(root / "VOC2012", tmp_path / "VOC2007.txt", tmp_path / "x.jsonl")


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from imbal.metrics import ClassificationMetrics

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    z, y = _ddp_data()
    stats = DataStats(task="multilabel", num_classes=3, class_counts=[150, 50, 5], class_names=list("abc"),
                      modality="image", num_train=200)
    m = ClassificationMetrics(stats)
    m.update(z[rank::world], y[rank::world])  # rank 1 holds no positive of class c
    r = m.compute()
    if rank == 0:
        with open(out, "w") as fh:
            json.dump(r, fh)
    dist.destroy_process_group()


def _ddp_data():
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(20, 3, generator=g) < 0.5).float()
    y[:, 2] = 0
    y[4, 2] = 1  # one positive of c, on rank 0 only
    return torch.randn(20, 3, generator=g) + y, y


@pytest.mark.slow
def test_ap_state_syncs_across_two_ranks(tmp_path):
    """2 gloo processes: the gathered mAP and group APs equal one process's over all rows."""
    import socket

    import torch.multiprocessing as mp
    from sklearn.metrics import average_precision_score

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "r.json"
    mp.spawn(_ddp_worker, args=(2, port, str(out)), nprocs=2, join=True)
    r = json.loads(out.read_text())
    z, y = _ddp_data()
    want = [average_precision_score(y[:, i].numpy(), z[:, i].numpy()) for i in range(3)]
    assert r["per_class_ap"] == pytest.approx(want, rel=1e-6) and r["tail_ap"] == pytest.approx(want[2], rel=1e-6)
    assert r["mAP"] == pytest.approx(np.mean(want), rel=1e-6)
