"""Multi-scale features (strides 8, 16, 32 by default) from any timm backbone.

A hierarchical backbone (Swin style) already has maps at those strides: they are picked
and projected. A plain backbone (ViT style, one stride-16 map) goes through ViTDet's
*simple feature pyramid*: the deepest map is upsampled with transposed convolutions or
max-pooled to each missing stride, then projected. Every level ends with a 1x1 and a
3x3 convolution, each followed by a channel LayerNorm (as in ViTDet), so each level has
exactly the channel count it declares.

The module only needs ``torch`` and ``timm``; it is the block that the ultralytics
integration names in model YAMLs and the body of the torchvision detectors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d
from torch import nn


def _resample(in_ch: int, scale: float) -> tuple[nn.Module, int]:
    """Module that resizes a map by ``scale`` (a power of two) and its output channels."""
    steps = round(math.log2(scale))
    if scale <= 0 or 2.0**steps != scale:
        raise ValueError(f"feature strides must differ by powers of two, got a scale of {scale}")
    if steps == 0:
        return nn.Identity(), in_ch
    if steps < 0:  # coarser: ViTDet max-pools the stride-16 map to stride 32
        return nn.Sequential(*(nn.MaxPool2d(2, 2) for _ in range(-steps))), in_ch
    layers: list[nn.Module] = []
    ch = in_ch
    for k in range(steps):  # finer: one stride-2 transposed conv per octave, halving channels
        out = max(ch // 2, 16)
        layers.append(nn.ConvTranspose2d(ch, out, 2, stride=2))
        if k < steps - 1:
            layers += [LayerNorm2d(out), nn.GELU()]
        ch = out
    return nn.Sequential(*layers), ch


class MultiScaleBackbone(nn.Module):
    """A timm backbone plus a simple feature pyramid: image -> one map per stride.

    Args:
        model: a timm model name (created with ``features_only=True``, never pretrained
            here) or an already built module returning a list of (B, C_i, H_i, W_i) maps
            and carrying timm's ``feature_info`` (``channels()``, ``reduction()``).
        channels: output channels per level, one per stride.
        model_kwargs: extra keyword arguments for ``timm.create_model`` (e.g. ``out_indices``).
        strides: output strides, ascending (default 8, 16, 32).

    The argument order is the order of a YOLO YAML row's positional args:
    ``[longseq_vit_tiny, [64, 128, 256], {out_indices: [-1]}]``.

    Forward: ``x`` (B, 3, H, W), any H and W -> list of (B, channels[i], Hp / strides[i],
    Wp / strides[i]), where (Hp, Wp) is (H, W) padded up (bottom/right, zeros) to a multiple
    of ``max(strides)`` so that the levels nest exactly (each is 2x the next).
    """

    def __init__(
        self,
        model: str | nn.Module,
        channels: Sequence[int] = (64, 128, 256),
        model_kwargs: dict | None = None,
        strides: Sequence[int] = (8, 16, 32),
    ) -> None:
        super().__init__()
        if len(channels) != len(strides):
            raise ValueError(f"channels {list(channels)} and strides {list(strides)} must have the same length")
        if list(strides) != sorted(set(strides)):
            raise ValueError(f"strides must be strictly ascending, got {list(strides)}")
        if isinstance(model, str):
            import timm

            model = timm.create_model(model, pretrained=False, features_only=True, **(model_kwargs or {}))
        elif model_kwargs:
            raise ValueError("model_kwargs only applies when model is a timm model name")
        info = getattr(model, "feature_info", None)
        if info is None:
            raise ValueError("model must carry timm's feature_info (create it with features_only=True)")
        self.body = model
        self.in_channels: list[int] = list(info.channels())
        self.in_strides: list[int] = list(info.reduction())
        self.channels: list[int] = [int(c) for c in channels]
        self.strides: list[int] = [int(s) for s in strides]

        self.sources: list[int] = []
        self.resample = nn.ModuleList()
        self.project = nn.ModuleList()
        deepest = len(self.in_strides) - 1
        for out_ch, s in zip(self.channels, self.strides):
            # A map at exactly this stride if the body has one (the deepest such), else
            # the deepest map resampled, as in ViTDet.
            exact = [i for i, r in enumerate(self.in_strides) if r == s]
            src = exact[-1] if exact else deepest
            resample, ch = _resample(self.in_channels[src], self.in_strides[src] / s)
            self.sources.append(src)
            self.resample.append(resample)
            self.project.append(
                nn.Sequential(
                    nn.Conv2d(ch, out_ch, 1, bias=False),
                    LayerNorm2d(out_ch),
                    nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
                    LayerNorm2d(out_ch),
                )
            )

    def output_shape(self) -> dict[str, tuple[int, int]]:
        """``{"p3": (channels, stride), ...}`` named by log2(stride), as detectron2 does."""
        return {f"p{int(math.log2(s))}": (c, s) for c, s in zip(self.channels, self.strides)}

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x (B, C, H, W) -> [(B, channels[i], Hp / strides[i], Wp / strides[i]) for each level]."""
        h, w = x.shape[-2:]
        div = self.strides[-1]
        pad_h, pad_w = (-h) % div, (-w) % div
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        feats = self.body(x)
        hp, wp = h + pad_h, w + pad_w
        out = []
        for src, resample, project, s in zip(self.sources, self.resample, self.project, self.strides):
            y = project(resample(feats[src]))
            # A body that pads internally (windows) may return a few extra cells; a body
            # that floors may return fewer. Either way, make the level exactly Hp/s x Wp/s.
            th, tw = hp // s, wp // s
            if y.shape[-2:] != (th, tw):
                y = y[..., :th, :tw]
                y = F.pad(y, (0, tw - y.shape[-1], 0, th - y.shape[-2]))
            out.append(y)
        return out
