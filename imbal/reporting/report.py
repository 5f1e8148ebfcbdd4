"""``imbal report PATH...``: compare configurations across seeds from the runs' ``summary.json`` files.

Reads every ``summary.json`` under the given run or sweep directories (or the
files themselves) and writes, in the output directory:

* ``report.csv``: one row per configuration (data, model, loss and its
  hyper-parameters, plus any other config key that differs between runs of
  the same data/model/loss), with ``<metric>_mean`` and ``<metric>_std`` over
  seeds and a ``best`` column naming the metrics where the row is best;
* ``report.md``: the same table as ``mean ± std``, best per column in bold,
  followed by the runs that were not included and why;
* ``report.png``: bars with error bars per configuration, grouped by data set;

and prints the table.  ``std`` is the *sample* standard deviation (``ddof=1``,
as pandas computes it); with one seed it is empty.  "Best" is per data set:
the highest mean (the lowest for wall time), compared at the precision shown,
so visible ties are all marked.

A run directory (one holding ``.hydra/``) without ``summary.json`` failed or
has not finished; a ``summary.json`` that is not valid JSON or lacks test
metrics is corrupt.  Both are listed by path, never dropped silently.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Sequence

from imbal.errors import ImbalError
from imbal.metrics.shots import MEDIUM_MIN
from imbal.reporting.sweep import Report, build_report


# -- output -----------------------------------------------------------------------
def _cell(mean: float, std: float, digits: int) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def display_rows(rep: Report) -> tuple[list[str], list[list[str]], list[list[bool]]]:
    """Header, cells and best flags of the human-readable table."""
    t = rep.table
    extra = [c for c in t.columns if c not in ("data", "model", "config", "loss", "loss_hparams", "n_seeds", "seeds")
             and not c.endswith(("_mean", "_std"))]
    header = ["data", "model", "loss", *extra, "seeds", *[m.label for m in rep.metrics]]
    cells, flags = [], []
    for pos, (_, row) in enumerate(t.iterrows()):
        ident = [row["data"], row["model"], row["config"], *[str(row[c]) for c in extra], str(row["n_seeds"])]
        vals = [_cell(row[f"{m.key}_mean"], row[f"{m.key}_std"], m.digits) for m in rep.metrics]
        cells.append(ident + vals)
        flags.append([False] * len(ident) + [pos in rep.best[m.key] for m in rep.metrics])
    return header, cells, flags


def write_markdown(rep: Report, path: Path, sources: Sequence[str | Path], png_name: str | None = "report.png") -> None:
    header, cells, flags = display_rows(rep)
    lines = ["# imbal report", ""]
    lines.append(f"{rep.runs} runs from {', '.join(f'`{s}`' for s in sources)}. Test-split metrics, "
                 "mean ± sample std (ddof=1) over seeds; **bold**: best in its data set "
                 "(highest, lowest for wall time). Loss hyper-parameters not shown are the same for every "
                 "run of that loss (report.csv has them all).")
    lines.append("")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" if i < len(header) - len(rep.metrics) else "---:" for i in range(len(header))) + "|")
    for row, fl in zip(cells, flags):
        lines.append("| " + " | ".join(f"**{c}**" if f else c for c, f in zip(row, fl)) + " |")
    if png_name:
        lines += ["", f"![bar chart of the table]({png_name})"]
    lines += ["", "## Runs not included", ""]
    if rep.problems:
        lines += [f"- `{p.path}`: {p.reason}" for p in rep.problems]
    else:
        lines.append("None: every run found has a complete summary.json.")
    path.write_text("\n".join(lines) + "\n")


def write_csv(rep: Report, path: Path) -> None:
    t = rep.table.copy()
    t["best"] = [";".join(m.key for m in rep.metrics if pos in rep.best[m.key]) for pos in range(len(t))]
    t.to_csv(path, index=False, float_format="%.6g")


PANEL_TITLES = {
    "balanced_accuracy": "balanced accuracy",
    "macro_f1": "macro-F1",
    "few_shot_accuracy": f"few-shot accuracy (classes with < {MEDIUM_MIN} training samples)",
    "minority_recall": "test recall of the class with the fewest training samples",
}


def plot_report(rep: Report, path: Path) -> None:
    """Bars (mean) with error bars (sample std) per configuration, grouped by data set."""
    import matplotlib
    from matplotlib.figure import Figure

    t = rep.table
    panels = [m for m in rep.metrics if m.key in PANEL_TITLES or m.key.startswith("posthoc_")]
    extra = [c for c in t.columns if c not in ("data", "model", "config", "loss", "loss_hparams", "n_seeds", "seeds")
             and not c.endswith(("_mean", "_std"))]
    several_models = t["model"].nunique() > 1
    keys = [
        " / ".join([r["config"], *([r["model"]] if several_models else []), *[f"{c}={r[c]}" for c in extra]])
        for _, r in t.iterrows()
    ]
    labels = list(dict.fromkeys(keys))
    colours = matplotlib.colormaps["tab10" if len(labels) <= 10 else "tab20"]
    datasets = list(dict.fromkeys(t["data"]))
    # x positions: the bars of a data set side by side, a gap between data sets
    xs, centres, x = [], [], 0.0
    for data in datasets:
        rows = [i for i in range(len(t)) if t["data"].iloc[i] == data]
        first = x
        for i in rows:
            xs.append((i, x))
            x += 1.0
        centres.append((first + x - 1.0) / 2)
        x += 0.8
    ncols = 1 if len(panels) == 1 else 2
    nrows = -(-len(panels) // ncols)
    panel_w = max(5.5, 1.4 + 0.75 * len(t))
    value_fs = 9 if len(t) <= 8 else 7
    with matplotlib.rc_context({"font.size": 11, "axes.titlesize": 12}):
        fig = Figure(figsize=(panel_w * ncols, 4.3 * nrows + 0.9), dpi=100, layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        for ax, m in zip(axes, panels):
            for i, xi in xs:
                row = t.iloc[i]
                mean, std = row[f"{m.key}_mean"], row[f"{m.key}_std"]
                if math.isnan(mean):
                    continue
                li = labels.index(keys[i])
                ax.bar(xi, mean, 0.85, color=colours(li), yerr=None if math.isnan(std) else std, capsize=4,
                       error_kw={"lw": 1.2}, label=labels[li])
                top = mean + (0 if math.isnan(std) else std)
                ax.text(xi, top + 0.015, f"{mean:.3f}", ha="center", va="bottom", fontsize=value_fs)
            ax.set_xticks(centres, datasets)
            ax.set_ylim(0, 1.1)
            ax.set_ylabel("mean ± std over seeds")
            title = PANEL_TITLES.get(m.key) or f"post-hoc {m.key[len('posthoc_'):-len('_balanced_accuracy')]}: balanced accuracy"
            ax.set_title(f"test {title}")
            ax.grid(True, axis="y", alpha=0.3)
        handles, names = [], []
        for ax in axes[: len(panels)]:
            for h, n in zip(*ax.get_legend_handles_labels()):
                if n not in names:
                    handles.append(h)
                    names.append(n)
        fig.legend(handles, names, loc="outside lower center", ncols=min(len(names), 4), title="loss")
        n = int(t["n_seeds"].max())
        fig.suptitle(f"imbal report: {rep.runs} runs, {len(t)} configurations, up to {n} seeds each", fontsize=13)
        fig.savefig(path, dpi=100)


def _console():
    """Rich's console; a wide one when the output is not a terminal (a log file, a pipe)."""
    import sys

    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=240)


