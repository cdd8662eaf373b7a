"""timm plumbing shared by the longseq backbone families."""

from __future__ import annotations

from typing import Any, Callable

from timm.data import IMAGENET_DEFAULT_MEAN as IMAGENET_MEAN, IMAGENET_DEFAULT_STD as IMAGENET_STD
from timm.models import build_model_with_cfg
from torch import nn

from vision.models.checkpoint_io import pretrained_source

__all__ = ["build_backbone", "default_cfg"]


def default_cfg(**overrides: Any) -> dict[str, Any]:
    """timm pretrained-cfg entry for a backbone without weights to download (any input size)."""
    return {
        "url": "", "num_classes": 1000, "input_size": (3, 512, 512), "pool_size": None,
        "fixed_input_size": False, "crop_pct": 1.0, "interpolation": "bicubic",
        "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
        "first_conv": "patch_embed.proj", "classifier": "head.fc", "license": "mit",
        **overrides,
    }


def build_backbone(cls: type[nn.Module], variant: str, pretrained: bool, default_out_indices,
                   filter_fn: Callable[[dict, nn.Module], dict] | None = None, **kwargs: Any) -> nn.Module:
    """Build ``cls`` through timm so ``features_only`` / ``out_indices`` work.

    ``features_only=True`` wraps the model in timm's ``FeatureGetterNet``, which calls the
    model's ``forward_intermediates`` and reads its ``feature_info``.

    ``pretrained=True`` loads a local checkpoint given as
    ``pretrained_cfg_overlay=dict(file=PATH)`` (or ``dict(state_dict=...)``) through
    timm's own loader, with ``filter_fn`` mapping its keys to ``cls``'s; there are no
    weights to download, so without one it raises ``ValueError``. ``filter_fn`` reports
    missing and unused tensors itself, so the load is not strict.
    """
    if pretrained:
        pretrained_source(variant, kwargs)  # raises ValueError when no local checkpoint is named
    out_indices = kwargs.pop("out_indices", default_out_indices)
    return build_model_with_cfg(
        cls, variant, pretrained, pretrained_filter_fn=filter_fn, pretrained_strict=False,
        feature_cfg=dict(feature_cls="getter", out_indices=out_indices), **kwargs,
    )
