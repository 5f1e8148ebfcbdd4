"""``imbal ensemble PATH...``: fit an ensemble of finished runs on validation, score it once on test.

The order is the protocol: the members' ``predictions/val.npz`` are read and the method (and any
post-hoc correction) is fitted on them; only then are the ``predictions/test.npz`` files read,
to score the fitted ensemble.  ``ensemble.json`` lists the files read for each step.

Runs whose validation split *is* the test split (``data.val_from=test`` in ``data_stats.json``,
the CIFAR-LT papers' protocol) cannot be fitted honestly: ``weighted``, ``stacking`` and
``greedy``, and corrections tuned on validation (``la_tuned``, ``threshold``), are refused for
them.  ``mean`` and ``logit_mean`` fit nothing and are allowed; their "best single member on
validation" is then chosen on the test split, which ``ensemble.json`` says.

Output (``-o OUT``, default ``<first PATH>/ensemble_<method>``): ``ensemble.json``,
``predictions/{val,test}.npz`` + ``meta.json`` in a run's format, and copies of the members'
``data_stats.json`` and ``data_manifest.json``, so an ensemble dir is itself a member.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from imbal.errors import ImbalError
from imbal.kinds import BINARY

#: corrections that read validation to choose something (the rest are fixed maps of the test logits)
VAL_TUNED = ("la_tuned", "threshold")
POSTHOC_REFUSED = {"tau_norm": "it rescales a model's classifier weights, and an ensemble has no single head"}


def metrics_of(stats, logits2: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
    """imbal.metrics' numbers for two-column-or-more log-scores (binary: back to one logit)."""
    import torch

    from imbal.metrics import ClassificationMetrics

    m = ClassificationMetrics(stats)
    m.update(torch.from_numpy(task_logits(stats, logits2)), torch.from_numpy(np.asarray(targets)))
    return {**m.compute(), "num_samples": int(len(targets))}  # as a run's summary.json


def task_logits(stats, logits2: np.ndarray) -> np.ndarray:
    """The logits a run of this task stores: ``[N, C]``, or ``[N]`` (``z_1 - z_0``) for binary."""
    z = np.asarray(logits2, dtype=np.float64)
    return (z[:, 1] - z[:, 0] if stats.task == BINARY else z).astype(np.float32)


