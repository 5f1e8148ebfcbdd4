"""``imbal report``'s comparisons: every configuration against a baseline, with a 95 % interval.

Within each data set, every configuration's metrics are compared with the baseline configuration's
(``--baseline loss=ce``; default: the data set's first row):

* **paired over seeds** when the two share at least two seeds: the differences ``d_s`` of the runs
  with the same seed, their mean and the t interval ``mean ± t(0.975, n-1) * sd(d) / sqrt(n)``
  (scipy.stats.t, ``sd`` with ddof=1); with fewer than 3 seeds the interval is marked as fragile;
* **paired bootstrap over test samples** when each has a single run (or they share exactly one
  seed): the stored ``predictions/test.npz`` of both runs, the same resampled test indices for both
  (``--bootstrap B`` resamples, seeded), the metric recomputed on each resample, and the 2.5 / 97.5
  percentiles of the differences.  The point difference is the one on the full test set.

A difference whose interval contains 0 is marked not significant (``n.s.``).  The bootstrap
recomputes metrics from the confusion matrix of hard predictions (argmax; binary: logit > 0):
accuracy, balanced accuracy and macro-F1 over the classes present in the resample's targets,
shot-group accuracy and minority recall from the per-class recalls; on the full test set they are
the numbers of imbal.metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from imbal.errors import ImbalError

FEW_SEEDS = 3
NOT_SIGNIFICANT = "n.s."


@dataclass
class Comparison:
    data: str
    row: int  # position in the report table
    baseline: int
    metric: str
    diff: float
    lo: float
    hi: float
    method: str  # "t (n seeds)", "bootstrap (B)", or "" with a note
    note: str = ""

    @property
    def significant(self) -> bool | None:
        if math.isnan(self.lo) or math.isnan(self.hi):
            return None
        return not (self.lo <= 0.0 <= self.hi)


# -- intervals --------------------------------------------------------------------------
def paired_t(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi) of the paired differences ``a - b``: ``mean ± t_{(1+level)/2, n-1} * sd / sqrt(n)``."""
    from scipy.stats import t

    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    n = len(d)
    if n < 2:
        raise ValueError("a paired t interval needs at least two pairs")
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    half = float(t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def hard_predictions(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits)
    return (z > 0).astype(np.int64) if z.ndim == 1 else z.argmax(axis=1)


def _recalls(cm: np.ndarray) -> np.ndarray:
    """Per-class recall ``[..., C]`` of confusion matrices ``[..., C, C]`` (NaN for a class absent)."""
    support = cm.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diagonal(cm, axis1=-2, axis2=-1) / support, np.nan)


