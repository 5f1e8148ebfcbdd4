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


def _say(line: str) -> None:
    print(line, flush=True)


def cmd_predict(args: argparse.Namespace) -> int:
    from imbal.predict import predict_run, predict_split

    opts = dict(threshold=args.threshold, min_size=args.min_size, gate=args.gate, gate_threshold=args.gate_threshold,
                tta=args.tta, watershed=args.watershed, device=args.device, trust_config=args.trust_config, say=_say)
    if args.split is not None:
        if args.image_dir is not None or args.out_csv is not None:
            raise ImbalError(f"predict: --split {args.split} scores the run's own split into -o OUT_DIR; drop "
                             f"IMAGE_DIR and OUT_CSV (got {args.image_dir!r})")
        if args.out_dir is None:
            raise ImbalError(f"predict: --split {args.split} needs -o OUT_DIR (for submission.csv and summary.json)")
        from imbal.predict.evaluate import format_table

        summary = predict_split(args.run_dir, args.split, args.out_dir, **opts)
        print(format_table(summary))
        print(f"wrote {Path(args.out_dir) / 'summary.json'} and {Path(args.out_dir) / summary['csv']}")
        return 0
    if args.image_dir is None or args.out_csv is None:
        raise ImbalError("predict: expected RUN_DIR IMAGE_DIR OUT_CSV (a folder of images), or RUN_DIR --split "
                         "val|test -o OUT_DIR (the run's own split, scored)")
    if args.out_dir is not None:
        raise ImbalError(f"predict: -o {args.out_dir} goes with --split; a folder prediction writes OUT_CSV")
    counts = predict_run(args.run_dir, args.image_dir, args.out_csv, **opts)
    print(f"wrote {args.out_csv}: {counts}")
    return 0


def cmd_tune_seg(args: argparse.Namespace) -> int:
    from imbal.predict.pipeline import TUNING_FILE
    from imbal.predict.tune import tune_seg

    from imbal.predict.tune import MIN_SIZES, THRESHOLDS

    def numbers(text: str | None, kind: type, flag: str, default: tuple) -> tuple:
        if text is None:
            return default
        try:
            return tuple(kind(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise ImbalError(f"tune-seg: {flag} {text!r}: expected comma-separated {kind.__name__} values") from None

    r = tune_seg(args.run_dir, gate_dir=args.gate, tta=args.tta, watershed=args.watershed, device=args.device,
                 trust_config=args.trust_config,
                 thresholds=numbers(args.thresholds, float, "--thresholds", THRESHOLDS),
                 min_sizes=numbers(args.min_sizes, int, "--min-sizes", MIN_SIZES))
    gate = f", gate threshold {r['gate']['threshold']:.4g}" if r["gate"] else ""
    print(f"val ({r['images']} images, {r['images_with_ships']} with objects): threshold {r['threshold']:g}, "
          f"min size {r['min_size']} px{gate}: F2 {r['val_f2']:.4f} (0.5 / 0 px / no gate: {r['val_f2_untuned']:.4f}; "
          f"all background: {r['all_background_f2']:.4f})")
    print(f"wrote {Path(args.run_dir) / TUNING_FILE} (imbal predict's defaults for this run)")
    return 0


def _pipeline_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gate", metavar="GATE_RUN_DIR", help="a finished ship-presence run (data=airbus "
                   "data.target=presence, same split): images it rejects get no ship")
    p.add_argument("--tta", choices=("none", "flips", "d4"), default="none", help="mean probability over "
                   "flips (identity, h, v, hv) or the 8 dihedral transforms (square inputs only); default none")
    p.add_argument("--watershed", action="store_true", help="split touching ships by a watershed on the "
                   "distance transform (scikit-image if installed, else scipy)")
    p.add_argument("--device", default=None, help="torch device for the models, e.g. cuda:1 (default: cuda when a GPU is present, else cpu)")
    p.add_argument("--trust-config", action="store_true", help="build any _target_ the run dir's config names "
                   "(your own backbone class); without it only imbal's models and registered losses are built, "
                   "since a run dir is data, not code (also IMBAL_TRUST_CONFIG=1)")


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
    p = sub.add_parser("predict", help="segmentation: write a submission CSV (ImageId,EncodedPixels) for an "
                       "image folder, or score the pipeline on the run's val/test split (--split, -o)")
    p.add_argument("run_dir", help="directory of a finished segmentation run (has summary.json)")
    p.add_argument("image_dir", nargs="?", help="folder of images to predict")
    p.add_argument("out_csv", nargs="?", help="where to write the CSV")
    p.add_argument("--split", choices=("val", "test"), help="score the run's own split (its true ships) instead "
                   "of a folder: OUT_DIR/submission.csv and OUT_DIR/summary.json (F2 with/without gate and TTA)")
    p.add_argument("-o", "--out-dir", help="with --split: the output folder")
    p.add_argument("--threshold", type=float, default=None, help="probability threshold (default: the run's "
                   "seg_tuning.json, else 0.5)")
    p.add_argument("--min-size", type=int, default=None, help="drop predicted ships smaller than this many "
                   "pixels (default: the run's seg_tuning.json, else 0)")
    p.add_argument("--gate-threshold", type=float, default=None, help="P(ship) above which the gate keeps an "
                   "image (default: tune-seg's, else the best image-level F2 on the gate run's validation)")
    _pipeline_arguments(p)
    p.set_defaults(func=cmd_predict)
    p = sub.add_parser("tune-seg", help="segmentation: tune the threshold, min ship size (and gate threshold) for "
                       "the Airbus F2 on the run's validation split; writes RUN_DIR/seg_tuning.json")
    p.add_argument("run_dir", help="directory of a finished segmentation run")
    p.add_argument("--thresholds", help="comma-separated probability thresholds to try (default 0.3,0.35,...,0.8)")
    p.add_argument("--min-sizes", help="comma-separated minimum ship sizes in pixels (default 0,10,20,50,100)")
    _pipeline_arguments(p)
    p.set_defaults(func=cmd_tune_seg)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ImbalError as err:
        exit_with(err)
        return 2


if __name__ == "__main__":
    sys.exit(main())
