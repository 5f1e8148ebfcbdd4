"""Binary-mask segmentation data: the shared data module, its datasets and samplers, and the formats.

* :mod:`~imbal.data.segmentation.base`: :class:`SegmentationDataModule` (splits, crops, loaders);
* :mod:`~imbal.data.segmentation.airbus`: ``data=airbus``, Kaggle Airbus Ship Detection or its
  synthetic twin (:mod:`~imbal.data.segmentation.synthetic`), masks run-length encoded
  (:mod:`~imbal.data.segmentation.rle`);
* :mod:`~imbal.data.segmentation.mask_folder`: ``data=mask_folder``, images and PNG masks;
* :mod:`~imbal.data.segmentation.datasets`, :mod:`~imbal.data.segmentation.samplers`,
  :mod:`~imbal.data.segmentation.transforms`: the pieces they share (also used by ``imbal predict``).
"""

from imbal.data.segmentation.airbus import AirbusDataModule
from imbal.data.segmentation.base import SegmentationDataModule
from imbal.data.segmentation.datasets import SegEvalDataset, SegItem, SegTrainDataset, stack_collate
from imbal.data.segmentation.mask_folder import MaskFolderDataModule
from imbal.data.segmentation.rle import (
    check_rle,
    rle_decode,
    rle_decode_instances,
    rle_decode_union,
    rle_encode,
)
from imbal.data.segmentation.samplers import EmptyShareSampler, stratified_split
from imbal.data.segmentation.transforms import (
    IMAGE_SUFFIXES,
    denormalize,
    read_rgb,
    resize_image,
    resize_pair,
    to_tensor_image,
)

__all__ = [
    "AirbusDataModule",
    "EmptyShareSampler",
    "IMAGE_SUFFIXES",
    "MaskFolderDataModule",
    "SegEvalDataset",
    "SegItem",
    "SegTrainDataset",
    "SegmentationDataModule",
    "check_rle",
    "denormalize",
    "read_rgb",
    "resize_image",
    "resize_pair",
    "rle_decode",
    "rle_decode_instances",
    "rle_decode_union",
    "rle_encode",
    "stack_collate",
    "stratified_split",
    "to_tensor_image",
]
