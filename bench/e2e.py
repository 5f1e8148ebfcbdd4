"""End-to-end wall time of ``python train.py`` runs and ``imbal losses``, import time, and heavy imports.

    python bench/e2e.py [--reps 2] [--quick] [--no-full]

Every figure is a subprocess started from this one, as a user would start it:

* ``python train.py <data> trainer.max_epochs=2 trainer.limit_train_batches=5`` (10 training
  steps, full validation and test, checkpoints, CSV log, post-hoc, summary) for the default
  data (digits_lt), ``data=text_synth`` and ``data=airbus loss=focal`` (``data=airbus`` alone keeps
  ``loss=ce``, which refuses the segmentation task; synthetic set from the user's
  cache, generated on first use); and, unless ``--no-full``/``--quick``, the plain default
  ``python train.py`` (30 epochs: the issue's target is under 30 s).  The wall time is split
  into the run's own ``wall time`` (printed by imbal.runner.train, from the start of ``train()``)
  and everything before it (interpreter, imports, Hydra composition);
* ``imbal losses`` (target: under 3 s) and ``python train.py --help`` (under 1.5 s: no torch import);
* ``python -c "import imbal.runner"``, ``import torch``, ``import lightning`` against ``python -c pass``;
* wall and CPU seconds (user + sys of the child: on a shared machine the steadier figure);
* which heavy modules (wandb, transformers, tokenizers, matplotlib,
  segmentation_models_pytorch, timm, pandas, sklearn, scipy, torchvision, tensorboard)
  a short default ``python train.py`` run imports, with the first file and line of the
  repository that triggered each import (an import hook records the stack) and their
  cumulative import time (``python -X importtime`` of the same run).

Median of ``--reps`` runs; Hydra output goes to a temporary directory.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("wandb", "transformers", "tokenizers", "matplotlib", "segmentation_models_pytorch", "timm", "pandas",
         "sklearn", "scipy", "torchvision", "tensorboard", "tensorboardX")
SHORT = ["trainer.max_epochs=2", "trainer.limit_train_batches=5"]

# Run train.py in-process under an import hook that records who imports each heavy module first.
HOOK = r'''
import atexit, json, runpy, sys, traceback
HEAVY = set(sys.argv[1].split(","))
OUT = sys.argv[2]
ROOT = sys.argv[3]
seen = {}

class Finder:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in HEAVY and top not in seen:
            stack = traceback.extract_stack()[:-1]
            if [f.name for f in stack[-3:]] != ["_find_and_load", "_find_and_load_unlocked", "_find_spec"]:
                return None  # importlib.util.find_spec: an availability check, not an import
            repo = [f for f in stack if f.filename.startswith(ROOT) and "/.venv/" not in f.filename
                    and "importlib" not in f.filename and not f.filename.endswith("/bench/e2e.py")]
            # the frame that executed the import statement (first frame outside importlib)
            direct = [f for f in stack if "importlib" not in f.filename and not f.filename.startswith("<")]
            d = direct[-1] if direct else None
            importer = (d.filename.split("site-packages/")[-1].replace(ROOT + "/", "") + f":{d.lineno}") if d else "?"
            first_lib = None
            if repo:
                i = stack.index(repo[-1])
                for f in stack[i + 1:]:
                    if "site-packages" in f.filename:
                        first_lib = f.filename.split("site-packages/")[1].split("/")[0]
                        break
            seen[top] = {
                "by": f"{repo[-1].filename[len(ROOT) + 1:]}:{repo[-1].lineno}" if repo else "?",
                "code": repo[-1].line if repo else "",
                "via": first_lib,
                "importer": importer,
                "importer_code": (d.line or "").strip() if d else "",
                "chain": [f"{f.filename[len(ROOT) + 1:]}:{f.lineno}" for f in repo[-4:]],
            }
        return None

sys.meta_path.insert(0, Finder())
atexit.register(lambda: open(OUT, "w").write(json.dumps(seen)))
sys.argv = ["train.py"] + sys.argv[4:]
sys.path.insert(0, ROOT)
runpy.run_path(ROOT + "/train.py", run_name="__main__")
'''


CPU: dict[int, float] = {}  # id(CompletedProcess) -> CPU seconds (user + sys) of the child


def timed(cmd: list[str], env: dict | None = None, timeout: float = 900) -> tuple[float, subprocess.CompletedProcess]:
    """Wall seconds of a subprocess; its CPU seconds (user + sys, children included) go to CPU[id(p)]."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU[id(p)] = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return wall, p


def run_wall(out: str) -> float | None:
    m = re.search(r"wall time: ([0-9.]+) s", out)
    return float(m.group(1)) if m else None


def train_case(label: str, args: list[str], reps: int, tmp: Path) -> dict:
    walls, runs, cpus, err = [], [], [], None
    for r in range(reps):
        d = tmp / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', label)}_{r}"  # no ',' or '=' in a Hydra override
        wall, p = timed([sys.executable, "train.py", *args, f"hydra.run.dir={d}"])
        if p.returncode != 0:
            err = (p.stderr.strip().splitlines() or ["?"])[-1]
            break
        walls.append(wall)
        cpus.append(CPU[id(p)])
        rw = run_wall(p.stdout + p.stderr)
        if rw is not None:
            runs.append(rw)
    if err:
        return {"label": label, "error": err}
    wall = statistics.median(walls)
    run = statistics.median(runs) if runs else float("nan")
    return {"label": label, "cmd": "python train.py " + " ".join(args), "wall": wall, "run": run, "before": wall - run,
            "cpu": statistics.median(cpus)}


