"""U-Net shapes, the overlay grid and the submission CSV."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from imbal.data.segmentation.rle import rle_decode
from imbal.models.unet import UNet
from imbal.predict.airbus_submission import instance_rles, write_submission


@pytest.mark.parametrize("bilinear", [False, True])
def test_unet_shapes_any_size_and_prior_bias(bilinear):
    m = UNet(in_shape=(3, 32, 32), num_classes=2, depth=3, base_width=4, bilinear=bilinear).eval()
    assert m.outputs_logits and m.out_channels == 1
    with torch.no_grad():
        assert m(torch.randn(2, 3, 32, 32)).shape == (2, 1, 32, 32)
        assert m(torch.randn(1, 3, 37, 50)).shape == (1, 1, 37, 50)  # padded then cropped
    assert float(m.outc.bias.detach()) == pytest.approx(-np.log(99.0))


def test_unet_gradients_reach_the_first_layer():
    m = UNet(in_shape=(3, 16, 16), depth=2, base_width=4)
    m(torch.randn(2, 3, 16, 16)).mean().backward()
    assert m.inc[0].weight.grad.abs().sum() > 0


def test_instance_rles_one_row_per_component():
    m = np.zeros((20, 20), np.uint8)
    m[2:5, 2:8] = 1
    m[10:12, 10:12] = 1
    m[18, 18] = 1
    rles = instance_rles(m)
    assert len(rles) == 3
    parts = [rle_decode(r, (20, 20)) for r in rles]
    assert (sum(parts) == m).all()  # disjoint and covering
    assert len(instance_rles(m, min_size=2)) == 2


class Fixed(nn.Module):
    """Predicts a square ship in the top-left corner of every image."""

    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        out = torch.full((x.shape[0], 1, *x.shape[-2:]), -10.0)
        out[:, :, 1:4, 1:4] = 10.0
        return out + self.p


def test_write_submission(tmp_path):
    from PIL import Image

    for name in ("b.jpg", "a.jpg"):
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / name)
    out = tmp_path / "sub" / "submission.csv"
    counts = write_submission(Fixed(), tmp_path, out)
    assert counts == {"images": 2, "ships": 2, "rows": 2}
    lines = out.read_text().splitlines()
    assert lines[0] == "ImageId,EncodedPixels"
    assert lines[1].startswith("a.jpg,") and lines[2].startswith("b.jpg,")
    mask = rle_decode(lines[1].split(",")[1], (16, 16))
    assert mask.sum() == 9 and mask[1:4, 1:4].all()


def test_overlay_grid_layout():
    from imbal.callbacks.segmentation import overlay_grid

    imgs = torch.zeros(2, 3, 10, 12)
    truth = torch.zeros(2, 10, 12)
    truth[:, 2, 3] = 1
    pred = torch.zeros(2, 10, 12)
    pred[:, 5, 6] = 1
    g = overlay_grid(imgs, truth, pred, gap=2)
    assert g.shape == (2 * 10 + 2, 3 * 12 + 2 * 2, 3)
    assert g[2, 12 + 2 + 3, 0] > 100 and g[2, 12 + 2 + 3, 1] < 50  # truth in red
    assert g[5, 2 * (12 + 2) + 6, 1] > 100 and g[5, 2 * (12 + 2) + 6, 0] < 50  # prediction in green
