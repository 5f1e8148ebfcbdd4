"""Mixing recipes around any loss: ``mixing=none|mixup|cutmix|remix|manifold_mixup``.

``build_mixing(node, stats, backbone)`` turns the ``mixing`` config node into a :class:`Mixer` (or
None for ``none``), refusing in one line a method the data or the backbone cannot take (CutMix on
text or vectors, manifold mixup on a backbone without stages, Remix without one class per sample).
The task's ``training_step`` calls ``mixer.loss(task, x, y)`` while ``mixer.active(epoch)``.

The loss is mixed, ``lam * L(logits, y_a) + (1 - lam) * L(logits, y_b)``, which works with every
registered loss (exact for losses linear in the one-hot target); a loss that declares
``accepts_soft_targets = True`` gets the mixed one-hot target ``[N, C]`` instead (multiclass).
CutMix on segmentation cuts the mask with the image, and the loss sees the cut mask.

Keys: ``alpha`` (Beta(alpha, alpha)), ``prob`` (chance that a batch is mixed), ``until_epoch``
(mix the epochs before it, then train unmixed: BagofTricks' "mix first, then fine-tune without";
null: every epoch), ``pair_sampler`` (``none`` | ``class_balanced``: see
:func:`imbal.mixing.batch.pair_index`), Remix's ``kappa`` and ``tau``, manifold mixup's ``stage``.
"""

from __future__ import annotations

import weakref
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from imbal.errors import ImbalError
from imbal.kinds import BINARY, IMAGE, MASK, MULTICLASS, SEGMENTATION, TEXT
from imbal.mixing import batch as B
from imbal.mixing.manifold import embedding_modules, mix_outputs, stage_names

METHODS = ("none", "mixup", "cutmix", "remix", "manifold_mixup")
PAIR_SAMPLERS = ("none", "class_balanced")
#: keys only some methods take (the others take alpha, prob, until_epoch, pair_sampler)
OWN_KEYS = {"remix": ("kappa", "tau"), "manifold_mixup": ("stage",)}
#: task kinds with one class per sample (Remix's rule, a class-balanced pair)
SINGLE_LABEL = (MULTICLASS, BINARY)


class Mixer:
    """One mixing method with its parameters; ``loss(task, x, y)`` -> (mixed loss, logits)."""

    def __init__(self, method: str, *, task: str, modality: str, class_counts=None, num_classes: int = 0,
                 alpha: float = 1.0, prob: float = 1.0, until_epoch: int | None = None, pair_sampler: str = "none",
                 kappa: float = 3.0, tau: float = 0.5, stages: list[str] = (), stage: int | None = None):
        self.method, self.task, self.modality = method, task, modality
        self.counts = torch.as_tensor(list(class_counts), dtype=torch.float64) if class_counts is not None else None
        self.num_classes = int(num_classes)
        self.alpha, self.prob, self.until_epoch = float(alpha), float(prob), until_epoch
        self.pair_sampler, self.kappa, self.tau = pair_sampler, float(kappa), float(tau)
        self.stages, self.stage = list(stages), stage
        self._last: tuple | None = None  # (weak reference to the batch, its draw): see _draw

    def active(self, epoch: int) -> bool:
        """Mixing applies in epochs ``0 .. until_epoch - 1`` (all epochs when ``until_epoch`` is null)."""
        return self.until_epoch is None or epoch < int(self.until_epoch)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_last": None}  # a weak reference does not pickle (DDP spawn, deepcopy)

    def _draw(self, x: Any, y: Tensor, lam: float | None, idx: Tensor | None, stage: int | None) -> tuple:
        """(mixed?, lam, pair index, CutMix box, stage) of a batch.  Called again with the very same batch (SAM
        and ImbSAM call the training step twice per step), it returns the same draw, so both passes see the
        same mixed batch and loss."""
        key = x.get("input_ids") if isinstance(x, Mapping) else x
        last = getattr(self, "_last", None)
        given = lam is not None or idx is not None or stage is not None
        if not given and last is not None and last[0]() is key:
            return last[1]
        mixed = lam is not None or self.prob >= 1.0 or float(torch.rand(())) < self.prob
        lam = B.sample_lam(self.alpha) if lam is None else float(lam)
        idx = (B.pair_index(y, len(y), self.pair_sampler) if idx is None else idx).to(y.device)
        box = B.cutmix_box(x.shape[-2], x.shape[-1], lam) if self.method == "cutmix" else None
        if self.method == "manifold_mixup" and stage is None:
            stage = self.stage if self.stage is not None else int(torch.randint(len(self.stages) + 1, ()))
        draw = (mixed, lam, idx, box, stage)
        if not given and isinstance(key, Tensor):
            self._last = (weakref.ref(key), draw)
        return draw

    def loss(self, task: Any, x: Any, y: Tensor, *, lam: float | None = None, idx: Tensor | None = None,
             stage: int | None = None) -> tuple[Tensor, Tensor]:
        """The mixed loss of a batch and the logits it was computed on (``lam``/``idx``/``stage``: fixed values,
        for tests; otherwise drawn from torch's global RNG)."""
        mixed, lam, idx, box, stage = self._draw(x, y, lam, idx, stage)
        if not mixed:  # mixing.prob: this batch trains unmixed
            logits = task(x)
            return task.loss_fn(logits, y), logits
        y_b = y[idx]
        if self.method == "cutmix":
            x_cut, mask_cut, lam = B.cutmix(x, idx, box, y if self.task == SEGMENTATION else None)
            logits = task(x_cut)
            if mask_cut is not None:  # the mask was cut with the image: the loss sees the true target
                return task.loss_fn(logits, mask_cut), logits
        else:
            logits = self._mixed_forward(task, x, idx, lam, stage)
        weight = None
        if self.method == "remix":
            a, b = y.detach().long().cpu(), y_b.detach().long().cpu()  # float64 ratios on the CPU (no MPS float64)
            weight = B.remix_label_weights(lam, self.counts[a], self.counts[b], self.kappa, self.tau)
        if getattr(task.loss_fn, "accepts_soft_targets", False) and self.task == MULTICLASS:
            return task.loss_fn(logits, B.soft_targets(y, y_b, lam, self.num_classes, weight)), logits
        return B.mixed_loss(task.loss_fn, logits, y, y_b, lam, weight), logits

    def _mixed_forward(self, task: Any, x: Any, idx: Tensor, lam: float, stage: int | None) -> Tensor:
        if isinstance(x, Mapping):  # text: mix the embeddings
            with mix_outputs(embedding_modules(task.backbone), idx, lam):
                return task(x)
        if self.method == "manifold_mixup" and stage:  # stage 0: the input
            with mix_outputs([task.backbone.get_submodule(self.stages[stage - 1])], idx, lam):
                return task(x)
        return task(B.mix_tensors(x, x[idx], lam))


