"""Task kinds and input modalities: the one set of names every layer agrees on.

A task kind fixes the shapes of logits and targets (docs/design.md, "Contracts"):

==============  ====================  ==========================================
task            logits                target
==============  ====================  ==========================================
multiclass      ``[N, C]``            ``[N]`` int64 in ``[0, C)``
binary          ``[N]``               ``[N]`` float in {0, 1}
multilabel      ``[N, C]``            ``[N, C]`` float in {0, 1}
segmentation    ``[N, 1, H, W]``      ``[N, H, W]`` float in {0, 1} (binary masks)
==============  ====================  ==========================================

The values are plain strings (they are written to JSON and compared with what a
config says), typed as :data:`TaskKind` / :data:`Modality` for checkers.
"""

from __future__ import annotations

from typing import Final, Literal

TaskKind = Literal["multiclass", "binary", "multilabel", "segmentation"]
Modality = Literal["image", "vector", "text", "mask"]

MULTICLASS: Final = "multiclass"
BINARY: Final = "binary"
MULTILABEL: Final = "multilabel"
SEGMENTATION: Final = "segmentation"

#: every task kind, in the order listings show them
TASKS: Final[tuple[str, ...]] = (MULTICLASS, BINARY, MULTILABEL, SEGMENTATION)
#: task kinds whose outputs are one score per class (post-hoc corrections, classification metrics)
CLASSIFICATION: Final[tuple[str, ...]] = (MULTICLASS, BINARY, MULTILABEL)
#: task kinds scored per class with a sigmoid (one independent decision per output)
SIGMOID: Final[tuple[str, ...]] = (BINARY, MULTILABEL, SEGMENTATION)

IMAGE: Final = "image"
VECTOR: Final = "vector"
TEXT: Final = "text"
MASK: Final = "mask"

#: every input modality; a model config's ``accepts`` lists the ones it takes
MODALITIES: Final[tuple[str, ...]] = (IMAGE, VECTOR, TEXT, MASK)

#: the data splits, in run order
SPLITS: Final[tuple[str, ...]] = ("train", "val", "test")
