"""Collecting a sweep: find the runs' ``summary.json`` files, read them through
:class:`~imbal.runner.summary.RunSummary`, and aggregate them per configuration over seeds
(:func:`build_report`).  The outputs and the ``imbal report`` command are in
:mod:`imbal.reporting.report`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from imbal.errors import ImbalError

SUMMARY = "summary.json"


@dataclass(frozen=True)
class Metric:
    key: str  # column stem in report.csv
    label: str  # header in report.md and the console
    path: tuple[str, ...]  # where in summary.json
    higher_is_better: bool = True
    digits: int = 3


BASE_METRICS = (
    Metric("balanced_accuracy", "bal. acc", ("test", "balanced_accuracy")),
    Metric("macro_f1", "macro-F1", ("test", "macro_f1")),
    Metric("many_shot_accuracy", "many", ("test", "many_shot_accuracy")),
    Metric("medium_shot_accuracy", "medium", ("test", "medium_shot_accuracy")),
    Metric("few_shot_accuracy", "few", ("test", "few_shot_accuracy")),
    # recall of the class with the fewest training samples (summary: class_counts, test.per_class_recall)
    Metric("minority_recall", "minority recall", ("test", "per_class_recall", "<minority>")),
)
WALL_TIME = Metric("wall_time_s", "wall time (s)", ("wall_time_s",), higher_is_better=False, digits=1)

#: Config keys that never distinguish configurations.
IGNORED_TOP = ("seed", "run_dir", "logger", "callbacks", "hydra", "loss", "optimized_metric", "resume", "init_from")


@dataclass
class Problem:
    path: Path
    reason: str


@dataclass
class Report:
    table: Any  # pandas.DataFrame, one row per configuration
    metrics: list[Metric]
    best: dict[str, set[int]]  # metric key -> row positions marked best
    problems: list[Problem] = field(default_factory=list)
    runs: int = 0
    files: list[Path] = field(default_factory=list)


# -- finding runs -------------------------------------------------------------
def _visible(path: Path, root: Path) -> bool:
    """Not inside a hidden directory (``.hydra``, ``.git``) below ``root``."""
    return not any(part.startswith(".") for part in path.relative_to(root).parts[:-1])


def find_runs(paths: Sequence[str | Path]) -> tuple[list[Path], list[Problem]]:
    """``summary.json`` files under ``paths``, and the run dirs that have none."""
    summaries: dict[Path, None] = {}
    problems: list[Problem] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise ImbalError(f"{p}: no such file or directory; expected a run or sweep directory or a {SUMMARY}")
        if p.is_file():
            if p.name != SUMMARY:
                raise ImbalError(f"{p}: not a {SUMMARY}; expected a run or sweep directory or a {SUMMARY}")
            summaries[p.resolve()] = None
            continue
        for s in sorted(p.rglob(SUMMARY)):
            if _visible(s, p):
                summaries[s.resolve()] = None
        for hydra_dir in sorted(p.rglob(".hydra")):
            run = hydra_dir.parent
            if hydra_dir.is_dir() and not (run / SUMMARY).exists() and _visible(hydra_dir, p):
                problems.append(Problem(run.resolve(), "no summary.json: the run failed or has not finished"))
    if not summaries and not problems:
        raise ImbalError(f"no {SUMMARY} under {', '.join(map(str, paths))}; expected run dirs written by train.py")
    return list(summaries), problems


def _dig(d: Any, path: Iterable[str]) -> Any:
    for k in path:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _metric_value(s: dict, m: Metric) -> Any:
    """The value of ``m`` in summary ``s``; ``<minority>`` picks the rarest training class's entry."""
    if m.path[-1] != "<minority>":
        return _dig(s, m.path)
    values, counts = _dig(s, m.path[:-1]), s.get("class_counts")
    if not isinstance(values, list) or not isinstance(counts, list) or len(values) != len(counts) or not counts:
        return None
    return values[min(range(len(counts)), key=lambda i: counts[i])]


def load_summary(path: Path) -> dict | str:
    """The summary, or a one-line reason why it cannot be used."""
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        return f"corrupt summary.json: {exc.msg} at line {exc.lineno} column {exc.colno}"
    except (OSError, UnicodeDecodeError) as exc:
        return f"unreadable summary.json: {exc}"
    if not isinstance(data, dict):
        return "corrupt summary.json: expected a JSON object"
    value = _dig(data, ("test", "balanced_accuracy"))
    if not isinstance(value, (int, float)):
        return "corrupt summary.json: no number at test.balanced_accuracy"
    from imbal.runner.summary import RunSummary

    try:  # one schema for every version: names filled in, data extras under data_extra
        return RunSummary.from_dict(data, where=str(path)).to_dict()
    except ImbalError as exc:
        return f"corrupt summary.json: {exc}"


# -- configurations -------------------------------------------------------------
def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: json.dumps(d, sort_keys=True) if isinstance(d, (list, dict)) else d}


