"""``longseq.attend``: the one functional entry to every attention pattern.

:func:`attend` validates its arguments, asks :func:`longseq.routes.choose_route` which
implementation serves them, and runs it; :func:`explain` returns that same decision
without computing anything.
"""

from __future__ import annotations

import logging
import math
from functools import lru_cache
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from longseq.kernels.bias import TileBias
from longseq.kernels.blocked import bias_needs_grad, blocked_attention, current_backend, use_backend
from longseq.kernels.flex import flex_attention_forward
from longseq.kernels.registry import attention_for, tiling_for
from longseq.kernels.window2d import window2d_attention
from longseq.kernels.window2d_traced import traced_window2d_attention
from longseq.patterns import Dense, Pattern, SlidingWindow
from longseq.patterns_base import ArgumentTypeError
from longseq.routes import Route, choose_route

__all__ = ["attend", "explain", "Route"]

_log = logging.getLogger(__name__)


def _real(name: str, value: object) -> float:
    """``value`` as a float; :class:`ArgumentTypeError` naming ``name`` when it is not a real number."""
    if isinstance(value, (bool, str, bytes)) or (isinstance(value, Tensor) and value.numel() != 1):
        raise ArgumentTypeError(f"{name} must be a real number, got {value!r}")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ArgumentTypeError(f"{name} must be a real number, got {value!r}") from None


