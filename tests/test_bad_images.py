"""Image inputs: names that leave the data folder, 16-bit PNGs, broken files, ``data.on_bad_image``.

Command-line cases run ``train.py`` in-process (``run_inprocess`` of tests/test_bad_inputs.py): each
must exit 2 with one line naming the file (and CSV row), before training, with no summary.json.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imbal.data.images import BadImageError, BadImages, read_image, read_mask_values, to_8bit
from imbal.data.paths import safe_child
from imbal.errors import ImbalError
from tests.test_bad_inputs import airbus_layout, run_inprocess

CSV = "train_ship_segmentations_v2.csv"
ON_BAD = "(or set data.on_bad_image=skip to leave unreadable images out)"


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` pixels (no pixel data: a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


# --- how bad.jpg (row 14 of the Airbus CSV, class folder "bee" of the image tree) is broken ---

def make_empty(p: Path) -> None:
    p.write_bytes(b"")


def make_truncated(p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def make_dangling(p: Path) -> None:
    p.unlink()
    os.symlink(p.parent / "gone.jpg", p)  # inside the folder, to a file that does not exist


def make_bomb(p: Path) -> None:  # 100000^2 pixels: over twice PIL's limit, DecompressionBombError
    p.write_bytes(png_declaring(100_000, 100_000))


def make_bomb_warning(p: Path) -> None:  # 10000^2 pixels: over PIL's limit, PIL only warns; refused too
    p.write_bytes(png_declaring(10_000, 10_000))


BOMB = f"more than PIL's limit Image.MAX_IMAGE_PIXELS={Image.MAX_IMAGE_PIXELS} (a decompression bomb?)"
BREAKERS = {
    "zero-byte": (make_empty, "(empty file: 0 bytes)"),
    "truncated": (make_truncated, "(truncated file)"),
    "dangling symlink": (make_dangling, "(dangling symlink to {parent}/gone.jpg)"),
    "decompression bomb": (make_bomb, f"(10000000000 pixels, {BOMB})"),
    "decompression bomb warning": (make_bomb_warning, f"(100000000 pixels, {BOMB})"),
}


def run_cli(args: list[str], tmp: Path, capsys) -> tuple[int, str, Path]:
    run_dir = tmp / "run"
    code, err = run_inprocess([*args, "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                               f"hydra.run.dir={run_dir}"], capsys)
    return code, err, run_dir


def assert_one_error(code: int, err: str, run_dir: Path, expected: str) -> None:
    assert code == 2, err[-2000:]
    assert [ln for ln in err.splitlines() if ln.strip()] == [f"imbal: error: {expected}"], err[-2000:]
    assert "Traceback" not in err
    assert not (run_dir / "summary.json").exists()
    assert not list(run_dir.rglob("*.ckpt"))


def rewrite_csv_id(tmp: Path, image_id: str) -> None:
    csv = tmp / CSV
    csv.write_text(csv.read_text().replace("bad.jpg,", f"{image_id},"))


@pytest.mark.parametrize("image_id", ["../../x.jpg", "/etc/x.jpg", "sub/x.jpg", ".."])
def test_airbus_image_id_outside_the_image_folder_is_refused(image_id, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    args = airbus_layout(data)
    rewrite_csv_id(data, image_id)
    code, err, run_dir = run_cli(args, tmp_path, capsys)
    assert_one_error(code, err, run_dir,
                     f"data 'airbus': {data / CSV} row 14: ImageId '{image_id}' is not a plain file name inside "
                     f"{data / 'train_v2'} (expected e.g. 00003e153.jpg)")


@pytest.mark.parametrize("case", list(BREAKERS))
def test_airbus_unreadable_image_stops_before_training(case, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    args = airbus_layout(data)
    bad = data / "train_v2" / "bad.jpg"
    breaker, reason = BREAKERS[case]
    breaker(bad)
    code, err, run_dir = run_cli(args, tmp_path, capsys)
    assert_one_error(code, err, run_dir, f"data 'airbus': {CSV} row 14: cannot read image {bad} "
                                         f"{reason.format(parent=bad.parent)}; expected a readable image {ON_BAD}")


def make_tree(root: Path, per_class: int = 5) -> Path:
    rng = np.random.default_rng(0)
    for k, c in enumerate(["ant", "bee", "cow"]):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(root / c / f"{i:03d}.jpg")
    return root


TREE_ARGS = ["data=image_folder_lt", "data.image_size=8", "data.val_per_class=1", "data.test_per_class=1",
             "data.num_workers=0", "data.batch_size=4", "model=small_cnn", "model.width=4"]


@pytest.mark.parametrize("case", list(BREAKERS))
def test_image_folder_unreadable_image_stops_before_training(case, tmp_path, capsys):
    root = make_tree(tmp_path / "imgs")
    bad = root / "bee" / "bad.jpg"
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(bad)
    breaker, reason = BREAKERS[case]
    breaker(bad)
    code, err, run_dir = run_cli([*TREE_ARGS, f"data.root={root}"], tmp_path, capsys)
    assert_one_error(code, err, run_dir, f"data 'image_folder_lt': cannot read image {bad} "
                                         f"{reason.format(parent=bad.parent)}; expected a readable image {ON_BAD}")


def mask_layout(root: Path, n: int = 6) -> Path:
    (root / "image").mkdir(parents=True)
    (root / "label").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (24, 24), dtype=np.uint8)).save(root / "image" / f"{i}.png")
        m = np.zeros((24, 24), np.uint8)
        m[3 : 8 + i, 4:12] = 255
        Image.fromarray(m).save(root / "label" / f"{i}.png")
    return root


def test_mask_folder_symlink_leaving_the_data_root_is_refused(tmp_path, capsys):
    root = mask_layout(tmp_path / "data")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (root / "label" / "3.png").rename(outside / "3.png")
    os.symlink(outside / "3.png", root / "label" / "3.png")
    code, err, run_dir = run_cli(["data=mask_folder", f"data.root={root}", "data.crop=16"], tmp_path, capsys)
    assert_one_error(code, err, run_dir,
                     f"data 'mask_folder': mask '3.png': {root / 'label' / '3.png'} is a symlink to {outside / '3.png'}, "
                     f"outside {root}; data files must stay inside it (copy the file in, or point the data at a "
                     f"folder that holds both)")


def test_mask_folder_symlink_inside_the_data_root_is_read(tmp_path):
    from imbal.data.segmentation.mask_folder import MaskFolderDataModule

    root = mask_layout(tmp_path / "data")
    (root / "spare").mkdir()
    (root / "label" / "3.png").rename(root / "spare" / "3.png")
    os.symlink(root / "spare" / "3.png", root / "label" / "3.png")
    dm = MaskFolderDataModule(root=str(root), crop=16, val_fraction=0.2, test_fraction=0.2)
    dm.setup()
    assert sorted(it.image_id for it in dm.items) == [f"{i}.png" for i in range(6)]
    assert dm.items[3].fg_pixels == 8 * (5 + 3)


def test_safe_child_refuses_every_kind_of_escape(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    assert safe_child(folder, "a.png", what="w") == folder / "a.png"
    for name in ["../a.png", "/etc/passwd", "a/b.png", "..", ".", "", "a\\b.png", "x\x00.png"]:
        with pytest.raises(ImbalError, match=r"^w '.*' is not a plain file name inside .*/imgs \(expected a file"):
            safe_child(folder, name, what="w")
    os.symlink("/etc/hostname", folder / "link.png")
    with pytest.raises(ImbalError, match=r"^w 'link.png': .*/imgs/link.png is a symlink to /etc/hostname, outside"):
        safe_child(folder, "link.png", what="w")
    assert safe_child(folder, "link.png", what="w", within=Path("/etc")) == folder / "link.png"


def test_airbus_skip_trains_and_records_the_skipped_count(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    args = airbus_layout(data, bad_rle="")
    bad = data / "train_v2" / "bad.jpg"
    make_empty(bad)
    make_bomb(data / "train_v2" / "img3.jpg")
    code, err, run_dir = run_cli([*args, "data.on_bad_image=skip"], tmp_path, capsys)
    assert code == 0, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.startswith("imbal: skipped")]
    assert lines == [f"imbal: skipped 2 unreadable images (first: {bad}: empty file: 0 bytes)"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["data_extra"] == {"unreadable_images_skipped": 2}
    manifest = json.loads((run_dir / "data_manifest.json").read_text())
    assert manifest["unreadable_images_skipped"] == 2
    assert sum(manifest["images"][s] for s in ("train", "val")) + len(manifest["test_ids"]) == 11


def test_image_folder_skip_drops_the_file_and_counts_it(tmp_path, capsys):
    from imbal.data.image_folder import ImageFolderLTDataModule

    root = make_tree(tmp_path / "imgs")
    make_truncated(root / "bee" / "002.jpg")
    dm = ImageFolderLTDataModule(root=str(root), val_per_class=1, test_per_class=1, image_size=8, num_workers=0,
                                 on_bad_image="skip")
    dm.setup()
    assert capsys.readouterr().err.splitlines() == [
        f"imbal: skipped 1 unreadable images (first: {root / 'bee' / '002.jpg'}: truncated file)"]
    assert dm.stats.class_counts == [3, 2, 3] and dm.stats.extra == {"unreadable_images_skipped": 1}
    paths = [p for p, _ in dm.splits["train"].folder.samples]
    assert str(root / "bee" / "002.jpg") not in paths and len(paths) == 14


def test_bad_on_bad_image_value_is_refused(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    code, err, run_dir = run_cli([*airbus_layout(data), "data.on_bad_image=maybe"], tmp_path, capsys)
    assert_one_error(code, err, run_dir, "data.on_bad_image must be one of error, skip; got 'maybe'")
    with pytest.raises(ImbalError, match=r"^data.on_bad_image must be one of error, skip; got 'ignore'$"):
        BadImages("ignore", where="data 'x'")


def test_decode_failure_in_a_worker_stays_one_line(tmp_path):
    import torch
    from torch.utils.data import DataLoader, Dataset

    bad = tmp_path / "late.jpg"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(bad)
    make_truncated(bad)

    class Images(Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, i):
            return torch.from_numpy(read_image(bad, where="data 'airbus'"))

    with pytest.raises(BadImageError) as exc:
        list(DataLoader(Images(), num_workers=1))
    assert str(exc.value) == (f"data 'airbus': cannot read image {bad} (truncated file); "
                              f"expected a readable RGB image")


# --- 16-bit images and masks ---

#: 16-bit values and round(v * 255 / 65535) = (v * 255 + 32767) // 65535, worked out by hand (v / 257)
WIDE = [0, 128, 129, 257, 385, 386, 32767, 32768, 65149, 65150, 65278, 65535]
EIGHT = [0, 0, 1, 1, 1, 2, 127, 128, 253, 254, 254, 255]


def test_16bit_png_gradient_reads_as_its_8bit_values(tmp_path):
    v = np.array(WIDE * 2, dtype=np.uint16).reshape(4, 6)
    Image.fromarray(v).save(tmp_path / "g.png")
    with Image.open(tmp_path / "g.png") as im:
        assert im.mode == "I;16"
    rgb = read_image(tmp_path / "g.png", where="w")
    assert rgb.dtype == np.uint8 and rgb.shape == (4, 6, 3)
    assert rgb[..., 0].ravel().tolist() == EIGHT * 2
    assert np.array_equal(rgb[..., 0], rgb[..., 2])
    assert read_image(tmp_path / "g.png", where="w", mode="L").ravel().tolist() == EIGHT * 2
    assert EIGHT == [(x * 255 + 32767) // 65535 for x in WIDE]


def test_every_wide_mode_is_scaled():
    v = np.array(WIDE, dtype=np.uint16).reshape(2, 6)
    big = Image.frombytes("I;16B", (6, 2), v.astype(">u2").tobytes())
    assert np.asarray(to_8bit(big)).ravel().tolist() == EIGHT
    as_i = Image.fromarray(np.array([[-5, 0, 70000], [128, 129, 65535]], dtype=np.int32))
    assert as_i.mode == "I" and np.asarray(to_8bit(as_i)).ravel().tolist() == [0, 0, 255, 0, 1, 255]
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))  # float in [0, 1]
    assert unit.mode == "F" and np.asarray(to_8bit(unit)).ravel().tolist() == [0, 128, 255]
    wide_f = Image.fromarray(np.array([[0.0, 129.0, 65535.0, 1e9]], dtype=np.float32))  # 16-bit range
    assert np.asarray(to_8bit(wide_f)).ravel().tolist() == [0, 1, 255, 255]
    rgb = Image.fromarray(np.full((1, 2, 3), 7, np.uint8))
    assert to_8bit(rgb) is rgb


def test_16bit_images_through_every_loader(tmp_path):
    from imbal.data.image_folder import load_rgb
    from imbal.data.segmentation.transforms import read_rgb  # also what imbal predict reads images with

    v = np.array(WIDE, dtype=np.uint16).reshape(2, 6)
    Image.fromarray(v).save(tmp_path / "g.png")
    assert np.asarray(load_rgb(str(tmp_path / "g.png")))[..., 1].ravel().tolist() == EIGHT
    assert read_rgb(tmp_path / "g.png", where="predict", size=(2, 6))[..., 1].ravel().tolist() == EIGHT


def test_16bit_masks_give_the_8bit_mask(tmp_path):
    from imbal.data.segmentation.mask_folder import MaskFolderDataModule

    m8 = mask_layout(tmp_path / "m8")
    counts = {}
    for name, scale in (("m8", None), ("m65535", 65535), ("m1", 1)):
        root = m8 if scale is None else mask_layout(tmp_path / name)
        if scale is not None:
            for p in sorted((root / "label").iterdir()):
                with Image.open(p) as im:
                    wide = (np.asarray(im) > 0).astype(np.uint16) * scale
                Image.fromarray(wide).save(p)
                with Image.open(p) as im:
                    assert im.mode == "I;16"
                assert np.unique(read_mask_values(p, where="w")).tolist() == [0, scale]
        dm = MaskFolderDataModule(root=str(root), crop=16, val_fraction=0.2, test_fraction=0.2)
        dm.setup()
        counts[name] = [it.fg_pixels for it in dm.items]
        binary = dm._binary(root / "label" / "4.png")
        assert binary.dtype == bool and int(binary.sum()) == 8 * 9
        assert np.array_equal(binary, MaskFolderDataModule(root=str(m8))._binary(m8 / "label" / "4.png"))
    assert counts["m8"] == counts["m65535"] == counts["m1"] == [8 * (5 + i) for i in range(6)]
