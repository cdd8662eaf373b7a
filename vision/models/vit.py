"""Plain ViT with windowed attention and a few global blocks (ViTDet style), on longseq.

Most blocks attend inside non-overlapping ``window_size x window_size`` windows of the
patch grid (:class:`longseq.patterns.Window2D`, built per forward because the grid follows
the image size; the grid is padded inside the pattern, so any ``H, W`` works). The blocks
listed in ``global_blocks`` use ``global_pattern``: any longseq pattern that connects every
token to every other. The default, ``"auto"``, is dense attention (exactly ViTDet) up to
``AUTO_DENSE_MAX_TOKENS`` patches (a 1024 x 1024 image at patch 16) and BigBird above,
which keeps the global blocks sub-quadratic at high resolution: at 2048 x 2048 dense
global blocks alone would cost more than the 4x speed-up over a global ViT that this
backbone is benchmarked for (docs/results.md). Positions enter through 2D rotary
embeddings by default, so there is no position table to interpolate when the resolution
changes. A model started from a timm ViT checkpoint (``pretrained=True``, see
:mod:`vision.models.timm_keys`) keeps that checkpoint's learned absolute position table
and class token instead (``pos_embed="learn"``, ``class_token=True``): the table is
resampled to each input's grid, and the class token attends to every patch in the global
blocks and to itself in the windowed ones.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Sequence

import torch
from timm.layers import resample_abs_pos_embed
from timm.models import register_model
from timm.models._features import feature_take_indices
from timm.models._registry import generate_default_cfgs
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from longseq.layers import TransformerBlock
from longseq.patterns import BigBird, Dense, Pattern, Window2D
from longseq.positions import RoPE2D

from vision.models._builder import build_backbone, default_cfg
from vision.models.checkpoint_io import checkpoint_shapes, pretrained_source
from vision.models.layers import ClassifierHead, ConvStem, PatchEmbed, drop_path_rates, grid_positions
from vision.models.timm_keys import vit_checkpoint_filter, vit_kwargs_from_checkpoint

__all__ = ["LongseqViT", "AUTO_DENSE_MAX_TOKENS", "POS_EMBED_MODES", "auto_global_pattern"]

#: ``global_pattern="auto"`` is dense up to this many patches, BigBird above.
AUTO_DENSE_MAX_TOKENS = 4096

#: ``pos_embed`` values: 2D rotary embeddings, a learned absolute table, or no positions.
POS_EMBED_MODES = ("rope", "learn", "none")

#: Grid side of the learned position table when ``img_size`` is not given (224 / 16).
_DEFAULT_TABLE_SIDE = 224


def auto_global_pattern(n_tokens: int) -> Pattern:
    """The ``"auto"`` global pattern for a grid of ``n_tokens`` patches.

    Dense while the grid is small; above, BigBird with blocks of 64 patches (one
    neighbouring block each side, the first and last block global, two random blocks),
    which still connects any two patches within two hops. Exported graphs always use the
    dense form (the BigBird layout needs a concrete length).
    """
    if torch.compiler.is_exporting() or n_tokens <= AUTO_DENSE_MAX_TOKENS:
        return Dense()
    return BigBird(block=64, window_blocks=1, global_blocks=1, random_blocks=2)


def _global_block_indices(global_blocks: Sequence[int] | str, depth: int) -> tuple[int, ...]:
    """``global_blocks`` as sorted block indices; ``"all"`` is every block."""
    if isinstance(global_blocks, str):
        if global_blocks != "all":
            raise ValueError(f"global_blocks must be block indices or 'all', got {global_blocks!r}")
        return tuple(range(depth))
    indices = tuple(sorted({int(i) for i in global_blocks}))
    if any(not 0 <= i < depth for i in indices):
        raise ValueError(f"global_blocks must be block indices in [0, {depth}), got {indices}")
    return indices


def _table_grid(img_size: int | Sequence[int] | None, patch_size: int) -> tuple[int, int]:
    """Grid ``(rows, cols)`` of the learned position table: ``img_size // patch_size`` per side."""
    size = _DEFAULT_TABLE_SIDE if img_size is None else img_size
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if h < patch_size or w < patch_size:
        raise ValueError(f"img_size must be at least patch_size={patch_size} per side, got {img_size!r}")
    return h // patch_size, w // patch_size


