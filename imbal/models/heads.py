"""Classifier heads: linear, or cosine-normalised for margin losses (LDAM, AM-softmax)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class CosineHead(nn.Module):
    """``cos(theta)`` between L2-normalised features and L2-normalised class weights.

    The ``NormedLinear`` of the LDAM reference code: outputs lie in [-1, 1];
    the loss applies its own scale ``s``.  No bias.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(F.normalize(x.float(), dim=1), F.normalize(self.weight.float(), dim=1))


def build_head(kind: str, in_features: int, out_features: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(in_features, out_features)
    if kind == "cosine":
        return CosineHead(in_features, out_features)
    raise ValueError(f"unknown head kind {kind!r}; expected 'linear' or 'cosine'")
