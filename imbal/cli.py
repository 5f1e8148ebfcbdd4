"""The ``imbal`` command: ``imbal train`` runs one experiment (Hydra), ``imbal losses`` lists every registered loss."""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import sys
from pathlib import Path

from imbal.errors import ImbalError, exit_with


def _fmt_default(v) -> str:
    return "(required)" if v is inspect.Parameter.empty else repr(v)


LISTING_VERSION = 1


def _module_file(module: str) -> Path | None:
    """The source file of a dotted module found on ``sys.path``, without importing it."""
    parts = module.split(".")
    for base in sys.path:
        p = Path(base or ".").joinpath(*parts)
        for cand in (p.with_suffix(".py"), p / "__init__.py"):
            if cand.is_file():
                return cand
    return None


def _listing_key() -> str | None:
    """A digest of everything the listing depends on, computed without importing torch or a loss.

    Every entry point of the group (name, target, distribution, version) and the size and
    mtime of every ``.py`` file beside each loss's module (a loss may take its signature
    from a base class next to it) and of imbal's registry and this file.  None when a
    module's source cannot be found (a zip import, a compiled module): no cache then.
    """
    from importlib.metadata import entry_points

    items: list = [LISTING_VERSION, sys.version, sys.executable]
    dirs: set[Path] = {Path(__file__).resolve().parent / "losses", Path(__file__).resolve().parent}
    for ep in entry_points(group="imbal.losses"):
        dist = getattr(ep, "dist", None)
        f = _module_file(ep.value.partition(":")[0])
        if f is None:
            return None
        dirs.add(f.resolve().parent)
        items.append([ep.name, ep.value, dist.metadata["Name"] if dist else "", dist.version if dist else ""])
    for d in sorted(dirs):
        for f in sorted(d.glob("*.py")):
            st = f.stat()
            items.append([str(f), st.st_mtime_ns, st.st_size])
    return hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()


def _compute_listing() -> dict:
    from imbal.losses import registry

    rows, failed = [], []
    for name in registry.available(refresh=True):
        entry = registry.entries()[name]
        try:
            d = registry.describe(name)
        except registry.LossPluginError as exc:
            failed.append(str(exc))
            rows.append([name, entry.package, "-", None, "-"])
            continue
        hp = ", ".join(f"{k}={_fmt_default(v)}" for k, v in d["hparams"].items())
        pkg = f"{d['package']} {d['version']}".strip()
        rows.append([name, pkg, ", ".join(d["tasks"]), hp, ", ".join(d["injected"])])
    return {"rows": rows, "failed": failed, "conflicts": registry.conflicts()}


def loss_listing(use_cache: bool = True) -> dict:
    """Rows of ``imbal losses``; cached under the imbal cache directory, keyed by :func:`_listing_key`.

    Listing the signatures imports every loss, hence torch (~2-3 s); the cache makes a
    repeated ``imbal losses`` with unchanged plugins and sources a file read.
    """
    from imbal.cache import keyed_json

    return keyed_json("losses-listing.json", _listing_key() if use_cache else None, _compute_listing)


def cmd_losses(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    listing = loss_listing(use_cache=not getattr(args, "refresh", False))
    console = Console()
    table = Table(title="imbal losses (entry-point group 'imbal.losses')")
    table.add_column("name", no_wrap=True)
    table.add_column("package", no_wrap=True)
    for col in ("tasks", "hyper-parameters (defaults)", "from data"):
        table.add_column(col, overflow="fold")
    for name, pkg, tasks, hp, injected in listing["rows"]:
        table.add_row(name, pkg, tasks, "[red]failed to load (see below)[/red]" if hp is None else hp, injected)
    console.print(table)
    # Full messages on their own lines (soft-wrapped, so they can be grepped whole).
    for msg in listing["failed"]:
        console.print(f"[red]error:[/red] {msg}", soft_wrap=True, markup=True, highlight=False)
    for msg in listing["conflicts"]:
        console.print(f"[yellow]warning:[/yellow] {msg}", soft_wrap=True, highlight=False)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from imbal.predict import predict_run

    counts = predict_run(args.run_dir, args.image_dir, args.out_csv, threshold=args.threshold, min_size=args.min_size,
                         trust_config=args.trust_config)
    print(f"wrote {args.out_csv}: {counts}")
    return 0


def cmd_train(argv: list[str]) -> int:
    """``imbal train OVERRIDES``: ``python train.py OVERRIDES`` (Hydra's flags too) from any directory."""
    from imbal.train import cli

    sys.argv = [sys.argv[0] if sys.argv else "imbal", *argv]
    cli()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:
        # Hydra parses the rest itself (overrides, -m, --config-dir, --help): argparse never sees it
        return cmd_train(argv[1:])
    from imbal import __version__

    parser = argparse.ArgumentParser(prog="imbal", description=__doc__)
    parser.add_argument("--version", action="version", version=f"imbal {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("train", help="train one configuration, or sweep with -m: imbal train data=gaussian_lt "
                   "loss=focal (Hydra overrides; imbal train --help lists the config groups)")
    p = sub.add_parser("losses", help="list every registered loss with its package, tasks and defaults")
    p.add_argument("--refresh", action="store_true", help="ignore the cached listing (it is keyed by the "
                   "installed plugins and the loss sources' mtimes, so this is rarely needed)")
    p.set_defaults(func=cmd_losses)
    from imbal.reporting import report

    p = report.add_arguments(
        sub.add_parser("report", help="compare runs: mean ± std over seeds per configuration (report.md/.csv/.png)")
    )
    p.set_defaults(func=report.cmd_report)
    from imbal import ensemble

    p = ensemble.add_arguments(
        sub.add_parser("ensemble", help="combine finished runs: weights fitted on validation only, scored once "
                       "on test (ensemble.json, predictions/)")
    )
    p.set_defaults(func=ensemble.cmd_ensemble)
    p = sub.add_parser("predict", help="segmentation: write a submission CSV (ImageId,EncodedPixels) for an image folder")
    p.add_argument("run_dir", help="directory of a finished segmentation run (has summary.json)")
    p.add_argument("image_dir", help="folder of images to predict")
    p.add_argument("out_csv", help="where to write the CSV")
    p.add_argument("--threshold", type=float, default=0.5, help="probability threshold (default 0.5)")
    p.add_argument("--min-size", type=int, default=0, help="drop predicted ships smaller than this many pixels")
    p.add_argument("--trust-config", action="store_true", help="build any _target_ the run dir's config names "
                   "(your own backbone class); without it only imbal's models and registered losses are built, "
                   "since a run dir is data, not code (also IMBAL_TRUST_CONFIG=1)")
    p.set_defaults(func=cmd_predict)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ImbalError as err:
        exit_with(err)
        return 2


if __name__ == "__main__":
    sys.exit(main())
