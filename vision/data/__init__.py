"""Data for the vision backbones: the offline scattered-digits generator and image folders.

Lightning data modules live in :mod:`vision.data.datamodules` (imported on demand).
"""

from vision.data.mnist import load_mnist, split_indices
from vision.data.scattered_digits import (
    Canvas,
    CachedSplit,
    CanvasSettings,
    classification_canvas,
    default_cache_dir,
    detection_canvas,
    iter_canvases,
    render_canvas,
    scattered_digits_split,
    to_rgb,
)

__all__ = [
    "load_mnist", "split_indices", "Canvas", "CachedSplit", "CanvasSettings", "classification_canvas",
    "default_cache_dir", "detection_canvas", "iter_canvases", "render_canvas", "scattered_digits_split", "to_rgb",
]
