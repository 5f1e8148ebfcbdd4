"""``imbal predict RUN_DIR --split val|test -o OUT_DIR``: the pipeline scored on a run's own split.

The split's images and true ship instances come from the data module the run's recorded
``data`` node names, built only when its ``_target_`` is one of imbal's segmentation data
modules (:data:`SPLIT_DATA`; a run dir is data, not code), set up, and checked against the
run's ``data_manifest.json`` (the same image ids in the same order).  Images are read at their
own size (the run's ``data.resize`` is applied inside the segmenter and undone on its output),
so the score is the competition's, on the pixels a submission refers to.

OUT_DIR gets ``submission.csv`` (the split's rows, with every step asked for) and
``summary.json``: the mean Airbus F2 (:func:`imbal.metrics.segmentation.f2_from_ious` per image)
of each combination of steps (no gate / gate x no TTA / TTA, those the flags make available) at the
same threshold and minimum size, beside the all-background baseline (every image empty).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from imbal.errors import ImbalError
from imbal.metrics.segmentation import f2_from_ious, instance_ious

#: The data modules ``--split`` builds from a run dir's recorded config.
SPLIT_DATA = (
    "imbal.data.segmentation.airbus.AirbusDataModule",
    "imbal.data.segmentation.mask_folder.MaskFolderDataModule",
)
SPLITS = ("val", "test")
SUMMARY = "summary.json"
CSV = "submission.csv"


def true_instances(labels: np.ndarray) -> list[np.ndarray]:
    """One boolean mask per label present in an instance label image (0 = background)."""
    labels = np.asarray(labels)
    ids = np.flatnonzero(np.bincount(labels.ravel().astype(np.int64))[1:]) + 1
    return [labels == k for k in ids]


def image_f2(pred_labels: np.ndarray, n_pred: int, truth: list[np.ndarray]) -> float:
    """The Airbus score of one image from predicted instance labels and the true instance masks."""
    return f2_from_ious(instance_ious(pred_labels, n_pred, truth))


def _nested_targets(node: Any, path: str = "data") -> list[str]:
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "_target_" and path != "data":
                out.append(path)
            out += _nested_targets(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _nested_targets(v, f"{path}[{i}]")
    return out


def split_datamodule(run_dir: str | Path, split: str):
    """The run's data module, set up, after the checks of the module docstring."""
    from omegaconf import OmegaConf

    from imbal.predict.pipeline import _manifest
    from imbal.runner import RunSummary
    from imbal.runner.build import instantiate

    if split not in SPLITS:
        raise ImbalError(f"--split {split!r}: expected one of: {', '.join(SPLITS)}")
    run_dir = Path(run_dir)
    data = RunSummary.read(run_dir).config.get("data")
    target = data.get("_target_") if isinstance(data, dict) else None
    if target not in SPLIT_DATA:
        raise ImbalError(f"--split {split}: run dir {run_dir} records data._target_={target!r} in summary.json; "
                         f"--split reads the split of an imbal segmentation data module ({', '.join(SPLIT_DATA)}); "
                         "predict a folder of images instead: imbal predict RUN_DIR IMAGE_DIR OUT.csv")
    nested = _nested_targets(data)
    if nested:
        raise ImbalError(f"--split {split}: run dir {run_dir} summary.json config.{nested[0]} names a _target_; "
                         "a run dir is data, not code: --split builds only the data module itself")
    dm = instantiate(OmegaConf.create(data), _raw=("sampler",))
    if data.get("name"):
        dm.name = str(data["name"])
    dm.setup("test")
    manifest = _manifest(run_dir)
    recorded = manifest.get(f"{split}_ids")
    if split == "test" and recorded == [] and "val_ids" in manifest:
        recorded = manifest["val_ids"]  # no test images: the module tests on validation
    ids = dm.split_ids(split)
    if recorded is None or list(recorded) != ids:
        n = "none" if recorded is None else f"{len(recorded)} ids"
        raise ImbalError(f"--split {split}: the data the run's config names now gives {len(ids)} {split} image ids, "
                         f"{run_dir}/data_manifest.json records {n} ({split}_ids); the data changed since training")
    return dm


@dataclass
class SplitImage:
    image_id: str
    image: np.ndarray  # uint8 [H, W, 3], the image's own size
    truth: list[np.ndarray]  # one mask per true instance


