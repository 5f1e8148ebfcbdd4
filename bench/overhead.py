"""Step time of imbal's Lightning task against a plain PyTorch loop (same model, data, optimiser).

    python bench/overhead.py [--reps 3] [--steps N] [--threads 1] [--quick] [--profile] [--only WORKLOAD]

Three workloads:

* ``digits-mlp``: digits_lt's training tensors (1x8x8, batch 64), imbal's MLP (64, 64) + linear
  head: a ~4 ms step, where the framework's fixed per-step cost shows most.

* ``digits-cnn``: digits_lt's training tensors (1x8x8, batch 64), imbal's SmallCNN (width 32)
  + linear head: the default run's model and data (a small step).
* ``synth-cnn``: 20,000 random 3x32x32 images, 10 classes, batch 128, SmallCNN (width 8):
  a step whose compute is not trivial.

Both use the same DataLoader (``imbal.data.loaders.train_loader``, the loader every
in-memory data module returns), AdamW and cross-entropy.  Variants timed alternately in
every repetition (the machine is shared, so load drifts; the table shows medians):

* ``plain``: ``for x, y in loader: zero_grad; loss = ce(head(backbone(x)), y); backward; step``;
* ``lightning imbal``: ``imbal.task.ImbalanceTask`` with imbal's loss and NaN guard, as
  ``imbal.runner.build_parts`` builds it, under ``Trainer(max_steps, enable_progress_bar=False,
  logger=False, enable_checkpointing=False, limit_val_batches=0, num_sanity_val_steps=0)``;
* ``lightning imbal no-guard``: the same without the NaN guard (its ``isfinite().item()``
  is a host sync per step on a GPU);
* ``lightning bare``: a minimal LightningModule (training_step returns the loss; no log, no
  guard): Lightning's own floor;
* ``lightning imbal +bar+csv``: the task with train.py's defaults (imbal's progress bar,
  ``imbal.callbacks.progress.ProgressBar``: redrawn at most every 0.1 s; CSV logger,
  log_every_n_steps=10; stderr sent to /dev/null);
* ``lightning imbal +tqdm+csv``: the same with Lightning's own ``TQDMProgressBar`` (redrawn
  every step), the bar train.py had before.

Step time: the time between consecutive ends of a training step (after the optimiser
step), so it includes fetching the batch and every hook; median over the steps of a run
(the mean, which also carries epoch boundaries, is shown too).  The first 5 steps of
each run are dropped.  Trainer construction and the time from ``fit()`` to the end of the
first step are reported separately (start-up).  "CPU ms" is the main thread's CPU time per
step (``time.thread_time``; with 1 torch thread, the figure least moved by other jobs on a
shared machine).  ``--profile`` adds a cProfile of one ``lightning imbal`` run of digits-mlp
(cumulative ms per step of the step loop's main functions; cProfile inflates them).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

WARMUP = 5


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


# -- workloads ----------------------------------------------------------------
def digits_data(arch: str = "cnn"):
    from imbal.data.digits import DigitsLTDataModule

    dm = DigitsLTDataModule(batch_size=64)
    dm.setup("fit")
    x, y = dm.splits["train"].tensors
    return x, y, 64, (arch, 32), dm.stats


def synth_data(n: int = 20_000, c: int = 10):
    from imbal.data.stats import DataStats

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, c, (n,), generator=g)
    x = torch.randn(n, 3, 32, 32, generator=g) + y.view(-1, 1, 1, 1) * 0.1
    counts = torch.bincount(y, minlength=c).tolist()
    stats = DataStats(task="multiclass", num_classes=c, class_counts=counts, class_names=[str(i) for i in range(c)],
                      modality="image", input_shape=(3, 32, 32))
    return x, y, 128, ("cnn", 8), stats


def make_loader(x, y, batch_size):
    from torch.utils.data import TensorDataset

    from imbal.data.loaders import train_loader

    return train_loader(TensorDataset(x, y), labels=y, batch_size=batch_size, seed=0)


def make_model(stats, arch):
    from imbal.models import MLP, SmallCNN

    kind, width = arch
    torch.manual_seed(0)
    if kind == "mlp":
        backbone = MLP(in_shape=stats.input_shape, hidden=(64, 64))
    else:
        backbone = SmallCNN(in_shape=stats.input_shape, width=width)
    head = nn.Linear(backbone.out_features, stats.num_outputs)
    return backbone, head


OPT = functools.partial(torch.optim.AdamW, lr=3e-3, weight_decay=1e-4)


# -- timing -------------------------------------------------------------------
class StepClock:
    """Timestamps at the end of every training step (and the moment ``fit`` was called)."""

    def __init__(self):
        self.t_start = 0.0
        self.ends: list[float] = []
        self.cpu: list[float] = []

    def start(self):
        self.t_start = time.perf_counter()

    def tick(self):
        sync()
        self.ends.append(time.perf_counter())
        self.cpu.append(time.thread_time())

    def result(self) -> dict[str, float]:
        diffs = [b - a for a, b in zip(self.ends[WARMUP:], self.ends[WARMUP + 1:])]
        cpu = [b - a for a, b in zip(self.cpu[WARMUP:], self.cpu[WARMUP + 1:])]
        return {
            "median_ms": statistics.median(diffs) * 1e3,
            "mean_ms": statistics.fmean(diffs) * 1e3,
            "cpu_ms": statistics.median(cpu) * 1e3,
            "first_step_s": self.ends[0] - self.t_start,
        }


def run_plain(x, y, bs, width, stats, steps) -> dict[str, float]:
    dev = device()
    backbone, head = make_model(stats, width)
    model = nn.Sequential(backbone, head).to(dev)
    opt = OPT(model.parameters())
    loader = make_loader(x, y, bs)
    clock = StepClock()
    clock.start()
    model.train()
    step, epoch = 0, 0
    while step < steps:
        loader.sampler.set_epoch(epoch)
        for xb, yb in loader:
            xb, yb = xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            clock.tick()
            step += 1
            if step >= steps:
                break
        epoch += 1
    return {**clock.result(), "trainer_s": 0.0}


def _lightning_module(kind: str, stats, width):
    import lightning as L

    from imbal.guards import NonFiniteGuard
    from imbal.losses import build as build_loss
    from imbal.task import ImbalanceTask

    backbone, head = make_model(stats, width)
    if kind == "bare":

        class Bare(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.backbone, self.head = backbone, head

            def training_step(self, batch, batch_idx):
                xb, yb = batch
                return F.cross_entropy(self.head(self.backbone(xb)), yb)

            def configure_optimizers(self):
                return OPT(self.parameters())

        return Bare()
    guard = None if kind == "imbal no-guard" else NonFiniteGuard(policy="error", max_skips=10, run_dir=None)
    task = ImbalanceTask(backbone, build_loss("ce", stats=stats), stats, optimizer=OPT, guard=guard)
    task.head.load_state_dict(head.state_dict())  # same initial weights as the plain loop
    return task


def run_lightning(kind, x, y, bs, width, stats, steps, tmpdir, profile=None) -> dict[str, float]:
    import lightning as L

    clock = StepClock()

    class Clock(L.Callback):
        def on_train_batch_end(self, *args, **kwargs):
            clock.tick()

    module = _lightning_module(kind, stats, width)
    loader = make_loader(x, y, bs)
    full = kind.endswith("+csv")
    callbacks = [Clock()]
    if kind.endswith("+bar+csv"):  # train.py's bar; "+tqdm+csv": Lightning's own TQDMProgressBar
        from imbal.callbacks.progress import ProgressBar

        callbacks.append(ProgressBar())
    t0 = time.perf_counter()
    kwargs = dict(
        max_steps=steps, enable_progress_bar=full, logger=False, enable_checkpointing=False,
        limit_val_batches=0, num_sanity_val_steps=0, enable_model_summary=False,
        accelerator="auto", devices=1, default_root_dir=tmpdir, callbacks=callbacks,
    )
    if full:
        from lightning.pytorch.loggers import CSVLogger

        kwargs.update(logger=CSVLogger(tmpdir, name="csv", version=""), log_every_n_steps=10)
    trainer = L.Trainer(**kwargs)
    trainer_s = time.perf_counter() - t0
    quiet = open(os.devnull, "w") if full else None
    with contextlib.redirect_stderr(quiet) if quiet else contextlib.nullcontext(), \
            contextlib.redirect_stdout(quiet) if quiet else contextlib.nullcontext():
        clock.start()
        if profile is not None:
            profile.enable()
        trainer.fit(module, train_dataloaders=loader)
        if profile is not None:
            profile.disable()
    if quiet:
        quiet.close()
    return {**clock.result(), "trainer_s": trainer_s}


VARIANTS = ("plain", "lightning bare", "lightning imbal", "lightning imbal no-guard", "lightning imbal +bar+csv",
            "lightning imbal +tqdm+csv")


def bench(name, data, steps, reps, tmpdir):
    x, y, bs, width, stats = data
    res: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    # one untimed warm-up of each (imports, allocator, oneDNN kernels)
    run_plain(x, y, bs, width, stats, WARMUP + 3)
    run_lightning("lightning imbal", x, y, bs, width, stats, WARMUP + 3, tmpdir)
    for r in range(reps):
        order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]  # alternate the order too
        for v in order:
            if v == "plain":
                res[v].append(run_plain(x, y, bs, width, stats, steps))
            else:
                res[v].append(run_lightning(v.removeprefix("lightning "), x, y, bs, width, stats, steps, tmpdir))
    rows = []
    plain = res["plain"]

    def med(key, rs):
        return statistics.median(a[key] for a in rs)

    def ratio(key, rs):
        return statistics.median(a[key] / b[key] for a, b in zip(rs, plain))

    for v in VARIANTS:
        rs = res[v]
        rows.append((
            name, f"{tuple(x.shape[1:])} bs={bs} n={len(x)}", v,
            med("median_ms", rs), ratio("median_ms", rs), ratio("mean_ms", rs),
            med("cpu_ms", rs), ratio("cpu_ms", rs),
            med("trainer_s", rs), med("first_step_s", rs),
        ))
    return rows


def profile_run(data, steps, tmpdir, top: int = 25) -> None:
    import cProfile
    import pstats

    x, y, bs, width, stats = data
    prof = cProfile.Profile()
    run_lightning("lightning imbal", x, y, bs, width, stats, steps, tmpdir, profile=prof)
    keys = ("training_step", "log", "check", "batch_to", "_call_callback_hooks", "_call_lightning_module_hook",
            "optimizer_step", "backward", "apply_to_collection", "__next__", "zero_grad", "closure", "update")
    rows = []
    for (f, line, fn), (_, nc, _, ct, _) in pstats.Stats(prof).stats.items():
        if nc >= steps and any(k in fn for k in keys):
            f = f.split("site-packages/")[-1].replace(str(Path(__file__).resolve().parent.parent) + "/", "")
            rows.append((ct / steps * 1e3, nc, f"{f}:{line}({fn})"))
    print(f"\n## cProfile of one `lightning imbal` fit of digits-mlp ({steps} steps): cumulative ms per step\n")
    print("| ms/step | calls | function |\n| ---: | ---: | --- |")
    for ms, nc, name in sorted(rows, reverse=True)[:top]:
        print(f"| {ms:.2f} | {nc} | `{name}` |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=None,
                    help="training steps per run (default: digits-mlp 150, digits-cnn 30, synth-cnn 16)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1, as bench/losses.py)")
    ap.add_argument("--quick", action="store_true", help="2 reps, few steps, small synth set (a smoke test)")
    ap.add_argument("--profile", action="store_true", help="also cProfile one Lightning run of digits-mlp")
    ap.add_argument("--only", choices=("digits-mlp", "digits-cnn", "synth-cnn"), default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import logging
    import tempfile

    import lightning  # noqa: F401  (its import sets its loggers to INFO; quieten them after)

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from imbal.runner.env import quiet_known_warnings

    quiet_known_warnings()

    reps = 2 if args.quick else args.reps
    # (name, data, steps per run); the MLP step is ~1 ms: Lightning's fixed per-step cost shows there
    steps = {"digits-mlp": 150, "digits-cnn": 30, "synth-cnn": 16} if not args.quick else \
        {"digits-mlp": 12, "digits-cnn": 12, "synth-cnn": 12}
    if args.steps:
        steps = {k: max(WARMUP + 4, args.steps) for k in steps}
    t_start = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmpdir:
        for name, make in (
            ("digits-mlp", lambda: digits_data("mlp")),
            ("digits-cnn", lambda: digits_data("cnn")),
            ("synth-cnn", lambda: synth_data(n=2_000 if args.quick else 20_000)),
        ):
            if args.only in (None, name):
                rows += bench(name, make(), steps[name], reps, tmpdir)
        if args.profile:
            profile_run(digits_data("mlp"), 300 if not args.quick else 20, tmpdir)


    print(f"# imbal Lightning overhead bench, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    dev = device()
    where = torch.cuda.get_device_name(0) if dev.type == "cuda" else f"CPU ({platform.processor() or platform.machine()})"
    print(
        f"torch {torch.__version__}, lightning {lightning.__version__}, {where}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads, float32, {reps} interleaved reps, steps/run: "
        f"{', '.join(f'{k} {v}' for k, v in steps.items())} (first {WARMUP} dropped); load average "
        f"{os.getloadavg()[0]:.1f}\n"
    )
    print("| workload | data | variant | wall ms/step | ratio | ratio (mean) | CPU ms/step | CPU ratio "
          "| Trainer() s | fit() to 1st step s |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, shape, v, wall, r, r_mean, cpu, r_cpu, trainer_s, first in rows:
        print(f"| {name} | {shape} | {v} | {wall:.2f} | {r:.2f}x | {r_mean:.2f}x | {cpu:.2f} | {r_cpu:.2f}x "
              f"| {trainer_s:.3f} | {first:.3f} |")
    print(f"\nratio = median over reps of (variant step time / plain step time of the same rep); "
          f"total bench time {time.perf_counter() - t_start:.0f} s", file=sys.stdout)


if __name__ == "__main__":
    main()
