"""Image transforms of the image-folder data: timm's ``create_transform``, fixed to what a
classification fine-tune on photos needs and nothing more.

Training: a random resized crop (``scale``: the crop's share of the image area) and a
horizontal flip (probability ``hflip``), no colour jitter or auto-augment. Validation:
resize so that the centre crop of ``img_size`` covers ``crop_pct`` of the resized image
side (timm's eval recipe; ``crop_pct=1`` resizes the short side to the crop), then crop
the centre. Both end in a float tensor ``(3, H, W)`` normalised with ``mean`` / ``std``.
"""

from __future__ import annotations

from typing import Callable, Sequence

from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform
from torch import Tensor

__all__ = ["photo_transform", "INTERPOLATIONS"]

#: ``interpolation`` values (PIL resampling filters by timm's names).
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos")


def photo_transform(
    img_size: tuple[int, int],
    train: bool,
    scale: Sequence[float] = (0.35, 1.0),
    hflip: float = 0.5,
    crop_pct: float = 1.0,
    interpolation: str = "bilinear",
    mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
    std: Sequence[float] = IMAGENET_DEFAULT_STD,
) -> Callable[[Image.Image], Tensor]:
    """RGB PIL image -> normalised ``(3, *img_size)`` float tensor (see the module docstring)."""
    lo, hi = (float(v) for v in scale)
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"scale must be (min, max) area shares with 0 < min <= max <= 1, got {tuple(scale)}")
    if not 0.0 <= hflip <= 1.0:
        raise ValueError(f"hflip must be a probability in [0, 1], got {hflip}")
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
        raise ValueError(f"mean and std must hold 3 values each, std positive; got {tuple(mean)}, {tuple(std)}")
    common = dict(input_size=(3, *img_size), interpolation=interpolation, mean=tuple(mean), std=tuple(std))
    if train:
        return create_transform(is_training=True, scale=(lo, hi), hflip=hflip, color_jitter=None, **common)
    return create_transform(is_training=False, crop_pct=crop_pct, **common)
