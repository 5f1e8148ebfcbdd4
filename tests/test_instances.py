"""Instances of a probability map: RLE round trip, no overlap, the minimum size, the watershed split."""

from __future__ import annotations

import numpy as np
import pytest

from imbal.data.segmentation.rle import rle_decode
from imbal.errors import ImbalError
from imbal.predict.instances import check_probability, drop_small, instance_rles, instances, watershed_split


def test_components_round_trip_through_rle_and_never_overlap():
    rng = np.random.default_rng(0)
    prob = rng.random((40, 30)) ** 3  # scattered blobs of many shapes
    lab, n = instances(prob, threshold=0.5)
    assert n > 20
    rles = instance_rles(lab, n)
    assert len(rles) == n
    masks = [rle_decode(r, lab.shape) for r in rles]
    for k, m in enumerate(masks, start=1):
        assert np.array_equal(m, (lab == k).astype(np.uint8))  # decode(encode(inst_k)) == inst_k
    stack = np.stack(masks).astype(int)
    assert stack.sum(0).max() == 1  # no pixel in two instances
    assert np.array_equal(stack.sum(0) > 0, prob > 0.5)  # and every predicted pixel in one


def test_min_size_drops_exactly_the_small_components():
    prob = np.zeros((20, 20))
    prob[0, 0] = 0.9  # 1 px
    prob[5:7, 0:2] = 0.9  # 4 px
    prob[10:13, 10:13] = 0.9  # 9 px
    prob[0:2, 15:20] = 0.9  # 10 px
    sizes = lambda lab, n: sorted(int((lab == k).sum()) for k in range(1, n + 1))  # noqa: E731
    assert sizes(*instances(prob)) == [1, 4, 9, 10]
    assert sizes(*instances(prob, min_size=4)) == [4, 9, 10]
    assert sizes(*instances(prob, min_size=9)) == [9, 10]
    assert sizes(*instances(prob, min_size=10)) == [10]
    assert instances(prob, min_size=11)[1] == 0
    lab, n = instances(prob, min_size=9)
    assert set(np.unique(lab)) == {0, 1, 2}  # renumbered 1..K
    assert lab[11, 11] != 0 and lab[0, 17] != 0 and lab[0, 0] == 0 and lab[5, 0] == 0


def test_threshold_is_strict():
    prob = np.array([[0.5, 0.6], [0.2, 0.51]])
    lab, n = instances(prob, threshold=0.5)
    assert n == 1 and (lab > 0).sum() == 2 and lab[0, 0] == 0


def test_watershed_splits_two_hulls_joined_by_a_neck():
    m = np.zeros((20, 30), np.uint8)
    m[3:12, 2:11] = 1  # 9x9 hull
    m[3:12, 16:25] = 1  # 9x9 hull
    m[7, 11:16] = 1  # a one-pixel neck between them
    assert instances(m.astype(float))[1] == 1
    lab, n = watershed_split(m)
    assert n == 2
    assert np.array_equal(lab > 0, m > 0)  # every pixel kept, none added
    assert len(np.unique(lab[3:12, 2:11])) == 1 and len(np.unique(lab[3:12, 16:25])) == 1
    assert lab[7, 5] != lab[7, 20]
    lab, n = instances(m.astype(float), watershed=True)
    assert n == 2 and len(instance_rles(lab, n)) == 2
    # one blob stays one instance; a lone pixel too
    one = np.zeros((10, 10), np.uint8)
    one[2:8, 2:8] = 1
    one[9, 9] = 1
    assert watershed_split(one)[1] == 2


def test_drop_small_on_watershed_labels():
    lab = np.array([[1, 1, 0, 2], [1, 0, 0, 2], [0, 3, 3, 3]])
    out, n = drop_small(lab, 3, 3)
    assert n == 2 and np.array_equal(out, np.array([[1, 1, 0, 0], [1, 0, 0, 0], [0, 2, 2, 2]]))


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, True, "0.5"])
def test_probability_outside_zero_one_is_refused(bad):
    with pytest.raises(ImbalError, match=r"^--threshold .*: expected a probability in \(0, 1\)$"):
        check_probability(bad, "--threshold")
