"""``longseq.attend``: the one functional entry to every attention pattern.

:func:`attend` validates its arguments, asks :func:`longseq.routes.choose_route` which
implementation serves them, and runs it; :func:`explain` returns that same decision
without computing anything.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from longseq.kernels.bias import TileBias
from longseq.kernels.blocked import blocked_attention
from longseq.kernels.registry import attention_for, tiling_for
from longseq.kernels.window2d import window2d_attention
from longseq.patterns import Pattern
from longseq.routes import Route, choose_route

__all__ = ["attend", "explain", "Route"]

_log = logging.getLogger(__name__)


def _check_inputs(q: Tensor, k: Tensor, v: Tensor, pattern, key_mask, bias, dropout_p, scale) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name} must have shape (B, H, L, D), got rank {t.dim()} shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if k.shape != v.shape:
        raise ValueError(f"k and v must have the same shape, got {tuple(k.shape)} and {tuple(v.shape)}")
    B, H, L, D = q.shape
    if k.shape[0] != B or k.shape[2] != L or k.shape[3] != D:
        raise ValueError(f"k/v shape {tuple(k.shape)} does not match q shape {tuple(q.shape)} in B, L or D")
    if k.shape[1] < 1 or H % k.shape[1] != 0:
        raise ValueError(f"k heads ({k.shape[1]}) must divide q heads ({H}) for grouped-query attention")
    if L < 1:
        raise ValueError("q must hold at least one token (L >= 1)")
    for name, t in (("k", k), ("v", v)):
        if t.device != q.device:
            raise ValueError(f"{name} is on {t.device} but q is on {q.device}")
        if t.dtype != q.dtype:
            raise ValueError(f"{name} has dtype {t.dtype} but q has {q.dtype}")
    if not isinstance(pattern, Pattern):
        raise ValueError(f"pattern must be a longseq.patterns.Pattern, got {type(pattern).__name__}")
    if key_mask is not None:
        if not isinstance(key_mask, Tensor) or key_mask.dtype != torch.bool:
            raise ValueError("key_mask must be a bool tensor (True = real token that may be attended)")
        if tuple(key_mask.shape) != (B, L):
            raise ValueError(f"key_mask must have shape (B, L) = {(B, L)}, got {tuple(key_mask.shape)}")
        if key_mask.device != q.device:
            raise ValueError(f"key_mask is on {key_mask.device} but q is on {q.device}")
    if bias is not None and (isinstance(bias, Tensor) or not hasattr(bias, "tile")):
        raise ValueError("bias must be a longseq.positions bias module (with a .tile method), not a dense tensor")
    if not (0.0 <= float(dropout_p) < 1.0):
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    if scale is not None and not (float(scale) > 0):
        raise ValueError(f"scale must be positive, got {scale}")


def _dense_sdpa(q: Tensor, k: Tensor, v: Tensor, causal: bool, key_mask: Tensor | None, dropout_p: float,
                scale: float) -> Tensor:
    """Dense attention through PyTorch's fused kernels (no L x L mask unless padding)."""
    if key_mask is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=causal, scale=scale)
    has_key = key_mask.any(-1)  # (B,): a batch row with no real key would give NaN
    mask = (key_mask | ~has_key[:, None])[:, None, None, :]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale)
    return out * has_key.view(-1, 1, 1, 1).to(out.dtype)


def _attend_masked_dense(q: Tensor, k: Tensor, v: Tensor, pattern: Pattern, key_mask: Tensor | None, bias,
                        scale: float) -> Tensor:
    """Traceable fallback for ``torch.export`` / ONNX: SDPA with the pattern's dense mask.

    Quadratic in L, but free of the Python-side tiling that export cannot trace.
    """
    L = q.shape[2]
    idx = torch.arange(L, device=q.device)
    allowed = pattern.allowed(idx[:, None], idx[None, :])[None, None]
    if key_mask is not None:
        allowed = allowed & key_mask[:, None, None, :]
    mask = torch.zeros(allowed.shape, dtype=q.dtype, device=q.device).masked_fill(~allowed, float("-inf"))
    if bias is not None:
        mask = mask + bias.tile(idx, idx, pattern).to(q.dtype)
    has_key = allowed.any(-1, keepdim=True)
    mask = torch.where(has_key, mask, torch.zeros_like(mask))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    return torch.where(has_key, out, torch.zeros_like(out))


@lru_cache(maxsize=64)
def _cached_tiling(pattern: Pattern, L: int, device: torch.device):
    return tiling_for(pattern, L, device)


# Route runners: (q, k, v, pattern, key_mask, bias, dropout_p, scale) with k, v already
# expanded to q's heads. Module globals are looked up at call time, so tests can spy on them.
def _run_pattern(q: Tensor, k: Tensor, v: Tensor, pattern: Pattern, key_mask: Tensor | None,
                 bias: TileBias | None, dropout_p: float, scale: float) -> Tensor:
    return attention_for(pattern)(q, k, v, key_mask=key_mask, bias=bias, dropout_p=dropout_p, scale=scale)


