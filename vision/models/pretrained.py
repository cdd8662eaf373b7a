"""A timm model started from a local checkpoint, and the arguments that rebuild it without one.

``create_pretrained(name, path, ...)`` is ``timm.create_model(name, pretrained=True,
pretrained_cfg_overlay=dict(file=path), ...)``; it also returns the keyword arguments the
model was built with, those the checkpoint implied included (a longseq ViT's class token,
position table, norm epsilon), so a training checkpoint can record them and rebuild the
same architecture with ``pretrained=False`` (``ImageClassificationTask.load_from_checkpoint``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from vision.models.checkpoint_io import checkpoint_shapes
from vision.models.timm_keys import vit_kwargs_from_checkpoint

__all__ = ["create_pretrained", "pretrained_kwargs"]


def pretrained_kwargs(name: str, path: str | Path, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` over the arguments the checkpoint at ``path`` implies for model ``name``
    (for a longseq ViT, see :func:`~vision.models.timm_keys.vit_kwargs_from_checkpoint`;
    other models take none)."""
    from vision.models import MODEL_CLASSES, LongseqViT

    if MODEL_CLASSES.get(name) is not LongseqViT:
        return dict(kwargs)
    implied = vit_kwargs_from_checkpoint(checkpoint_shapes(path), kwargs.get("patch_size", 16))
    return {**implied, **kwargs}


def create_pretrained(name: str, path: str | Path, num_classes: int, **kwargs: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Model ``name`` with ``num_classes`` outputs, weights from the checkpoint at ``path``
    (``~`` expanded), and the keyword arguments (``num_classes`` aside) that rebuild it."""
    import timm

    import vision  # noqa: F401  (registers the longseq backbones with timm)

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"pretrained checkpoint not found: {path}")
    full = pretrained_kwargs(name, path, kwargs)
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
                              num_classes=num_classes, **full)
    return model, full
