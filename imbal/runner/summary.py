"""The schema of ``summary.json``: :class:`RunSummary`, written by the runner when a run completes,
read by ``imbal report``, ``imbal predict`` and anything else that consumes finished runs."""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from imbal.errors import ImbalError
from imbal.io import read_json_object, write_json_atomic
from imbal.kinds import MULTICLASS

SUMMARY_FILE = "summary.json"
#: bumped when a field changes meaning; 1 = the untyped dict with data extras at the top level
SCHEMA_VERSION = 2


@dataclass
class RunSummary:
    """One finished run.

    ``val``/``test``: metric name -> value (scalars, and lists such as ``per_class_recall``) of the
    best checkpoint; ``posthoc``: correction name -> test metrics (plus what the correction chose);
    ``data_extra``: data-specific facts (e.g. ``bayes_balanced_error`` of the Gaussian data), kept
    under their own key so they can never overwrite a summary field; ``absent_classes``: split -> the
    classes that split has no sample of (its macro metrics average over the classes present, and its
    ``per_class_recall`` holds ``null`` for them: a NaN is written as ``null``, JSON has no NaN).
    """

    data: str
    model: str
    loss: str
    seed: int
    task: str
    class_counts: list[int] | None
    class_names: list[str]
    val: dict[str, Any] = field(default_factory=dict)
    test: dict[str, Any] = field(default_factory=dict)
    posthoc: dict[str, dict[str, Any]] = field(default_factory=dict)
    posthoc_skipped: dict[str, str] = field(default_factory=dict)
    loss_hparams: dict[str, Any] = field(default_factory=dict)
    best_checkpoint: str | None = None
    epochs_completed: int = 0
    global_step: int = 0
    wall_time_s: float = 0.0
    nonfinite_batches_skipped: int = 0
    peak_memory_mb: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    git_commit: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    data_extra: dict[str, Any] = field(default_factory=dict)
    absent_classes: dict[str, list[str]] = field(default_factory=dict)
    # a stage-2 run (stage=crt|lws|finetune): its stage, and init_from = the stage-1 run it started from
    # (path, checkpoint, run_dir, and that run's data/model/loss/test/posthoc); None for a one-stage run
    stage: str | None = None
    init_from: dict[str, Any] | None = None
    schema: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def metric(self, name: str) -> float | None:
        """``split/key`` (e.g. ``val/balanced_accuracy``) of the raw results, or None."""
        split, _, key = name.partition("/")
        value = {"val": self.val, "test": self.test}.get(split, {}).get(key)
        return None if value is None else float(value)

    def write(self, run_dir: str | Path) -> Path:
        """``summary.json`` in ``run_dir``; NaN (a class absent from a split) as ``null``."""
        return write_json_atomic(Path(run_dir) / SUMMARY_FILE, _nan_to_none(self.to_dict()))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = SUMMARY_FILE) -> "RunSummary":
        """A summary from its JSON object; summaries of schema 1 (extras at the top level) are read too."""
        if not isinstance(data, dict):
            raise ImbalError(f"{where}: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        legacy = {k: v for k, v in data.items() if k not in known}
        if legacy:
            values["data_extra"] = {**legacy, **(values.get("data_extra") or {})}
        config = values.get("config") if isinstance(values.get("config"), dict) else {}
        for key in ("data", "model", "loss"):  # schema 1 summaries could lack the names
            if not values.get(key):
                values[key] = str(((config.get(key) or {}).get("name")) or "?")
        values.setdefault("seed", config.get("seed", 0))
        if not isinstance(values.get("loss_hparams"), dict):
            values["loss_hparams"] = {k: v for k, v in (config.get("loss") or {}).items() if k != "name"}
        values.setdefault("task", MULTICLASS)
        values.setdefault("class_counts", None)
        values.setdefault("class_names", [])
        values.setdefault("schema", 1)
        try:
            return cls(**values)
        except TypeError as exc:
            raise ImbalError(f"{where}: {exc}") from None

    @classmethod
    def read(cls, path: str | Path) -> "RunSummary":
        """The summary at ``path`` (a ``summary.json`` or a run dir holding one), in one-line errors."""
        path = Path(path)
        if path.is_dir():
            path = path / SUMMARY_FILE
        data = read_json_object(path, expected="expected the directory of a finished run")
        return cls.from_dict(data, where=str(path))


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    return value


def absent_from_results(results: dict[str, dict], class_names: list[str], *, warn: bool = True) -> dict[str, list[str]]:
    """Split -> the classes with no sample in it (NaN in its ``per_class_recall``); with ``warn``, one line
    on stderr naming them when there are any."""
    from imbal.metrics.classification import absent_classes

    out = {}
    for split in ("val", "test"):
        names = absent_classes((results.get(split) or {}).get("per_class_recall"), class_names)
        if names:
            out[split] = names
    if out and warn:
        parts = "; ".join(f"the {split} split has no sample of class(es) {', '.join(n)}" for split, n in out.items())
        print(f"imbal: warning: {parts}; macro metrics average over the classes present", file=sys.stderr, flush=True)
    return out