def metric_from_cm(cm: np.ndarray, key: str, class_counts: Sequence[int] | None) -> np.ndarray:
    """The report metric ``key`` of confusion matrices ``[..., C, C]`` (rows: truth)."""
    from imbal.metrics.shots import shot_groups

    if key.startswith("posthoc_") and key.endswith("_balanced_accuracy"):
        key = "balanced_accuracy"
    rec = _recalls(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        if key == "accuracy":
            return np.diagonal(cm, axis1=-2, axis2=-1).sum(-1) / cm.sum(axis=(-2, -1))
        if key == "balanced_accuracy":
            return np.nanmean(rec, axis=-1)
        if key == "macro_f1":
            tp = np.diagonal(cm, axis1=-2, axis2=-1).astype(np.float64)
            denom = cm.sum(axis=-1) + cm.sum(axis=-2)
            f1 = np.where(cm.sum(axis=-1) > 0, 2 * tp / np.maximum(denom, 1), np.nan)
            return np.nanmean(f1, axis=-1)
        if class_counts is None:
            raise KeyError(key)
        if key == "minority_recall":
            return rec[..., int(np.argmin(class_counts))]
        groups = shot_groups(list(class_counts))
        if key in groups:
            return np.nanmean(rec[..., groups[key]], axis=-1)
    raise KeyError(key)


def _logits_for(arrays: dict, key: str) -> np.ndarray | None:
    if key.startswith("posthoc_") and key.endswith("_balanced_accuracy"):
        return arrays.get(f"posthoc_{key[len('posthoc_'):-len('_balanced_accuracy')]}")
    return arrays["logits"]


def paired_bootstrap(a: dict, b: dict, key: str, class_counts, n_boot: int, seed: int) -> tuple[float, float, float]:
    """(difference on the full test set, lo, hi) of ``key`` between two runs' test predictions."""
    y = np.asarray(a["targets"]).astype(np.int64).reshape(-1)
    za, zb = _logits_for(a, key), _logits_for(b, key)
    if za is None or zb is None:
        raise KeyError(key)
    pa, pb = hard_predictions(za), hard_predictions(zb)
    c = max(int(np.asarray(za).shape[1]) if np.asarray(za).ndim == 2 else 2, int(y.max()) + 1)
    n = len(y)

    def cms(idx: np.ndarray, p: np.ndarray) -> np.ndarray:
        rows = np.arange(idx.shape[0])[:, None] * c * c
        flat = (rows + y[idx] * c + p[idx]).ravel()
        return np.bincount(flat, minlength=idx.shape[0] * c * c).reshape(idx.shape[0], c, c)

    full = np.arange(n)[None, :]
    diff = float((metric_from_cm(cms(full, pa), key, class_counts) - metric_from_cm(cms(full, pb), key, class_counts))[0])
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    d = metric_from_cm(cms(idx, pa), key, class_counts) - metric_from_cm(cms(idx, pb), key, class_counts)
    d = d[~np.isnan(d)]
    if not len(d):
        return diff, math.nan, math.nan
    lo, hi = np.percentile(d, [2.5, 97.5])
    return diff, float(lo), float(hi)


# -- runs of each configuration -----------------------------------------------------------
def runs_per_row(paths: Sequence[str | Path], table, metrics) -> list[list[dict[str, Any]]]:
    """For each row of the report table: its runs as ``{"seed", "dir", "values": {metric: value}}``."""
    from imbal.reporting.sweep import _metric_value, _records, find_runs, load_summary

    files, _ = find_runs(paths)
    loaded = [(f, s) for f in files if not isinstance(s := load_summary(f), str)]
    df, extra = _records(loaded)
    ident = ["data", "model", "config", "loss", "loss_hparams", *extra]
    out: list[list[dict[str, Any]]] = []
    for _, row in table.iterrows():
        sel = np.ones(len(df), dtype=bool)
        for col in ident:
            sel &= (df[col].astype(str) == str(row[col])).to_numpy()
        runs = []
        for _, r in df[sel].iterrows():
            values = {}
            for m in metrics:
                v = _metric_value(r["summary"], m)
                values[m.key] = float(v) if isinstance(v, (int, float)) else math.nan
            runs.append({"seed": r["seed"], "dir": Path(r["path"]).parent, "values": values,
                         "class_counts": r["summary"].get("class_counts")})
        out.append(runs)
    return out


def select_baselines(table, spec: str | None) -> dict[str, int | None]:
    """data set -> row position of its baseline (None: no row matches ``spec`` in that data set)."""
    conds: list[tuple[str, str]] = []
    for part in filter(None, (spec or "").split(",")):
        key, eq, value = part.partition("=")
        if not eq or key.strip() not in table.columns or key.strip().endswith(("_mean", "_std")):
            allowed = [c for c in table.columns if not c.endswith(("_mean", "_std"))]
            raise ImbalError(f"report: --baseline '{part}': expected KEY=VALUE with KEY one of: {', '.join(allowed)}")
        conds.append((key.strip(), value.strip()))
    out: dict[str, int | None] = {}
    for data in dict.fromkeys(table["data"]):
        rows = [i for i in range(len(table)) if table["data"].iloc[i] == data]
        match = [i for i in rows if all(str(table[k].iloc[i]) == v for k, v in conds)]
        if len(match) > 1 and conds:
            names = ", ".join(str(table["config"].iloc[i]) for i in match)
            raise ImbalError(f"report: --baseline {spec} matches {len(match)} configurations of data '{data}' "
                             f"({names}); add a key, e.g. config=...")
        out[data] = match[0] if match else None
    if conds and all(v is None for v in out.values()):
        raise ImbalError(f"report: --baseline {spec} matches no configuration (configurations: "
                         f"{', '.join(dict.fromkeys(str(c) for c in table['config']))})")
    return out


def _read_test(run_dir: Path) -> dict | None:
    f = run_dir / "predictions" / "test.npz"
    if not f.is_file():
        return None
    with np.load(f, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def compare_pair(base_runs, runs, key, n_boot: int, seed: int) -> tuple[float, float, float, str, str]:
    """(diff, lo, hi, method, note) of metric ``key``: configuration ``runs`` minus ``base_runs``."""
    by_seed = {r["seed"]: r for r in runs}
    base_by_seed = {r["seed"]: r for r in base_runs}
    common = [s for s in base_by_seed if s in by_seed
              and not math.isnan(by_seed[s]["values"][key]) and not math.isnan(base_by_seed[s]["values"][key])]
    nan = math.nan
    if len(common) >= 2:
        d, lo, hi = paired_t([by_seed[s]["values"][key] for s in common],
                             [base_by_seed[s]["values"][key] for s in common])
        note = f"fewer than {FEW_SEEDS} seeds: a wide, fragile interval" if len(common) < FEW_SEEDS else ""
        return d, lo, hi, f"t ({len(common)} seeds)", note
    if len(runs) == 1 and len(base_runs) == 1:
        pair = (runs[0], base_runs[0])
    elif len(common) == 1:
        pair = (by_seed[common[0]], base_by_seed[common[0]])
    else:
        return nan, nan, nan, "", "seeds do not match: no paired comparison"
    point = pair[0]["values"][key] - pair[1]["values"][key]
    a, b = _read_test(pair[0]["dir"]), _read_test(pair[1]["dir"])
    if a is None or b is None:
        return point, nan, nan, "", "no predictions/test.npz: no bootstrap"
    if len(a["targets"]) != len(b["targets"]) or not np.array_equal(a["targets"], b["targets"]):
        return point, nan, nan, "", "different test splits: no paired bootstrap"
    try:
        d, lo, hi = paired_bootstrap(a, b, key, pair[0]["class_counts"], n_boot, seed)
    except KeyError:
        return point, nan, nan, "", f"{key} cannot be recomputed from the predictions"
    return d, lo, hi, f"bootstrap ({n_boot})", ""


def compare(paths, rep, baseline: str | None = None, n_boot: int = 1000, seed: int = 0) -> list[Comparison]:
    """Every configuration against its data set's baseline, for every metric but wall time."""
    if n_boot < 10:
        raise ImbalError(f"report: --bootstrap must be at least 10 resamples, got {n_boot}")
    table = rep.table
    metrics = [m for m in rep.metrics if m.key != "wall_time_s"]
    runs = runs_per_row(paths, table, metrics)
    out: list[Comparison] = []
    for data, base in select_baselines(table, baseline).items():
        if base is None:
            continue
        for i in range(len(table)):
            if table["data"].iloc[i] != data or i == base:
                continue
            for m in metrics:
                d, lo, hi, method, note = compare_pair(runs[base], runs[i], m.key, n_boot, seed)
                out.append(Comparison(data, i, base, m.key, d, lo, hi, method, note))
    return out


def _fmt(c: Comparison, digits: int) -> str:
    if math.isnan(c.diff):
        return "–"
    text = f"{c.diff:+.{digits}f}"
    if c.significant is None:
        return text
    text += f" [{c.lo:+.{digits}f}, {c.hi:+.{digits}f}]"
    return text if c.significant else f"{text} {NOT_SIGNIFICANT}"


def comparison_rows(rep, comps: list[Comparison]) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, cells and notes of the differences table (one row per compared configuration)."""
    metrics = [m for m in rep.metrics if m.key != "wall_time_s"]
    t = rep.table
    header = ["data", "configuration", "baseline", "interval", *[f"Δ {m.label}" for m in metrics]]
    rows: dict[int, dict[str, Comparison]] = {}
    for c in comps:
        rows.setdefault(c.row, {})[c.metric] = c
    cells, notes = [], []
    for i, by_metric in rows.items():
        first = next(iter(by_metric.values()))
        methods = sorted({c.method for c in by_metric.values() if c.method}) or ["none"]
        cells.append([t["data"].iloc[i], str(t["config"].iloc[i]), str(t["config"].iloc[first.baseline]),
                      ", ".join(methods),
                      *[_fmt(by_metric[m.key], m.digits) if m.key in by_metric else "–" for m in metrics]])
        for note in dict.fromkeys(c.note for c in by_metric.values() if c.note):
            notes.append(f"{t['config'].iloc[i]} vs {t['config'].iloc[first.baseline]} ({t['data'].iloc[i]}): {note}")
    return header, cells, notes


def add_columns(table, comps: list[Comparison]):
    """report.csv's columns: ``<metric>_diff``, ``_diff_lo``, ``_diff_hi``, ``_diff_significant``, ``baseline``."""
    t = table.copy()
    for c in comps:
        pos = t.index[c.row]
        t.loc[pos, "baseline"] = str(table["config"].iloc[c.baseline])
        t.loc[pos, f"{c.metric}_diff"] = c.diff
        t.loc[pos, f"{c.metric}_diff_lo"] = c.lo
        t.loc[pos, f"{c.metric}_diff_hi"] = c.hi
        t.loc[pos, f"{c.metric}_diff_significant"] = "" if c.significant is None else str(c.significant).lower()
        t.loc[pos, f"{c.metric}_diff_method"] = c.method
    return t


def plot_differences(rep, comps: list[Comparison], path: Path) -> None:
    """One panel per metric: each configuration's difference from the baseline with its 95 % interval
    (error bars); a difference whose interval contains 0 is grey and labelled n.s."""
    import matplotlib
    from matplotlib.figure import Figure

    metrics = [m for m in rep.metrics if m.key != "wall_time_s" and any(c.metric == m.key for c in comps)]
    rows = list(dict.fromkeys(c.row for c in comps))
    labels = [f"{rep.table['config'].iloc[i]} ({rep.table['data'].iloc[i]})" for i in rows]
    ncols = 1 if len(metrics) == 1 else 2
    nrows = -(-len(metrics) // ncols)
    with matplotlib.rc_context({"font.size": 10}):
        fig = Figure(figsize=(6.0 * ncols, 0.5 * len(rows) * nrows + 1.6 * nrows + 0.6), dpi=100,
                     layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax in axes[len(metrics):]:
            ax.set_visible(False)
        for ax, m in zip(axes, metrics):
            for y, i in enumerate(rows):
                c = next((c for c in comps if c.row == i and c.metric == m.key), None)
                if c is None or math.isnan(c.diff):
                    continue
                sig = c.significant
                colour = "tab:blue" if sig else "0.55"
                err = None if sig is None else [[c.diff - c.lo], [c.hi - c.diff]]
                ax.errorbar(c.diff, y, xerr=err, fmt="o", color=colour, capsize=4)
                if sig is False:
                    ax.annotate(NOT_SIGNIFICANT, (c.diff, y), textcoords="offset points", xytext=(0, 6),
                                ha="center", fontsize=8, color=colour)
            ax.axvline(0.0, color="black", lw=0.8)
            ax.set_yticks(range(len(rows)), labels)
            ax.set_ylim(-0.7, len(rows) - 0.3)
            ax.invert_yaxis()
            ax.set_title(f"test {m.label}: Δ from the baseline")
            ax.tick_params(axis="x", labelsize=8)
            ax.grid(True, axis="x", alpha=0.3)
        base = ", ".join(dict.fromkeys(str(rep.table["config"].iloc[c.baseline]) for c in comps))
        fig.suptitle(f"difference from the baseline ({base}) with 95 % intervals; grey, n.s.: the interval contains 0")
        fig.savefig(path, dpi=100)
