"""CIFAR-10/100-LT: profile counts, reading the real pickle layout, splits, manifest, errors, one run."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from imbal.data.cifar import CIFAR_MEAN, CIFAR_STD, CIFAR10LTDataModule, CIFAR100LTDataModule
from imbal.data.profile import longtail_counts
from imbal.errors import ImbalError
from tests.cifar_fixture import write_cifar10, write_cifar100


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar10(root)
    write_cifar100(root)
    return root


def test_profile_totals_of_the_papers():
    c10 = longtail_counts(5000, 10, 100)
    c100 = longtail_counts(500, 100, 100)
    assert sum(c10) == 12_406 and sum(c100) == 10_847
    assert c10 == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert c100[0] == 500 and c100[-1] == 5
    assert sum(longtail_counts(5000, 10, 10)) == 20_431 and sum(longtail_counts(500, 100, 10)) == 19_573
    # step profile: half the classes keep n_max, the rest n_max / ratio
    assert longtail_counts(5000, 10, 100, "step") == [5000] * 5 + [50] * 5


def test_cifar10_lt_reads_files_and_subsamples(cifar_root):
    dm = CIFAR10LTDataModule(root=str(cifar_root), ratio=10)
    dm.setup()
    assert dm.stats.class_counts == longtail_counts(20, 10, 10) == [20, 15, 11, 9, 7, 5, 4, 3, 2, 2]
    assert dm.stats.class_names[:2] == ["airplane", "automobile"] and dm.stats.input_shape == (3, 32, 32)
    # the test split is untouched: all 40 images, balanced, and it is the validation split (papers' protocol)
    test_y = dm.splits["test"].tensors[1]
    assert torch.bincount(test_y).tolist() == [4] * 10 and dm.splits["val"] is dm.splits["test"]
    # pixels: CHW, same bytes as the pickle's row layout (1024 R, 1024 G, 1024 B)
    with open(cifar_root / "cifar-10-batches-py" / "test_batch", "rb") as f:
        raw = pickle.load(f, encoding="latin1")
    assert torch.equal(dm.splits["test"].tensors[0][7], torch.as_tensor(raw["data"][7]).reshape(3, 32, 32))
    x, y = dm.splits["test"][7]
    expect = (torch.as_tensor(raw["data"][7]).reshape(3, 32, 32).float() / 255 - torch.tensor(CIFAR_MEAN)[:, None, None]) / torch.tensor(CIFAR_STD)[:, None, None]
    assert torch.allclose(x, expect, atol=1e-5) and int(y) == raw["labels"][7]


def test_subset_is_fixed_by_subset_seed_not_run_seed(cifar_root):
    hashes = []
    for seed, subset_seed in ((0, 0), (5, 0), (0, 1)):
        dm = CIFAR10LTDataModule(root=str(cifar_root), ratio=10, seed=seed, subset_seed=subset_seed)
        dm.setup()
        hashes.append(dm.manifest["train_indices_hash"])
    assert hashes[0] == hashes[1] != hashes[2]


def test_val_from_train_is_balanced_and_disjoint(cifar_root):
    dm = CIFAR10LTDataModule(root=str(cifar_root), ratio=10, val_from="train", val_per_class=3)
    dm.setup()
    val_x, val_y = dm.splits["val"].tensors
    assert torch.bincount(val_y).tolist() == [3] * 10
    # held out first: n_max = 20 - 3
    assert dm.stats.class_counts == longtail_counts(17, 10, 10)
    train_x = dm.splits["train"].tensors[0].reshape(len(dm.splits["train"]), -1)
    val_rows = {bytes(r.numpy()) for r in val_x.reshape(30, -1)}
    assert not val_rows & {bytes(r.numpy()) for r in train_x}
    assert dm.stats.val_from == "train"


def test_cifar100_lt(cifar_root):
    dm = CIFAR100LTDataModule(root=str(cifar_root), ratio=6)
    dm.setup()
    assert dm.stats.num_classes == 100 and dm.stats.class_counts == longtail_counts(6, 100, 6)
    assert dm.stats.class_counts[0] == 6 and dm.stats.class_counts[-1] == 1
    assert len(dm.splits["test"]) == 200 and dm.stats.class_names[3] == "class_03"


def test_augmentation_is_pad4_crop32_flip(cifar_root):
    dm = CIFAR10LTDataModule(root=str(cifar_root), ratio=10)
    dm.setup()
    img = dm.splits["train"].tensors[0][0]
    mean, std = torch.tensor(CIFAR_MEAN)[:, None, None], torch.tensor(CIFAR_STD)[:, None, None]
    padded = torch.nn.functional.pad(img.float() / 255, (4, 4, 4, 4))
    candidates = {(dy, dx, fl): (padded[:, dy:dy + 32, dx:dx + 32].flip(-1) if fl else padded[:, dy:dy + 32, dx:dx + 32])
                  for dy in range(9) for dx in range(9) for fl in (0, 1)}
    crops = {}
    torch.manual_seed(0)
    for _ in range(40):
        out = dm.splits["train"][0][0] * std + mean
        match = next((k for k, v in candidates.items() if torch.allclose(out, v, atol=1e-5)), None)
        assert match is not None, "output is not a flipped/unflipped 32x32 crop of the 4-padded image"
        crops[match] = crops.get(match, 0) + 1
    assert len(crops) > 15 and {k[2] for k in crops} == {0, 1}


def test_manifest_is_saved(cifar_root, tmp_path):
    dm = CIFAR10LTDataModule(root=str(cifar_root), ratio=10, seed=3)
    dm.setup()
    m = json.loads(dm.save_manifest(tmp_path).read_text())
    assert m["class_counts"] == dm.stats.class_counts and m["seed"] == 3 and m["subset_seed"] == 0
    assert m["num_train"] == 78 and len(m["train_indices_hash"]) == 16 and m["val_from"] == "test"


def test_missing_files_one_line(tmp_path):
    with pytest.raises(ImbalError) as e:
        CIFAR10LTDataModule(root=str(tmp_path)).setup()
    msg = str(e.value)
    assert "\n" not in msg and "cifar-10-batches-py" in msg and "expected data_batch_1, data_batch_2" in msg and "batches.meta" in msg
    assert "data.download=true" in msg and "cifar-10-python.tar.gz" in msg
    write_cifar100(tmp_path)
    (tmp_path / "cifar-100-python" / "meta").unlink()
    with pytest.raises(ImbalError, match=r"CIFAR-100 files not found in .*cifar-100-python \(missing: meta\); set data.root"):
        CIFAR100LTDataModule(root=str(tmp_path)).setup()


@pytest.mark.parametrize("damage,expect", [
    (lambda p: p.write_bytes(b"this is not a pickle"), r"cannot read .*data_batch_3 \(UnpicklingError"),
    (lambda p: p.write_bytes(p.read_bytes()[:500]), r"cannot read .*data_batch_3 \("),
    (lambda p: pickle.dump({"labels": [0, 1], "data": np.zeros((2, 100), np.uint8)}, p.open("wb")),
     r"data_batch_3 is not a CIFAR-10 batch \(expected 'data' of shape \[N, 3072\]"),
])
def test_corrupt_file_one_line(tmp_path, damage, expect):
    write_cifar10(tmp_path)
    damage(tmp_path / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(ImbalError, match=expect) as e:
        CIFAR10LTDataModule(root=str(tmp_path)).setup()
    assert "\n" not in str(e.value)


def test_bad_label_and_bad_options(tmp_path):
    write_cifar10(tmp_path)
    p = tmp_path / "cifar-10-batches-py" / "test_batch"
    d = pickle.load(p.open("rb"))
    d["labels"][5] = 12
    pickle.dump(d, p.open("wb"))
    with pytest.raises(ImbalError, match=r"test label 12 at row 5 .* is outside \[0, 10\)"):
        CIFAR10LTDataModule(root=str(tmp_path)).setup()
    with pytest.raises(ImbalError, match=r"imbalance ratio must be a number >= 1 \(n_max / n_min\), got 0.5"):
        CIFAR10LTDataModule(root=str(tmp_path), ratio=0.5).setup()
    with pytest.raises(ImbalError, match=r"data.val_from must be one of test, train, got 'dev'"):
        CIFAR10LTDataModule(root=str(tmp_path), val_from="dev").setup()
    write_cifar10(tmp_path / "ok")
    with pytest.raises(ImbalError, match=r"data.n_max=50 asks for 50 images of class 0, but only 20 are available"):
        CIFAR10LTDataModule(root=str(tmp_path / "ok"), n_max=50).setup()


def test_cifar10_lt_end_to_end(make_cfg, tmp_path, cifar_root):
    """`data=cifar10_lt data.root=<it>`: one epoch of ResNet-32 (1 block per stage), summary, manifest."""
    from imbal.runner import train

    rd = tmp_path / "run"
    cfg = make_cfg("data=cifar10_lt", f"data.root={cifar_root}", "data.ratio=10", "data.num_workers=0",
                   "data.batch_size=32", "model.blocks=1", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                   "optimizer=sgd_warmup_step", "sampler=class_balanced", "+posthoc.la_tuned={}", "+posthoc.tau_norm={}",
                   f"hydra.run.dir={rd}", run_dir=rd)
    train(cfg)
    s = json.loads((rd / "summary.json").read_text())
    assert s["class_counts"] == [20, 15, 11, 9, 7, 5, 4, 3, 2, 2] and s["data"] == "cifar10_lt" and s["model"] == "resnet32"
    assert 0 <= s["test"]["balanced_accuracy"] <= 1 and 0 <= s["test"]["ece"] <= 1
    # class 0 (20 images) is medium-shot, the rest few-shot, none many-shot
    assert s["test"]["medium_shot_accuracy"] == s["test"]["per_class_recall"][0]
    assert s["test"]["few_shot_accuracy"] == pytest.approx(np.mean(s["test"]["per_class_recall"][1:]))
    assert "many_shot_accuracy" not in s["test"]
    assert set(s["posthoc"]) == {"la", "la_tuned", "tau_norm"}
    assert json.loads((rd / "data_stats.json").read_text())["val_from"] == "test"
    assert "val_from=test" in s["posthoc"]["la_tuned"]["tuned_on"]
    m = json.loads((rd / "data_manifest.json").read_text())
    assert m["data"] == "cifar10_lt" and m["class_counts"] == s["class_counts"]


@pytest.mark.slow
@pytest.mark.parametrize("args,expected", [
    (["data.ratio=0.5"], "imbal: error: imbalance ratio must be a number >= 1 (n_max / n_min), got 0.5"),
    ([], "imbal: error: data 'cifar10_lt': CIFAR-10 files not found in "),
])
def test_train_py_prints_one_line(tmp_path, args, expected):
    from tests.conftest import run_train

    proc = run_train("data=cifar10_lt", f"data.root={tmp_path}", *args, f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), proc.stderr[-2000:]


def test_download_uses_torchvision_and_fails_in_one_line(tmp_path, monkeypatch):
    from torchvision.datasets import utils as tv_utils

    calls = []

    def no_network(url, root, filename=None, md5=None):
        calls.append((url, root, filename, md5))
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", no_network)
    with pytest.raises(ImbalError, match=r"download of https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz into .* "
                                         r"failed: OSError: \[Errno -3\] Temporary failure") as e:
        CIFAR100LTDataModule(root=str(tmp_path), download=True).setup()
    assert calls == [("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", str(tmp_path),
                      "cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85")] and "\n" not in str(e.value)
    # with the files present, download=true reads them (torchvision skips a download it finds done)
    write_cifar10(tmp_path)
    dm = CIFAR10LTDataModule(root=str(tmp_path), download=True, ratio=10)
    dm.setup()
    assert sum(dm.stats.class_counts) == 78 and len(calls) == 1  # files present: no second download
