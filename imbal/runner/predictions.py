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

Classification only: a segmentation run (a backbone that outputs logits, a U-Net) keeps no
per-sample outputs (its masks are too big; its metrics hold running sums, not per-image values),
so no ``predictions/`` is written for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from imbal.errors import ImbalError
from imbal.io import atomic_path, read_json_object, write_json_atomic

PREDICTIONS_DIR = "predictions"
META_FILE = "meta.json"
SPLITS = ("val", "test")


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
    outputs (a segmentation run).
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


def read_predictions(run_dir: str | Path, split: str = "test") -> dict[str, np.ndarray]:
    """``predictions/<split>.npz`` of a run dir as a dict of arrays (plus ``class_names`` and ``task``
    from ``meta.json``)."""
    if split not in SPLITS:
        raise ImbalError(f"predictions: split '{split}' unknown; expected one of: {', '.join(SPLITS)}")
    path = Path(run_dir) / PREDICTIONS_DIR / f"{split}.npz"
    if not path.is_file():
        raise ImbalError(f"{path} not found; expected a finished classification run "
                         "(segmentation runs write no predictions)")
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    meta = read_json_object(path.parent / META_FILE, expected="written beside the predictions")
    arrays["class_names"] = np.asarray(meta.get("class_names", []), dtype=str)
    arrays["task"] = np.asarray(str(meta.get("task", "")))
    return arrays