def _run_dense_sdpa(q: Tensor, k: Tensor, v: Tensor, pattern: Pattern, key_mask: Tensor | None,
                    bias: TileBias | None, dropout_p: float, scale: float) -> Tensor:
    return _dense_sdpa(q, k, v, pattern.causal, key_mask, float(dropout_p), scale)


def _run_traced_dense(q: Tensor, k: Tensor, v: Tensor, pattern: Pattern, key_mask: Tensor | None,
                      bias: TileBias | None, dropout_p: float, scale: float) -> Tensor:
    return _attend_masked_dense(q, k, v, pattern, key_mask, bias, scale)


def _run_window2d_sdpa(q: Tensor, k: Tensor, v: Tensor, pattern: Pattern, key_mask: Tensor | None,
                       bias: TileBias | None, dropout_p: float, scale: float) -> Tensor:
    # whole windows attending themselves: one partition copy instead of tile gathers
    return window2d_attention(q, k, v, pattern, key_mask, bias, float(dropout_p), scale)


def _run_blocked(q: Tensor, k: Tensor, v: Tensor, pattern: Pattern, key_mask: Tensor | None,
                 bias: TileBias | None, dropout_p: float, scale: float) -> Tensor:
    tiling = _cached_tiling(pattern, q.shape[2], q.device)
    return blocked_attention(q, k, v, tiling, pattern=pattern, key_mask=key_mask, bias=bias, scale=scale,
                             dropout_p=float(dropout_p))


_RUNNERS: dict[str, Callable[..., Tensor]] = {
    "pattern": _run_pattern,
    "dense_sdpa": _run_dense_sdpa,
    "traced_dense": _run_traced_dense,
    "window2d_sdpa": _run_window2d_sdpa,
    "blocked": _run_blocked,
}


def _route(q: Tensor, k: Tensor, v: Tensor, pattern: Pattern, key_mask: Tensor | None, bias: TileBias | None,
           dropout_p: float, scale: float | None) -> Route:
    """Check the arguments of :func:`attend` and choose its route (what :func:`explain` reports)."""
    _check_inputs(q, k, v, pattern, key_mask, bias, dropout_p, scale)
    pattern.check_length(q.shape[2])
    if not getattr(pattern, "supports_gqa", True) and k.shape[1] != q.shape[1]:
        raise ValueError(f"{type(pattern).__name__} needs as many k heads as q heads")
    return choose_route(q, pattern, key_mask=key_mask, bias=bias, dropout_p=dropout_p)


def explain(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    pattern: Pattern,
    *,
    key_mask: Tensor | None = None,
    bias: TileBias | None = None,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> Route:
    """Which route :func:`attend` takes for these arguments, on which tile backend, and why.

    Takes exactly :func:`attend`'s arguments (q ``(B, H, L, D)``, k/v ``(B, Hkv, L, D)``,
    key_mask ``(B, L)``) and raises the same ``ValueError`` for invalid ones; computes no
    attention. ``print(explain(...))`` gives one readable line.
    """
    return _route(q, k, v, pattern, key_mask, bias, dropout_p, scale)


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    pattern: Pattern,
    *,
    key_mask: Tensor | None = None,
    bias: TileBias | None = None,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> Tensor:
    """Attention restricted to ``pattern``.

    Args:
        q: (B, H, L, D) queries.
        k, v: (B, Hkv, L, D) keys and values; ``Hkv`` divides ``H`` (grouped-query attention).
        pattern: who may attend to whom (:mod:`longseq.patterns`).
        key_mask: (B, L) bool, True = a real token that may be attended.
        bias: a relative-position bias module from :mod:`longseq.positions` (any
            :class:`~longseq.kernels.bias.TileBias`), applied per tile.
        dropout_p: attention-probability dropout.
        scale: score scale, default ``D ** -0.5``.

    Returns:
        (B, H, L, D). Rows with no allowed key are zeros.

    Which implementation runs is decided by :func:`longseq.routes.choose_route` (see
    :func:`explain`) and logged at DEBUG level on the ``longseq.attention`` logger.
    """
    route = _route(q, k, v, pattern, key_mask, bias, dropout_p, scale)
    # is_compiling first: under torch.compile the logger is never touched (no graph break)
    if not torch.compiler.is_compiling() and _log.isEnabledFor(logging.DEBUG):
        _log.debug("attend %s: %s", type(pattern).__name__, route)
    H, D = q.shape[1], q.shape[3]
    scale = float(scale) if scale is not None else D**-0.5
    if k.shape[1] != H:
        rep = H // k.shape[1]
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
    return _RUNNERS[route.route](q, k, v, pattern, key_mask, bias, dropout_p, scale)