class LongseqViT(nn.Module):
    """ViTDet-style plain backbone.

    Args:
        img_size: with ``pos_embed="learn"``, the image side (int or ``(H, W)``) whose
            patch grid the position table covers (224 when None); inputs of other sizes
            resample the table to their grid (timm's ``resample_abs_pos_embed``). Any
            input size works either way; without a table this is unused.
        patch_size: side of a patch in pixels (the stride of every feature map).
        in_chans: input channels.
        num_classes: classifier outputs; 0 for no classifier.
        global_pool: ``"avg"``, ``"max"``, ``"avgmax"``, ``""``, or ``"token"`` (the
            class token's features; needs ``class_token``).
        embed_dim, depth, num_heads, mlp_ratio: transformer sizes.
        window_size: window side in patches for the windowed blocks.
        global_blocks: indices of blocks that use ``global_pattern`` instead of windows,
            or ``"all"`` (a global ViT: with a timm checkpoint, timm's model exactly).
        global_pattern: longseq pattern of the global blocks, or ``"auto"`` (default: see
            :func:`auto_global_pattern`).
        drop_rate: dropout before the classifier. drop_path_rate: max stochastic depth.
        ff_chunks: feed-forward chunks along the tokens; ``"auto"`` (default) is one chunk
            up to 4,096 patches and chunks of at most 4,096 above, recomputed in backward
            (``longseq.layers.ChunkedFeedForward``): at 2048 x 2048 (16,384 patches) it cut
            a training step's peak RSS from 8.56 to 7.20 GB for 15% more time
            (docs/vision.md); ``1`` turns it off.
        head_chunks: attention head groups whose projections are recomputed in backward
            (``longseq.layers.MultiheadAttention``); ``"auto"`` (default) groups them only
            while training above 4,096 patches, so q, k, v are not saved for backward.
            ``1`` turns it off.
        norm_layer: normalisation layer type.
        norm_eps: epsilon of every ``norm_layer`` (its own default when None); timm's
            ViTs use 1e-6.
        embed_layer: patchify layer type, ``(patch_size, in_chans, embed_dim)``:
            :class:`PatchEmbed` (linear) or :class:`ConvStem`.
        embed_kwargs: extra keyword arguments of ``embed_layer``, e.g.
            ``{"first_stride": 4}`` for :class:`ConvStem`.
        stem_features: also offer the conv stem's finer stage maps as features (needs an
            ``embed_layer`` with ``stage_info`` and ``forward_stages``, i.e.
            :class:`ConvStem`). ``feature_info`` then lists the stem stages first (strides
            below ``patch_size``), then the blocks, as a CNN's stem comes before its
            stages, so feature index ``len(stem stages) + i`` is block ``i``. A detector
            can then take strides 8 and 16 from the stem and run the transformer at
            stride 32 on 4x fewer tokens than at stride 16.
        pos_embed: ``"rope"`` (default: 2D rotary embeddings in every block, no table),
            ``"learn"`` (a learned absolute table ``pos_embed``, as timm's ViT) or
            ``"none"``.
        class_token: prepend a learned class token ``cls_token`` (as timm's ViT; needs
            ``pos_embed`` other than ``"rope"``, whose rotations cover the patch grid
            only). It attends to every patch in the global blocks and to itself in the
            windowed ones; ``forward_features`` then returns ``(B, 1 + gh * gw, C)``.
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] | None = None,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
        window_size: int = 14,
        global_blocks: Sequence[int] | str = (2, 5, 8, 11),
        global_pattern: Pattern | str | None = "auto",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        ff_chunks: int | str = "auto",
        head_chunks: int | str = "auto",
        norm_layer: type[nn.Module] = nn.LayerNorm,
        embed_layer: type[nn.Module] = PatchEmbed,
        embed_kwargs: dict[str, Any] | None = None,
        stem_features: bool = False,
        pos_embed: str = "rope",
        class_token: bool = False,
        norm_eps: float | None = None,
    ) -> None:
        super().__init__()
        if pos_embed not in POS_EMBED_MODES:
            raise ValueError(f"pos_embed must be one of {POS_EMBED_MODES}, got {pos_embed!r}")
        if pos_embed == "rope" and (embed_dim % num_heads or (embed_dim // num_heads) % 4):
            raise ValueError(f"embed_dim / num_heads must be a multiple of 4 (2D RoPE), got {embed_dim}/{num_heads}")
        if class_token and pos_embed == "rope":
            raise ValueError("class_token needs pos_embed='learn' or 'none' "
                             "(2D RoPE positions cover the patch grid only)")
        if global_pool == "token" and not class_token:
            raise ValueError("global_pool='token' needs class_token=True")
        if window_size < 1:
            raise ValueError(f"window_size must be >= 1, got {window_size}")
        global_blocks = _global_block_indices(global_blocks, depth)
        self.patch_size, self.window_size, self.global_blocks = patch_size, window_size, global_blocks
        if global_pattern is None:
            global_pattern = "auto"
        if not (global_pattern == "auto" or isinstance(global_pattern, Pattern)):
            raise ValueError(f"global_pattern must be a longseq Pattern or 'auto', got {global_pattern!r}")
        if norm_eps is not None:
            norm_layer = partial(norm_layer, eps=norm_eps)
        self.global_pattern = global_pattern
        self.num_classes, self.embed_dim = num_classes, embed_dim
        self.num_features = self.head_hidden_size = embed_dim
        self.grad_checkpointing = False

        self.patch_embed = embed_layer(patch_size, in_chans, embed_dim, **(embed_kwargs or {}))
        #: Prefix tokens before the patches (timm's name): 1 with a class token, else 0.
        self.num_prefix_tokens = 1 if class_token else 0
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        #: ``(rows, cols)`` of the position table's patch grid (None without a table).
        self.pos_grid: tuple[int, int] | None = None
        self.pos_embed: nn.Parameter | None = None
        if pos_embed == "learn":
            self.pos_grid = _table_grid(img_size, patch_size)
            n = self.num_prefix_tokens + self.pos_grid[0] * self.pos_grid[1]
            self.pos_embed = nn.Parameter(torch.zeros(1, n, embed_dim))
        # One rotary module shared by all blocks: it holds no parameters, only frequencies.
        self.rope = RoPE2D(embed_dim // num_heads) if pos_embed == "rope" else None
        placeholder = Window2D(window_size, grid=(window_size, window_size))  # replaced per forward
        self.blocks = nn.ModuleList(
            TransformerBlock(
                embed_dim, num_heads,
                (Dense() if global_pattern == "auto" else global_pattern) if i in global_blocks else placeholder,
                mlp_ratio=mlp_ratio, rope=self.rope, ff_chunks=ff_chunks, head_chunks=head_chunks, drop_path=dpr, norm_layer=norm_layer,
            )
            for i, dpr in enumerate(drop_path_rates(drop_path_rate, depth))
        )
        self.norm = norm_layer(embed_dim)
        self.head = ClassifierHead(embed_dim, num_classes, global_pool, drop_rate)
        stem_info: list[tuple[int, int]] = []
        if stem_features:
            if not hasattr(self.patch_embed, "forward_stages"):
                raise ValueError(f"stem_features=True needs an embed_layer with forward_stages (ConvStem), got {embed_layer.__name__}")
            stem_info = list(self.patch_embed.stage_info)
        #: Number of leading ``feature_info`` entries that are conv-stem stages (0 unless ``stem_features``).
        self.num_stem_features = len(stem_info)
        self.feature_info = [dict(num_chs=c, reduction=r, module=f"patch_embed.stage{i}") for i, (c, r) in enumerate(stem_info)]
        self.feature_info += [dict(num_chs=embed_dim, reduction=patch_size, module=f"blocks.{i}") for i in range(depth)]
        #: torch.export needs every symbolic grid side >= 2 (sizes 0 and 1 are specialised).
        self.min_export_side = 2 * patch_size
        self.apply(self._init_weights)
        if self.pos_embed is not None:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    # -- timm interface -------------------------------------------------------------------
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool == "token" and not self.num_prefix_tokens:
            raise ValueError("global_pool='token' needs class_token=True")
        self.num_classes = num_classes
        self.head.reset(num_classes, global_pool)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block in backward instead of keeping its activations (timm's hook)."""
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Parameters that timm's optimizer factory and the classification task leave undecayed."""
        return {name for name in ("pos_embed", "cls_token") if getattr(self, name) is not None}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Parameter groups by depth, for timm's layer-wise LR decay (``param_groups_layer_decay``):
        the embeddings first, then one group per block, the final norm last."""
        return dict(stem=r"^cls_token|^pos_embed|^patch_embed",
                    blocks=[(r"^blocks\.(\d+)", None), (r"^norm", (99999,))])

    # -- forward --------------------------------------------------------------------------
    def _tokens(self, grid: Tensor) -> tuple[Tensor, Tensor | None]:
        """Patch grid ``(B, gh, gw, C)`` -> patch tokens ``(B, gh * gw, C)`` with their
        absolute positions added (with a table), and the prefix tokens ``(B, P, C)`` (None
        without a class token)."""
        B, gh, gw, C = grid.shape
        tokens = grid.reshape(B, gh * gw, C)
        P = self.num_prefix_tokens
        table = self.pos_embed
        if table is not None:
            if (gh, gw) != self.pos_grid:
                table = resample_abs_pos_embed(table, new_size=[gh, gw], old_size=list(self.pos_grid),
                                               num_prefix_tokens=P)
            tokens = tokens + table[:, P:]
        if self.cls_token is None:
            return tokens, None
        prefix = self.cls_token.expand(B, -1, -1)
        return tokens, (prefix + table[:, :P] if table is not None else prefix)

    def _block(self, block: nn.Module, x: Tensor, pattern: Pattern, positions: Tensor | None) -> Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled() and not torch.compiler.is_exporting():
            return checkpoint(block, x, pattern=pattern, positions=positions, use_reentrant=False)
        return block(x, pattern=pattern, positions=positions)

    def _run_blocks(self, x: Tensor, take: set[int] = frozenset(), stop: int | None = None
                    ) -> tuple[Tensor, Tensor | None, dict[int, Tensor]]:
        """Blocks ``0..stop`` (all when None) on the patch grid ``(B, gh, gw, C)``.

        Returns the last grid ``(B, gh, gw, C)``, the prefix tokens ``(B, P, C)`` (None
        without a class token) and ``{i: (B, gh, gw, C)}`` for block indices in ``take``.
        """
        B, gh, gw, C = x.shape
        tokens, prefix = self._tokens(x)
        P = self.num_prefix_tokens
        positions = grid_positions(gh, gw, x.device) if self.rope is not None else None
        window = Window2D(self.window_size, grid=(gh, gw))  # the grid follows the image size
        glob = auto_global_pattern(gh * gw + P) if self.global_pattern == "auto" else self.global_pattern
        taken: dict[int, Tensor] = {}
        for i, block in enumerate(self.blocks[: len(self.blocks) if stop is None else stop + 1]):
            if i not in self.global_blocks:
                tokens = self._block(block, tokens, window, positions)
                if prefix is not None:  # the class token sees only itself in a windowed block
                    prefix = self._block(block, prefix, Dense(), None)
            elif prefix is None:
                tokens = self._block(block, tokens, glob, positions)
            else:
                both = self._block(block, torch.cat([prefix, tokens], dim=1), glob, None)
                prefix, tokens = both[:, :P], both[:, P:]
            if i in take:
                taken[i] = tokens.reshape(B, gh, gw, C)
        return tokens.reshape(B, gh, gw, C), prefix, taken

    def _final(self, grid: Tensor, prefix: Tensor | None) -> Tensor:
        """Normalised features: ``(B, gh, gw, C)``, or ``(B, P + gh * gw, C)`` with prefix tokens."""
        if prefix is None:
            return self.norm(grid)
        return self.norm(torch.cat([prefix, grid.flatten(1, 2)], dim=1))

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, C_in, H, W)`` -> normalised features ``(B, ceil(H/p), ceil(W/p), embed_dim)``;
        with a class token ``(B, 1 + gh * gw, embed_dim)``, class token first (as timm's ViT)."""
        grid, prefix, _ = self._run_blocks(self.patch_embed(x))
        return self._final(grid, prefix)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Features from :meth:`forward_features` -> ``(B, num_classes)``."""
        if self.num_prefix_tokens and x.ndim == 3:
            # "token" pools the class token; the other modes pool the patch tokens only.
            x = x[:, 0] if self.head.pool_mode == "token" else x[:, self.num_prefix_tokens:].unsqueeze(1)
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, H, W)`` -> logits ``(B, num_classes)`` (pooled features if ``num_classes=0``)."""
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
        """Block outputs as ``(B, embed_dim, gh, gw)`` maps (all at stride ``patch_size``).

        ``indices`` count ``feature_info`` entries: last ``n`` if int, all if None, else
        these indices. With ``stem_features`` the first ``num_stem_features`` are the conv
        stem's finer stage maps ``(B, C_i, H/s_i, W/s_i)`` (never normalised), the rest
        blocks; without, index ``i`` is block ``i``.
        ``norm`` applies the final norm to each intermediate. Returns the list, or
        ``(final features, list)`` unless ``intermediates_only``, the final features as
        :meth:`forward_features` returns them. The maps hold patch tokens only (a class
        token has no place on the grid).
        """
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        n_stem = self.num_stem_features
        take, max_index = feature_take_indices(n_stem + len(self.blocks), indices)
        stop = max(max_index - n_stem, -1) if (stop_early or intermediates_only) else None  # -1: no blocks
        if n_stem:
            tokens, stages = self.patch_embed.forward_stages(x)
        else:
            tokens, stages = self.patch_embed(x), []
        x, prefix, taken = self._run_blocks(tokens, take={i - n_stem for i in take if i >= n_stem}, stop=stop)
        intermediates = []
        for i in take:
            if i < n_stem:
                intermediates.append(stages[i] if output_fmt == "NCHW" else stages[i].permute(0, 2, 3, 1))
                continue
            y = self.norm(taken[i - n_stem]) if norm else taken[i - n_stem]
            intermediates.append(y.permute(0, 3, 1, 2) if output_fmt == "NCHW" else y)
        if intermediates_only:
            return intermediates
        return self._final(x, prefix), intermediates

    def prune_intermediate_layers(self, indices: int | Sequence[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop blocks after the last wanted intermediate (and the head); returns kept indices."""
        take, max_index = feature_take_indices(self.num_stem_features + len(self.blocks), indices)
        self.blocks = self.blocks[: max(max_index - self.num_stem_features + 1, 0)]
        self.feature_info = self.feature_info[: max_index + 1]
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "avg")
        return take


def _create(variant: str, pretrained: bool = False, **kwargs) -> LongseqViT:
    if pretrained:
        # What the checkpoint holds (class token, position table and its grid, timm's norm
        # epsilon) sets the defaults of the arguments not given.
        shapes = checkpoint_shapes(pretrained_source(variant, kwargs))
        kwargs = {**vit_kwargs_from_checkpoint(shapes, kwargs.get("patch_size", 16)), **kwargs}
    depth = kwargs.get("depth", 12)
    global_blocks = kwargs.get("global_blocks", (2, 5, 8, 11))
    default_out = (2, 5, 8, 11) if global_blocks == "all" else tuple(global_blocks)  # all global: ViTDet's four
    default_out = tuple(i for i in default_out if i < depth) or (depth - 1,)
    if kwargs.get("stem_features"):  # stem stages come first in feature_info: offer them all
        n_stem = ConvStem.num_finer_stages(kwargs.get("patch_size", 16), (kwargs.get("embed_kwargs") or {}).get("first_stride", 2))
        default_out = tuple(range(n_stem)) + tuple(n_stem + i for i in default_out)
    return build_backbone(LongseqViT, variant, pretrained, default_out, filter_fn=vit_checkpoint_filter, **kwargs)


default_cfgs = generate_default_cfgs({
    "longseq_vit_tiny": default_cfg(),
    "longseq_vit_small": default_cfg(),
    "longseq_vit_base": default_cfg(),
    "longseq_vit_digits": default_cfg(num_classes=10, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                                      first_conv="patch_embed.convs.0"),
})


@register_model
def longseq_vit_tiny(pretrained: bool = False, **kwargs) -> LongseqViT:
    """ViT-Ti/16 widths (as timm ``vit_tiny_patch16_224``), 14x14 windows, global blocks 2, 5, 8, 11."""
    args = dict(embed_dim=192, depth=12, num_heads=3)
    return _create("longseq_vit_tiny", pretrained, **{**args, **kwargs})


@register_model
def longseq_vit_small(pretrained: bool = False, **kwargs) -> LongseqViT:
    """ViT-S/16 widths (as timm ``vit_small_patch16_224``), 14x14 windows, 4 global blocks."""
    args = dict(embed_dim=384, depth=12, num_heads=6)
    return _create("longseq_vit_small", pretrained, **{**args, **kwargs})


@register_model
def longseq_vit_base(pretrained: bool = False, **kwargs) -> LongseqViT:
    """ViT-B/16 widths (as timm ``vit_base_patch16_224``), 14x14 windows, 4 global blocks."""
    args = dict(embed_dim=768, depth=12, num_heads=12)
    return _create("longseq_vit_base", pretrained, **{**args, **kwargs})


@register_model
def longseq_vit_digits(pretrained: bool = False, **kwargs) -> LongseqViT:
    """Small fast ViT for the scattered-digits default.

    Conv stem to stride 16, dim 128, 6 blocks, 8x8 windows, block 3 global, max pooling
    (a small digit on a large empty canvas: averaging would dilute it).
    """
    args = dict(patch_size=16, embed_dim=128, depth=6, num_heads=4, window_size=8, global_blocks=(3,),
                global_pool="max", num_classes=10, embed_layer=ConvStem)
    return _create("longseq_vit_digits", pretrained, **{**args, **kwargs})
