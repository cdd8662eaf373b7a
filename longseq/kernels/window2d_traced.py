"""Window2D attention that ``torch.export`` can trace: window partition, then one SDPA call.

The eager window route (:mod:`longseq.kernels.window2d`) caches each pattern's layout and
asks whether a window needs a mask at all, which a traced graph cannot: its grid is
symbolic (``torch.export.Dim`` heights and widths) and every branch must hold for every
size. This variant decides nothing from the data. It always pads the grid to whole
windows, rolls Swin's shift with two slices (``torch.cat``, which every exporter
translates), partitions, and builds the per-window mask ``(nW, n, n)`` (``n`` tokens per
window) from :meth:`~longseq.patterns.Window2D.allowed` on the window slots. Everything
it materialises is proportional to ``L * n``, never ``L x L``: an exported model's memory
grows with its windows, not with the square of its image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from longseq.kernels.bias import grid_offset_window
from longseq.patterns import Window2D

__all__ = ["supports_traced_window2d", "traced_window2d_attention"]


def supports_traced_window2d(pattern: object, bias: object) -> bool:
    """True when :func:`traced_window2d_attention` computes ``attend`` for these arguments:
    a :class:`Window2D` with no bias or a bias whose table serves every window."""
    if not isinstance(pattern, Window2D):
        return False
    return bias is None or grid_offset_window(bias) == pattern.window_size


def _partition(x: Tensor, pattern: Window2D, fill: float | int = 0) -> Tensor:
    """(B, gh, gw, C) -> (B, nW, wy * wx, C): pad to whole windows, roll by -shift, partition.

    Pads even by zero rows (a no-op), so the same graph serves grids that need padding and
    grids that do not; the roll is two slices joined, not ``torch.roll``."""
    gh, gw = pattern.grid
    (wy, sy, hp), (wx, sx, wp) = pattern.axis_windows()
    x = F.pad(x, (0, 0, 0, wp - gw, 0, hp - gh), value=fill)
    if sy:
        x = torch.cat([x[:, sy:], x[:, :sy]], 1)
    if sx:
        x = torch.cat([x[:, :, sx:], x[:, :, :sx]], 2)
    B, C = x.shape[0], x.shape[-1]
    x = x.reshape(B, hp // wy, wy, wp // wx, wx, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(B, (hp // wy) * (wp // wx), wy * wx, C)


def _unpartition(windows: Tensor, pattern: Window2D) -> Tensor:
    """Inverse of :func:`_partition`: (B, nW, wy * wx, C) -> (B, gh, gw, C)."""
    gh, gw = pattern.grid
    (wy, sy, hp), (wx, sx, wp) = pattern.axis_windows()
    B, C = windows.shape[0], windows.shape[-1]
    x = windows.reshape(B, hp // wy, wp // wx, wy, wx, C).permute(0, 1, 3, 2, 4, 5).reshape(B, hp, wp, C)
    if sy:
        x = torch.cat([x[:, -sy:], x[:, :-sy]], 1)
    if sx:
        x = torch.cat([x[:, :, -sx:], x[:, :, :-sx]], 2)
    return x[:, :gh, :gw]


def _allowed_pairs(pattern: Window2D, device: torch.device) -> Tensor:
    """Allowed (query slot, key slot) pairs of every window: bool ``(nW, n, n)``.

    Padding slots are never keys; a query whose window row allows nothing (a padding slot)
    keeps every key, so its softmax stays finite (its output is cropped away)."""
    gh, gw = pattern.grid
    ids = torch.arange(gh * gw, device=device).view(1, gh, gw, 1)
    tokens = _partition(ids, pattern, fill=-1)[0, ..., 0]  # (nW, n), -1 = padding
    ti, tj = tokens[:, :, None], tokens[:, None, :]
    return pattern.allowed(ti.clamp(min=0), tj.clamp(min=0)) & (ti >= 0) & (tj >= 0)


def traced_window2d_attention(q: Tensor, k: Tensor, v: Tensor, pattern: Window2D, key_mask: Tensor | None,
                              bias, dropout_p: float, scale: float) -> Tensor:
    """``attend(q, k, v, pattern, ...)`` for a :class:`Window2D`, traceable with a symbolic grid.

    q, k, v ``(B, H, L, D)`` with ``L = gh * gw``; ``key_mask`` ``(B, L)`` bool; ``bias``
    None or a :class:`~longseq.kernels.bias.TileBias` whose ``grid_offset_window`` is the
    window size. Returns ``(B, H, L, D)``; rows with no allowed key are zeros. The largest
    tensor it builds besides q, k, v is the score mask ``(B * nW, H, n, n)``.
    """
    B, H, L, D = q.shape
    gh, gw = pattern.grid
    wy, wx = pattern.window_shape
    n = wy * wx

    def split(x: Tensor) -> Tensor:  # (B, H, L, D) -> (B * nW, H, n, D)
        w = _partition(x.transpose(1, 2).reshape(B, gh, gw, H * D), pattern)  # (B, nW, n, H * D)
        return w.reshape(-1, n, H, D).transpose(1, 2)

    allowed = _allowed_pairs(pattern, q.device)[None]  # (1, nW, n, n)
    if key_mask is not None:
        keys = _partition(key_mask.view(B, gh, gw, 1).to(torch.int8), pattern, fill=0)[..., 0] > 0  # (B, nW, n)
        allowed = allowed & keys[:, :, None, :]  # (B, nW, n, n)
    has_key = allowed.any(-1, keepdim=True)
    zero = torch.zeros((), dtype=q.dtype, device=q.device)
    mask = torch.where(allowed | ~has_key, zero, zero - float("inf")).unsqueeze(-3)  # (1 | B, nW, 1, n, n)
    if bias is not None:
        slots = torch.arange(n, device=q.device)
        # slot offsets inside a (wy, wx) window are the grid offsets the table is indexed by
        mask = mask + bias.tile(slots, slots, Window2D(max(wy, wx), (wy, wx))).to(q.dtype)  # (.., H, n, n)
    n_windows = mask.shape[1]
    mask = mask.expand(B, *mask.shape[1:]).reshape(B * n_windows, *mask.shape[2:])
    out = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=mask, dropout_p=dropout_p,
                                         scale=scale)  # (B * nW, H, n, D)
    if key_mask is not None:
        out = out * has_key.expand(B, *has_key.shape[1:]).reshape(B * n_windows, 1, n, 1).to(out.dtype)
    out = _unpartition(out.transpose(1, 2).reshape(B, n_windows, n, H * D), pattern)  # (B, gh, gw, H * D)
    return out.reshape(B, L, H, D).transpose(1, 2)