def print_table(rep: Report, console=None) -> None:
    from rich.table import Table

    console = console or _console()
    header, cells, flags = display_rows(rep)
    table = Table(title=f"imbal report ({rep.runs} runs; mean ± std over seeds; bold: best per data set)")
    n_ident = len(header) - len(rep.metrics)
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i < n_ident else "right", no_wrap=i >= n_ident)
    for row, fl in zip(cells, flags):
        table.add_row(*[f"[bold green]{c}[/bold green]" if f else c for c, f in zip(row, fl)])
    console.print(table)
    for p in rep.problems:
        console.print(f"[yellow]not included:[/yellow] {p.path}: {p.reason}", highlight=False, soft_wrap=True)


def write_report(paths: Sequence[str | Path], out_dir: str | Path, name: str = "report", console=None) -> Report:
    """Build the report of ``paths`` and write ``<name>.md``, ``.csv``, ``.png`` in ``out_dir``."""
    rep = build_report(paths)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, csv, png = out / f"{name}.md", out / f"{name}.csv", out / f"{name}.png"
    write_csv(rep, csv)
    plot_report(rep, png)
    write_markdown(rep, md, paths, png_name=png.name)
    rep.files = [md, csv, png]
    print_table(rep, console)
    return rep


# -- command line -------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="run or sweep directories (or summary.json files)")
    parser.add_argument("-o", "--out", default=None,
                        help="where to write report.md/.csv/.png (default: PATH when there is one directory, else .)")
    parser.add_argument("--name", default="report", help="file name stem of the outputs (default: report)")
    return parser


def cmd_report(args: argparse.Namespace) -> int:
    from imbal.extras import require_all

    require_all(("pandas", "matplotlib"), "plots", feature="imbal report")
    console = _console()
    out = args.out
    if out is None:
        out = args.paths[0] if len(args.paths) == 1 and Path(args.paths[0]).is_dir() else "."
    rep = write_report(args.paths, out, name=args.name, console=console)
    console.print(f"wrote {', '.join(str(f) for f in rep.files)}", highlight=False, soft_wrap=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m imbal.reporting.report PATH...`` (the same as ``imbal report PATH...``)."""
    from imbal.errors import exit_with

    parser = add_arguments(argparse.ArgumentParser(prog="imbal report", description=__doc__.split("\n\n")[0]))
    args = parser.parse_args(argv)
    try:
        return cmd_report(args)
    except ImbalError as err:
        exit_with(err)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
