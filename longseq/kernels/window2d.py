"""Non-overlapping 2-D windows as the batch axis of one fused SDPA call.

:class:`~longseq.patterns.Window2D` tiles are whole windows that attend only themselves,
so the blocked kernel's per-tile gathers (an index copy of q, k, v, the output and every
gradient, in each direction) reduce to a window partition: one reshaping copy per
tensor, then ``F.scaled_dot_product_attention`` with the windows as its batch. Windows
are ``pattern.window_shape`` (``window_size`` cut to the grid where it is longer). A
mask is built only where a window needs one (grid padding, Swin's shifted regions, a
``key_mask``) and is cached per pattern; a bias whose ``grid_offset_window``
equals the window size (:class:`~longseq.kernels.bias.TileBias`, e.g. Swin's relative
table) depends only on the offset inside a window, so one ``(H, n, n)`` table serves
every window of ``n`` tokens.

Measured against the blocked kernel on the same model in docs/results.md.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from longseq.kernels.bias import grid_offset_window
from longseq.patterns import Window2D

__all__ = ["window2d_attention", "supports_window2d_sdpa"]


def supports_window2d_sdpa(pattern, bias) -> bool:
    """True when :func:`window2d_attention` computes ``attend`` exactly for these arguments."""
    if not isinstance(pattern, Window2D):
        return False
    if bias is not None and grid_offset_window(bias) != pattern.window_size:
        return False
    return all(isinstance(g, int) for g in pattern.grid)  # a concrete grid (not export tracing)


def _to_windows(x: Tensor, pattern: Window2D, fill: float | int = 0) -> Tensor:
    """(B, gh, gw, C) -> (B * nW, wy * wx, C): pad, roll by -shift, partition.

    ``(wy, wx)`` is ``pattern.window_shape``; windows are in row-major order, as the
    window ids of :meth:`~longseq.patterns.Window2D.window_and_region`."""
    gh, gw = pattern.grid
    (wy, sy, hp), (wx, sx, wp) = pattern.axis_windows()
    if (hp, wp) != (gh, gw):
        x = F.pad(x, (0, 0, 0, wp - gw, 0, hp - gh), value=fill)
    if sy or sx:
        x = torch.roll(x, (-sy, -sx), (1, 2))
    B, C = x.shape[0], x.shape[-1]
    x = x.view(B, hp // wy, wy, wp // wx, wx, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, wy * wx, C)


def _from_windows(windows: Tensor, pattern: Window2D, B: int) -> Tensor:
    """Inverse of :func:`_to_windows`: (B * nW, wy * wx, C) -> (B, gh, gw, C)."""
    gh, gw = pattern.grid
    (wy, sy, hp), (wx, sx, wp) = pattern.axis_windows()
    x = windows.reshape(B, hp // wy, wp // wx, wy, wx, -1).permute(0, 1, 3, 2, 4, 5).reshape(B, hp, wp, -1)
    if sy or sx:
        x = torch.roll(x, (sy, sx), (1, 2))
    return x[:, :gh, :gw] if (hp, wp) != (gh, gw) else x


@lru_cache(maxsize=64)
def _window_layout(pattern: Window2D, device: torch.device) -> tuple[Tensor, Tensor | None]:
    """Token of each window slot ``(nW, n)`` (-1 = padding) and the allowed pairs
    ``(nW, n, n)`` of windows that are not fully open (None when all are); ``n`` tokens
    per window."""
    gh, gw = pattern.grid
    ids = torch.arange(gh * gw, device=device).view(1, gh, gw, 1)
    tokens = _to_windows(ids, pattern, fill=-1)[..., 0]  # (nW, n)
    ti, tj = tokens[:, :, None], tokens[:, None, :]
    allowed = pattern.allowed(ti.clamp(min=0), tj.clamp(min=0)) & (ti >= 0) & (tj >= 0)
    return tokens, None if bool(allowed.all()) else allowed


def window2d_attention(q: Tensor, k: Tensor, v: Tensor, pattern: Window2D, key_mask: Tensor | None, bias,
                       dropout_p: float, scale: float) -> Tensor:
    """``attend(q, k, v, pattern, ...)`` for a :class:`Window2D`; q, k, v ``(B, H, L, D)``.

    Returns ``(B, H, L, D)`` (a view of a token-major tensor). Rows with no allowed key
    (all keys of the window masked out by ``key_mask``) are zeros.
    """
    B, H, L, D = q.shape
    gh, gw = pattern.grid
    wy, wx = pattern.window_shape
    n = wy * wx

    def split(x: Tensor) -> Tensor:  # (B, H, L, D) -> (B * nW, H, n, D)
        return _to_windows(x.transpose(1, 2).reshape(B, gh, gw, H * D), pattern).view(-1, n, H, D).transpose(1, 2)

    tokens, allowed = _window_layout(pattern, q.device)
    n_windows = tokens.shape[0]
    has_key = None
    if key_mask is not None:
        km = _to_windows(key_mask.view(B, gh, gw, 1), pattern, fill=False)[..., 0]  # (B * nW, n)
        pairs = km.view(B, n_windows, 1, n)
        pairs = pairs if allowed is None else pairs & allowed
        allowed = pairs.expand(B, n_windows, n, n).reshape(B * n_windows, n, n)
    mask = None
    if allowed is not None:
        has_key = allowed.any(-1, keepdim=True)  # padding queries see nothing: let them see all
        allowed = allowed | ~has_key
        zero = torch.zeros((), dtype=q.dtype, device=q.device)
        mask = torch.where(allowed, zero, zero - float("inf")).unsqueeze(-3)  # (nW | B*nW, 1, n, n)
        if mask.shape[0] != B * n_windows:
            mask = mask.expand(B, *mask.shape).reshape(B * n_windows, *mask.shape[1:])
    if bias is not None:
        slots = torch.arange(n, device=q.device)
        # Slot offsets inside a window are the grid offsets of every pair a window allows:
        # a (wy, wx) grid gives the slots' coordinates. Offsets stay below window_size,
        # the bias's grid_offset_window, so one table serves every window.
        table = bias.tile(slots, slots, Window2D(max(wy, wx), (wy, wx)))  # (H, n, n)
        mask = table.to(q.dtype)[None] if mask is None else mask + table.to(q.dtype)
    out = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=mask, dropout_p=dropout_p,
                                         scale=scale)  # (B * nW, H, n, D)
    if key_mask is not None and has_key is not None:
        out = out * has_key.view(B * n_windows, 1, n, 1).to(out.dtype)
    out = _from_windows(out.transpose(1, 2).reshape(B * n_windows, n, H * D), pattern, B)
    return out.reshape(B, L, H, D).transpose(1, 2)
