"""Test-time augmentation of a mask model: the mean of the sigmoid probabilities over dihedral transforms.

Each transform is applied to the input, the model runs on the batch of transformed
copies, and the transform is undone on each output before the mean, so a model
that is equivariant to the transforms gives its plain output (up to float rounding).

* ``none``: the input only;
* ``flips``: identity, horizontal flip, vertical flip and both (= 180-degree rotation);
* ``d4``: the 8 symmetries of the square (rotations by 0, 90, 180, 270 degrees, each
  with and without a horizontal flip); rotations need square inputs and a
  non-square image is refused in one line.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from imbal.errors import ImbalError

#: mode -> (horizontal flip first?, quarter turns) of each transform; the identity comes first.
MODES: dict[str, tuple[tuple[bool, int], ...]] = {
    "none": ((False, 0),),
    "flips": ((False, 0), (True, 0), (True, 2), (False, 2)),  # id, h, v (= h then 180), hv (= 180)
    "d4": tuple((flip, k) for flip in (False, True) for k in range(4)),
}


def check_mode(mode: str, shape: tuple[int, int] | None = None, *, where: str = "") -> None:
    """Refuse an unknown mode, or rotations (``d4``) on a non-square ``shape`` (rows, columns), in one line."""
    if mode not in MODES:
        raise ImbalError(f"--tta {mode!r} unknown; expected one of: {', '.join(MODES)}")
    if shape is not None and any(k % 2 for _, k in MODES[mode]) and shape[0] != shape[1]:
        raise ImbalError(f"--tta {mode}: {where + ' ' if where else ''}is {shape[0]}x{shape[1]}; 90-degree rotations "
                         f"need square inputs (use --tta flips, or data.resize for square inputs)")


def forward_t(x: Tensor, flip: bool, k: int) -> Tensor:
    """The transform ``(flip, k)`` of ``[..., H, W]``: a horizontal flip (if ``flip``), then ``k`` quarter turns."""
    if flip:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k, dims=(-2, -1)) if k % 4 else x


def inverse_t(y: Tensor, flip: bool, k: int) -> Tensor:
    """Undo :func:`forward_t` on ``[..., H, W]``."""
    if k % 4:
        y = torch.rot90(y, -k, dims=(-2, -1))
    return torch.flip(y, dims=(-1,)) if flip else y


@torch.no_grad()
def tta_probs(model: nn.Module | Callable[[Tensor], Tensor], x: Tensor, mode: str = "none") -> tuple[Tensor, Tensor]:
    """(mean probability over the transforms, probability of the plain input), each ``[N, H, W]``.

    ``model(x)`` gives mask logits ``[N, 1, H, W]`` (or ``[N, H, W]``).  All transformed
    copies of the batch run as one batch of ``N * len(transforms)`` images.  An equivariant
    model's TTA mean equals its plain probability (up to float rounding).
    """
    check_mode(mode, tuple(x.shape[-2:]), where="the input")
    ts = MODES[mode]
    batch = torch.cat([forward_t(x, f, k) for f, k in ts])
    logits = model(batch).float()
    if logits.ndim == 4:
        logits = logits[:, 0]
    probs = torch.sigmoid(logits).split(x.shape[0])
    outs = [inverse_t(p, f, k) for p, (f, k) in zip(probs, ts)]
    # summed in float64: the mean of equal float32 values is then exactly that value
    return torch.stack(outs).double().mean(0).float(), outs[0]
