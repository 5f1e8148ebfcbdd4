"""Test-time augmentation: undone transforms, an equivariant model equals no TTA (to float rounding), refusals."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from imbal.errors import ImbalError
from imbal.predict.tta import MODES, check_mode, forward_t, inverse_t, tta_probs


def test_every_transform_is_undone_and_d4_has_eight_distinct_ones():
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5)
    seen = set()
    for f, k in MODES["d4"]:
        y = forward_t(x, f, k)
        assert torch.equal(inverse_t(y, f, k), x)
        seen.add(tuple(y[0, 0].flatten().tolist()))
    assert len(seen) == 8
    assert len(MODES["flips"]) == 4 and len(MODES["none"]) == 1
    # the flips: identity, horizontal, vertical, both
    got = {tuple(forward_t(x, f, k)[0, 0].flatten().tolist()) for f, k in MODES["flips"]}
    want = {tuple(t[0, 0].flatten().tolist()) for t in (x, x.flip(-1), x.flip(-2), x.flip(-1).flip(-2))}
    assert got == want


def pointwise():
    """An equivariant model: a 1x1 convolution (the same function of every pixel's channels)."""
    torch.manual_seed(0)
    return nn.Conv2d(3, 1, kernel_size=1).eval()


@pytest.mark.parametrize("mode", ["flips", "d4"])
def test_equivariant_model_tta_equals_no_tta(mode):
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    model = pointwise()
    mean, plain = tta_probs(model, x, mode)
    with torch.no_grad():
        want = torch.sigmoid(model(x))[:, 0]
    # equal up to float rounding: the copies run as one batch, and CPU kernels may pick another code path (or
    # vector lane) for another batch size or pixel position, so bit-equality is not what torch promises
    assert torch.allclose(plain.double(), want.double(), rtol=0, atol=1e-6)
    assert torch.allclose(mean.double(), plain.double(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("mode", ["flips", "d4"])
def test_non_equivariant_model_differs(mode):
    torch.manual_seed(0)
    model = nn.Conv2d(3, 1, kernel_size=3, padding=1).eval()  # a 3x3 kernel: not flip-invariant
    x = torch.randn(1, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    mean, plain = tta_probs(model, x, mode)
    assert (mean - plain).abs().max() > 1e-3


def test_flips_on_a_non_square_input_work_and_d4_is_refused():
    x = torch.randn(1, 3, 8, 12)
    mean, plain = tta_probs(pointwise(), x, "flips")
    assert mean.shape == (1, 8, 12) and torch.equal(mean, plain)
    with pytest.raises(ImbalError, match=r"^--tta d4: the input is 8x12; 90-degree rotations need square inputs "
                                         r"\(use --tta flips, or data.resize for square inputs\)$"):
        tta_probs(pointwise(), x, "d4")
    with pytest.raises(ImbalError, match=r"^--tta 'd8' unknown; expected one of: none, flips, d4$"):
        check_mode("d8")
