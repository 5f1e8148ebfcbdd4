"""data.on_device: batch augmentation = the per-image torchvision path in distribution, same sampler order, same
DDP shares, identical evaluation inputs, and a run that learns."""

from __future__ import annotations

import json
import types

import pytest
import torch
import torch.nn.functional as F

from imbal.data.cifar import CIFAR_MEAN, CIFAR_STD, CIFAR10LTDataModule, cifar_transforms
from imbal.data.digits import DigitsLTDataModule
from imbal.data.on_device import DeviceLoader, PadCropFlipNormalize, pad_crop_flip
from tests.cifar_fixture import write_cifar10

MEAN = torch.tensor(CIFAR_MEAN).view(3, 1, 1)
STD = torch.tensor(CIFAR_STD).view(3, 1, 1)
SAMPLERS = [{"name": "none"}, {"name": "class_balanced"}, {"name": "sqrt"}, {"name": "progressive", "epochs": 4}]


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    return write_cifar10(tmp_path_factory.mktemp("cifar"))


def cifar(root, **kw):
    dm = CIFAR10LTDataModule(root=str(root), ratio=10, num_workers=0, batch_size=16, **kw)
    dm.setup()
    return dm


def explicit_crop(img: torch.Tensor, dy: int, dx: int, flip: bool, p: int = 4) -> torch.Tensor:
    """The reference: slice the zero-padded image, mirror, normalise (one image, plain indexing)."""
    h, w = img.shape[-2:]
    c = F.pad(img.float() / 255, (p, p, p, p))[:, dy:dy + h, dx:dx + w]
    return ((c.flip(-1) if flip else c) - MEAN) / STD


def test_eval_normalisation_is_bit_identical_to_cifar_transforms():
    x = torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8)
    _, eval_tf = cifar_transforms()
    ref = torch.stack([eval_tf(img) for img in x])
    out = PadCropFlipNormalize(CIFAR_MEAN, CIFAR_STD, augment=False)(x)
    assert out.dtype == torch.float32 and torch.equal(out, ref)


def test_every_augmented_image_is_a_crop_or_flipped_crop_of_its_source():
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=g)
    out = PadCropFlipNormalize(CIFAR_MEAN, CIFAR_STD)(x, torch.Generator().manual_seed(0))
    keys = [(dy, dx, fl) for dy in range(9) for dx in range(9) for fl in (False, True)]
    found = []
    for i in range(len(x)):
        cands = torch.stack([explicit_crop(x[i], *k) for k in keys])
        hit = ((cands - out[i]).abs().flatten(1).amax(1) < 1e-5).nonzero().flatten().tolist()
        assert len(hit) == 1, f"image {i}: {len(hit)} matching crops (random content: exactly one expected)"
        found.append(keys[hit[0]])
    assert len(set(found)) > 40 and {f[2] for f in found} == {False, True}


def test_crop_offsets_and_flips_have_the_torchvision_distribution():
    """RandomCrop(32, padding=4): offsets uniform on 0..8 per axis, zero padding; RandomHorizontalFlip: p = 1/2."""
    n = 3000
    x = (torch.arange(n * 32 * 32).view(n, 1, 32, 32) * 7 % 251 + 1).to(torch.uint8)  # never 0 (the padding)
    tf = PadCropFlipNormalize([0.0], [1 / 255])  # "normalises" back to the raw values
    out = tf(x, torch.Generator().manual_seed(3)).round().to(torch.uint8)[:, 0]
    # the window's row offset from its zero rows: dy < 4 shows 4 - dy padding rows on top, dy > 4 dy - 4 at the bottom
    zero_rows = (out == 0).all(2)
    dy = 4 - zero_rows[:, :4].sum(1) + zero_rows[:, -4:].sum(1)
    zero_cols = (out == 0).all(1)
    dx_seen = 4 - zero_cols[:, :4].sum(1) + zero_cols[:, -4:].sum(1)  # 8 - dx when mirrored
    dx, flips = torch.empty(n, dtype=torch.long), torch.empty(n, dtype=torch.bool)
    for i in range(n):
        padded = F.pad(x[i, 0], (4, 4, 4, 4))
        a, b = int(dy[i]), int(dx_seen[i])
        if torch.equal(out[i], padded[a:a + 32, b:b + 32]):
            dx[i], flips[i] = b, False
        else:
            assert torch.equal(out[i], padded[a:a + 32, 8 - b:8 - b + 32].flip(-1)), f"image {i}: not a crop"
            dx[i], flips[i] = 8 - b, True
    for d in (dy, dx):  # uniform on 0..8: about 333 each (binomial sd 17), nothing outside
        counts = torch.bincount(d)
        assert len(counts) == 9 and counts.min() > 250 and counts.max() < 420, counts.tolist()
    assert 0.45 < flips.float().mean() < 0.55  # p = 1/2 (sd 0.009)
    # offsets and flip drawn independently: flips about half within the corner offsets too
    assert 0.3 < flips[(dy == 0) | (dy == 8)].float().mean() < 0.7


