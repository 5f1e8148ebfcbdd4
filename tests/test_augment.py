"""data.augment / data.cutout: the v2 pipelines, cutout squares by hand, on-device per-sample policies, runs, errors."""

from __future__ import annotations

import json

import pytest
import torch
from torchvision.transforms import v2

from imbal.data.augment import CHOICES, Cutout, cutout_batch, cutout_mask, policy_per_sample, train_transform
from imbal.data.cifar import CIFAR_MEAN, CIFAR_STD, CIFAR10LTDataModule, cifar_transforms
from imbal.data.image_folder import IMAGENET_MEAN, IMAGENET_STD, folder_transforms
from imbal.data.on_device import PadCropFlipNormalize
from imbal.errors import ImbalError
from tests.cifar_fixture import write_cifar10

BAD = "data.augment={}: expected one of basic, autoaugment, randaugment, trivialaugment, none (true = basic, false = none)"


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    return write_cifar10(tmp_path_factory.mktemp("cifar"))


def batch(n=6, seed=0):
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def find(compose, cls):
    return [t for t in compose.transforms if isinstance(t, cls)]


@pytest.mark.parametrize("name", CHOICES)
def test_each_policy_maps_a_uint8_cifar_batch(name):
    x = batch()
    train, _ = cifar_transforms(augment=name, cutout=8)
    out = torch.stack([train(img) for img in x])
    assert out.shape == (6, 3, 32, 32) and out.dtype == torch.float32 and torch.isfinite(out).all()
    # the on-device version of the same name: the whole batch at once
    from imbal.data.augment import policy_transform

    dev = PadCropFlipNormalize(CIFAR_MEAN, CIFAR_STD, augment=name != "none", cutout=8,
                               policy=policy_transform(name, cifar=True))
    out = dev(x, torch.Generator().manual_seed(0))
    assert out.shape == (6, 3, 32, 32) and out.dtype == torch.float32
    # image folders: a PIL image resized to 16 x 16
    from PIL import Image

    img = Image.fromarray(x[0].permute(1, 2, 0).numpy())
    tr, _ = folder_transforms(16, IMAGENET_MEAN, IMAGENET_STD, augment=name, cutout=4)
    assert tr(img).shape == (3, 16, 16) and tr(img).dtype == torch.float32


def test_basic_equals_the_pipeline_it_replaced(cifar_root):
    old = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True),
                      v2.Normalize(list(CIFAR_MEAN), list(CIFAR_STD))])
    dm = CIFAR10LTDataModule(root=str(cifar_root), ratio=10, num_workers=0)  # the default: basic
    dm.setup()
    assert dm.augment == "basic" and dm.cutout is None
    for tf in (dm.splits["train"].transform, cifar_transforms(augment=True)[0], cifar_transforms(augment="basic")[0]):
        for seed in range(5):
            x = batch(1, seed)[0]
            torch.manual_seed(seed)
            a = old(x)
            torch.manual_seed(seed)
            assert torch.equal(tf(x), a)
    # data.augment=false / none: no crop or flip, as augment=False was
    x = batch(1)[0]
    assert torch.equal(cifar_transforms(augment=False)[0](x), cifar_transforms()[1](x))
    # image folders: ToImage + Resize + RandomCrop(padding size // 8) + flip + normalise, as before
    from PIL import Image

    img = Image.fromarray(batch(1, 7)[0].permute(1, 2, 0).numpy())
    fold = v2.Compose([v2.ToImage(), v2.Resize((24, 24), antialias=True), v2.RandomCrop(24, padding=3),
                       v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(list(IMAGENET_MEAN), list(IMAGENET_STD))])
    new = folder_transforms(24, IMAGENET_MEAN, IMAGENET_STD)[0]
    for seed in range(3):
        torch.manual_seed(seed)
        a = fold(img)
        torch.manual_seed(seed)
        assert torch.equal(new(img), a)


def zeros_box(out: torch.Tensor) -> tuple[list[int], list[int]]:
    """(rows, columns) holding a zero in ``out`` ``[C, H, W]`` (all channels alike)."""
    z = out == 0
    assert torch.equal(z, z[:1].expand_as(z)), "the hole differs between channels"
    return z[0].any(1).nonzero().flatten().tolist(), z[0].any(0).nonzero().flatten().tolist()


@pytest.mark.parametrize("seed,size,rows,cols", [
    (0, 8, range(8, 16), range(11, 19)),    # centre (12, 15): rows 12-4 .. 12+3, inside
    (9, 8, range(26, 32), range(24, 32)),   # centre (30, 28): rows 26..33 clipped at 31
    (5, 8, range(0, 7), range(10, 18)),     # centre (3, 14): rows -1..6 clipped at 0
    (3, 7, range(7, 14), range(21, 28)),    # centre (10, 24), odd size: 7 rows 10-3 .. 10+3
])
def test_cutout_zeroes_one_square_clipped_at_the_border(seed, size, rows, cols):
    x = torch.ones(3, 32, 32)
    torch.manual_seed(seed)  # the transform draws the centre row then the centre column, uniform on 0..31
    out = Cutout(size)(x)
    r, c = zeros_box(out)
    assert r == list(rows) and c == list(cols)
    assert int((out == 0).sum()) == 3 * len(rows) * len(cols)  # exactly the square, nothing else
    assert torch.equal(out[:, r[0]:r[-1] + 1, c[0]:c[-1] + 1], torch.zeros(3, len(rows), len(cols)))
    assert torch.equal(x, torch.ones(3, 32, 32))  # the input is left alone


