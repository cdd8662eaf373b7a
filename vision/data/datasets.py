"""Torch datasets over cached scattered-digits splits (no Lightning here)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from vision.data.scattered_digits import CachedSplit

__all__ = ["ScatteredDigitsClassification", "ScatteredDigitsDetection", "load_canvas"]


def load_canvas(path) -> Tensor:
    """Read a grayscale canvas PNG as float32 ``(3, H, W)`` in ``[0, 1]``.

    The background stays exactly 0, the value the backbones pad with, so padding looks
    like more background rather than a border.
    """
    with Image.open(path) as im:
        gray = torch.from_numpy(np.asarray(im.convert("L"), dtype=np.uint8).copy())
    return (gray.float() / 255.0).unsqueeze(0).expand(3, -1, -1).contiguous()


class ScatteredDigitsClassification(Dataset):
    """``(image (3, H, W) float32, label int64 scalar)``: the class of the canvas's one digit."""

    def __init__(self, split: CachedSplit) -> None:
        if any(len(lab) != 1 for lab in split.labels):
            raise ValueError("classification needs exactly one digit per canvas (settings.n_digits=(1, 1))")
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return load_canvas(self.split.files[i]), torch.as_tensor(int(self.split.labels[i][0]))


class ScatteredDigitsDetection(Dataset):
    """``(image (3, H, W) float32, {"boxes": (N, 4) xyxy pixels, "labels": (N,) int64})``."""

    def __init__(self, split: CachedSplit) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[Tensor, dict[str, Tensor]]:
        target = {
            "boxes": torch.from_numpy(self.split.boxes[i].copy()),
            "labels": torch.from_numpy(self.split.labels[i].copy()),
        }
        return load_canvas(self.split.files[i]), target
