"""Image-side layers shared by the longseq backbones (attention lives in longseq).

timm already has the patchify conv, the classifier head and Swin's patch merging, so
those are timm's modules: :class:`PatchEmbed` and :class:`ClassifierHead` only fix timm's
arguments for this package's token grids, ``(B, H, W, C)`` of any ``H, W``, and keep the
state-dict keys (``proj.*``, ``norm.*``, ``fc.*``, ``reduction.*``) that checkpoints hold.
Written out here is what timm lacks: a conv stem whose first stride is configurable
(:class:`ConvStem`), row-major grid positions for 2D RoPE, and a range check on the
stochastic-depth rate before timm spreads it over the blocks.
"""

from __future__ import annotations

import torch
from timm.layers import ClassifierHead as _TimmClassifierHead
from timm.layers import PatchEmbed as _TimmPatchEmbed
from timm.layers import calculate_drop_path_rates
from timm.models.swin_transformer import PatchMerging
from torch import Tensor, nn

__all__ = ["PatchEmbed", "ConvStem", "PatchMerging", "ClassifierHead", "grid_positions", "POOL_MODES", "drop_path_rates"]

#: ``global_pool`` values: ``"avgmax"`` concatenates average and max pooling (timm calls
#: that ``"catavgmax"``; timm's own ``"avgmax"`` averages the two), ``""`` pools nothing,
#: ``"token"`` takes a class token that the model hands over already selected, ``(B, C)``.
POOL_MODES = ("avg", "max", "avgmax", "", "token")
_TIMM_POOL = {"avg": "avg", "max": "max", "avgmax": "catavgmax", "": "", "token": ""}


class PatchEmbed(_TimmPatchEmbed):
    """Non-overlapping conv patchify for any ``H, W``: timm's ``PatchEmbed`` with dynamic padding.

    The image is zero-padded on the bottom and right up to a multiple of the patch size,
    so no pixel is dropped; ``(B, C, H, W)`` -> ``(B, ceil(H / p), ceil(W / p), D)``.
    """

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int, norm_layer: type[nn.Module] | None = None):
        if patch_size < 1:
            raise ValueError(f"patch_size must be >= 1, got {patch_size}")
        super().__init__(img_size=None, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim,
                         norm_layer=norm_layer, flatten=False, output_fmt="NHWC", strict_img_size=False,
                         dynamic_img_pad=True)