def _fmt_value(v: Any) -> str:
    return "None" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def _records(summaries: list[tuple[Path, dict]]):
    """One flat record per run: identity columns, metric values, path."""
    import pandas as pd

    rows = []
    for path, s in summaries:
        cfg = s["config"] if isinstance(s["config"], dict) else {}
        hp = s["loss_hparams"] if isinstance(s["loss_hparams"], dict) else {}
        run_dir = str(cfg.get("run_dir") or path.parent)
        seed = s["seed"]
        other = {
            k: v
            for k, v in _flatten({k: v for k, v in cfg.items() if k not in IGNORED_TOP}).items()
            if not (isinstance(v, str) and run_dir in v)
        }
        stage1 = s.get("init_from")
        if isinstance(stage1, dict):  # a stage-2 run: its stage-1 run's loss, not its (per-seed) path
            other["init_from.loss"] = stage1.get("loss")
        rows.append(
            {
                "data": str(s["data"]),
                "model": str(s["model"]),
                "loss": str(s["loss"]),
                "hp": hp,
                "seed": seed,
                "other": other,
                "summary": s,
                "path": path,
            }
        )
    df = pd.DataFrame(rows)
    base = ["data", "model", "loss"]
    # Loss hyper-parameters and other keys that differ between runs of one data/model/loss.
    hp_shown: dict[str, list[str]] = {}
    extra: list[str] = []
    for _, grp in df.groupby(base, sort=False):
        for key in sorted({k for hp in grp["hp"] for k in hp}):
            if len({json.dumps(hp.get(key), sort_keys=True) for hp in grp["hp"]}) > 1:
                hp_shown.setdefault(grp["loss"].iloc[0], []).append(key)
        for key in sorted({k for o in grp["other"] for k in o}):
            values = [o.get(key) for o in grp["other"]]
            if key not in extra and len({json.dumps(v) for v in values}) > 1:
                # A key that just repeats the seed (data.seed: ${seed}) is not a configuration.
                if all(v == sd for v, sd in zip(values, grp["seed"])):
                    continue
                extra.append(key)
    df["loss_hparams"] = [json.dumps(hp, sort_keys=True) for hp in df["hp"]]
    df["config"] = [
        loss + (" (" + ", ".join(f"{k}={_fmt_value(hp.get(k))}" for k in hp_shown.get(loss, [])) + ")"
                if hp_shown.get(loss) else "")
        for loss, hp in zip(df["loss"], df["hp"])
    ]
    for key in extra:
        df[key] = [_fmt_value(o.get(key)) for o in df["other"]]
    # what names the recipe (stage, mixing, optimizer class, sampler, ...) joins the label, so the
    # comparison rows of two "ce" configurations can be told apart
    named = [k for k in extra if k.endswith((".name", "._target_"))]
    if named:
        df["config"] = [
            label + "".join(f" {k.rsplit('.', 1)[0] if k.endswith('.name') else 'optimizer'}="
                            f"{str(o.get(k)).rsplit('.', 1)[-1]}"
                            for k in named if o.get(k) not in (None, "none"))
            for label, o in zip(df["config"], df["other"])
        ]
    return df, extra


def _metrics_present(summaries: list[dict]) -> list[Metric]:
    metrics = [m for m in BASE_METRICS if any(isinstance(_metric_value(s, m), (int, float)) for s in summaries)]
    posthoc: list[str] = []
    for s in summaries:
        for name in s.get("posthoc") or {}:
            if name not in posthoc:
                posthoc.append(name)
    for name in posthoc:
        metrics.append(Metric(f"posthoc_{name}_balanced_accuracy", f"post-hoc {name} bal. acc",
                              ("posthoc", name, "balanced_accuracy")))
    metrics.append(WALL_TIME)
    return metrics


def aggregate(summaries: list[tuple[Path, dict]]) -> tuple[Any, list[Metric], list[str]]:
    """The per-configuration table: identity columns, n_seeds, seeds, <metric>_mean/_std."""
    import pandas as pd

    df, extra = _records(summaries)
    metrics = _metrics_present([s for _, s in summaries])
    for m in metrics:
        df[m.key] = [float(v) if isinstance(v := _metric_value(s, m), (int, float)) else math.nan
                     for s in df["summary"]]
    ident = ["data", "model", "config", "loss", "loss_hparams", *extra]
    grouped = df.groupby(ident, sort=True, dropna=False)
    table = grouped.agg(
        n_seeds=("seed", "size"),
        seeds=("seed", lambda s: " ".join(sorted((str(x) for x in s), key=lambda v: (len(v), v)))),
        **{f"{m.key}_mean": (m.key, "mean") for m in metrics},
        **{f"{m.key}_std": (m.key, "std") for m in metrics},  # pandas: ddof=1
    ).reset_index()
    order = ["data", "model", "config", "loss", "loss_hparams", *extra, "n_seeds", "seeds"]
    for m in metrics:
        order += [f"{m.key}_mean", f"{m.key}_std"]
    return pd.DataFrame(table[order]), metrics, extra


def best_rows(table, metrics: list[Metric]) -> dict[str, set[int]]:
    """Row positions holding the best mean per metric within each data set (ties at shown precision).

    A data set with a single configuration gets no mark: there is nothing to compare.
    """
    best: dict[str, set[int]] = {}
    for m in metrics:
        col = table[f"{m.key}_mean"].round(m.digits)
        marked: set[int] = set()
        for _, idx in table.groupby("data").groups.items():
            vals = col.loc[idx].dropna()
            if len(vals) < 2:  # a lone configuration is not "best" of anything
                continue
            target = vals.max() if m.higher_is_better else vals.min()
            marked |= {table.index.get_loc(i) for i in vals.index[vals == target]}
        best[m.key] = marked
    return best


def build_report(paths: Sequence[str | Path]) -> Report:
    files, problems = find_runs(paths)
    loaded: list[tuple[Path, dict]] = []
    for f in files:
        s = load_summary(f)
        if isinstance(s, str):
            problems.append(Problem(f, s))
        else:
            loaded.append((f, s))
    if not loaded:
        listing = "; ".join(f"{p.path}: {p.reason}" for p in problems)
        raise ImbalError(f"no complete run under {', '.join(map(str, paths))} ({listing})")
    table, metrics, _ = aggregate(loaded)
    return Report(table, metrics, best_rows(table, metrics), problems, runs=len(loaded))