def test_pad_crop_flip_gather_equals_slicing():
    x = torch.randint(0, 256, (9, 2, 7, 5), dtype=torch.uint8)
    dy, dx = torch.arange(9) % 5, (torch.arange(9) * 2) % 5
    flip = torch.arange(9) % 2 == 1
    out = pad_crop_flip(x, dy, dx, flip, 2)
    for i in range(9):
        ref = F.pad(x[i], (2, 2, 2, 2))[:, dy[i]:dy[i] + 7, dx[i]:dx[i] + 5]
        assert torch.equal(out[i], ref.flip(-1) if flip[i] else ref)


@pytest.mark.parametrize("sampler", SAMPLERS, ids=[s["name"] for s in SAMPLERS])
def test_training_batches_follow_the_sampler_exactly(cifar_root, sampler):
    """augment off: the device loader's batches equal the DataLoader's, image for image, every epoch."""
    on = cifar(cifar_root, augment=False, on_device=True, sampler=sampler)
    off = cifar(cifar_root, augment=False, sampler=sampler)
    dl_on, dl_off = on.train_dataloader(), off.train_dataloader()
    assert isinstance(dl_on, DeviceLoader) and len(dl_on) == len(dl_off) == 5  # 78 images, batch 16
    seen = []
    for epoch in (0, 3):
        dl_on.sampler.set_epoch(epoch)  # what Lightning calls every epoch
        dl_off.sampler.set_epoch(epoch)
        a, b = list(dl_on), list(dl_off)
        assert len(a) == len(b) == 5
        for (xa, ya), (xb, yb) in zip(a, b):
            assert torch.equal(ya, yb) and torch.equal(xa, xb)
        seen.append(torch.cat([y for _, y in a]))
    assert not torch.equal(seen[0], seen[1])  # the epoch changes the order (or the draw)
    # a resumed run re-creates the loader: same epoch, same batches
    fresh = cifar(cifar_root, augment=False, on_device=True, sampler=sampler).train_dataloader()
    fresh.sampler.set_epoch(3)
    assert torch.equal(torch.cat([y for _, y in fresh]), seen[1])


def test_augmentation_is_reproducible_per_epoch_and_differs_between_epochs(cifar_root):
    dm = cifar(cifar_root, on_device=True)
    dl = dm.train_dataloader()

    def by_index(epoch):
        dl.sampler.set_epoch(epoch)
        order = torch.as_tensor(list(dl.sampler))
        out = torch.cat([x for x, _ in dl])
        return out[order.argsort()]

    a, b, c = by_index(1), by_index(1), by_index(2)
    assert a.shape == (78, 3, 32, 32) and torch.equal(a, b)
    differ = (a - c).flatten(1).abs().amax(1) > 1e-6
    assert differ.float().mean() > 0.8  # two independent crop/flip draws coincide with p = 1/162


@pytest.mark.parametrize("sampler", [{"name": "none"}, {"name": "class_balanced"}], ids=["none", "class_balanced"])
def test_ddp_shares_are_lightnings(cifar_root, sampler):
    """Each rank's share = what Lightning's DataConnector injects into the training DataLoader."""
    from lightning.pytorch.trainer.connectors.data_connector import _get_distributed_sampler
    from lightning.pytorch.trainer.states import RunningStage
    from lightning.pytorch.utilities.data import _is_dataloader_shuffled
    from torch.utils.data import DataLoader

    shares = []
    for rank in range(3):
        on = cifar(cifar_root, augment=False, on_device=True, sampler=sampler)
        on.trainer = types.SimpleNamespace(
            strategy=types.SimpleNamespace(root_device=torch.device("cpu")),
            distributed_sampler_kwargs={"num_replicas": 3, "rank": rank},
        )
        off = cifar(cifar_root, augment=False, sampler=sampler)
        dl_off = off.train_dataloader()
        ds = _get_distributed_sampler(dl_off, _is_dataloader_shuffled(dl_off), overfit_batches=0,
                                      mode=RunningStage.TRAINING, num_replicas=3, rank=rank)
        ref = DataLoader(dl_off.dataset, batch_size=16, sampler=ds)
        dl_on = on.train_dataloader()
        for epoch in (0, 2):
            dl_on.sampler.set_epoch(epoch)
            ds.set_epoch(epoch)
            a, b = list(dl_on), list(ref)
            assert len(dl_on) == len(a) == len(b) == 2  # ceil(78 / 3) = 26 samples: 16 + 10
            assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
        shares.append(torch.cat([y for _, y in a]))
    # together the ranks cover the epoch's 78 draws, padded to 78 (divisible by 3: no repeats added)
    assert sum(len(s) for s in shares) == 78
    # without use_distributed_sampler every rank gets the whole sequence, as a DataLoader would
    on.use_distributed_sampler = False
    assert len(on.train_dataloader().sampler) == 78