def test_batched_cutout_one_hole_per_image_from_the_generator():
    # Generator(0) on 0..31: centre rows 12, 15, 21 then columns 0, 3, 27
    out = cutout_batch(torch.ones(3, 2, 32, 32), 8, torch.Generator().manual_seed(0))
    expect = [(range(8, 16), range(0, 4)), (range(11, 19), range(0, 7)), (range(17, 25), range(23, 31))]
    for img, (rows, cols) in zip(out, expect):
        r, c = zeros_box(img)
        assert r == list(rows) and c == list(cols) and int((img == 0).sum()) == 2 * len(rows) * len(cols)
    m = cutout_mask(torch.tensor([0]), torch.tensor([31]), 5, 32, 32)  # rows -2..2, cols 29..33
    assert m.shape == (1, 1, 32, 32) and int(m.sum()) == 3 * 3 and bool(m[0, 0, 2, 29]) and not m[0, 0, 3, 29]


def test_autoaugment_uses_the_cifar10_policy_on_cifar_and_imagenet_on_folders(cifar_root):
    tr = cifar_transforms(augment="autoaugment")[0]
    (aa,) = find(tr, v2.AutoAugment)
    assert aa.policy == v2.AutoAugmentPolicy.CIFAR10
    # order: crop, flip, policy, ToDtype, Normalize, cutout
    tr = cifar_transforms(augment="autoaugment", cutout=16)[0]
    assert [type(t).__name__ for t in tr.transforms] == ["RandomCrop", "RandomHorizontalFlip", "AutoAugment",
                                                          "ToDtype", "Normalize", "Cutout"]
    (aa,) = find(folder_transforms(32, IMAGENET_MEAN, IMAGENET_STD, augment="autoaugment")[0], v2.AutoAugment)
    assert aa.policy == v2.AutoAugmentPolicy.IMAGENET
    (ra,) = find(train_transform("randaugment", size=32, padding=4, mean=CIFAR_MEAN, std=CIFAR_STD, cifar=True,
                                 randaugment_n=3, randaugment_m=5), v2.RandAugment)
    assert (ra.num_ops, ra.magnitude) == (3, 5)
    assert len(find(cifar_transforms(augment="trivialaugment")[0], v2.TrivialAugmentWide)) == 1
    # the data module, both paths
    dm = CIFAR10LTDataModule(root=str(cifar_root), ratio=10, num_workers=0, augment="autoaugment", cutout=16)
    dm.setup()
    assert find(dm.splits["train"].transform, v2.AutoAugment)[0].policy == v2.AutoAugmentPolicy.CIFAR10
    dev = dm.device_transform("train")
    assert dev.policy.policy == v2.AutoAugmentPolicy.CIFAR10 and dev.cutout == 16 and dev.augment
    ev = dm.device_transform("val")
    assert ev.policy is None and ev.cutout is None and not ev.augment
    assert len(dm.splits["test"].transform.transforms) == 2  # evaluation: ToDtype + Normalize only


def test_device_policy_is_per_sample_reproducible_and_leaves_the_global_rng():
    x = batch(1).expand(16, 3, 32, 32).contiguous()  # 16 copies of one image
    policy = v2.TrivialAugmentWide()
    state = torch.get_rng_state()
    a = policy_per_sample(policy, x, torch.Generator().manual_seed(4))
    assert torch.equal(torch.get_rng_state(), state)
    b = policy_per_sample(policy, x, torch.Generator().manual_seed(4))
    assert a.dtype == torch.uint8 and torch.equal(a, b)
    # one op per image, not one op for the batch: the copies come out different
    assert len({bytes(img.flatten().numpy()) for img in a}) > 8
    c = policy_per_sample(policy, x, torch.Generator().manual_seed(5))
    assert not torch.equal(a, c)


def test_device_cutout_and_policy_draws_come_after_the_crop_draws():
    """basic on the device draws as before; a cutout run sees the same crops, then holes."""
    x = batch(8)
    plain = PadCropFlipNormalize(CIFAR_MEAN, CIFAR_STD)(x, torch.Generator().manual_seed(2))
    holed = PadCropFlipNormalize(CIFAR_MEAN, CIFAR_STD, cutout=8)(x, torch.Generator().manual_seed(2))
    diff = plain != holed
    assert torch.equal(holed[diff], torch.zeros(int(diff.sum())))
    per_image = diff.flatten(1).sum(1)
    assert bool((per_image > 0).all()) and bool((per_image <= 3 * 64).all())


