"""Batches per second of every data module's training loader at its default settings.

    python bench/data.py [--epochs 5] [--quick]

Each data module is built from its own Hydra config (``conf/data/<name>.yaml``, composed
with ``conf/train.yaml`` exactly as ``python train.py data=<name>`` does), with only the
paths moved into a temporary directory so that every cache starts cold:

* ``digits_lt``: the default data (scikit-learn's digits, in memory);
* ``cifar10_lt``: a generated CIFAR-10-format set in torchvision's real pickle layout
  (``tests/cifar_fixture.py``; 500 training / 100 test images per class, so the ratio-100
  long-tail split has 1,240 images), per-image torchvision v2 pad-crop-flip; also with
  ``data.num_workers=0`` (the default is 2 workers);
* ``text_synth``: the generated topic corpus, tokenised in ``setup`` (word tokenizer
  trained and cached on disk under ``data.tokenizer.cache_dir``), padded per batch;
* ``cifar10_lt data.on_device=true``: the same set held as one uint8 tensor on ``--device``
  (default: the CPU, as a Trainer on the CPU would place it), pad-crop-flip-normalise of
  whole batches by one ``gather`` there (``imbal/data/on_device.py``), no DataLoader;
* ``airbus``: the synthetic Airbus-layout set (JPEG + RLE CSV, generated into
  ``data.cache_dir``), random crops with flips/rotations, decoded images cached in memory.
* ``split_list``: a generated tree of 5,500 JPEGs of 500x375 px (ImageNet's typical size) in
  sub-folders (5,000 listed for training, 250 each for validation and test, official ``path label``
  lines), the ImageNet-LT transforms (RandomResizedCrop 224 + flip / Resize 256 + CenterCrop 224);
  0 and 2 workers, without and with the resize cache (``data.cache_size=256``, built in the first
  cached row's ``setup cold``); each epoch stops after :data:`SPLIT_LIST_BATCHES` batches of 64.  A second
  table gives images/s and the cache's ratio against no cache at the same workers (same process).

Reported: ``setup`` time with a cold cache (first build: generation, tokenizer training,
file parsing) and with a warm one (a second data module over the same cache dir), then
batches/s of the training loader in epoch 1 (workers start, images decoded) and the
median of later epochs.  A module that fails to import or build is printed as
``skipped: <reason>`` (other helpers may be changing it).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
import types
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
#: batches of 64 per epoch of the split_list rows (a full epoch of 5,000 images takes ~30 s per row at 0 workers)
SPLIT_LIST_BATCHES = 12


def compose(*overrides: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from imbal.config import conf_dir, register_configs

    register_configs()  # the generated loss nodes (loss=ce is one), as train.py does
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=["run_dir=/tmp/imbal-bench-unused", *overrides])


def build(cfg):
    from imbal.runner.build import instantiate as _instantiate

    dm = _instantiate(cfg.data)
    t0 = time.perf_counter()
    if hasattr(dm, "prepare_data"):
        dm.prepare_data()
    dm.setup("fit")
    return dm, time.perf_counter() - t0


def epoch_rates(dm, epochs: int, max_batches: int | None) -> tuple[list[float], int, int]:
    """Batches/s of each epoch of the training loader; (rates, batches per epoch, batch size)."""
    loader = dm.train_dataloader()
    rates, nb, bs = [], 0, 0
    for e in range(epochs):
        for s in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
            if hasattr(s, "set_epoch"):
                s.set_epoch(e)
        t0 = time.perf_counter()
        nb = 0
        for batch in loader:
            if nb == 0:
                bs = len(batch[-1]) if isinstance(batch, (list, tuple)) else 0
            nb += 1
            if max_batches and nb >= max_batches:
                break
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # on-device batches are produced asynchronously
        rates.append(nb / (time.perf_counter() - t0))
    return rates, nb, bs


def cases(tmp: Path, quick: bool):
    """(label, overrides, prepare) per data module; prepare() writes input files and may raise."""

    def cifar_files():
        sys.path.insert(0, str(ROOT))
        from tests.cifar_fixture import write_cifar10

        root = tmp / "cifar"
        if not (root / "cifar-10-batches-py").is_dir():
            write_cifar10(root, per_class_train=100 if quick else 500, per_class_test=20 if quick else 100)

    return [
        ("digits_lt", ["data=digits_lt"], None),
        ("cifar10_lt", ["data=cifar10_lt", f"data.root={tmp / 'cifar'}"], cifar_files),
        ("cifar10_lt num_workers=0", ["data=cifar10_lt", f"data.root={tmp / 'cifar'}", "data.num_workers=0"],
         cifar_files),
        ("cifar10_lt on_device=true", ["data=cifar10_lt", f"data.root={tmp / 'cifar'}", "data.on_device=true"],
         cifar_files),
        ("text_synth", ["data=text_synth", f"data.tokenizer.cache_dir={tmp / 'tok'}"], None),
        ("airbus (synthetic)", ["data=airbus", f"data.cache_dir={tmp / 'airbus'}"], None),
        *split_list_cases(tmp, quick),
    ]


def write_split_list_tree(root: Path, n_train: int, n_eval: int, classes: int = 50) -> None:
    """``n_train`` + 2 x ``n_eval`` JPEGs of 500x375 px (smooth noise, quality 90) under ``root/<split>/c<k>/``
    and the lists ``train.txt`` / ``val.txt`` / ``test.txt`` in the official ``relative/path.jpg <label>`` form."""
    import numpy as np
    from PIL import Image

    if (root / "test.txt").is_file():
        return
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_eval), ("test", n_eval)):
        lines = []
        for i in range(n):
            k = i % classes
            rel = f"{split}/c{k:03d}/{split}_{i:05d}.jpg"
            small = Image.fromarray(rng.integers(0, 256, (15, 20, 3), dtype=np.uint8))
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            small.resize((500, 375), Image.BICUBIC).save(root / rel, quality=90)
            lines.append(f"{rel} {k}\n")
        (root / f"{split}.txt").write_text("".join(lines))


def split_list_cases(tmp: Path, quick: bool):
    root = tmp / "split_list"
    n_train, n_eval = (500, 50) if quick else (5000, 250)
    base = ["data=split_list", f"data.root={root}", "data.train_list=train.txt", "data.val_list=val.txt",
            "data.test_list=test.txt", "data.batch_size=64"]
    cache = ["data.cache_size=256", f"data.cache_dir={tmp / 'split_list_cache'}"]

    def prepare():
        write_split_list_tree(root, n_train, n_eval)

    return [
        ("split_list num_workers=0", [*base, "data.num_workers=0"], prepare),
        ("split_list num_workers=2", [*base, "data.num_workers=2"], prepare),
        ("split_list cache_size=256 num_workers=2", [*base, *cache, "data.num_workers=2"], prepare),
        ("split_list cache_size=256 num_workers=0", [*base, *cache, "data.num_workers=0"], prepare),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--max-batches", type=int, default=None, help="stop an epoch after this many batches")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1, as bench/losses.py)")
    ap.add_argument("--quick", action="store_true", help="3 epochs, smaller generated sets (a smoke test)")
    ap.add_argument("--only", default=None, help="run only the cases whose label starts with this")
    ap.add_argument("--device", default="cpu", help="device of the data.on_device row (cpu, cuda)")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    epochs = 3 if args.quick else args.epochs

    rows, skipped = [], []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        os.environ["IMBAL_CACHE"] = str(tmp / "cache")  # nothing of the user's cache is read or written
        for label, overrides, prepare in cases(tmp, args.quick):
            if args.only and not label.startswith(args.only):
                continue
            try:
                if prepare is not None:
                    prepare()
                cfg = compose(*overrides)
                dm, cold = build(cfg)
                _, warm = build(cfg)  # a second data module over the same (now warm) caches
                if getattr(dm, "on_device", False):
                    # where a Trainer on --device would put the tensors (its strategy's root device)
                    dm.trainer = types.SimpleNamespace(strategy=types.SimpleNamespace(root_device=device),
                                                       distributed_sampler_kwargs=None)
                max_batches = args.max_batches
                if label.startswith("split_list"):
                    max_batches = max_batches or (4 if args.quick else SPLIT_LIST_BATCHES)
                rates, nb, bs = epoch_rates(dm, epochs, max_batches)
            except Exception as exc:  # a module being rewritten by another helper must not stop the bench
                msg = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                print(f"skipped: {label}: {msg}", file=sys.stderr)
                if os.environ.get("IMBAL_BENCH_DEBUG"):
                    traceback.print_exc()
                skipped.append((label, msg))
                continue
            later = statistics.median(rates[1:]) if len(rates) > 1 else float("nan")
            workers = "- (on " + str(device) + ")" if getattr(dm, "on_device", False) else cfg.data.get("num_workers", 0)
            rows.append((label, type(dm).__name__, workers, bs, nb, cold, warm, rates[0], later, later / rates[0]))

    import lightning

    print(f"# imbal data-loader bench, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(
        f"torch {torch.__version__}, lightning {lightning.__version__}, CPU ({platform.processor() or platform.machine()}), "
        f"{os.cpu_count()} cores, {torch.get_num_threads()} torch threads in the main process; {epochs} epochs "
        f"per loader; load average {os.getloadavg()[0]:.1f}\n"
    )
    print("| data | module | workers | batch | batches/epoch | setup cold s | setup warm s | epoch 1 batches/s "
          "| later epochs batches/s (median) | later / first |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, mod, nw, bs, nb, cold, warm, first, later, ratio in rows:
        print(f"| {label} | {mod} | {nw} | {bs} | {nb} | {cold:.2f} | {warm:.2f} | {first:.1f} | {later:.1f} "
              f"| {ratio:.2f}x |")
    split_rows = {r[0]: r for r in rows if r[0].startswith("split_list")}
    if split_rows:
        print("\n| split_list | workers | images/epoch | setup cold s | setup warm s | epoch 1 images/s "
              "| later epochs images/s | later: cache / no cache |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for label, (_, _, nw, bs, nb, cold, warm, first, later, _) in split_rows.items():
            plain = split_rows.get(f"split_list num_workers={nw}")
            ratio = f"{later / plain[8]:.2f}x" if "cache_size" in label and plain else "-"
            print(f"| {label.removeprefix('split_list ')} | {nw} | {bs * nb} | {cold:.2f} | {warm:.2f} "
                  f"| {first * bs:.0f} | {later * bs:.0f} | {ratio} |")
    for label, msg in skipped:
        print(f"\nskipped: {label}: {msg}")
    print(f"\ntotal bench time {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
