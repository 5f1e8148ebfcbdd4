"""imbal's Lightning callbacks: the time-limited progress bar and the segmentation overlays."""

from imbal.callbacks.progress import ProgressBar
from imbal.callbacks.segmentation import SegmentationOverlay, overlay, overlay_grid

__all__ = ["ProgressBar", "SegmentationOverlay", "overlay", "overlay_grid"]
