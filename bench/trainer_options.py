"""Training steps/s of ResNet-32 on 32x32 inputs under imbal's trainer options, as ratios to fp32.

    python bench/trainer_options.py [--steps 24] [--reps 3] [--batch 128] [--threads N] [--only NAME,...]

Variants (one fresh model each, same init), the options applied by the code ``train.py`` runs
(:func:`imbal.runner.trainer_options.apply_trainer_options` on the backbone):

* ``fp32``: ``trainer.precision=32-true``, the baseline;
* ``bf16-mixed``: ``torch.autocast(device, bfloat16)`` around forward and loss, which is what
  Lightning's ``precision=bf16-mixed`` does (its ``MixedPrecision`` plugin), fp32 weights;
* ``channels_last``: ``trainer.channels_last=true``;
* ``compile``: ``trainer.compile=model`` (``nn.Module.compile`` of the backbone, inductor);
* ``bf16-mixed+channels_last``.

A step: forward through backbone + linear head, cross-entropy, backward, SGD (momentum 0.9)
on a fixed random batch (the data loader is not measured here; see bench/data.py).
Per variant and repetition: ``--warmup`` steps (compilation happens there; its time is
printed) then ``--steps`` timed steps.  Variants run in turn inside each repetition, so the
ratios to fp32 of the same repetition see the same machine load; the table gives the
median over repetitions of steps/s and of the ratio.

The latest figures, with date, machine and load, are in bench/README.md ("Trainer options").
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
import types
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

VARIANTS = {
    "fp32": {},
    "bf16-mixed": {"bf16": True},
    "channels_last": {"channels_last": True},
    "compile": {"compile": "model"},
    "bf16-mixed+channels_last": {"bf16": True, "channels_last": True},
}


def make(variant: dict, device: torch.device, seed: int = 0):
    from imbal.models.resnet_cifar import ResNetCifar
    from imbal.runner.trainer_options import apply_trainer_options

    torch.manual_seed(seed)
    backbone = ResNetCifar(in_shape=(3, 32, 32), blocks=5, width=1).to(device)
    head = torch.nn.Linear(backbone.out_features, 10).to(device)
    task = types.SimpleNamespace(backbone=backbone, loss_fn=torch.nn.CrossEntropyLoss())
    apply_trainer_options(task, {"channels_last": variant.get("channels_last", False),
                                 "compile": variant.get("compile", False)}, device)
    params = list(backbone.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    return backbone, head, opt


def run_variant(variant: dict, device: torch.device, x, y, warmup: int, steps: int) -> tuple[float, float]:
    """(steps/s over the timed steps, seconds of the warm-up steps)."""
    backbone, head, opt = make(variant, device)
    backbone.train()
    bf16 = bool(variant.get("bf16"))

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(head(backbone(x)), y)
        loss.backward()
        opt.step()
        return loss

    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    sync(device)
    t_warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    float(loss)
    sync(device)
    return steps / (time.perf_counter() - t0), t_warm


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=24, help="timed steps per variant and repetition")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--only", default=None, help="comma-separated variants (fp32 is always run)")
    ap.add_argument("--quick", action="store_true", help="2 timed steps, 1 warm-up, 1 rep, no compile (smoke test)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    if args.quick:
        args.steps, args.warmup, args.reps = 2, 1, 1
    names = list(VARIANTS)
    if args.only:
        names = ["fp32"] + [n for n in args.only.split(",") if n in VARIANTS and n != "fp32"]
    elif args.quick:
        names = [n for n in names if n != "compile"]
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, 10, (args.batch,), generator=g).to(device)

    rates: dict[str, list[float]] = {n: [] for n in names}
    ratios: dict[str, list[float]] = {n: [] for n in names}
    warm: dict[str, list[float]] = {n: [] for n in names}
    skipped: dict[str, str] = {}
    t_start = time.perf_counter()
    for rep in range(args.reps):
        base = None
        for n in names:
            if n in skipped:
                continue
            try:
                r, tw = run_variant(VARIANTS[n], device, x, y, args.warmup, args.steps)
            except Exception as exc:  # e.g. compile without a compiler: one line, the rest still runs
                skipped[n] = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
                continue
            base = r if n == "fp32" else base
            rates[n].append(r)
            warm[n].append(tw)
            ratios[n].append(r / base)
            print(f"rep {rep} {n}: {r:.2f} steps/s (warm-up {tw:.1f} s)", file=sys.stderr, flush=True)

    import lightning

    print(f"# imbal trainer-options bench, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"torch {torch.__version__}, lightning {lightning.__version__}, device {device} "
          f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch "
          f"threads); ResNet-32, batch {args.batch} of 3x32x32, {args.steps} timed steps after {args.warmup} "
          f"warm-up, {args.reps} reps; load average {os.getloadavg()[0]:.1f}\n")
    print("| variant | steps/s (median) | ratio to fp32 (median) | ratios per rep | warm-up s (first rep) |")
    print("| --- | ---: | ---: | --- | ---: |")
    for n in names:
        if not rates[n]:
            continue
        print(f"| {n} | {statistics.median(rates[n]):.2f} | {statistics.median(ratios[n]):.2f}x "
              f"| {', '.join(f'{r:.2f}' for r in ratios[n])} | {warm[n][0]:.1f} |")
    for n, msg in skipped.items():
        print(f"\nskipped: {n}: {msg}")
    print(f"\ntotal bench time {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