def _check_inputs(q: Tensor, k: Tensor, v: Tensor, pattern, key_mask, bias, dropout_p, scale) -> None:
    """Raise for invalid arguments of :func:`attend`: :class:`ArgumentTypeError` (a
    ``TypeError`` that is also a ``ValueError``) for a wrong type, ``ValueError`` for a
    wrong value; every message names the argument."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor):
            raise ArgumentTypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
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
    if D < 1:
        raise ValueError(f"q must have a head dimension D >= 1, got shape {tuple(q.shape)}")
    for name, t in (("k", k), ("v", v)):
        if t.device != q.device:
            raise ValueError(f"{name} is on {t.device} but q is on {q.device}")
        if t.dtype != q.dtype:
            raise ValueError(f"{name} has dtype {t.dtype} but q has {q.dtype}")
    if not isinstance(pattern, Pattern):
        raise ArgumentTypeError(f"pattern must be a longseq.patterns.Pattern, got {type(pattern).__name__}")
    if key_mask is not None:
        if not isinstance(key_mask, Tensor):
            raise ArgumentTypeError(f"key_mask must be a bool tensor or None, got {type(key_mask).__name__}")
        if key_mask.dtype != torch.bool:
            raise ValueError(f"key_mask must be a bool tensor (True = real token that may be attended), "
                             f"got {key_mask.dtype}")
        if tuple(key_mask.shape) != (B, L):
            raise ValueError(f"key_mask must have shape (B, L) = {(B, L)}, got {tuple(key_mask.shape)}")
        if key_mask.device != q.device:
            raise ValueError(f"key_mask is on {key_mask.device} but q is on {q.device}")
    if bias is not None:
        if isinstance(bias, Tensor) or not callable(getattr(bias, "tile", None)):
            raise ArgumentTypeError("bias must be a longseq.positions bias module (with a .tile method), "
                                    f"not {type(bias).__name__}")
        heads = getattr(bias, "heads", None)  # TileBias: optional, checked where present
        if isinstance(heads, int) and not isinstance(heads, bool) and heads != H:
            raise ValueError(f"bias has {heads} heads but q has {H}: a bias needs one table per query head")
    p = _real("dropout_p", dropout_p)
    if not 0.0 <= p < 1.0:  # also False for NaN
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    if scale is not None:
        sc = _real("scale", scale)
        if not (math.isfinite(sc) and sc > 0.0):
            raise ValueError(f"scale must be a finite number > 0, got {scale}")


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


def _run_traced_window2d(q: Tensor, k: Tensor, v: Tensor, pattern: Pattern, key_mask: Tensor | None,
                         bias: TileBias | None, dropout_p: float, scale: float) -> Tensor:
    # exporting: windows partitioned in the graph, per-window mask, no L x L tensor
    return traced_window2d_attention(q, k, v, pattern, key_mask, bias, float(dropout_p), scale)


def _run_window2d_sdpa(q: Tensor, k: Tensor, v: Tensor, pattern: Pattern, key_mask: Tensor | None,
                       bias: TileBias | None, dropout_p: float, scale: float) -> Tensor:
    # whole windows attending themselves: one partition copy instead of tile gathers
    return window2d_attention(q, k, v, pattern, key_mask, bias, float(dropout_p), scale)


def _run_blocked(q: Tensor, k: Tensor, v: Tensor, pattern: Pattern, key_mask: Tensor | None,
                 bias: TileBias | None, dropout_p: float, scale: float) -> Tensor:
    tiling = _cached_tiling(pattern, q.shape[2], q.device)
    return blocked_attention(q, k, v, tiling, pattern=pattern, key_mask=key_mask, bias=bias, scale=scale,
                             dropout_p=float(dropout_p))


def _run_flex(q: Tensor, k: Tensor, v: Tensor, pattern: Pattern, key_mask: Tensor | None,
              bias: TileBias | None, dropout_p: float, scale: float) -> Tensor:
    # k, v may keep fewer heads than q here: FlexAttention groups them itself (enable_gqa)
    return flex_attention_forward(q, k, v, pattern, key_mask=key_mask, bias=bias, scale=scale)


_RUNNERS: dict[str, Callable[..., Tensor]] = {
    "pattern": _run_pattern,
    "dense_sdpa": _run_dense_sdpa,
    "traced_dense": _run_traced_dense,
    "traced_window2d": _run_traced_window2d,
    "window2d_sdpa": _run_window2d_sdpa,
    "flex": _run_flex,
    "blocked": _run_blocked,
}


def _has_non_finite(*tensors: Tensor) -> bool:
    """Whether any tensor holds a NaN or an infinity: one min/max pass each, no copy.

    ``aminmax`` propagates NaN and cannot overflow (a sum could), and all results are
    read back in one device synchronisation."""
    with torch.no_grad():
        bounds = [torch.stack(torch.aminmax(t)).float() for t in tensors if t.numel()]
        return bool(bounds) and not bool(torch.isfinite(torch.cat(bounds)).all())


def _masks_some_pair(route: Route, pattern: Pattern, key_mask: Tensor | None) -> bool:
    """Whether a non-finite input could reach a query that does not admit it on this route.

    Not for bidirectional Dense without a key mask (every query admits every key), nor
    for the ``pattern`` route, whose layouts (LSH) are built from the inputs themselves.
    Not while compiling or exporting either: checking the data would break the graph."""
    if route.route == "pattern" or torch.compiler.is_compiling() or torch.compiler.is_exporting():
        return False
    return not (route.route == "dense_sdpa" and not pattern.causal and key_mask is None)


def _attend_non_finite(runner: Callable[..., Tensor], q: Tensor, k: Tensor, v: Tensor, pattern: Pattern,
                       key_mask: Tensor | None, bias: TileBias | None, dropout_p: float, scale: float) -> Tensor:
    """``runner``'s attention where q, k or v ``(B, H, L, D)`` hold NaN or infinities.

    The tile kernels add ``-inf`` to masked scores and multiply masked probabilities (zeros)
    by V, so one NaN key or value would reach every query sharing its tile: ``NaN + -inf``
    and ``0 * NaN`` are NaN. Here the attention runs on copies whose non-finite elements
    are 0, so masked pairs contribute exactly nothing. Then NaN goes where SDPA restricted
    to the admitted pairs has it: whole rows of the queries that admit a non-finite key,
    and of the non-finite queries that admit any key; the elements ``d`` of the queries
    that admit a value non-finite at ``d``. Those are found by a second run of the same
    route with equal scores (q = k = 0) over indicator values, where each row's output is
    the mean of its admitted keys' indicators.
    """
    finite = [torch.isfinite(t) for t in (q, k, v)]
    zero = torch.zeros((), dtype=q.dtype, device=q.device)
    out = runner(*(torch.where(ok, t, zero) for ok, t in zip(finite, (q, k, v))), pattern, key_mask, bias,
                 dropout_p, scale)
    with torch.no_grad():
        acc = torch.promote_types(q.dtype, torch.float32)
        bad_key = ~finite[1].all(-1, keepdim=True)  # (B, H, L, 1)
        # channels: non-finite key, any key at all, then non-finite value per element
        marks = torch.cat([bad_key.to(acc), torch.ones_like(bad_key, dtype=acc), (~finite[2]).to(acc)], -1)
        blank = torch.zeros_like(marks)  # the kernels take q, k and v of one width
        with use_backend("math"):  # matmul tiles: any dtype, device and head size
            hits = runner(blank, blank, marks, pattern, key_mask, None, 0.0, 1.0) > 0  # (B, H, L, D + 2)
        bad_query = ~finite[0].all(-1, keepdim=True)
        poisoned = hits[..., :1] | (bad_query & hits[..., 1:2]) | hits[..., 2:]  # (B, H, L, D)
        nan = torch.full((), float("nan"), dtype=out.dtype, device=out.device)
        poison = torch.where(poisoned, nan, torch.zeros((), dtype=out.dtype, device=out.device))
    # added, not selected: gradients still reach the kernel through every row
    return out + poison


#: Longest sequence a covering window with dropout runs as Dense on the CPU: PyTorch's
#: CPU SDPA has no fused kernel with dropout, and its fallback forms (B, H, L, L) scores.
_DENSE_DROPOUT_MAX_L = 512


def _as_dense(pattern: Pattern, q: Tensor, bias: TileBias | None, dropout_p: float) -> Dense | None:
    """``Dense`` when ``pattern`` allows every pair (every earlier pair when causal) at q's
    length ``L``: a plain sliding window whose reach covers the sequence. Its band tiles
    would span ``2 * window`` keys of which only ``L`` exist (over 3x the work for
    200-base sequences under a 256-base window), and dropout would force the matmul tiles;
    SDPA runs the same pairs directly. Not with a bias (whose tiles may read the pattern),
    not under a backend forced by ``use_backend``, and with dropout on the CPU only up to
    ``_DENSE_DROPOUT_MAX_L`` tokens."""
    L = q.shape[2]
    if (type(pattern) is not SlidingWindow or bias is not None or pattern.dilation != 1 or pattern.global_tokens
            or pattern.window < L - 1 or current_backend() != "auto"):
        return None
    if dropout_p > 0 and q.device.type == "cpu" and L > _DENSE_DROPOUT_MAX_L:
        return None
    return Dense(causal=pattern.causal)


def _route(q: Tensor, k: Tensor, v: Tensor, pattern: Pattern, key_mask: Tensor | None, bias: TileBias | None,
           dropout_p: float, scale: float | None) -> tuple[Route, Pattern]:
    """Check the arguments of :func:`attend` and choose its route (what :func:`explain`
    reports), with the pattern the route runs (``Dense`` for a window that covers ``L``)."""
    _check_inputs(q, k, v, pattern, key_mask, bias, dropout_p, scale)
    pattern.check_length(q.shape[2])
    if not getattr(pattern, "supports_gqa", True) and k.shape[1] != q.shape[1]:
        raise ValueError(f"{type(pattern).__name__} needs as many k heads as q heads")
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    dense = _as_dense(pattern, q, bias, dropout_p)
    route = choose_route(q, dense or pattern, key_mask=key_mask, bias=bias, dropout_p=dropout_p,
                         needs_grad=needs_grad or bias_needs_grad(bias))
    if dense is None:
        return route, pattern
    why = f"the window covers all {q.shape[2]} tokens, so every pair is allowed: run as {dense}; {route.reason}"
    return Route(route.route, route.backend, why), dense


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
    attention (on the CPU, the first call for a dtype and head size may time the tile
    paths once, see :mod:`longseq.kernels.tile_choice`). ``print(explain(...))`` gives one
    readable line.
    """
    return _route(q, k, v, pattern, key_mask, bias, dropout_p, scale)[0]


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
        (B, H, L, D). Rows with no allowed key are zeros. A NaN or infinite key reaches
        only the queries that may attend it (by the pattern and ``key_mask``), a value
        non-finite at element ``d`` only element ``d`` of those queries, and a non-finite
        query only its own row (when it has a key): there the output is NaN, and every
        other output is the one of the finite inputs. PyTorch's SDPA with a boolean mask
        instead spreads a NaN key or value to every query, and for an infinite element
        may give an infinite or finite result where this gives NaN. The ``pattern`` route
        (LSH) builds its layout from the inputs and has no such guarantee, nor does
        anything under ``torch.compile`` or ``torch.export``.

    Which implementation runs is decided by :func:`longseq.routes.choose_route` (see
    :func:`explain`) and logged at DEBUG level on the ``longseq.attention`` logger.
    """
    route, pattern = _route(q, k, v, pattern, key_mask, bias, dropout_p, scale)
    # is_compiling first: under torch.compile the logger is never touched (no graph break)
    if not torch.compiler.is_compiling() and _log.isEnabledFor(logging.DEBUG):
        _log.debug("attend %s: %s", type(pattern).__name__, route)
    H, D = q.shape[1], q.shape[3]
    scale = float(scale) if scale is not None else D**-0.5
    if q.numel() == 0:  # no batch or no head: nothing to attend (fused kernels divide by B*H)
        return q * 0 + (k.sum() + v.sum()) * 0  # empty, and still part of the autograd graph
    # checked before k and v are expanded to q's heads: the check reads each element once
    non_finite = _masks_some_pair(route, pattern, key_mask) and _has_non_finite(q, k, v)
    # the flex route groups heads natively; the non-finite path compares per query head
    if k.shape[1] != H and (route.route != "flex" or non_finite):
        rep = H // k.shape[1]
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
    runner = _RUNNERS[route.route]
    if non_finite:
        return _attend_non_finite(runner, q, k, v, pattern, key_mask, bias, dropout_p, scale)
    return runner(q, k, v, pattern, key_mask, bias, dropout_p, scale)
