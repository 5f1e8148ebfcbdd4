"""Backbones and classifier heads.

A backbone maps a batch of inputs to features ``[N, D]`` and exposes
``out_features = D``; the task adds the classifier head (a linear layer, or
the cosine head a margin loss asks for), so any backbone works with any loss.
Library models: ``timm_backbone`` (any timm image model), ``smp_model``
(segmentation_models_pytorch); ``finetune`` holds the controls every backbone
gets (``model.freeze``, weights files, optimiser parameter groups).
"""

from imbal.models.heads import CosineHead, build_head  # noqa: F401
from imbal.models.simple import MLP, SmallCNN  # noqa: F401