def _refuse_unless_single_label(what: str, task: str, instead: str) -> None:
    if task not in SINGLE_LABEL:
        raise ImbalError(f"{what}: the data's task is '{task}'; it needs one class per sample "
                         f"(task {' or '.join(SINGLE_LABEL)}); use {instead}")


def _check(method: str, opts: dict, stats, backbone: nn.Module, data: str, model: str) -> list[str]:
    """One-line refusals of what this data and backbone cannot take; returns the backbone's stages."""
    modality = stats.modality
    if method == "cutmix" and modality not in (IMAGE, MASK):
        raise ImbalError(f"mixing=cutmix: data '{data}' gives {modality} inputs; CutMix cuts a box out of images "
                         f"(and their masks): use mixing=mixup{' (text is mixed at the embedding)' if modality == TEXT else ''} "
                         "or mixing=none")
    if method == "remix":
        _refuse_unless_single_label("mixing=remix", stats.task, "mixing=mixup")
        if stats.class_counts is None:
            raise ImbalError(f"mixing=remix: data '{data}' gives no class counts; Remix's label rule needs them")
    if opts.get("pair_sampler", "none") != "none":
        _refuse_unless_single_label(f"mixing.pair_sampler={opts['pair_sampler']}", stats.task, "mixing.pair_sampler=none")
    if modality == TEXT and method in ("mixup", "remix") and not embedding_modules(backbone):
        raise ImbalError(f"mixing={method}: model '{model}' has no nn.Embedding to mix text at; use mixing=none")
    if method != "manifold_mixup":
        return []
    stages = [] if modality == TEXT else stage_names(backbone)
    if not stages:
        raise ImbalError(f"mixing=manifold_mixup: model '{model}' exposes no stages to mix at (stages: mlp, "
                         "small_cnn, resnet32, resnet18/50, timm, or a backbone's mixing_stages attribute); use mixing=mixup")
    stage = opts.get("stage")
    if stage is not None and stage > len(stages):
        raise ImbalError(f"mixing.stage={stage}: model '{model}' has {len(stages)} stages; expected 0 (the input) "
                         f"to {len(stages)}, or null (a random one per batch)")
    for name in stages:  # a wrong mixing_stages name fails here, not mid-training
        try:
            backbone.get_submodule(name)
        except AttributeError:
            raise ImbalError(f"mixing=manifold_mixup: model '{model}' lists stage '{name}' (mixing_stages), "
                             "but has no such submodule") from None
    return stages


def build_mixing(node: Mapping | None, stats, backbone: nn.Module, *, data: str = "data",
                 model: str = "model") -> Mixer | None:
    """The :class:`Mixer` of a ``mixing`` node (a plain dict), or None for ``mixing=none`` / no node."""
    if not node:
        return None
    opts = dict(node)
    method = str(opts.pop("name", "none"))
    if method not in METHODS:
        raise ImbalError(f"mixing={method}: expected one of {', '.join(METHODS)}")
    if method == "none":
        return None
    known = ("alpha", "prob", "until_epoch", "pair_sampler") + OWN_KEYS.get(method, ())
    unknown = sorted(k for k in opts if k not in known)
    if unknown:
        raise ImbalError(f"mixing.{unknown[0]}: not a key of mixing={method}; expected {', '.join(known)}")
    stages = _check(method, opts, stats, backbone, data, model)
    return Mixer(method, task=stats.task, modality=stats.modality, class_counts=stats.class_counts,
                 num_classes=stats.num_classes, stages=stages, **opts)
