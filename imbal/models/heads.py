"""Classifier heads: linear, or cosine-normalised for margin losses (LDAM, AM-softmax).

Heads are registered in :data:`HEADS` (an :class:`imbal.registry.Registry`) by
the name a loss asks for in its ``head`` attribute.  A user's head needs no
registration: :func:`build_head` also takes its class by dotted path.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imbal.errors import ImbalError
from imbal.registry import Registry

#: Classifier heads by name: ``linear`` and ``cosine``.
HEADS: Registry = Registry("head kind")

HEADS.register("linear", nn.Linear)


@HEADS.register("cosine")
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


def build_head(kind: Any, in_features: int, out_features: int) -> nn.Module:
    """The classifier layer mapping ``[N, in_features]`` features to ``[N, out_features]`` logits.

    ``kind`` is a name registered in :data:`HEADS` (``linear``, ``cosine``), or a
    user's head without registration: a dotted path (``"mypkg.heads.MyHead"``
    or ``"mypkg.heads:MyHead"``), a node ``{"_target_": "mypkg.heads.MyHead",
    **params}``, or the class itself.  The contract: an ``nn.Module`` class (or a
    function returning one) called as ``MyHead(in_features, out_features,
    **params)``, positionally, whose forward maps features ``[N, in_features]``
    to logits ``[N, out_features]``.

    Raises:
        ImbalError (a ValueError): an unknown name (one line listing the names), a
            path that cannot be imported, a parameter the head does not take, or an
            object that is not an ``nn.Module``.
    """
    head = HEADS.build(kind, in_features, out_features)
    if not isinstance(head, nn.Module):
        raise ImbalError(f"head kind {kind!r} gave a {type(head).__name__}, not a torch.nn.Module")
    return head