def test_eval_splits_are_identical_to_the_loaders(cifar_root):
    on, off = cifar(cifar_root, on_device=True), cifar(cifar_root)
    for split in ("val", "test"):
        a = list(getattr(on, f"{split}_dataloader")())
        b = list(getattr(off, f"{split}_dataloader")())
        assert len(a) == len(b) == 3  # 40 test images, batch 16
        assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    # val is test (val_from=test): one copy on the device
    assert len(on._device_splits._cache) == 1


def test_digits_on_device_equals_the_loaders():
    on = DigitsLTDataModule(on_device=True, sampler={"name": "sqrt"})
    off = DigitsLTDataModule(sampler={"name": "sqrt"})
    on.setup()
    off.setup()
    for split in ("train", "val", "test"):
        a = list(getattr(on, f"{split}_dataloader")())
        b = list(getattr(off, f"{split}_dataloader")())
        assert len(a) == len(b) > 1
        assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))


def test_image_folder_on_device(tmp_path):
    from imbal.data.image_folder import ImageFolderLTDataModule
    from tests.test_image_folder import make_tree

    root = make_tree(tmp_path / "imgs")
    kw = dict(root=str(root), val_per_class=2, test_per_class=3, image_size=16, num_workers=0, batch_size=8)
    on = ImageFolderLTDataModule(on_device=True, **kw)
    off = ImageFolderLTDataModule(**kw)
    on.setup()
    off.setup()
    for split in ("val", "test"):
        a, b = list(getattr(on, f"{split}_dataloader")()), list(getattr(off, f"{split}_dataloader")())
        assert len(a) == len(b) >= 1
        assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    # training: labels in the sampler's order; each image a pad-2 (16 // 8) crop/flip of its decoded source
    xs, ys = on.decoded("train")
    dl = on.train_dataloader()
    ref = off.train_dataloader()
    assert torch.equal(torch.cat([y for _, y in dl]), torch.cat([y for _, y in ref]))
    order = torch.as_tensor(list(dl.sampler))  # the epoch-0 order the batches were cut from
    out = torch.cat([x for x, _ in dl])
    mean, std = torch.tensor(on.mean).view(3, 1, 1), torch.tensor(on.std).view(3, 1, 1)
    for i, j in enumerate(order.tolist()):
        src = F.pad(xs[j].float() / 255, (2, 2, 2, 2))
        cands = [(src[:, a:a + 16, b:b + 16].flip(-1) if f else src[:, a:a + 16, b:b + 16]) for a in range(5)
                 for b in range(5) for f in (0, 1)]
        assert any(torch.allclose(out[i], (c - mean) / std, atol=1e-5) for c in cands)


def test_lightning_runs_the_device_loader_and_sets_its_epoch(cifar_root, tmp_path):
    import lightning as L

    class Probe(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3 * 32 * 32, 10)
            self.epochs, self.batches = [], 0

        def on_train_epoch_start(self):
            self.epochs.append(self.trainer.train_dataloader.sampler.epoch)

        def training_step(self, batch, i):
            x, y = batch
            self.batches += 1
            assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32)
            return F.cross_entropy(self.lin(x.flatten(1)), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    dm = CIFAR10LTDataModule(root=str(cifar_root), ratio=10, num_workers=0, batch_size=16, on_device=True,
                             sampler={"name": "class_balanced"})
    probe = Probe()
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path))
    trainer.fit(probe, datamodule=dm)
    assert isinstance(trainer.train_dataloader, DeviceLoader)
    assert probe.epochs == [0, 1, 2] and probe.batches == 15


def test_cifar_on_device_run_learns(make_cfg, tmp_path, cifar_root):
    """`train.py data=cifar10_lt data.on_device=true` on the generated set: above chance (0.1) on the test split."""
    from imbal.runner import train

    rd = tmp_path / "run"
    # a narrow CNN keeps it fast on 2 cores (ResNet-32 on this data: tests/test_trainer_options.py)
    cfg = make_cfg("data=cifar10_lt", f"data.root={cifar_root}", "data.ratio=2", "data.on_device=true",
                   "data.batch_size=16", "model=small_cnn", "model.width=8", "trainer.max_epochs=4",
                   "trainer.enable_progress_bar=false", "optimizer.optim.lr=0.01", "posthoc={}",
                   f"hydra.run.dir={rd}", run_dir=rd)
    train(cfg)
    s = json.loads((rd / "summary.json").read_text())
    assert s["config"]["data"]["on_device"] is True and s["epochs_completed"] == 4
    assert s["global_step"] == 4 * -(-sum(s["class_counts"]) // 16) == 36  # 140 images (ratio 2), batches of 16
    assert s["test"]["num_samples"] == 40
    # 0.40 at this seed (the DataLoader path: 0.30); chance is 0.10
    assert s["test"]["balanced_accuracy"] >= 0.25, s["test"]["balanced_accuracy"]
