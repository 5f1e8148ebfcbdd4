"""The best model's val/test predictions on disk: ``<run_dir>/predictions/{val,test}.npz`` and ``meta.json``.

Each ``<split>.npz`` holds (one row per sample of the split):

* ``index``: the row's index within the split (int64), in the order the evaluation loader yields
  the split, which is the data module's split order (under DDP the ranks' unpadded shares,
  gathered rank after rank, are put back into it);
* ``targets``: the targets as the metrics saw them (shapes in docs/design.md, "Contracts");
* ``logits``: float32, exactly the logits the metrics scored (``eval_logit_scale`` applied);
* ``posthoc_<name>`` (``test.npz`` only): the corrected test logits each post-hoc correction was
  scored on (``summary.json``'s ``posthoc.<name>``).

``meta.json`` names the task kind, the class names and the arrays of each split.  Rows are sorted
by ``index``, so row ``i`` is sample ``i`` of the split.

A segmentation run writes ``predictions/<split>.jsonl`` instead (:func:`write_mask_predictions`):
one JSON object per image, in split order: ``index``, ``image_id`` (the data module's
``split_ids``), ``shape`` ``[H, W]`` (the evaluated size), ``pred`` (the Kaggle RLE, column-major
and 1-based, of the thresholded mask ``sigmoid(logit) > threshold`` the metrics scored; ``""`` when
empty) and ``true_instances`` (one RLE per true instance).  Every metric of
imbal/metrics/segmentation.py is a function of these two masks, so ``summary.json``'s are
recomputed from them exactly; ``meta.json`` adds the ``threshold``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from imbal.errors import ImbalError
from imbal.io import atomic_path, read_json_object, write_json_atomic, write_text_atomic

PREDICTIONS_DIR = "predictions"
META_FILE = "meta.json"
SPLITS = ("val", "test")
MASK_FIELDS = ("index", "image_id", "shape", "pred", "true_instances")


def gathered_index(n: int, world_size: int = 1) -> np.ndarray:
    """The split indices of ``n`` gathered eval outputs, in gathered order.

    The eval loader gives rank ``r`` of ``world_size`` the unpadded, in-order share
    ``range(n)[r::world_size]`` (imbal.data.loaders.eval_sampler, Lightning's
    UnrepeatedDistributedSampler); ``imbal.task.gather_outputs`` concatenates the ranks in order.
    """
    world_size = max(int(world_size), 1)
    return np.concatenate([np.arange(n, dtype=np.int64)[r::world_size] for r in range(world_size)])


def _numpy(t: Any) -> np.ndarray:
    if hasattr(t, "detach"):
        t = t.detach().cpu()
        return (t.float() if t.is_floating_point() else t).numpy()  # bfloat16 has no numpy dtype
    return np.asarray(t)


def split_arrays(outputs: Mapping[str, Any], world_size: int = 1,
                 posthoc: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """The arrays of one split's ``.npz`` from the task's gathered outputs (rows in split order)."""
    targets = _numpy(outputs["targets"])
    index = gathered_index(len(targets), world_size)
    order = np.argsort(index, kind="stable")
    arrays = {
        "index": index[order],
        "targets": targets[order],
        "logits": _numpy(outputs["logits"]).astype(np.float32)[order],
    }
    for name, logits in (posthoc or {}).items():
        arrays[f"posthoc_{name}"] = _numpy(logits).astype(np.float32)[order]
    return arrays


def write_predictions(run_dir: str | Path, outputs: Mapping[str, Mapping[str, Any]], stats,
                      posthoc: Mapping[str, Any] | None = None, world_size: int = 1) -> list[Path]:
    """Write ``predictions/<split>.npz`` (atomically) for every split in ``outputs`` and ``meta.json``.

    ``outputs``: the task's ``outputs`` (split -> features/logits/targets, gathered over ranks);
    ``posthoc``: correction name -> corrected test logits.  Nothing is written when there are no
    outputs (a segmentation run: :func:`write_mask_predictions`).
    """
    out_dir = Path(run_dir) / PREDICTIONS_DIR
    written: list[Path] = []
    meta: dict[str, Any] = {"task": stats.task, "class_names": list(stats.class_names), "splits": {}}
    for split in SPLITS:
        if not outputs.get(split):
            continue
        arrays = split_arrays(outputs[split], world_size, posthoc if split == "test" else None)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{split}.npz"
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a path
                np.savez(f, **arrays)
        meta["splits"][split] = {"rows": int(len(arrays["index"])), "arrays": sorted(arrays)}
        written.append(path)
    if written:
        written.append(write_json_atomic(out_dir / META_FILE, meta))
    return written


def instance_rles(labels: np.ndarray) -> list[str]:
    """One Kaggle RLE per instance of a label image (0 = background), in label order.

    ``rle_encode(labels == k)`` for every label ``k`` present, from one column-major pass over the
    image rather than one per instance.
    """
    flat = np.asarray(labels).T.ravel()  # column-major, as rle_encode
    pos = np.flatnonzero(flat)
    if not pos.size:
        return []
    lab = flat[pos]
    order = np.argsort(lab, kind="stable")  # positions stay increasing within each label
    pos, lab = pos[order], lab[order]
    out = []
    for p in np.split(pos, np.flatnonzero(np.diff(lab)) + 1):
        breaks = np.flatnonzero(np.diff(p) != 1) + 1
        starts = p[np.r_[0, breaks]]
        ends = p[np.r_[breaks - 1, len(p) - 1]]
        out.append(" ".join(map(str, np.column_stack([starts + 1, ends - starts + 1]).ravel().tolist())))
    return out


def mask_records(logits: Any, target: Any, instances: Any | None, threshold: float) -> list[dict[str, Any]]:
    """Per-image records of one segmentation eval batch (``index``/``image_id`` are added when written).

    ``pred`` is the mask :class:`imbal.metrics.segmentation.SegmentationMetrics` scores,
    ``sigmoid(logit) > threshold``, computed the same way; ``true_instances`` come from the batch's
    instance labels (or, without them, the target's connected components, as the metrics do).
    """
    import torch

    from imbal.data.segmentation.rle import rle_encode
    from imbal.metrics.segmentation import label_components

    x = logits.detach().float()
    x = x[:, 0] if x.ndim == 4 else x
    pred = (torch.sigmoid(x) > threshold).cpu().numpy()
    if instances is not None:
        inst = instances.detach().cpu().numpy()
    else:
        t = (target.detach() > 0.5).cpu().numpy()
        inst = np.stack([label_components(m[0] if m.ndim == 3 else m)[0] for m in t])
    return [{"shape": [int(p.shape[0]), int(p.shape[1])], "pred": rle_encode(p), "true_instances": instance_rles(lab)}
            for p, lab in zip(pred, inst)]


def write_mask_predictions(run_dir: str | Path, records: Mapping[str, list], stats, threshold: float,
                           image_ids: Mapping[str, list[str]], world_size: int = 1) -> list[Path]:
    """Write ``predictions/<split>.jsonl`` (atomically) for every split in ``records`` and ``meta.json``.

    ``records``: the task's ``mask_predictions`` (split -> :func:`mask_records` rows, gathered over
    ranks, rank after rank); ``image_ids``: split -> the data module's ``split_ids(split)``.
    """
    out_dir = Path(run_dir) / PREDICTIONS_DIR
    written: list[Path] = []
    meta: dict[str, Any] = {"task": stats.task, "threshold": float(threshold),
                            "class_names": list(stats.class_names), "splits": {}}
    for split in SPLITS:
        rows = records.get(split)
        if not rows:
            continue
        ids = list(image_ids[split])
        if len(ids) != len(rows):
            raise ImbalError(f"predictions: {len(rows)} {split} masks were evaluated but the split has {len(ids)} images")
        index = gathered_index(len(rows), world_size)
        lines = []
        for i in np.argsort(index, kind="stable"):
            j = int(index[i])
            lines.append(json.dumps({"index": j, "image_id": str(ids[j]), **rows[i]}))
        out_dir.mkdir(parents=True, exist_ok=True)
        written.append(write_text_atomic(out_dir / f"{split}.jsonl", "\n".join(lines) + "\n"))
        meta["splits"][split] = {"rows": len(lines), "fields": list(MASK_FIELDS)}
    if written:
        written.append(write_json_atomic(out_dir / META_FILE, meta))
    return written


def read_predictions(run_dir: str | Path, split: str = "test") -> dict[str, np.ndarray] | list[dict[str, Any]]:
    """``predictions/<split>.npz`` of a run dir as a dict of arrays (plus ``class_names`` and ``task``
    from ``meta.json``); for a segmentation run, ``predictions/<split>.jsonl`` as a list of per-image
    records (``index``, ``image_id``, ``shape``, ``pred``, ``true_instances``: the module docstring)."""
    if split not in SPLITS:
        raise ImbalError(f"predictions: split '{split}' unknown; expected one of: {', '.join(SPLITS)}")
    path = Path(run_dir) / PREDICTIONS_DIR / f"{split}.npz"
    masks = path.with_suffix(".jsonl")
    if not path.is_file() and masks.is_file():
        try:
            return [json.loads(line) for line in masks.read_text().splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise ImbalError(f"{masks}: not valid JSON lines ({exc.msg})") from None
    if not path.is_file():
        raise ImbalError(f"{path} not found; expected a finished run")
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    meta = read_json_object(path.parent / META_FILE, expected="written beside the predictions")
    arrays["class_names"] = np.asarray(meta.get("class_names", []), dtype=str)
    arrays["task"] = np.asarray(str(meta.get("task", "")))
    return arrays
