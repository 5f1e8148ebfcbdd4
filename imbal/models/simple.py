"""Small backbones for the embedded data sets."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


class MLP(nn.Module):
    """Fully connected backbone for vectors (``data=gaussian_lt``); flattens any input."""

    def __init__(self, *, in_shape: Sequence[int], hidden: Sequence[int] = (64, 64), dropout: float = 0.0):
        super().__init__()
        d = int(torch.tensor(list(in_shape)).prod())
        layers: list[nn.Module] = [nn.Flatten()]
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU(inplace=True)]
            if dropout:
                layers.append(nn.Dropout(dropout))
            d = h
        self.net = nn.Sequential(*layers)
        self.out_features = d

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class SmallCNN(nn.Module):
    """Two 3x3 conv blocks and global average pooling, for small images (``data=digits_lt``)."""

    def __init__(self, *, in_shape: Sequence[int], width: int = 32, dropout: float = 0.1):
        super().__init__()
        c = int(in_shape[0])

        def block(i: int, o: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True),
                nn.Conv2d(o, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True),
            )

        self.features = nn.Sequential(
            block(c, width), nn.MaxPool2d(2), block(width, 2 * width),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
        )
        self.out_features = 2 * width

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)
