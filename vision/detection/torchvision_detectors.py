"""torchvision detectors (Faster R-CNN, RetinaNet, FCOS) on a :class:`MultiScaleBackbone`.

The pyramid's levels (strides 8, 16, 32) go through torchvision's
``FeaturePyramidNetwork`` plus one or two extra pooled levels, exactly the ``backbone``
contract torchvision's detectors expect: a module with ``out_channels`` whose forward
returns an ordered dict of same-width maps.

Class indices: the YOLO-format data sets here use ``0..K-1``. Faster R-CNN reserves 0 for
background, so :class:`DetectorWithClasses` shifts labels by one on the way in and back on
the way out; callers always see ``0..K-1``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal

import torch
from torch import nn
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from vision.detection.pyramid import MultiScaleBackbone

DetectorKind = Literal["fasterrcnn", "retinanet", "fcos"]
DETECTORS: tuple[str, ...] = ("fasterrcnn", "retinanet", "fcos")


class PyramidFPN(nn.Module):
    """:class:`MultiScaleBackbone` + FPN: image (B, 3, H, W) -> ``{"0": stride 8, "1": 16,
    "2": 32, "pool"/"p6"/"p7": coarser}`` maps, each (B, out_channels, h, w).

    Args:
        body: the multi-scale backbone.
        out_channels: FPN width.
        extra: ``"pool"`` adds one max-pooled level (Faster R-CNN); ``"p6p7"`` two strided
            conv levels (RetinaNet, FCOS).
    """

    def __init__(self, body: MultiScaleBackbone, out_channels: int = 128, extra: Literal["pool", "p6p7"] = "pool"):
        super().__init__()
        if extra not in ("pool", "p6p7"):
            raise ValueError(f"extra must be 'pool' or 'p6p7', got {extra!r}")
        self.body = body
        blocks = LastLevelMaxPool() if extra == "pool" else LastLevelP6P7(out_channels, out_channels)
        self.fpn = FeaturePyramidNetwork(body.channels, out_channels, extra_blocks=blocks)
        self.out_channels = out_channels
        self.num_levels = len(body.channels) + (1 if extra == "pool" else 2)

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        feats = self.body(x)
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))


def build_torchvision_detector(
    kind: DetectorKind,
    body: MultiScaleBackbone,
    num_classes: int,
    image_size: int = 1024,
    fpn_channels: int = 128,
    anchor_size: int = 32,
) -> nn.Module:
    """Build a torchvision detector around ``body``.

    Args:
        kind: ``"fasterrcnn"``, ``"retinanet"`` or ``"fcos"``.
        body: multi-scale backbone whose first level has stride 8.
        num_classes: object classes, background excluded.
        image_size: torchvision's transform rescales each image so its short side is
            ``image_size`` (capped at ``image_size`` for the long side): set it to the
            training canvas size so nothing is resized.
        fpn_channels: FPN width.
        anchor_size: anchor side at stride 8, doubled per level (digits are 28-84 px).
    """
    if kind not in DETECTORS:
        raise ValueError(f"kind must be one of {DETECTORS}, got {kind!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    size_kw = dict(min_size=image_size, max_size=image_size)
    if kind == "fasterrcnn":
        bb = PyramidFPN(body, fpn_channels, "pool")
        sizes = tuple((anchor_size * 2**i,) for i in range(bb.num_levels))
        anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
        roi = MultiScaleRoIAlign([str(i) for i in range(len(body.channels))], output_size=7, sampling_ratio=2)
        return FasterRCNN(bb, num_classes=num_classes + 1, rpn_anchor_generator=anchors, box_roi_pool=roi, **size_kw)
    bb = PyramidFPN(body, fpn_channels, "p6p7")
    if kind == "retinanet":
        sizes = tuple(tuple(int(anchor_size * 2**i * 2 ** (k / 3)) for k in range(3)) for i in range(bb.num_levels))
        anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
        return RetinaNet(bb, num_classes=num_classes, anchor_generator=anchors, **size_kw)
    # FCOS is anchor-free; its "anchors" are one point per cell, sized by the stride.
    anchors = AnchorGenerator(tuple((8 * 2**i,) for i in range(bb.num_levels)), ((1.0,),) * bb.num_levels)
    return FCOS(bb, num_classes=num_classes, anchor_generator=anchors, **size_kw)


class DetectorWithClasses(nn.Module):
    """A torchvision detector that speaks class indices ``0..K-1`` whatever its kind.

    Forward (train): images list of (3, H, W) floats in [0, 1], targets list of
    ``{"boxes": (N, 4) xyxy pixels, "labels": (N,) int64}`` -> dict of losses.
    Forward (eval): images -> list of ``{"boxes", "labels", "scores"}``.
    """

    def __init__(self, detector: nn.Module, label_offset: int):
        super().__init__()
        self.detector = detector
        self.label_offset = label_offset

    def forward(
        self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        if targets is not None:
            targets = [{**t, "labels": t["labels"] + self.label_offset} for t in targets]
        out = self.detector(images, targets)
        if isinstance(out, dict):
            return out
        return [{**o, "labels": o["labels"] - self.label_offset} for o in out]


def build_detector(
    kind: DetectorKind,
    body: MultiScaleBackbone,
    num_classes: int,
    image_size: int = 1024,
    fpn_channels: int = 128,
    anchor_size: int = 32,
) -> DetectorWithClasses:
    """:func:`build_torchvision_detector` wrapped to use class indices ``0..K-1``."""
    det = build_torchvision_detector(kind, body, num_classes, image_size, fpn_channels, anchor_size)
    return DetectorWithClasses(det, label_offset=1 if kind == "fasterrcnn" else 0)
