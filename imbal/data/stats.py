"""What a data module tells the rest of a run about its data (:class:`DataStats`).

It is the one object that crosses from data to models, losses, metrics and post-hoc
corrections, and it is stored in every run dir (``data_stats.json``) so that prediction
rebuilds a model without reading the training data again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from imbal.kinds import BINARY, MODALITIES, TASKS

STATS_FILE = "data_stats.json"


@dataclass
class TextInfo:
    """What a text backbone needs of the data's tokenizer."""

    vocab_size: int
    pad_id: int = 0
    tokenizer_kind: str = "word"
    #: the trained tokenizer's JSON file, or a local Hugging Face tokenizer directory
    tokenizer_file: str | None = None
    #: two texts per sample (duplicate-question pairs)
    pair: bool = False
    max_length: int = 128


@dataclass
class DataStats:
    """Exposed by every data module after ``setup()``.

    Attributes:
        task: a task kind (:data:`imbal.kinds.TASKS`).
        num_classes: classes (2 for binary).
        class_counts: training-split counts per class, after any long-tail
            subsampling (for binary: ``[n_neg, n_pos]``; multilabel: positives
            per label), or None when the data cannot count them.
        class_names: one name per class.
        modality: what the inputs are (:data:`imbal.kinds.MODALITIES`); a model
            declares which modalities it accepts.
        input_shape: shape of one input, without the batch dimension.
        test_prior: known class prior of the test split, if it differs from training.
        num_train: training samples (differs from ``sum(class_counts)`` for multilabel).
        val_from: where the validation split comes from (``train``, ``test``, ``val_root``, ...),
            so a correction tuned on validation can say what it saw.
        text: the tokenizer facts a text backbone needs (text data only).
        extra: data-specific facts worth recording (e.g. ``bayes_balanced_error``); written
            under ``data_extra`` in ``summary.json``, never read by another layer.
    """

    task: str
    num_classes: int
    class_counts: list[int] | None
    class_names: list[str]
    modality: str
    input_shape: tuple[int, ...] = ()
    test_prior: list[float] | None = None
    num_train: int | None = None
    val_from: str | None = None
    text: TextInfo | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"DataStats.task must be one of {TASKS}, got {self.task!r}")
        if self.modality not in MODALITIES:
            raise ValueError(f"DataStats.modality must be one of {MODALITIES}, got {self.modality!r}")
        if self.class_counts is not None and len(self.class_counts) != self.num_classes:
            raise ValueError(
                f"DataStats: {len(self.class_counts)} class counts for {self.num_classes} classes"
            )
        if isinstance(self.text, Mapping):
            self.text = TextInfo(**self.text)
        self.input_shape = tuple(self.input_shape)

    @property
    def num_outputs(self) -> int:
        """Width of the classifier's output: 1 for binary (``[N]`` logits), else C."""
        return 1 if self.task == BINARY else self.num_classes

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

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "data stats") -> "DataStats":
        """The inverse of :meth:`to_dict`; unknown or missing keys are refused in one line."""
        from imbal.errors import ImbalError

        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ImbalError(f"{where}: unknown key '{unknown[0]}' (expected: {', '.join(sorted(names))})")
        try:
            return cls(**dict(data))
        except (TypeError, ValueError) as exc:
            raise ImbalError(f"{where}: {exc}") from None
