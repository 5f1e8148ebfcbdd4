"""The members of an ensemble: finished runs (or ensemble dirs) that share data, split and classes.

A member is a run dir with ``summary.json``, ``data_stats.json``, ``data_manifest.json`` and
``predictions/{val,test}.npz`` (imbal/runner/predictions.py), or an ensemble dir written by
``imbal ensemble`` (``ensemble.json`` instead of ``summary.json``).  Every run dir under a given
directory is a member; an ensemble dir is a member only when it is given itself, so a second
``imbal ensemble`` over a sweep never picks up the first one's output.

Validation and test arrays are read separately (:func:`read_split`): fitting calls it for ``val``
only, and every file read is recorded, so ``ensemble.json`` says which files were read for what.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from imbal.data.stats import STATS_FILE, DataStats
from imbal.ensemble import ENSEMBLE_FILE
from imbal.errors import ImbalError
from imbal.io import read_json_object
from imbal.kinds import BINARY, MULTICLASS
from imbal.runner.predictions import PREDICTIONS_DIR
from imbal.runner.rundir import MANIFEST_FILE
from imbal.runner.summary import SUMMARY_FILE

TASKS = (MULTICLASS, BINARY)


@dataclass
class Member:
    """One member: where it is, what it is, and the facts every member must share."""

    path: Path
    name: str
    kind: str  # "run" or "ensemble"
    stats: DataStats
    manifest: dict[str, Any]
    data: str
    seed: int | None = None
    loss: str | None = None
    splits: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def predictions_file(self, split: str) -> Path:
        return self.path / PREDICTIONS_DIR / f"{split}.npz"


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts[:-1])


def find_members(paths: Sequence[str | Path]) -> list[Path]:
    """Member dirs under ``paths``: every run dir with a summary.json, and any given ensemble dir."""
    found: dict[Path, None] = {}
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise ImbalError(f"ensemble: {p}: no such file or directory; expected a run or sweep directory")
        if p.is_file():
            if p.name not in (SUMMARY_FILE, ENSEMBLE_FILE):
                raise ImbalError(f"ensemble: {p}: not a run or sweep directory (nor a {SUMMARY_FILE})")
            p = p.parent
        if (p / ENSEMBLE_FILE).is_file() and not (p / SUMMARY_FILE).is_file():
            found[p.resolve()] = None
            continue
        for s in sorted(p.rglob(SUMMARY_FILE)):
            if _visible(s, p):
                found[s.parent.resolve()] = None
    if not found:
        raise ImbalError(f"ensemble: no finished run (a dir with {SUMMARY_FILE}) under {', '.join(map(str, paths))}")
    return list(found)


def _label(path: Path, summary: dict[str, Any]) -> str:
    loss, seed = summary.get("loss"), summary.get("seed")
    return f"{loss} seed={seed}" if loss is not None else path.name


def load_member(path: Path) -> Member:
    """The member at ``path`` with its stats and manifest (no prediction arrays yet)."""
    ensemble = (path / ENSEMBLE_FILE).is_file() and not (path / SUMMARY_FILE).is_file()
    if ensemble:
        info = read_json_object(path / ENSEMBLE_FILE, expected="written by imbal ensemble")
        data, seed, loss = str(info.get("data", "?")), None, None
        name = f"ensemble {info.get('method', '?')} ({path.name})"
    else:
        from imbal.runner.summary import RunSummary

        s = RunSummary.read(path)
        data, seed, loss = s.data, s.seed, s.loss
        name = _label(path, {"loss": s.loss, "seed": s.seed})
    stats = DataStats.from_dict(read_json_object(path / STATS_FILE, expected="written by every run"),
                                where=str(path / STATS_FILE))
    manifest = read_json_object(path / MANIFEST_FILE, expected="written by every run (the data's identity)")
    return Member(path, name, "ensemble" if ensemble else "run", stats, manifest, data, seed, loss)


def _differs(a: dict, b: dict) -> str | None:
    for key in sorted(set(a) | set(b)):
        if json.dumps(a.get(key), sort_keys=True) != json.dumps(b.get(key), sort_keys=True):
            return key
    return None


def check_compatible(members: list[Member]) -> None:
    """Refuse, in one line naming the odd member, members that do not share data, split and classes."""
    first = members[0]
    if first.stats.task not in TASKS:
        raise ImbalError(f"ensemble: {first.path} is a {first.stats.task} run; ensembles combine "
                         f"{' or '.join(TASKS)} runs")
    for m in members[1:]:
        if m.data != first.data:
            raise ImbalError(f"ensemble: {m.path} was trained on data '{m.data}', {first.path} on '{first.data}'; "
                             "members must share the data")
        key = _differs(first.manifest, m.manifest)
        if key is not None:
            raise ImbalError(
                f"ensemble: {m.path}: {MANIFEST_FILE} differs from {first.path}'s at '{key}' "
                f"({json.dumps(m.manifest.get(key))} vs {json.dumps(first.manifest.get(key))}); members must share "
                "the data split (a sweep over seed with data.seed=${seed} gives each seed its own split: fix data.seed)")
        if list(m.stats.class_names) != list(first.stats.class_names) or m.stats.task != first.stats.task:
            raise ImbalError(f"ensemble: {m.path} has classes {list(m.stats.class_names)} ({m.stats.task}), "
                             f"{first.path} has {list(first.stats.class_names)} ({first.stats.task}); "
                             "members must share the classes")
        if (m.stats.val_from or None) != (first.stats.val_from or None):
            raise ImbalError(f"ensemble: {m.path} has data.val_from={m.stats.val_from}, {first.path} has "
                             f"{first.stats.val_from}; members must share the validation split")
    for m in members:
        for split in ("val", "test"):
            f = m.predictions_file(split)
            if not f.is_file():
                raise ImbalError(f"ensemble: {f} not found; every member needs predictions/val.npz and test.npz "
                                 "(written by every finished classification run)")


def read_split(members: list[Member], split: str, read: list[str]) -> tuple[list[np.ndarray], np.ndarray]:
    """Every member's ``split`` logits and the shared targets; each file read is appended to ``read``.

    Binary logits ``[N]`` come back as two columns ``[0, z]`` (same softmax as the sigmoid).
    Members whose rows, index or targets differ from the first member's are refused in one line.
    """
    logits: list[np.ndarray] = []
    ref_targets = ref_index = None
    for m in members:
        f = m.predictions_file(split)
        try:
            with np.load(f, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError) as exc:
            raise ImbalError(f"ensemble: {f}: not a readable .npz ({exc})") from None
        read.append(str(f))
        for key in ("index", "targets", "logits"):
            if key not in arrays:
                raise ImbalError(f"ensemble: {f} has no '{key}' array; expected index, targets, logits")
        z = arrays["logits"].astype(np.float64)
        if m.stats.task == BINARY:
            z = np.stack([np.zeros_like(z.reshape(-1)), z.reshape(-1)], axis=1)
        if z.ndim != 2 or z.shape[1] != m.stats.num_classes:
            raise ImbalError(f"ensemble: {f}: logits of shape {list(arrays['logits'].shape)}; expected "
                             f"[N, {m.stats.num_classes}]")
        if ref_targets is None:
            ref_targets, ref_index = arrays["targets"], arrays["index"]
        elif len(arrays["targets"]) != len(ref_targets) or not np.array_equal(arrays["index"], ref_index) \
                or not np.array_equal(arrays["targets"], ref_targets):
            raise ImbalError(f"ensemble: {f}: {len(arrays['targets'])} rows whose index or targets differ from "
                             f"{members[0].predictions_file(split)} ({len(ref_targets)} rows); members must share "
                             f"the {split} split")
        logits.append(z)
        m.splits[split] = arrays
    return logits, np.asarray(ref_targets)


def load_members(paths: Sequence[str | Path]) -> list[Member]:
    """Find, load and check the members under ``paths`` (no prediction arrays read yet)."""
    members = [load_member(p) for p in find_members(paths)]
    check_compatible(members)
    return members
