"""A torch ``Dataset`` over one split of a YOLO-format folder, in torchvision's target format."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from vision.data.image_folder import UNREADABLE, read_rgb
from vision.detection.yolo_format import LabelReport, scan_data_split, scan_split, split_dirs, yolo_to_xyxy

log = logging.getLogger(__name__)


class YoloDetectionDataset(Dataset):
    """Images and boxes of ``root/images/<split>`` with their YOLO labels.

    Bad label rows and orphan label files are dropped and reported (``self.report``);
    everything else loads. Images are read as :func:`vision.data.image_folder.read_rgb` reads
    them (upright by EXIF, as ultralytics reads them, in 8-bit RGB); an image that cannot be
    decoded is replaced by the next one, with a warning.

    Item ``i``: ``(image, target)`` with image float32 (3, H, W) in [0, 1] and target
    ``{"boxes": float32 (N, 4) xyxy pixels, "labels": int64 (N,)}``.
    """

    def __init__(self, root: str | Path, split: str, num_classes: int | None = None, *, data: dict | None = None):
        """``root/images/<split>`` with labels in ``root/labels/<split>``; or, given ``data`` (a
        :func:`~vision.detection.yolo_format.load_data_yaml` dict, whose ``path`` and class
        count then apply), the split's folders wherever its ``data.yaml`` puts them
        (:func:`~vision.detection.yolo_format.split_dirs`)."""
        self.root, self.split = Path(data["path"] if data is not None else root), split
        if data is None:
            self.images = self.root / "images" / split
            self.samples, self.report = scan_split(self.root, split, num_classes)
        else:
            self.images = split_dirs(data, split)[0]
            self.samples, self.report = scan_data_split(data, split)

    @classmethod
    def from_data(cls, data: dict, split: str) -> "YoloDetectionDataset":
        """The ``split`` of a :func:`~vision.detection.yolo_format.load_data_yaml` dict."""
        return cls(data["path"], split, len(data["names"]), data=data)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        for k in range(len(self.samples)):
            s = self.samples[(i + k) % len(self.samples)]
            try:
                arr = np.array(read_rgb(s.image))  # writable copy for torch
                break
            except UNREADABLE as err:  # a truncated download must not kill a DataLoader worker hours in
                log.warning("could not read %s (%s); using the next image instead", s.image, err)
        else:
            raise RuntimeError(f"no readable image left in {self.images}")
        h, w = arr.shape[:2]
        image = torch.from_numpy(arr).permute(2, 0, 1).float().div_(255)  # (3, H, W)
        boxes = torch.as_tensor(yolo_to_xyxy(s.boxes, w, h), dtype=torch.float32).reshape(-1, 4)
        return image, {"boxes": boxes, "labels": torch.as_tensor(s.labels, dtype=torch.int64)}

    @property
    def bad_labels(self) -> LabelReport:
        return self.report


def collate_detection(
    batch: list[tuple[torch.Tensor, dict[str, torch.Tensor]]],
) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Keep images and targets as lists (torchvision detectors take varying sizes)."""
    images, targets = zip(*batch)
    return list(images), list(targets)
