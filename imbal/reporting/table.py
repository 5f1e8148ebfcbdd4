"""The table a run prints when it finishes."""

from __future__ import annotations

from pathlib import Path

from imbal.runner.summary import RunSummary

#: rows shown first, in this order
FIRST_ROWS = ("accuracy", "balanced_accuracy", "macro_f1", "log_loss")


def print_final_table(summary: RunSummary, run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    s = summary
    table = Table(title=f"imbal: {s.data} / {s.model} / {s.loss} (seed {s.seed})")
    table.add_column("metric")
    table.add_column("val", justify="right")
    table.add_column("test", justify="right")
    keys = [k for k in FIRST_ROWS if k in s.test or k in s.val]
    keys += [k for k in s.test if k not in keys and k != "num_samples" and isinstance(s.test[k], (int, float))]
    for key in keys:
        v, t = s.val.get(key), s.test.get(key)
        table.add_row(key, "-" if v is None else f"{v:.4f}", "-" if t is None else f"{t:.4f}")
    for name, res in s.posthoc.items():
        table.add_row(f"balanced_accuracy (post-hoc {name})", "", f"{res['balanced_accuracy']:.4f}")
    if "bayes_balanced_error" in s.data_extra:
        table.add_row("bayes balanced acc", "", f"{1 - s.data_extra['bayes_balanced_error']:.4f}")
    console = Console()
    console.print(table)
    console.print(f"run dir: {run_dir}")
    if (run_dir / "plots").is_dir():
        console.print(f"plots: {run_dir / 'plots'}")
    console.print(f"best checkpoint: {run_dir / s.best_checkpoint if s.best_checkpoint else '(none: no checkpoint was saved)'}")
    console.print(f"wall time: {s.wall_time_s:.1f} s")
