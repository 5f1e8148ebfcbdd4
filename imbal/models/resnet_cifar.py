"""``model=resnet32``: the CIFAR ResNet of He et al. (2016, Section 4.2) used by the LDAM, CB and LA papers.

Three stages of ``n`` basic blocks (16, 32, 64 channels; depth ``6n + 2``,
ResNet-32: ``n = 5``), 3x3 stem, global average pooling; identity shortcuts
with zero-padding when the shape changes ("option A", no extra parameters),
Kaiming-normal initialisation; ~0.46 M parameters with a 10-way linear head.
The layout and initialisation follow the LDAM reference code
(``models/resnet_cifar.py``, itself from Yerlan Idelbayev's ``resnet_cifar10``);
written out here because torchvision has no CIFAR ResNet.  The backbone stops
at the pooled 64-d features: the task adds the linear or cosine head.
"""

from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from imbal.errors import ImbalError


class _PadShortcut(nn.Module):
    """Option A shortcut: subsample by 2 and zero-pad the new channels (He et al. 2016, Sec. 4.2)."""

    def __init__(self, planes: int):
        super().__init__()
        self.pad = planes // 4

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = _PadShortcut(planes)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    """CIFAR ResNet of depth ``6 * blocks + 2`` returning pooled features ``[N, 64 * width]``.

    Args:
        in_shape: input shape ``[C, H, W]`` (injected from the data).
        blocks: basic blocks per stage (5: ResNet-32; 3: ResNet-20; 9: ResNet-56).
        width: channel multiplier of the 16/32/64 stages.
    """

    def __init__(self, *, in_shape: Sequence[int] = (3, 32, 32), blocks: int = 5, width: int = 1):
        super().__init__()
        if len(in_shape) != 3:
            raise ImbalError(f"model 'resnet32' takes images [C, H, W], but the data gives inputs of shape {list(in_shape)}")
        if int(blocks) < 1 or int(width) < 1:
            raise ImbalError(f"model 'resnet32': blocks and width must be >= 1, got blocks={blocks}, width={width}")
        c = [16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(int(in_shape[0]), c[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c[0])
        layers, in_planes = [], c[0]
        for i, planes in enumerate(c):
            stage = []
            for j in range(int(blocks)):
                stage.append(BasicBlock(in_planes, planes, stride=2 if (i > 0 and j == 0) else 1))
                in_planes = planes
            layers.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3 = layers
        self.out_features = c[2]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


def resnet32(*, in_shape: Sequence[int] = (3, 32, 32)) -> ResNetCifar:
    return ResNetCifar(in_shape=in_shape, blocks=5)
