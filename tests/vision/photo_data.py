"""Test stand-ins for a user's photos and downloaded timm weights: a generated two-class
image folder, and randomly initialised timm models saved as checkpoint files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image

#: Class folder -> mean colour of its generated images.
COLOURS = {"blue_sky": (40, 60, 210), "red_car": (210, 40, 40)}


def make_photo_folder(root: Path, per_class: int = 5) -> Path:
    """``root/<class>/<image>``: ``per_class`` noisy images of each class's colour, of
    varied sizes, alternating JPEG and PNG."""
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = (48 + 9 * i, 64 + 5 * i, 3)
            pixels = (np.array(colour) + rng.integers(-40, 40, shape)).clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.{'jpg' if i % 2 else 'png'}")
    return root


def timm_model(name: str, seed: int = 0, **kwargs) -> torch.nn.Module:
    """A randomly initialised timm model whose norms, biases, tokens and tables are moved off
    their initial values, so a test notices any of them left out or misplaced."""
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, **kwargs).eval()
    with torch.no_grad():
        for key, p in model.named_parameters():
            if p.ndim == 1 or key.endswith("bias_table"):
                p.add_(torch.randn_like(p) * 0.1)
            elif key in ("cls_token", "pos_embed"):
                p.normal_(0.0, 0.2)
    return model


def save_checkpoint(model: torch.nn.Module, path: Path) -> Path:
    """``model.state_dict()`` at ``path`` (folders made): safetensors for ``.safetensors``,
    ``torch.save`` otherwise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    else:
        torch.save(model.state_dict(), path)
    return path