class ConvStem(nn.Module):
    """Convolutional patchify (Xiao et al., 2021, "Early convolutions help transformers see better").

    Stride-2 3x3 convs (BatchNorm, ReLU) with widths doubling up to ``embed_dim``, then a
    1x1 projection: same grid as :class:`PatchEmbed` (``ceil(H / p), ceil(W / p)``), but
    translation-equivariant features that make a small ViT far more sample-efficient when
    objects sit at arbitrary sub-patch offsets.

    ``first_stride`` (a power of two, default 2) sets the stride of the first conv, whose
    kernel is ``2 * first_stride - 1`` wide (3x3 at stride 2, 7x7 at stride 4: neighbouring
    windows still overlap). At high resolution the first stage's full-size feature map is
    what a step spends its time on (BatchNorm and ReLU over ``H/2 x W/2`` maps are memory
    bound): ``first_stride=4`` skips that map, and at 512 x 512 with ``patch_size=32`` cut
    the stem's forward + backward from 273 to 111 ms per batch of 16 (AVX2 EPYC,
    docs/vision.md).

    Written here rather than taken from timm: ``timm.models.vision_transformer_hybrid.ConvStem``
    stacks similar convs but returns channels-first maps, has no :meth:`forward_stages` for
    a hybrid detector's finer levels, and names its weights differently from the
    checkpoints of this stem (``convs.*``, ``proj.*``).
    """

    def __init__(
        self, patch_size: int, in_chans: int, embed_dim: int, norm_layer: type[nn.Module] | None = None, first_stride: int = 2
    ):
        super().__init__()
        n = patch_size.bit_length() - 1
        if patch_size < 2 or 2**n != patch_size:
            raise ValueError(f"ConvStem needs a power-of-two patch_size >= 2, got {patch_size}")
        f = first_stride.bit_length() - 1
        if first_stride < 2 or 2**f != first_stride or first_stride > patch_size:
            raise ValueError(f"ConvStem needs a power-of-two first_stride in [2, patch_size={patch_size}], got {first_stride}")
        self.patch_size, self.first_stride = patch_size, first_stride
        n_stages = n - f + 1  # the first conv covers f of the n halvings
        widths = [max(embed_dim // 2 ** (n_stages - 1 - i), 8) for i in range(n_stages)]
        strides = [first_stride] + [2] * (n_stages - 1)
        layers: list[nn.Module] = []
        for cin, cout, stride in zip([in_chans] + widths[:-1], widths, strides):
            conv = nn.Conv2d(cin, cout, 2 * stride - 1, stride=stride, padding=stride - 1, bias=False)
            layers += [conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        self.convs = nn.Sequential(*layers)
        #: ``(channels, stride)`` of every stage output but the last (which only feeds
        #: ``proj``): the finer maps :meth:`forward_stages` returns, e.g. strides 4, 8, 16
        #: for ``patch_size=32, first_stride=4``.
        self.stage_info: list[tuple[int, int]] = [(c, first_stride * 2**i) for i, c in enumerate(widths[:-1])]
        assert len(self.stage_info) == self.num_finer_stages(patch_size, first_stride)
        self.proj = nn.Conv2d(widths[-1], embed_dim, kernel_size=1)
        self.norm = norm_layer(embed_dim) if norm_layer is not None else nn.Identity()
        # Channels-last weights make oneDNN run these thin convs in NHWC: a stride-32 stem
        # at 512 x 512 trained 13% faster per step on an AVX2 EPYC (docs/vision.md), and
        # the NHWC output is already the (B, gh, gw, D) layout the blocks want.
        self.to(memory_format=torch.channels_last)

    @staticmethod
    def num_finer_stages(patch_size: int, first_stride: int = 2) -> int:
        """How many stage maps :meth:`forward_stages` returns (strides below ``patch_size``)."""
        return (patch_size.bit_length() - 1) - (first_stride.bit_length() - 1)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` -> ``(B, ceil(H/p), ceil(W/p), D)``."""
        if x.ndim != 4:
            raise ValueError(f"expected an image batch (B, C, H, W), got shape {tuple(x.shape)}")
        x = x.contiguous(memory_format=torch.channels_last)
        return self.norm(self.proj(self.convs(x)).permute(0, 2, 3, 1))  # B, gh, gw, D

    def forward_stages(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``(B, C, H, W)`` -> tokens ``(B, ceil(H/p), ceil(W/p), D)`` and the finer stage maps.

        The maps are ``(B, C_i, ceil(H/s_i), ceil(W/s_i))`` for ``(C_i, s_i)`` in
        :attr:`stage_info` (channels-last memory): a hybrid detector takes its stride-8
        and stride-16 levels from them while the transformer runs at stride ``p``.
        """
        if x.ndim != 4:
            raise ValueError(f"expected an image batch (B, C, H, W), got shape {tuple(x.shape)}")
        x = x.contiguous(memory_format=torch.channels_last)
        maps: list[Tensor] = []
        for layer in self.convs:
            x = layer(x)
            if isinstance(layer, nn.ReLU):  # each stage is conv, BatchNorm, ReLU
                maps.append(x)
        return self.norm(self.proj(x).permute(0, 2, 3, 1)), maps[:-1]


def grid_positions(h: int, w: int, device: torch.device | str | None = None) -> Tensor:
    """``(h * w, 2)`` long ``(row, col)`` of a row-major flattened grid (the RoPE2D input)."""
    # expand + reshape rather than repeat_interleave: exports to ONNX with symbolic h, w.
    rows = torch.arange(h, device=device)[:, None].expand(h, w)
    cols = torch.arange(w, device=device)[None, :].expand(h, w)
    return torch.stack([rows, cols], dim=-1).reshape(h * w, 2)


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """Stochastic-depth rates rising linearly from 0 to ``rate`` over ``depth`` blocks (timm's
    ``calculate_drop_path_rates``), once ``rate`` is checked to be a drop probability below 1."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"drop_path_rate must be in [0, 1), got {rate}")
    return calculate_drop_path_rates(rate, depth)


def _check_head(num_classes: int, global_pool: str) -> None:
    if global_pool not in POOL_MODES:
        raise ValueError(f"global_pool must be one of {POOL_MODES}, got {global_pool!r}")
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}")
    if num_classes and not global_pool:
        raise ValueError("a classifier needs a global_pool; use num_classes=0 for token features")


class ClassifierHead(_TimmClassifierHead):
    """timm's ``ClassifierHead`` on ``(B, H, W, C)`` maps: pool, drop out, project to classes.

    ``global_pool`` is one of :data:`POOL_MODES`; ``num_classes=0`` leaves out the
    projection. ``(B, H, W, C)`` -> ``(B, num_classes)``, or the pooled ``(B, C)`` features
    (``(B, 2C)`` for ``"avgmax"``) with ``pre_logits``. With ``"token"`` the input is the
    class token's ``(B, C)`` features, which only drop out and project.
    """

    def __init__(self, in_dim: int, num_classes: int, global_pool: str = "avg", drop_rate: float = 0.0):
        _check_head(num_classes, global_pool)
        super().__init__(in_dim, num_classes, pool_type=_TIMM_POOL[global_pool], drop_rate=drop_rate,
                         input_fmt="NHWC")
        self.pool_mode = global_pool

    def reset(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new projection to ``num_classes`` (and pooling, when ``global_pool`` is given)."""
        _check_head(num_classes, self.pool_mode if global_pool is None else global_pool)
        if global_pool is not None:
            self.pool_mode = global_pool
        super().reset(num_classes, None if global_pool is None else _TIMM_POOL[global_pool])
