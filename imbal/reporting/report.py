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


def write_markdown(rep: Report | None, path: Path, sources: Sequence[str | Path], png_name: str | None = "report.png",
                   comps: list | None = None, diff_png: str | None = None, ensembles: list | None = None) -> None:
    lines = ["# imbal report", ""]
    if rep is None:  # ensemble dirs only
        lines += ensemble_section(ensembles or [])
        path.write_text("\n".join(lines) + "\n")
        return
    header, cells, flags = display_rows(rep)
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
    if comps:
        lines += ["", *difference_section(rep, comps, diff_png)]
    if ensembles:
        lines += ["", *ensemble_section(ensembles)]
    lines += ["", "## Runs not included", ""]
    if rep.problems:
        lines += [f"- `{p.path}`: {p.reason}" for p in rep.problems]
    else:
        lines.append("None: every run found has a complete summary.json.")
    path.write_text("\n".join(lines) + "\n")


def write_csv(rep: Report, path: Path, comps: list | None = None) -> None:
    from imbal.reporting.compare import add_columns

    t = add_columns(rep.table, comps or [])
    t["best"] = [";".join(m.key for m in rep.metrics if pos in rep.best[m.key]) for pos in range(len(t))]
    t.to_csv(path, index=False, float_format="%.6g")


def difference_section(rep: Report, comps: list, diff_png: str | None) -> list[str]:
    """report.md's differences against the baseline (imbal/reporting/compare.py)."""
    from imbal.reporting.compare import NOT_SIGNIFICANT, comparison_rows

    header, cells, notes = comparison_rows(rep, comps)
    lines = ["## Differences against the baseline", "",
             "Test metric of each configuration minus the baseline's, with a 95 % interval: paired t over the "
             "seeds both share (scipy.stats.t, sd with ddof=1), or a paired bootstrap over the test samples for "
             f"single runs. `{NOT_SIGNIFICANT}`: the interval contains 0.", "",
             "| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i < 4 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    if diff_png:
        lines += ["", f"![differences from the baseline with 95 % intervals]({diff_png})"]
    return lines


def find_ensembles(paths: Sequence[str | Path]) -> list[tuple[Path, dict]]:
    """``ensemble.json`` files (written by ``imbal ensemble``) under ``paths``, read."""
    import json

    found: dict[Path, dict] = {}
    for raw in paths:
        p = Path(raw)
        if not p.is_dir():
            continue
        for f in sorted(p.rglob("ensemble.json")):
            if any(part.startswith(".") for part in f.relative_to(p).parts[:-1]):
                continue
            try:
                found[f.resolve().parent] = json.loads(f.read_text())
            except (OSError, ValueError) as exc:
                raise ImbalError(f"{f}: not valid JSON ({exc}); expected the output of imbal ensemble") from None
    return list(found.items())


def _bal(d: dict | None) -> str:
    v = (d or {}).get("balanced_accuracy")
    return "–" if not isinstance(v, (int, float)) else f"{v:.3f}"


def ensemble_rows(ensembles: list[tuple[Path, dict]]) -> tuple[list[str], list[list[str]]]:
    header = ["ensemble", "method", "objective", "members", "val bal. acc", "test bal. acc",
              "best single (on val)", "its val bal. acc", "its test bal. acc", "post-hoc test bal. acc"]
    cells = []
    for path, e in ensembles:
        b = e.get("best_single") or {}
        ph = ", ".join(f"{k} {_bal(v)}" for k, v in (e.get("posthoc") or {}).items()) or "–"
        cells.append([path.name, str(e.get("method")), str(e.get("objective") or "–"), str(len(e.get("members", []))),
                      _bal(e.get("val")), _bal(e.get("test")), str(b.get("name", "–")), _bal(b.get("val")),
                      _bal(b.get("test")), ph])
    return header, cells


def ensemble_section(ensembles: list[tuple[Path, dict]]) -> list[str]:
    header, cells = ensemble_rows(ensembles)
    lines = ["## Ensembles", "",
             "Written by `imbal ensemble`: fitted on the members' validation predictions only, scored once on "
             "test; the best single member is chosen on validation (ensemble.json lists the files read).", "",
             "| " + " | ".join(header) + " |", "|" + "|".join("---" if i < 4 or i == 6 else "---:"
                                                           for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(c) + " |" for c in cells]
    lines += ["", *[f"- `{path.name}`: {path}" for path, _ in ensembles]]
    return lines


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


def _print_rows(console, title: str, header: list[str], cells: list[list[str]], n_ident: int) -> None:
    from rich.table import Table

    table = Table(title=title)
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i < n_ident else "right", no_wrap=i >= n_ident)
    for row in cells:
        table.add_row(*row)
    console.print(table)


def print_table(rep: Report | None, console=None, comps: list | None = None, ensembles: list | None = None) -> None:
    from rich.table import Table

    console = console or _console()
    if rep is not None:
        header, cells, flags = display_rows(rep)
        table = Table(title=f"imbal report ({rep.runs} runs; mean ± std over seeds; bold: best per data set)")
        n_ident = len(header) - len(rep.metrics)
        for i, h in enumerate(header):
            table.add_column(h, justify="left" if i < n_ident else "right", no_wrap=i >= n_ident)
        for row, fl in zip(cells, flags):
            table.add_row(*[f"[bold green]{c}[/bold green]" if f else c for c, f in zip(row, fl)])
        console.print(table)
    if rep is not None and comps:
        from imbal.reporting.compare import comparison_rows

        header, cells, notes = comparison_rows(rep, comps)
        _print_rows(console, "difference from the baseline, 95 % interval (n.s.: contains 0)", header, cells, 4)
        for note in notes:
            console.print(f"note: {note}", highlight=False, soft_wrap=True)
    if ensembles:
        _print_rows(console, "ensembles (imbal ensemble)", *ensemble_rows(ensembles), n_ident=4)
    for p in rep.problems if rep is not None else []:
        console.print(f"[yellow]not included:[/yellow] {p.path}: {p.reason}", highlight=False, soft_wrap=True)


def write_report(paths: Sequence[str | Path], out_dir: str | Path, name: str = "report", console=None,
                 baseline: str | None = None, bootstrap: int = 1000, seed: int = 0) -> Report | None:
    """Build the report of ``paths`` and write ``<name>.md``, ``.csv``, ``.png`` (and ``<name>_diff.png``
    with the differences against the baseline) in ``out_dir``.  Ensemble dirs under ``paths`` get a
    section of their own; with nothing but ensembles, only ``<name>.md`` is written (returns None)."""
    from imbal.reporting.compare import compare, plot_differences
    from imbal.reporting.sweep import SUMMARY

    ensembles = find_ensembles(paths)
    out = Path(out_dir)
    if ensembles and not any(Path(p).is_dir() and any(Path(p).rglob(SUMMARY)) or Path(p).name == SUMMARY
                             for p in paths):
        out.mkdir(parents=True, exist_ok=True)
        write_markdown(None, out / f"{name}.md", paths, ensembles=ensembles)
        print_table(None, console, ensembles=ensembles)
        return None
    rep = build_report(paths)
    out.mkdir(parents=True, exist_ok=True)
    md, csv, png, diff = (out / f"{name}.md", out / f"{name}.csv", out / f"{name}.png", out / f"{name}_diff.png")
    comps = compare(paths, rep, baseline=baseline, n_boot=bootstrap, seed=seed) if len(rep.table) > 1 else []
    write_csv(rep, csv, comps)
    plot_report(rep, png)
    rep.files = [md, csv, png]
    if comps:
        plot_differences(rep, comps, diff)
        rep.files.append(diff)
    write_markdown(rep, md, paths, png_name=png.name, comps=comps, diff_png=diff.name if comps else None,
                   ensembles=ensembles)
    rep.comparisons = comps
    print_table(rep, console, comps=comps, ensembles=ensembles)
    return rep


# -- command line -------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="run or sweep directories (or summary.json files)")
    parser.add_argument("-o", "--out", default=None,
                        help="where to write report.md/.csv/.png (default: PATH when there is one directory, else .)")
    parser.add_argument("--name", default="report", help="file name stem of the outputs (default: report)")
    parser.add_argument("--baseline", default=None, metavar="KEY=VALUE[,KEY=VALUE]",
                        help="the configuration every other is compared with, per data set (e.g. loss=ce; "
                        "default: each data set's first row)")
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="B",
                        help="resamples of the paired bootstrap over test samples for single runs (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resamples (default 0)")
    return parser


def cmd_report(args: argparse.Namespace) -> int:
    from imbal.extras import require_all

    require_all(("pandas", "matplotlib"), "plots", feature="imbal report")
    console = _console()
    out = args.out
    if out is None:
        out = args.paths[0] if len(args.paths) == 1 and Path(args.paths[0]).is_dir() else "."
    rep = write_report(args.paths, out, name=args.name, console=console, baseline=args.baseline,
                       bootstrap=args.bootstrap, seed=args.seed)
    files = rep.files if rep is not None else [Path(out) / f"{args.name}.md"]
    console.print(f"wrote {', '.join(str(f) for f in files)}", highlight=False, soft_wrap=True)
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
