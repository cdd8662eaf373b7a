"""Small image-side layers shared by the longseq backbones (attention lives in longseq)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PatchEmbed", "ConvStem", "PatchMerging", "ClassifierHead", "grid_positions", "pool_tokens", "POOL_MODES", "drop_path_rates"]

POOL_MODES = ("avg", "max", "avgmax", "")


class PatchEmbed(nn.Module):
    """Non-overlapping conv patchify for any ``H, W``.

    The image is zero-padded on the bottom and right up to a multiple of the patch size,
    so no pixel is dropped; the grid is ``(ceil(H / p), ceil(W / p))``.
    """

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int, norm_layer: type[nn.Module] | None = None):
        super().__init__()
        if patch_size < 1:
            raise ValueError(f"patch_size must be >= 1, got {patch_size}")
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = norm_layer(embed_dim) if norm_layer is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` -> ``(B, gh, gw, D)``."""
        if x.ndim != 4:
            raise ValueError(f"expected an image batch (B, C, H, W), got shape {tuple(x.shape)}")
        p = self.patch_size
        x = F.pad(x, (0, (-x.shape[3]) % p, 0, (-x.shape[2]) % p))
        return self.norm(self.proj(x).permute(0, 2, 3, 1))  # B, gh, gw, D


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


class PatchMerging(nn.Module):
    """Swin patch merging: 2x2 neighbours concatenated, normalised, projected.

    ``(B, H, W, C)`` -> ``(B, ceil(H / 2), ceil(W / 2), out_dim)``; odd sides are
    zero-padded first, so any grid size works.
    """

    def __init__(self, dim: int, out_dim: int | None = None, norm_layer: type[nn.Module] = nn.LayerNorm):
        super().__init__()
        self.out_dim = out_dim or 2 * dim
        self.norm = norm_layer(4 * dim)
        self.reduction = nn.Linear(4 * dim, self.out_dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        B, H, W, C = x.shape
        x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        x = x.reshape(B, (H + 1) // 2, 2, (W + 1) // 2, 2, C).permute(0, 1, 3, 4, 2, 5).flatten(3)
        return self.reduction(self.norm(x))  # B, H/2, W/2, out_dim


def grid_positions(h: int, w: int, device: torch.device | str | None = None) -> Tensor:
    """``(h * w, 2)`` long ``(row, col)`` of a row-major flattened grid (the RoPE2D input)."""
    # expand + reshape rather than repeat_interleave: exports to ONNX with symbolic h, w.
    rows = torch.arange(h, device=device)[:, None].expand(h, w)
    cols = torch.arange(w, device=device)[None, :].expand(h, w)
    return torch.stack([rows, cols], dim=-1).reshape(h * w, 2)


def pool_tokens(x: Tensor, mode: str) -> Tensor:
    """Pool tokens ``(B, L, C)`` to ``(B, C)`` (``(B, 2C)`` for ``avgmax``); ``""`` returns ``x``.

    ``max`` suits small objects on large empty canvases, where averaging dilutes the one
    region that matters.
    """
    if mode == "avg":
        return x.mean(dim=1)
    if mode == "max":
        return x.amax(dim=1)
    if mode == "avgmax":
        return torch.cat([x.mean(dim=1), x.amax(dim=1)], dim=-1)
    if mode == "":
        return x
    raise ValueError(f"global_pool must be one of {POOL_MODES}, got {mode!r}")


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """Stochastic-depth rates rising linearly from 0 to ``rate`` over ``depth`` blocks."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"drop_path_rate must be in [0, 1), got {rate}")
    return [rate * i / max(depth - 1, 1) for i in range(depth)]


class ClassifierHead(nn.Module):
    """Pool ``(B, H, W, C)`` features, drop out, project to classes (``num_classes=0``: no projection)."""

    def __init__(self, in_dim: int, num_classes: int, global_pool: str = "avg", drop_rate: float = 0.0):
        super().__init__()
        self.in_dim, self.drop = in_dim, nn.Dropout(drop_rate)
        self.reset(num_classes, global_pool)

    def reset(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool is not None:
            if global_pool not in POOL_MODES:
                raise ValueError(f"global_pool must be one of {POOL_MODES}, got {global_pool!r}")
            self.global_pool = global_pool
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        if num_classes and not self.global_pool:
            raise ValueError("a classifier needs a global_pool; use num_classes=0 for token features")
        self.num_features = self.in_dim * (2 if self.global_pool == "avgmax" else 1)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """``(B, H, W, C)`` -> ``(B, num_classes)`` (pooled features if ``pre_logits``)."""
        x = self.drop(pool_tokens(x.flatten(1, 2), self.global_pool))
        return x if pre_logits else self.fc(x)
