"""What a data module tells the rest of a run about its data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

TASKS = ("multiclass", "binary", "multilabel", "segmentation")
MODALITIES = ("image", "vector", "text", "mask")


@dataclass
class DataStats:
    """Exposed by every data module after ``setup()``.

    Attributes:
        task: one of ``multiclass``, ``binary``, ``multilabel``, ``segmentation``.
        num_classes: classes (2 for binary).
        class_counts: training-split counts per class, after any long-tail
            subsampling (for binary: ``[n_neg, n_pos]``; multilabel: positives
            per label), or None when the data cannot count them.
        class_names: one name per class.
        modality: what the inputs are (``image``, ``vector``, ``text``, ``mask``);
            a model declares which modalities it accepts.
        input_shape: shape of one input, without the batch dimension.
        test_prior: known class prior of the test split, if it differs from training.
        extra: data-specific facts worth recording (e.g. ``bayes_balanced_error``).
    """

    task: str
    num_classes: int
    class_counts: list[int] | None
    class_names: list[str]
    modality: str
    input_shape: tuple[int, ...] = ()
    test_prior: list[float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"DataStats.task must be one of {TASKS}, got {self.task!r}")
        if self.class_counts is not None and len(self.class_counts) != self.num_classes:
            raise ValueError(
                f"DataStats: {len(self.class_counts)} class counts for {self.num_classes} classes"
            )

    @property
    def num_outputs(self) -> int:
        """Width of the classifier's output: 1 for binary (``[N]`` logits), else C."""
        return 1 if self.task == "binary" else self.num_classes

    @property
    def prior(self) -> list[float] | None:
        if self.class_counts is None:
            return None
        total = float(sum(self.class_counts))
        return [c / total for c in self.class_counts] if total > 0 else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d