def importtime_table(stderr: str) -> dict[str, float]:
    """Cumulative import time (s) of each module, from ``-X importtime`` output."""
    cum = {}
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            name = m.group(4)
            cum.setdefault(name, int(m.group(2)) / 1e6)
    return cum


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="1 rep, no full default run, no airbus (a smoke test)")
    ap.add_argument("--no-full", action="store_true", help="skip the full 30-epoch default run")
    args = ap.parse_args()
    reps = 1 if args.quick else args.reps
    py = sys.executable
    t_start = time.perf_counter()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        # -- imports ------------------------------------------------------------
        imp = {}
        for label, code in (("python -c pass", "pass"), ("import torch", "import torch"),
                            ("import lightning", "import lightning"), ("import imbal.runner", "import imbal.runner"),
                            ("import imbal.runner, imbal.task", "import imbal.runner, imbal.task")):
            ws, cs = [], []
            for _ in range(max(3, reps)):
                w, p = timed([py, "-c", code])
                ws.append(w)
                cs.append(CPU[id(p)])
            imp[label] = (statistics.median(ws), statistics.median(cs))
        # -- imbal losses -------------------------------------------------------
        exe = str(Path(py).parent / "imbal")
        losses_cmd = [exe, "losses"] if Path(exe).exists() else [py, "-m", "imbal.cli", "losses"]
        lw, lc = [], []
        for _ in range(max(3, reps)):
            w, p = timed(losses_cmd)
            lw.append(w if p.returncode == 0 else float("nan"))
            lc.append(CPU[id(p)])
        losses_wall, losses_cpu = statistics.median(lw), statistics.median(lc)
        # -- train.py --help (no torch import once the loss-node cache is warm; target: under 1.5 s) --
        timed([py, "train.py", "--help"])  # warms the cache
        hw, hc = [], []
        for _ in range(max(3, reps)):
            w, p = timed([py, "train.py", "--help"])
            hw.append(w if p.returncode == 0 else float("nan"))
            hc.append(CPU[id(p)])
        help_wall, help_cpu = statistics.median(hw), statistics.median(hc)
        # -- train.py -----------------------------------------------------------
        cases = [("default, 10 steps", SHORT), ("data=text_synth, 10 steps", ["data=text_synth", *SHORT])]
        if not args.quick:
            # data=airbus alone keeps the default loss=ce, which refuses the segmentation task
            cases.append(("data=airbus loss=focal, 10 steps", ["data=airbus", "loss=focal", *SHORT]))
        for label, a in cases:
            rows.append(train_case(label, a, reps, tmp))
        if not (args.quick or args.no_full):
            rows.append(train_case("default (30 epochs)", [], 1, tmp))
        # -- heavy imports of a short default run ---------------------------------
        hook = tmp / "hook.py"
        hook.write_text(HOOK)
        who = tmp / "who.json"
        _, p = timed([py, "-X", "importtime", str(hook), ",".join(HEAVY), str(who), str(ROOT), *SHORT,
                      f"hydra.run.dir={tmp / 'hook_run'}"])
        heavy = json.loads(who.read_text()) if who.is_file() else {}
        cum = importtime_table(p.stderr)
        hook_err = None if p.returncode == 0 else (p.stderr.strip().splitlines() or ["?"])[-1]
        # what import imbal.runner alone costs, by top-level module
        _, p2 = timed([py, "-X", "importtime", "-c", "import imbal.runner"])
        cum_run = importtime_table(p2.stderr)

    import lightning
    import torch

    print(f"# imbal end-to-end bench, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"torch {torch.__version__}, lightning {lightning.__version__}, CPU ({platform.processor() or platform.machine()}), "
          f"{os.cpu_count()} cores, median of {reps} runs; load average {os.getloadavg()[0]:.1f}\n")
    print("| command | wall s | CPU s (user+sys) | in train() s (wall) | before train() s (wall: start-up) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        if "error" in r:
            print(f"| {r['label']} | failed: {r['error']} | | | |")
        else:
            print(f"| `{r['cmd']}` | {r['wall']:.1f} | {r['cpu']:.1f} | {r['run']:.1f} | {r['before']:.1f} |")
    print(f"| `imbal losses` | {losses_wall:.2f} | {losses_cpu:.2f} | | |")
    print(f"| `python train.py --help` | {help_wall:.2f} | {help_cpu:.2f} | | |")
    print("\n| import | wall s | CPU s | CPU minus `python -c pass` |")
    print("| --- | ---: | ---: | ---: |")
    for label, (w, c) in imp.items():
        shown = label if label.startswith("python") else f"python -c '{label}'"
        print(f"| `{shown}` | {w:.2f} | {c:.2f} | {c - imp['python -c pass'][1]:.2f} |")
    print("\nHeavy modules imported by a short default run (`python train.py " + " ".join(SHORT) + "`):\n")
    if hook_err:
        print(f"(the hooked run failed: {hook_err})\n")
    print("| module | imported | cumulative import s | repo line on the stack | line that imports it | "
          "in `import imbal.runner`? |")
    print("| --- | --- | ---: | --- | --- | --- |")
    for m in HEAVY:
        if m in heavy:
            h = heavy[m]
            code = f" `{h['code'].strip()}`" if h.get("code") else ""
            imp_code = f" `{h['importer_code']}`" if h.get("importer_code") else ""
            print(f"| {m} | yes | {cum.get(m, float('nan')):.2f} | {h['by']}{code} | {h['importer']}{imp_code} "
                  f"| {'yes' if m in cum_run else 'no'} |")
        else:
            print(f"| {m} | no | | | | {'yes' if m in cum_run else 'no'} |")
    top = sorted(((v, k) for k, v in cum_run.items() if "." not in k), reverse=True)[:12]
    print("\nTop-level modules by cumulative import time in `python -X importtime -c 'import imbal.runner'`: "
          + ", ".join(f"{k} {v:.2f}s" for v, k in top))
    print(f"\ntotal bench time {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