def iter_split(dm, split: str) -> Iterator[SplitImage]:
    """The split's images and true instances at their own size, in the run's order."""
    for i in dm.split_idx[split]:
        item = dm.items[int(i)]
        yield SplitImage(item.image_id, dm.load_image(item), true_instances(dm.load_instances(item)))


def evaluate_split(run_dir: str | Path, split: str, out_dir: str | Path, *, gate=None, tta: str = "none",
                   settings=None, watershed: bool = False, trust_config: bool = False,
                   device: str | None = None, segmenter=None, datamodule=None) -> dict[str, Any]:
    """Score the pipeline on a run's split; write OUT_DIR/submission.csv and OUT_DIR/summary.json.

    ``segmenter`` / ``datamodule`` replace the run's (tests, or a caller that holds them already)."""
    from imbal.io import atomic_path, write_json_atomic
    from imbal.predict.instances import instance_rles
    from imbal.predict.pipeline import Settings, describe_gate, image_instances, load_segmenter
    from imbal.predict.tta import check_mode

    check_mode(tta)
    settings = settings or Settings()
    dm = datamodule if datamodule is not None else split_datamodule(run_dir, split)
    seg = segmenter or load_segmenter(run_dir, trust_config=trust_config, device=device)
    ttas = ["none"] + ([tta] if tta != "none" else [])
    gates = [False] + ([True] if gate is not None else [])
    sums = {(g, t): 0.0 for g in gates for t in ttas}
    n_images = n_ships = n_rejected = n_rows = n_pred = 0
    baseline = 0.0
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / CSV) as tmp, tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ImageId", "EncodedPixels"])
        for im in iter_split(dm, split):
            n_images += 1
            n_ships += bool(im.truth)
            empty = 0.0 if im.truth else 1.0
            baseline += empty
            mean, plain = seg.probs(im.image, tta, image_id=im.image_id)
            ok = True
            if gate is not None:
                ok = gate.accepts(gate.prob(im.image))
                n_rejected += not ok
            final = None
            for t in ttas:
                lab, n = image_instances(plain if t == "none" else mean, settings, watershed=watershed)
                score = image_f2(lab, n, im.truth)
                for g in gates:
                    sums[(g, t)] += score if (ok or not g) else empty
                if t == tta:
                    final = (lab, n) if ok else (lab, 0)
            lab, n = final
            rles = instance_rles(lab, n, image_id=im.image_id) if n else []
            for rle in rles or [""]:
                w.writerow([im.image_id, rle])
                n_rows += 1
            n_pred += len(rles)
    steps = [{"gate": g, "tta": t, "airbus_f2": sums[(g, t)] / n_images} for g in gates for t in ttas]
    summary = {
        "kind": "imbal predict --split",
        "run_dir": str(run_dir),
        "split": split,
        "images": n_images,
        "images_with_ships": n_ships,
        "all_background_f2": baseline / n_images,
        "threshold": settings.threshold,
        "min_size": settings.min_size,
        "settings_from": {k: settings.sources.get(k, "default") for k in ("threshold", "min_size")},
        "tta": tta,
        "watershed": watershed,
        "gate": describe_gate(gate),
        "rejected_by_gate": n_rejected if gate is not None else None,
        "steps": steps,
        "airbus_f2": steps[-1]["airbus_f2"],
        "csv": CSV,
        "rows": n_rows,
        "predicted_ships": n_pred,
    }
    write_json_atomic(out_dir / SUMMARY, summary)
    return summary


def format_table(summary: dict[str, Any]) -> str:
    """The step table of a :func:`evaluate_split` summary, as plain text."""
    lines = [f"{summary['split']}: {summary['images']} images, {summary['images_with_ships']} with objects; "
             f"threshold {summary['threshold']:g}, min size {summary['min_size']} px"
             + (", watershed" if summary.get("watershed") else ""),
             f"{'gate':<6} {'tta':<6} airbus_f2",
             f"{'-':<6} {'-':<6} {summary['all_background_f2']:.4f}  (all background)"]
    for s in summary["steps"]:
        lines.append(f"{'yes' if s['gate'] else 'no':<6} {s['tta']:<6} {s['airbus_f2']:.4f}")
    return "\n".join(lines)