def cifar_run(make_cfg, rd, root, *extra):
    from imbal.runner import train

    cfg = make_cfg("data=cifar10_lt", f"data.root={root}", "data.ratio=10", "data.num_workers=0",
                   "data.batch_size=32", "model=small_cnn", "model.width=8", "trainer.max_epochs=1",
                   "trainer.enable_progress_bar=false", "posthoc={}", *extra, f"hydra.run.dir={rd}", run_dir=rd)
    train(cfg)
    return json.loads((rd / "summary.json").read_text())


@pytest.mark.parametrize("on_device", [False, True])
def test_randaugment_cutout_run(make_cfg, tmp_path, cifar_root, on_device):
    rd = tmp_path / "run"
    s = cifar_run(make_cfg, rd, cifar_root, "data.augment=randaugment", "data.cutout=8",
                  f"data.on_device={str(on_device).lower()}")
    d = s["config"]["data"]
    assert (d["augment"], d["cutout"], d["on_device"]) == ("randaugment", 8, on_device)
    assert s["epochs_completed"] == 1 and s["global_step"] == -(-78 // 32) == 3  # 78 images (ratio 10)
    assert 0 <= s["test"]["balanced_accuracy"] <= 1


@pytest.mark.parametrize("args,message", [
    (["data=cifar10_lt", "data.augment=autoaugmnt"], BAD.format("'autoaugmnt'")),
    (["data=cifar10_lt", "data.augment=3"], BAD.format("3")),
    (["data=image_folder_lt", "data.root=x", "data.augment=RandAugment"], BAD.format("'RandAugment'")),
    (["data=cifar10_lt", "data.cutout=0"], "data.cutout=0: expected null or an integer >= 1 (side of the square in "
                                          "pixels; 16 for CIFAR)"),
    (["data=cifar10_lt", "data.randaugment_m=31"], "data.randaugment_m=31: expected an integer in [0, 30] "
                                                   "(RandAugment's magnitude)"),
    (["data=cifar10_lt", "data.randaugment_n=0"], "data.randaugment_n=0: expected an integer >= 1 (RandAugment's "
                                                  "ops per image)"),
    (["data=airbus", "data.augment=randaugment"], "data.augment='randaugment': data 'airbus' takes only true or "
     "false (augmentation policies autoaugment, randaugment, trivialaugment are for cifar10_lt, cifar100_lt, "
     "image_folder_lt)"),
    (["data=gaussian_lt", "+data.cutout=8"], "data.cutout=8: data 'gaussian_lt' has no cutout option (data.augment "
     "policies, data.cutout and data.randaugment_n/_m are for cifar10_lt, cifar100_lt, image_folder_lt)"),
    (["data=gaussian_lt", "+data.augment=true"], "data.augment=true: data 'gaussian_lt' has no augment option "
     "(data.augment policies, data.cutout and data.randaugment_n/_m are for cifar10_lt, cifar100_lt, "
     "image_folder_lt)"),
])
def test_bad_values_one_line_exit_2(tmp_path, capsys, args, message):
    from tests.test_bad_inputs import run_inprocess

    rd = tmp_path / "run"
    code, err = run_inprocess([*args, "trainer.max_epochs=1", f"hydra.run.dir={rd}"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err and lines == [f"imbal: error: {message}"], err[-2000:]
    assert not (rd / "summary.json").exists()


def test_module_refuses_a_bad_name_when_built_directly(cifar_root):
    with pytest.raises(ImbalError, match=r"^data\.augment='cutmix': expected one of basic, "):
        CIFAR10LTDataModule(root=str(cifar_root), augment="cutmix").setup()
    with pytest.raises(ImbalError, match=r"^data\.cutout=true: expected null or an integer >= 1 \(side of the "):
        CIFAR10LTDataModule(root=str(cifar_root), cutout=True).setup()


def test_image_folder_policy_on_both_paths(tmp_path):
    from imbal.data.image_folder import ImageFolderLTDataModule
    from tests.test_image_folder import make_tree

    root = make_tree(tmp_path / "imgs", per_class=(8, 8, 8, 8))
    kw = dict(root=str(root), val_per_class=2, test_per_class=2, image_size=16, num_workers=0, batch_size=8,
              augment="randaugment", randaugment_n=1, randaugment_m=4, cutout=4)
    off = ImageFolderLTDataModule(**kw)
    off.setup()
    (ra,) = find(off.splits["train"].transform, v2.RandAugment)
    assert (ra.num_ops, ra.magnitude) == (1, 4) and type(off.splits["train"].transform.transforms[-1]) is Cutout
    x, y = next(iter(off.train_dataloader()))
    assert x.shape == (8, 3, 16, 16) and x.dtype == torch.float32
    on = ImageFolderLTDataModule(on_device=True, **{**kw, "augment": "autoaugment"})
    on.setup()
    dev = on.device_transform("train")
    assert dev.policy.policy == v2.AutoAugmentPolicy.IMAGENET and dev.cutout == 4 and dev.padding == 2
    x, y = next(iter(on.train_dataloader()))
    assert x.shape == (8, 3, 16, 16) and x.dtype == torch.float32