def parse_posthoc(specs: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """``name`` or ``name:key=value,key=value`` (values read as YAML) -> {name: params}."""
    import yaml

    from imbal.posthoc import CORRECTIONS

    out: dict[str, dict[str, Any]] = {}
    for spec in specs or []:
        for item in [spec] if ":" in spec else spec.split(","):
            name, _, rest = item.partition(":")
            name = name.strip()
            if name in POSTHOC_REFUSED:
                raise ImbalError(f"ensemble: --posthoc {name} does not apply to an ensemble: {POSTHOC_REFUSED[name]}")
            CORRECTIONS.get(name)  # one line naming the known corrections when unknown
            params: dict[str, Any] = {}
            for kv in filter(None, rest.split(",")):
                key, eq, value = kv.partition("=")
                if not eq:
                    raise ImbalError(f"ensemble: --posthoc '{spec}': expected name:key=value[,key=value], got '{kv}'")
                params[key.strip()] = yaml.safe_load(value)
            out[name] = params
    from imbal import posthoc as ph

    if hasattr(ph, "build"):  # the parameters checked as a run's posthoc node is (one line naming the value)
        ph.build({n: dict(p) for n, p in out.items()})
    return out


def _best_single(member_val: list[dict], objective: str) -> int:
    """The member with the best validation objective; ties: lower validation log-loss, then the first."""
    sign = -1.0 if objective == "log_loss" else 1.0
    keys = [(sign * float(v[objective]), -float(v["log_loss"]), -i) for i, v in enumerate(member_val)]
    return max(range(len(keys)), key=lambda i: keys[i])


def run_posthoc(names: dict[str, dict], stats, val2, yv, test2, yt) -> tuple[dict, dict, dict]:
    """Fit each correction on the ensemble's validation outputs, apply it to its test outputs."""
    import torch

    from imbal import posthoc as ph

    ctx = ph.PosthocContext(stats=stats, val_logits=torch.from_numpy(task_logits(stats, val2)),
                            val_targets=torch.from_numpy(np.asarray(yv)),
                            test_logits=torch.from_numpy(task_logits(stats, test2)),
                            test_targets=torch.from_numpy(np.asarray(yt)))
    results, arrays, skipped = {}, {}, {}
    for name, params in names.items():
        out = ph.CORRECTIONS.get(name)(ctx, **params)
        if not out:
            skipped[name] = f"not applicable to this data ({stats.task}, {stats.num_classes} classes" + (
                ", no known test prior)" if name == "prior_shift" else ")")
        for result, logits in out.items():
            z = logits.detach().cpu().numpy()
            z2 = np.stack([np.zeros_like(z), z], axis=1) if stats.task == BINARY else z
            arrays[result] = task_logits(stats, z2)
            results[result] = {**metrics_of(stats, z2, yt), **ctx.info.get(result, {})}
    return results, arrays, skipped


def build_ensemble(paths: Sequence[str | Path], out: str | Path | None = None, *, method: str = "mean",
                   objective: str = "log_loss", seed: int = 0, posthoc: Sequence[str] | None = None,
                   rounds: int = 50, folds: int = 5) -> dict[str, Any]:
    """Fit and score an ensemble of the runs under ``paths``; write OUT; return ``ensemble.json``'s content."""
    from imbal.ensemble import methods
    from imbal.ensemble.members import ENSEMBLE_FILE, load_members, read_split
    from imbal.io import write_json_atomic
    from imbal.runner.predictions import write_predictions
    from imbal.runner.rundir import MANIFEST_FILE
    from imbal.data.stats import STATS_FILE

    if method not in methods.METHODS:
        raise ImbalError(f"ensemble: --method '{method}' unknown; expected one of: {', '.join(methods.METHODS)}")
    if objective not in methods.OBJECTIVES:
        raise ImbalError(f"ensemble: --objective '{objective}' unknown; expected one of: "
                         f"{', '.join(methods.OBJECTIVES)}")
    corrections = parse_posthoc(posthoc)
    members = load_members(paths)
    out_dir = Path(out) if out is not None else Path(paths[0]) / f"ensemble_{method}"
    if out_dir.resolve() in {m.path for m in members}:
        raise ImbalError(f"ensemble: -o {out_dir} is one of the members; choose another output directory")
    stats = members[0].stats
    val_is_test = (stats.val_from or "") == "test"
    if val_is_test:
        why = (f"{members[0].path} has data.val_from=test (data_stats.json): its validation split is the test "
               "split, so fitting on it would tune on the test set")
        if method in methods.FITTED:
            raise ImbalError(f"ensemble: --method {method} fits on validation, but {why}; use --method mean "
                             "or logit_mean, or retrain with a held-out validation split (data.val_from=train)")
        tuned = [n for n in corrections if n in VAL_TUNED or n not in ("la", "prior_shift")]
        if tuned:
            raise ImbalError(f"ensemble: --posthoc {tuned[0]} is tuned on validation, but {why}")

    # 1. fit: validation files only
    read_fit: list[str] = []
    val_logits, yv = read_split(members, "val", read_fit)
    fitted = methods.fit(method, val_logits, yv, objective=objective, seed=seed, rounds=rounds, folds=folds)
    val2 = fitted.val_log_probs if method == "stacking" else methods.combine(val_logits, fitted)
    member_val = [metrics_of(stats, z, yv) for z in val_logits]

    # 2. score: test files, read after everything was fitted
    read_score: list[str] = []
    test_logits, yt = read_split(members, "test", read_score)
    test2 = methods.combine(test_logits, fitted)
    ph_results, ph_arrays, ph_skipped = run_posthoc(corrections, stats, val2, yv, test2, yt)
    member_test = [metrics_of(stats, z, yt) for z in test_logits]
    best = _best_single(member_val, objective)

    record: dict[str, Any] = {
        "schema": 1,
        "method": method,
        "objective": objective if method in ("weighted", "greedy") else None,
        "seed": seed,
        "data": members[0].data,
        "task": stats.task,
        "class_names": list(stats.class_names),
        "val_from": stats.val_from,
        "members": [{"path": str(m.path), "name": m.name, "kind": m.kind, "loss": m.loss, "seed": m.seed}
                    for m in members],
        "weights": None if fitted.weights is None else [float(w) for w in fitted.weights],
        "fit": fitted.info,
        "val": metrics_of(stats, val2, yv),
        "test": metrics_of(stats, test2, yt),
        "val_note": {"stacking": "out-of-fold (cross-fitted on validation folds)",
                     "weighted": "in-sample: the weights were fitted on these predictions",
                     "greedy": "in-sample: the selection was made on these predictions"}.get(method, "nothing fitted"),
        "posthoc": ph_results,
        "posthoc_skipped": ph_skipped,
        "posthoc_fitted_on": "the ensemble's validation outputs (from the files under files_read.fitting)",
        "member_metrics": [{"path": str(m.path), "name": m.name, "val": v, "test": t}
                           for m, v, t in zip(members, member_val, member_test)],
        "best_single": {"index": best, "path": str(members[best].path), "name": members[best].name,
                        "chosen_by": f"val {objective}" + (" (val_from=test: this is the test split)"
                                                           if val_is_test else ""),
                        "val": member_val[best], "test": member_test[best]},
        "files_read": {"fitting": read_fit, "scoring": read_score},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = {"val": {"targets": yv, "logits": task_logits(stats, val2)},
               "test": {"targets": yt, "logits": task_logits(stats, test2)}}
    write_predictions(out_dir, outputs, stats, posthoc=ph_arrays)
    for name in (STATS_FILE, MANIFEST_FILE):
        shutil.copyfile(members[0].path / name, out_dir / name)
    write_json_atomic(out_dir / ENSEMBLE_FILE, record)
    record["out_dir"] = str(out_dir)
    return record


def print_summary(record: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"imbal ensemble: {record['method']} of {len(record['members'])} members "
                        f"({record['data']})")
    for col in ("", "val bal. acc", "test bal. acc", "test macro-F1", "test log-loss"):
        table.add_column(col, justify="right" if col else "left")

    def row(label, val, test):
        table.add_row(label, f"{val['balanced_accuracy']:.4f}", f"{test['balanced_accuracy']:.4f}",
                      f"{test['macro_f1']:.4f}", f"{test['log_loss']:.4f}")

    row(f"ensemble ({record['method']})", record["val"], record["test"])
    b = record["best_single"]
    row(f"best single on val: {b['name']}", b["val"], b["test"])
    for name, res in record["posthoc"].items():
        table.add_row(f"ensemble + post-hoc {name}", "", f"{res['balanced_accuracy']:.4f}",
                      f"{res['macro_f1']:.4f}", f"{res['log_loss']:.4f}")
    console = Console()
    console.print(table)
    console.print(f"wrote {record['out_dir']} (ensemble.json, predictions/)", highlight=False, soft_wrap=True)


def cmd_ensemble(args: argparse.Namespace) -> int:
    record = build_ensemble(args.paths, args.out, method=args.method, objective=args.objective, seed=args.seed,
                            posthoc=args.posthoc, rounds=args.rounds, folds=args.folds)
    print_summary(record)
    return 0
