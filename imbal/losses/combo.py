"""A weighted sum of registered losses."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from imbal.errors import ImbalError
from imbal.kinds import TASKS
from imbal.losses.base import ImbalanceLoss


def _as_terms(terms: Any) -> list[dict[str, Any]]:
    if isinstance(terms, str):
        import yaml  # a CLI string such as '[{name: focal, weight: 10}, {name: fbeta}]'

        terms = yaml.safe_load(terms)
    try:  # Hydra hands over ListConfig / DictConfig
        from omegaconf import OmegaConf

        if OmegaConf.is_config(terms):
            terms = OmegaConf.to_container(terms, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf ships with hydra
        pass
    if not isinstance(terms, Sequence) or isinstance(terms, str) or not terms:
        raise ImbalError(f"loss 'combo': terms must be a non-empty list of {{name: ..., weight: ...}}, got {terms!r}")
    out = []
    for i, term in enumerate(terms):
        if isinstance(term, str):
            term = {"name": term}
        if not isinstance(term, Mapping) or "name" not in term:
            raise ImbalError(f"loss 'combo': term {i} must be a mapping with a 'name', got {term!r}")
        out.append(dict(term))
    return out


class ComboLoss(ImbalanceLoss):
    """Weighted sum of registered losses: ``sum_k weight_k * loss_k(logits, target)``.

    Each term is built by ``imbal.losses.build`` with the same data statistics
    (class_counts, num_classes, task, test_prior) that were injected here, so a
    term gets exactly what it would get alone, and a term unsuitable for the task
    is refused with the registry's message.

    Args:
        terms: a list of ``{name: <loss>, weight: <float, default 1>, <hyper-parameters>...}``,
            e.g. ``[{name: focal, weight: 10}, {name: fbeta}]`` (also accepted as that YAML string).

    Shape:
        that of the terms; every term must reduce to a scalar (the default ``mean``).

    Reference:
        Taghanaki et al. Combo Loss. Comput. Med. Imaging Graph. 2019 (Dice + CE);
        the focal + Dice sums common in segmentation.
    """

    tasks = TASKS

    def __init__(
        self,
        *,
        terms: Any = None,
        class_counts: Sequence[int] | None = None,
        num_classes: int | None = None,
        task: str | None = None,
        test_prior: Sequence[float] | None = None,
    ):
        super().__init__()
        from imbal.losses.registry import build  # late: the registry imports loss modules lazily

        if terms is None:
            raise ImbalError("loss 'combo' needs terms, e.g. loss.terms='[{name: focal, weight: 10}, {name: fbeta}]'")
        stats = {
            k: v
            for k, v in dict(
                class_counts=class_counts, num_classes=num_classes, task=task, test_prior=test_prior
            ).items()
            if v is not None
        }
        losses, weights, names = [], [], []
        for term in _as_terms(terms):
            name = term.pop("name")
            weight = term.pop("weight", 1.0)
            try:
                weight = float(weight)
            except (TypeError, ValueError):
                raise ImbalError(f"loss 'combo': weight of term '{name}' must be a number, got {weight!r}") from None
            if not math.isfinite(weight):
                raise ImbalError(f"loss 'combo': weight of term '{name}' must be finite, got {weight!r}")
            losses.append(build(name, stats=stats, **term))
            weights.append(weight)
            names.append(name)
        heads = {getattr(loss, "head", "linear") for loss in losses}
        if len(heads) > 1:
            raise ImbalError(f"loss 'combo': terms {names} ask for different classifier heads {sorted(heads)}")
        self.head = heads.pop()  # the task reads the instance attribute
        self.terms = nn.ModuleList(losses)
        self.names = names
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32))

    def set_epoch(self, epoch: int) -> None:
        for loss in self.terms:
            set_epoch = getattr(loss, "set_epoch", None)
            if callable(set_epoch):
                set_epoch(epoch)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        total: Tensor | None = None
        for w, loss in zip(self.weights.tolist(), self.terms):
            value = loss(logits, target)
            if value.ndim != 0:
                raise ImbalError(
                    f"loss 'combo': a term returned shape {tuple(value.shape)}; terms must reduce to a scalar"
                )
            total = w * value if total is None else total + w * value
        assert total is not None
        return total
