"""Training throughput of whole ``train.py`` runs: ResNet-32 images/s on a CIFAR-format set, U-Net crops/s.

    python bench/throughput.py [--images-per-class 5000] [--epochs 4] [--batch 128] [--workers 2]
                               [--only NAME,...] [--skip-unet] [--quick]

Meant for the GPU machine (the GPU figures: fp32 vs bf16 vs bf16+channels_last+compile, with and
without ``data.on_device``; U-Net 256x256 crops/s); it also runs on the CPU (``--quick``: a smoke test).

Every variant is one real ``python train.py`` run (a subprocess, as a user runs it) with
``trainer.enable_progress_bar=false`` and an extra Lightning callback (``EpochClock`` below, given
through ``+callbacks.clock``) that times each training epoch from its first batch's start to its
last batch's end, with a device synchronisation at both ends; validation, test and start-up are
outside that span.  Images/s = training samples in the epoch / that span; the figure reported is
the median over epochs 2..E (epoch 1 holds compilation, cuDNN autotuning and the workers' start),
and the ratio is to the ``fp32`` run of the same workload, measured in the same invocation.

Workloads:

* ResNet-32 (``model=resnet32``): ``data=cifar10_lt data.ratio=1``, a generated CIFAR-10 set in
  torchvision's pickle layout (``tests/cifar_fixture.py``), ``--images-per-class`` x 10 training
  images (default 5,000: 50,000 images, CIFAR-10's size), batch ``--batch``, the data module's
  default augmentation (pad-crop-flip).  Variants: ``fp32``, ``bf16`` (``trainer.precision=bf16-mixed``),
  ``bf16+cl+compile`` (plus ``trainer.channels_last=true trainer.compile=model``), each also with
  ``data.on_device=true`` (the set as one tensor on the device, batches augmented there).
  "200 epochs of CIFAR-10-LT" = 12,406 images x 200 / images/s (the issue's one-minute aim).
* U-Net (``data=airbus model=unet``, default loss bce): synthetic Airbus-layout JPEG + RLE data,
  512x512 images, ``data.crop=256`` random crops, ``--unet-batch``; ``fp32`` and ``bf16+cl``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
LT_IMAGES = 12_406  # CIFAR-10-LT, exp profile, ratio 100


def _sync() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


try:  # the callback needs Lightning; the bench's parent process does not import it
    from lightning.pytorch.callbacks import Callback
except ImportError:  # pragma: no cover
    Callback = object


class EpochClock(Callback):
    """Per training epoch: seconds from the first batch's start to the last batch's end, and samples.

    Appends one JSON line per epoch to ``out``: {"epoch", "seconds", "samples", "steps", "device"}.
    """

    def __init__(self, out: str):
        super().__init__()
        self.out = out
        self._t0 = None
        self._samples = 0
        self._steps = 0
        self._t_last = None

    def on_train_epoch_start(self, trainer, pl_module):
        self._t0, self._samples, self._steps, self._t_last = None, 0, 0, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self._t0 is None:
            _sync()
            self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._samples += len(batch[1])
        self._steps += 1
        if batch_idx + 1 >= trainer.num_training_batches:
            _sync()
            self._t_last = time.perf_counter()

    def _write(self, trainer, pl_module):
        if self._t0 is None or self._steps == 0:
            return
        if self._t_last is None:  # stopped mid-epoch (max_steps)
            _sync()
            self._t_last = time.perf_counter()
        rec = {"epoch": trainer.current_epoch, "seconds": self._t_last - self._t0, "samples": self._samples,
               "steps": self._steps, "device": str(pl_module.device)}
        with open(self.out, "a") as f:
            f.write(json.dumps(rec) + "\n")
        self._t0 = None

    # validation runs inside the training epoch in Lightning 2.x: the span ends at the last batch
    def on_validation_start(self, trainer, pl_module):
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._write(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module):
        self._write(trainer, pl_module)


# -- the parent process ---------------------------------------------------------
def resnet_variants(on_cuda: bool, quick: bool) -> dict[str, list[str]]:
    base = {
        "fp32": [],
        "bf16": ["trainer.precision=bf16-mixed"],
        "bf16+cl+compile": ["trainer.precision=bf16-mixed", "trainer.channels_last=true", "trainer.compile=model"],
    }
    if quick:  # bf16 and compile are slow on the CPU (no bf16 units; minutes of inductor warm-up)
        base = {"fp32": []}
    out = {}
    for name, ov in base.items():
        out[name] = ov
        out[name + " on_device"] = ov + ["data.on_device=true"]
    return out


UNET_VARIANTS = {"fp32": [], "bf16+cl": ["trainer.precision=bf16-mixed", "trainer.channels_last=true"]}


def run_variant(overrides: list[str], tmp: Path, label: str, timeout: float) -> dict:
    out = tmp / f"clock-{abs(hash(label))}.jsonl"
    out.unlink(missing_ok=True)
    run_dir = tmp / "runs" / label.replace(" ", "_").replace("+", "_")
    cmd = [sys.executable, str(ROOT / "train.py"), *overrides, "trainer.enable_progress_bar=false",
           "+callbacks.clock._target_=throughput.EpochClock", f"+callbacks.clock.out={out}",
           f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCH), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        lines = [ln for ln in (p.stderr or p.stdout).strip().splitlines() if ln.strip()]
        return {"error": lines[-1] if lines else f"exit {p.returncode}", "wall": wall}
    epochs = [json.loads(ln) for ln in out.read_text().splitlines()] if out.exists() else []
    rates = [e["samples"] / e["seconds"] for e in epochs]
    later = rates[1:] or rates
    return {"rate": statistics.median(later) if later else float("nan"), "first": rates[0] if rates else float("nan"),
            "epochs": len(epochs), "samples": epochs[0]["samples"] if epochs else 0,
            "steps": epochs[0]["steps"] if epochs else 0, "device": epochs[0]["device"] if epochs else "?",
            "wall": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images-per-class", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2, help="data.num_workers of the DataLoader runs")
    ap.add_argument("--unet-batch", type=int, default=16)
    ap.add_argument("--unet-samples", type=int, default=2048, help="U-Net crops per epoch")
    ap.add_argument("--only", default=None, help="comma-separated variant names (ResNet-32 and U-Net)")
    ap.add_argument("--skip-unet", action="store_true")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    ap.add_argument("--quick", action="store_true", help="tiny sets, 2 epochs, fp32 only (a smoke test)")
    args = ap.parse_args()
    import torch

    on_cuda = torch.cuda.is_available()
    if args.quick:
        args.images_per_class, args.epochs, args.batch, args.workers = 12, 2, 40, 0
        args.unet_batch, args.unet_samples = 4, 8
    only = set(args.only.split(",")) if args.only else None
    t_start = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="imbal-throughput-") as d:
        tmp = Path(d)
        sys.path.insert(0, str(ROOT))
        from tests.cifar_fixture import write_cifar10

        t0 = time.perf_counter()
        write_cifar10(tmp / "cifar", per_class_train=args.images_per_class, per_class_test=max(2, args.images_per_class // 5))
        print(f"generated {10 * args.images_per_class} CIFAR-format training images in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr, flush=True)
        common = ["data=cifar10_lt", f"data.root={tmp / 'cifar'}", "data.ratio=1", "model=resnet32",
                  f"data.batch_size={args.batch}", f"data.num_workers={args.workers}", f"trainer.max_epochs={args.epochs}"]
        workloads = [("ResNet-32", common, resnet_variants(on_cuda, args.quick))]
        if not args.skip_unet:
            size, crop = (64, 32) if args.quick else (512, 256)
            unet = ["data=airbus", f"data.cache_dir={tmp / 'airbus'}", "data.synthetic.n_images=" + ("20" if args.quick else "200"),
                    f"data.synthetic.image_size={size}", f"data.crop={crop}",
                    f"data.samples_per_epoch={args.unet_samples}", f"data.batch_size={args.unet_batch}",
                    f"data.num_workers={args.workers}", f"trainer.max_epochs={args.epochs}", "callbacks.seg_overlay=null"]
            workloads.append(("U-Net", unet, {"fp32": []} if args.quick else UNET_VARIANTS))
        for wname, ov, variants in workloads:
            base = None
            for vname, extra in variants.items():
                if only and vname != "fp32" and vname not in only:
                    continue
                r = run_variant(ov + extra, tmp, f"{wname} {vname}", args.timeout)
                if vname == "fp32":
                    base = r.get("rate")
                r.update(workload=wname, variant=vname, overrides=" ".join(extra) or "-")
                rows.append(r)
                msg = r.get("error") or f"{r['rate']:.0f}/s (epoch 1: {r['first']:.0f}/s), run {r['wall']:.0f} s"
                print(f"{wname} {vname}: {msg}", file=sys.stderr, flush=True)
                r["ratio"] = (r["rate"] / base) if base and "rate" in r else float("nan")

    import lightning

    dev = torch.cuda.get_device_name(0) if on_cuda else f"CPU ({platform.processor() or platform.machine()})"
    print(f"# imbal throughput bench, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"device {dev}, {os.cpu_count()} CPU cores, torch {torch.__version__}, lightning {lightning.__version__}; "
          f"{args.epochs} epochs per run, median of epochs 2..{args.epochs}; ResNet-32: {10 * args.images_per_class} "
          f"images, batch {args.batch}; U-Net: {args.unet_samples} crops/epoch, batch {args.unet_batch}; "
          f"DataLoader workers {args.workers}; load average {os.getloadavg()[0]:.1f}\n")
    print("| workload | variant | images/s | ratio to fp32 | epoch 1 images/s | steps/epoch | run wall s | "
          "200 epochs of CIFAR-10-LT s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        if "error" in r:
            print(f"| {r['workload']} | {r['variant']} | failed: {r['error']} | | | | {r['wall']:.0f} | |")
            continue
        lt = f"{LT_IMAGES * 200 / r['rate']:.0f}" if r["workload"] == "ResNet-32" else ""
        print(f"| {r['workload']} | {r['variant']} | {r['rate']:.0f} | {r['ratio']:.2f}x | {r['first']:.0f} | "
              f"{r['steps']} | {r['wall']:.0f} | {lt} |")
    print("\nvariants: " + "; ".join(f"{r['workload']} {r['variant']}: {r['overrides']}" for r in rows))
    print(f"total bench time {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
