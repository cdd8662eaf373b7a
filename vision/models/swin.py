"""Hierarchical shifted-window backbone (Swin style), on longseq.

Four stages at strides 4, 8, 16, 32 (patch 4, then 2x2 patch merging). Inside a stage the
blocks alternate plain and shifted windows (:class:`longseq.patterns.Window2D` with
``shift = window_size // 2``, Swin's region mask included) and carry Swin's relative
position table (:class:`longseq.positions.RelativeBias2D`). Patterns are built per forward
from the actual grid, which the pattern pads internally, so any ``H, W`` works.
``pretrained=True`` loads a timm Swin checkpoint (:mod:`vision.models.timm_keys`), its
relative-position tables resized when ``window_size`` differs from the checkpoint's.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from longseq.layers import TransformerBlock
from longseq.patterns import Window2D
from longseq.positions import RelativeBias2D
from timm.models import register_model
from timm.models._features import feature_take_indices
from timm.models._registry import generate_default_cfgs

from vision.models._builder import build_backbone, default_cfg
from vision.models.layers import ClassifierHead, PatchEmbed, PatchMerging, drop_path_rates
from vision.models.timm_keys import swin_checkpoint_filter

__all__ = ["LongseqSwin", "SwinStage"]


class SwinStage(nn.Module):
    """Optional patch merging, then ``depth`` blocks alternating plain / shifted windows.

    ``(B, H, W, in_dim)`` -> ``(B, H', W', out_dim)`` with ``H' = ceil(H / 2)`` when
    ``downsample`` else ``H``.
    """

    def __init__(self, in_dim: int, out_dim: int, depth: int, num_heads: int, window_size: int,
                 downsample: bool, mlp_ratio: float = 4.0, drop_path: Sequence[float] = (),
                 ff_chunks: int = 1, norm_layer: type[nn.Module] = nn.LayerNorm) -> None:
        super().__init__()
        self.window_size = window_size
        #: Recompute each block in backward (:meth:`LongseqSwin.set_grad_checkpointing`).
        self.grad_checkpointing = False
        self.downsample = PatchMerging(in_dim, out_dim, norm_layer) if downsample else nn.Identity()
        drop_path = list(drop_path) or [0.0] * depth
        self.blocks = nn.ModuleList(
            TransformerBlock(
                out_dim, num_heads,
                Window2D(window_size, grid=(window_size, window_size), shift=(window_size // 2) * (i % 2)),
                mlp_ratio=mlp_ratio, bias=RelativeBias2D(num_heads, window_size),
                ff_chunks=ff_chunks, drop_path=drop_path[i], norm_layer=norm_layer,
            )
            for i in range(depth)
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.downsample(x)
        B, H, W, C = x.shape
        ws = self.window_size
        # A grid that fits in one window has nothing to shift across (Swin drops the shift too).
        shift = ws // 2 if max(H, W) > ws else 0
        plain = Window2D(ws, grid=(H, W))
        shifted = Window2D(ws, grid=(H, W), shift=shift) if shift else plain
        tokens = x.reshape(B, H * W, C)
        recompute = self.grad_checkpointing and torch.is_grad_enabled() and not torch.compiler.is_exporting()
        for i, block in enumerate(self.blocks):
            pattern = shifted if i % 2 else plain
            if recompute:
                tokens = checkpoint(block, tokens, pattern=pattern, use_reentrant=False)
            else:
                tokens = block(tokens, pattern=pattern)
        return tokens.reshape(B, H, W, C)


class LongseqSwin(nn.Module):
    """Swin-style hierarchical backbone.

    Args:
        img_size: unused (any size works); accepted for timm API parity.
        patch_size: stem patch (stride of stage 0).
        in_chans, num_classes, global_pool: as in timm.
        embed_dim: channels of stage 0; stage ``i`` has ``embed_dim * 2**i``.
        depths, num_heads: blocks and heads per stage.
        window_size: window side in tokens at every stage (a timm checkpoint of another
            window loads with its relative-position tables resized to this one).
        mlp_ratio, drop_rate, drop_path_rate, ff_chunks, norm_layer: as in :class:`LongseqViT`.
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] | None = None,
        patch_size: int = 4,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        ff_chunks: int = 1,
        norm_layer: type[nn.Module] = nn.LayerNorm,
    ) -> None:
        super().__init__()
        if global_pool == "token":
            raise ValueError("global_pool='token' needs a class token, which LongseqSwin has not")
        if len(depths) != len(num_heads) or not depths:
            raise ValueError(f"depths and num_heads must be non-empty and of equal length, got {depths}, {num_heads}")
        dims = [embed_dim * 2**i for i in range(len(depths))]
        for d, h in zip(dims, num_heads):
            if d % h:
                raise ValueError(f"stage width {d} is not divisible by its num_heads {h}")
        self.num_classes, self.window_size = num_classes, window_size
        self.num_features = self.head_hidden_size = dims[-1]
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim, norm_layer)
        dpr = drop_path_rates(drop_path_rate, sum(depths))
        stages, start = [], 0
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            stages.append(SwinStage(
                dims[max(i - 1, 0)], dims[i], depth, heads, window_size, downsample=i > 0,
                mlp_ratio=mlp_ratio, drop_path=dpr[start:start + depth], ff_chunks=ff_chunks, norm_layer=norm_layer,
            ))
            start += depth
        self.layers = nn.ModuleList(stages)
        self.norm = norm_layer(dims[-1])
        self.head = ClassifierHead(dims[-1], num_classes, global_pool, drop_rate)
        self.feature_info = [
            dict(num_chs=d, reduction=patch_size * 2**i, module=f"layers.{i}") for i, d in enumerate(dims)
        ]
        #: Smallest input side for which every stage grid exceeds one window, so every
        #: stage shifts; ONNX export with symbolic sizes assumes sides of at least this.
        self.min_export_side = patch_size * 2 ** (len(dims) - 1) * window_size + 1
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool == "token":
            raise ValueError("global_pool='token' needs a class token, which LongseqSwin has not")
        self.num_classes = num_classes
        self.head.reset(num_classes, global_pool)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block in backward instead of keeping its activations (timm's hook)."""
        for stage in self.layers:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """The relative-position tables: timm's optimizer factory and the classification task
        leave them undecayed, as timm's Swin does."""
        return {name for name, _ in self.named_parameters() if name.endswith(".table")}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Parameter groups by depth, for timm's layer-wise LR decay (``param_groups_layer_decay``):
        the stem, then one group per block (a stage's patch merging with its first block), the
        final norm last; ``coarse`` groups whole stages. timm's Swin groups the same way."""
        return dict(
            stem=r"^patch_embed",
            blocks=r"^layers\.(\d+)" if coarse else [
                (r"^layers\.(\d+)\.downsample", (0,)),
                (r"^layers\.(\d+)\.\w+\.(\d+)", None),
                (r"^norm", (99999,)),
            ],
        )

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, C_in, H, W)`` -> normalised last-stage features ``(B, H/32, W/32, C)`` (rounded up)."""
        x = self.patch_embed(x)
        for stage in self.layers:
            x = stage(x)
        return self.norm(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, H, W)`` -> logits ``(B, num_classes)``."""
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """Stage outputs, ``(B, C_i, H / s_i, W / s_i)`` with strides ``s_i = 4, 8, 16, 32``.

        ``indices``: last ``n`` stages if int, all if None, else these stage indices.
        ``norm`` applies the final norm to the last stage's map (the only one it fits).
        """
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        take, max_index = feature_take_indices(len(self.layers), indices)
        last = len(self.layers) - 1
        stages = self.layers[: max_index + 1] if (stop_early or intermediates_only) else self.layers
        intermediates = []
        x = self.patch_embed(x)
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in take:
                y = self.norm(x) if (norm and i == last) else x
                intermediates.append(y.permute(0, 3, 1, 2) if output_fmt == "NCHW" else y)
        if intermediates_only:
            return intermediates
        return (self.norm(x) if len(stages) == last + 1 else x), intermediates

    def prune_intermediate_layers(self, indices: int | Sequence[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop stages after the last wanted one (and the head); returns kept indices."""
        take, max_index = feature_take_indices(len(self.layers), indices)
        if prune_norm or max_index < len(self.layers) - 1:
            self.norm = nn.Identity()
        self.layers = self.layers[: max_index + 1]
        self.feature_info = self.feature_info[: max_index + 1]
        if prune_head:
            self.reset_classifier(0, "avg")
        return take


def _create(variant: str, pretrained: bool = False, **kwargs) -> LongseqSwin:
    default_out = tuple(range(len(kwargs.get("depths", (2, 2, 6, 2)))))
    return build_backbone(LongseqSwin, variant, pretrained, default_out, filter_fn=swin_checkpoint_filter, **kwargs)


default_cfgs = generate_default_cfgs({
    "longseq_swin_tiny": default_cfg(),
    "longseq_swin_small": default_cfg(),
    "longseq_swin_base": default_cfg(),
})


@register_model
def longseq_swin_tiny(pretrained: bool = False, **kwargs) -> LongseqSwin:
    """Swin-T sizes (as timm ``swin_tiny_patch4_window7_224``): C=96, depths 2-2-6-2, heads 3-6-12-24, 7x7 windows."""
    args = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24))
    return _create("longseq_swin_tiny", pretrained, **{**args, **kwargs})


@register_model
def longseq_swin_small(pretrained: bool = False, **kwargs) -> LongseqSwin:
    """Swin-S sizes: C=96, depths 2-2-18-2, heads 3-6-12-24, 7x7 windows."""
    args = dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24))
    return _create("longseq_swin_small", pretrained, **{**args, **kwargs})


@register_model
def longseq_swin_base(pretrained: bool = False, **kwargs) -> LongseqSwin:
    """Swin-B sizes: C=128, depths 2-2-18-2, heads 4-8-16-32, 7x7 windows."""
    args = dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32))
    return _create("longseq_swin_base", pretrained, **{**args, **kwargs})
