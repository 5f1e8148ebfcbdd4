"""The ``imbal`` command: ``imbal losses`` lists every registered loss."""

from __future__ import annotations

import argparse
import inspect
import sys

from imbal.errors import ImbalError, exit_with


def _fmt_default(v) -> str:
    return "(required)" if v is inspect.Parameter.empty else repr(v)


def cmd_losses(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from imbal.losses import registry

    console = Console()
    table = Table(title="imbal losses (entry-point group 'imbal.losses')")
    table.add_column("name", no_wrap=True)
    table.add_column("package", no_wrap=True)
    for col in ("tasks", "hyper-parameters (defaults)", "from data"):
        table.add_column(col, overflow="fold")
    failed: list[str] = []
    for name in registry.available(refresh=True):
        entry = registry.entries()[name]
        try:
            d = registry.describe(name)
        except registry.LossPluginError as exc:
            failed.append(str(exc))
            table.add_row(name, entry.package, "-", "[red]failed to load (see below)[/red]", "-")
            continue
        hp = ", ".join(f"{k}={_fmt_default(v)}" for k, v in d["hparams"].items())
        pkg = f"{d['package']} {d['version']}".strip()
        table.add_row(name, pkg, ", ".join(d["tasks"]), hp, ", ".join(d["injected"]))
    console.print(table)
    # Full messages on their own lines (soft-wrapped, so they can be grepped whole).
    for msg in failed:
        console.print(f"[red]error:[/red] {msg}", soft_wrap=True, markup=True, highlight=False)
    for msg in registry.conflicts():
        console.print(f"[yellow]warning:[/yellow] {msg}", soft_wrap=True, highlight=False)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from imbal.predict import predict_run

    counts = predict_run(args.run_dir, args.image_dir, args.out_csv, threshold=args.threshold, min_size=args.min_size)
    print(f"wrote {args.out_csv}: {counts}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="imbal", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("losses", help="list every registered loss with its package, tasks and defaults")
    p.set_defaults(func=cmd_losses)
    from imbal import report

    p = report.add_arguments(
        sub.add_parser("report", help="compare runs: mean ± std over seeds per configuration (report.md/.csv/.png)")
    )
    p.set_defaults(func=report.cmd_report)
    p = sub.add_parser("predict", help="segmentation: write a submission CSV (ImageId,EncodedPixels) for an image folder")
    p.add_argument("run_dir", help="directory of a finished segmentation run (has summary.json)")
    p.add_argument("image_dir", help="folder of images to predict")
    p.add_argument("out_csv", help="where to write the CSV")
    p.add_argument("--threshold", type=float, default=0.5, help="probability threshold (default 0.5)")
    p.add_argument("--min-size", type=int, default=0, help="drop predicted ships smaller than this many pixels")
    p.set_defaults(func=cmd_predict)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ImbalError as err:
        exit_with(err)
        return 2


if __name__ == "__main__":
    sys.exit(main())
