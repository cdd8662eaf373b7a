"""timm's ViT and Swin checkpoint keys, renamed to the longseq backbones' (the ``filter_fn``
of ``pretrained=True``).

A block holds the same tensors under other names; timm's fused ``qkv`` projection
(rows: all heads' q, then k, then v) splits into ``q`` (the first third) and ``kv`` (the
rest, k then v, as :class:`longseq.layers.MultiheadAttention` reads it):

=====================================  =====================================================
timm                                   longseq
=====================================  =====================================================
``blocks.i.norm1``                     ``blocks.i.attn_branch.norm``
``blocks.i.attn.qkv`` (3D x D)         ``blocks.i.attn_branch.attn.q`` (D x D), ``.kv`` (2D x D)
``blocks.i.attn.proj``                 ``blocks.i.attn_branch.attn.proj``
``blocks.i.norm2``                     ``blocks.i.ff_branch.norm``
``blocks.i.mlp.fc1`` / ``fc2``         ``blocks.i.ff_branch.ff.ff.net.0`` / ``net.3``
``...attn.relative_position_bias_table``  ``...attn_branch.attn.bias.table`` (Swin)
``head`` (ViT) / ``head.fc`` (Swin)    ``head.fc``
=====================================  =====================================================

``patch_embed.proj``, ``patch_embed.norm``, ``cls_token``, ``pos_embed``, ``norm`` and Swin's
``layers.i.downsample`` keep their names, so do keys already in longseq's naming. A ViT's
``pos_embed`` is resampled to the model's table grid (timm's ``resample_abs_pos_embed``),
its patch projection to the model's patch size (``resample_patch_embed``), and a Swin
table to the model's window (``resize_rel_pos_bias_table``). Swin checkpoints of the
original layout (patch merging at the end of a stage) are re-indexed as timm does; the
``relative_position_index`` and ``attn_mask`` buffers they carry are dropped.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any, Iterator, Mapping

import torch
from timm.layers import resample_abs_pos_embed, resample_patch_embed, resize_rel_pos_bias_table
from torch import Tensor, nn

from vision.models.checkpoint_io import fit_to_model, source_name, unwrap_state_dict

__all__ = ["convert_block_key", "swin_checkpoint_filter", "vit_checkpoint_filter", "vit_kwargs_from_checkpoint"]

log = logging.getLogger(__name__)

#: timm block sub-keys -> longseq's (the fused qkv is split separately).
_BLOCK_RENAMES = {
    "norm1.": "attn_branch.norm.",
    "attn.proj.": "attn_branch.attn.proj.",
    "attn.relative_position_bias_table": "attn_branch.attn.bias.table",
    "norm2.": "ff_branch.norm.",
    "mlp.fc1.": "ff_branch.ff.ff.net.0.",
    "mlp.fc2.": "ff_branch.ff.ff.net.3.",
}
_BLOCK = re.compile(r"^((?:layers\.\d+\.)?blocks\.\d+\.)(.+)$")
#: timm's ViT norm epsilon (its blocks use LayerNorm(eps=1e-6)).
TIMM_VIT_NORM_EPS = 1e-6


def convert_block_key(key: str, value: Tensor) -> Iterator[tuple[str, Tensor]]:
    """The longseq ``(key, tensor)`` pairs of one timm checkpoint entry (a ``qkv`` entry
    gives two); keys outside the blocks, or already in longseq's naming, pass unchanged."""
    match = _BLOCK.match(key)
    if match is None:
        yield key, value
        return
    prefix, rest = match.groups()
    if rest.startswith("attn.qkv."):
        kind = rest.removeprefix("attn.qkv.")
        dim = value.shape[0] // 3
        yield f"{prefix}attn_branch.attn.q.{kind}", value[:dim]
        yield f"{prefix}attn_branch.attn.kv.{kind}", value[dim:]
        return
    for old, new in _BLOCK_RENAMES.items():
        if rest.startswith(old):
            yield prefix + new + rest[len(old):], value
            return
    yield key, value


def _prefix_and_grid(n_positions: int, has_class_token: bool) -> tuple[int, int] | None:
    """``(prefix tokens, grid side)`` of a ``pos_embed`` with ``n_positions`` rows: a square
    grid after the class token's row, or a square grid alone (timm's ``no_embed_class``)."""
    for prefix in ((1, 0) if has_class_token else (0,)):
        side = math.isqrt(n_positions - prefix)
        if side * side == n_positions - prefix and side > 0:
            return prefix, side
    return None


def vit_kwargs_from_checkpoint(shapes: Mapping[str, tuple[int, ...]], patch_size: int = 16) -> dict[str, Any]:
    """:class:`~vision.models.vit.LongseqViT` arguments that a checkpoint's tensors imply.

    ``class_token`` (with ``global_pool="token"``, timm's default readout) where it holds a
    ``cls_token``; ``pos_embed="learn"`` with ``img_size`` covering the table's grid at
    ``patch_size`` where it holds a square ``pos_embed`` table (``"none"`` where a timm ViT
    has none); timm's norm epsilon for a timm-named checkpoint. Arguments given to the
    model override these.
    """
    kwargs: dict[str, Any] = {}
    timm_named = any(_BLOCK.match(k) and ".attn.qkv." in k for k in shapes)
    if timm_named:
        kwargs["norm_eps"] = TIMM_VIT_NORM_EPS
    if "cls_token" in shapes:
        kwargs.update(class_token=True, global_pool="token")
    if "pos_embed" in shapes and len(shapes["pos_embed"]) == 3:
        layout = _prefix_and_grid(shapes["pos_embed"][1], "cls_token" in shapes)
        if layout is not None:
            kwargs.update(pos_embed="learn", img_size=layout[1] * patch_size)
    elif timm_named or "cls_token" in shapes:
        kwargs["pos_embed"] = "none"
    return kwargs


def _fit_pos_embed(table: Tensor, model: nn.Module, has_class_token: bool, source: str) -> Tensor:
    """A checkpoint ``pos_embed`` ``(1, P' + g*g, D)`` resampled to the model's table
    ``(1, P + gh*gw, D)``: the grid by timm's ``resample_abs_pos_embed``, the prefix rows
    kept, dropped, or (for a class token whose checkpoint had no position) zero."""
    layout = _prefix_and_grid(table.shape[1], has_class_token)
    if layout is None or model.pos_grid is None:
        return table  # reported as a shape mismatch, or unused
    prefix, side = layout
    if (side, side) != tuple(model.pos_grid):
        log.info("%s: resampling pos_embed from a %dx%d to a %dx%d grid", source, side, side, *model.pos_grid)
        table = resample_abs_pos_embed(table, new_size=list(model.pos_grid), old_size=[side, side],
                                       num_prefix_tokens=prefix)
    want = model.num_prefix_tokens
    if prefix > want:
        table = table[:, prefix - want:]
    elif prefix < want:
        table = torch.cat([table.new_zeros(1, want - prefix, table.shape[-1]), table], dim=1)
    return table


def vit_checkpoint_filter(state_dict: Mapping[str, Any], model: nn.Module) -> dict[str, Tensor]:
    """timm ViT checkpoint (``vit_{tiny,small,base}_patch16_224`` and alike) -> the
    :class:`~vision.models.vit.LongseqViT` tensors it fills (see the module's key table)."""
    source = source_name(model)
    sd = unwrap_state_dict(state_dict)
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        if key in ("head.weight", "head.bias"):
            key = "head.fc." + key.split(".")[-1]
        elif key == "pos_embed" and getattr(model, "pos_embed", None) is not None:
            value = _fit_pos_embed(value, model, "cls_token" in sd, source)
        elif key == "patch_embed.proj.weight" and value.ndim == 4 and hasattr(model.patch_embed, "proj"):
            size = model.patch_embed.proj.weight.shape[-2:]
            if value.shape[-2:] != size:
                value = resample_patch_embed(value, list(size), interpolation="bicubic", antialias=True)
        out.update(convert_block_key(key, value))
    return fit_to_model(out, model, source)


def swin_checkpoint_filter(state_dict: Mapping[str, Any], model: nn.Module) -> dict[str, Tensor]:
    """timm Swin checkpoint (``swin_tiny_patch4_window7_224`` and alike) -> the
    :class:`~vision.models.swin.LongseqSwin` tensors it fills, relative-position tables
    resized to the model's window (see the module's key table)."""
    source = source_name(model)
    sd = unwrap_state_dict(state_dict)
    own = model.state_dict()
    # The original layout merges patches at the end of a stage (stage 0 has a merge), timm at the start.
    original = "layers.0.downsample.reduction.weight" in sd
    out: dict[str, Tensor] = {}
    resized = 0
    for key, value in sd.items():
        if "relative_position_index" in key or "attn_mask" in key:
            continue  # buffers the model recomputes
        if original:
            key = re.sub(r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) + 1}.downsample", key)
            key = re.sub(r"^head\.(weight|bias)$", r"head.fc.\1", key)
        for new_key, new_value in convert_block_key(key, value):
            if new_key.endswith("attn.bias.table") and new_key in own:
                want = own[new_key].shape
                if new_value.shape != want and new_value.ndim == 2 and new_value.shape[1] == want[1]:
                    ws = model.window_size
                    new_value = resize_rel_pos_bias_table(new_value, new_window_size=(ws, ws),
                                                          new_bias_shape=tuple(want))
                    resized += 1
            out[new_key] = new_value
    if resized:
        log.info("%s: resized %d relative-position tables to %dx%d windows", source, resized, *(model.window_size,) * 2)
    return fit_to_model(out, model, source)
