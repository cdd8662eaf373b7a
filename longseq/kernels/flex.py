"""FlexAttention backend: patterns as ``mask_mod`` and ``BlockMask``, biases as ``score_mod``.

PyTorch's :func:`torch.nn.attention.flex_attention.flex_attention` compiles a ``mask_mod``
``(b, h, q_idx, kv_idx) -> bool`` and a :class:`BlockMask` (which ``128 x 128`` blocks
hold any allowed pair) into one fused kernel that skips empty blocks: forward and
backward on CUDA, forward only on CPU (through inductor's C++ backend, float32, float16
and bfloat16 only).

Every pattern whose layout is fixed by its fields and the length (:class:`Dense`,
:class:`SlidingWindow`, :class:`Window2D`, :class:`BigBird`, :class:`Strided`) has a
``mask_mod`` here equal to its ``allowed`` rule. The ``BlockMask`` of a (pattern,
length, device) is built once and cached; with a ``key_mask`` the mask depends on the
data, so it is built per call. Positional biases become ``score_mod`` functions, one
per bias type (:class:`~longseq.positions.ALiBi`, ``RelativeBias1D``, ``RelativeBias2D``),
matched by class name because the kernels never import :mod:`longseq.positions`.
"""

from __future__ import annotations

import functools
import logging
from typing import Callable

import torch
from torch import Tensor

from longseq.patterns import BigBird, Dense, Pattern, SlidingWindow, Strided, Window2D

__all__ = [
    "FLEX_CPU_DTYPES", "supports_flex", "flex_unsupported", "mask_mod_for", "block_mask_for", "score_mod_for",
    "flex_attention_forward",
]

_log = logging.getLogger(__name__)

#: Dtypes the CPU lowering of FlexAttention accepts (inductor raises for float64).
FLEX_CPU_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# The default sparse block size of FlexAttention (query and key blocks alike).
BLOCK = 128

MaskMod = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]
ScoreMod = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]


# mask_mod builders ---------------------------------------------------------------------
# Each returns a function of 0-d integer tensors (FlexAttention vmaps it over the index
# grid and traces it into the kernel), so it may only use elementwise tensor ops and
# lookups in tensors it captures. Every lookup index is arithmetic on q_idx, kv_idx, h:
# an index read from another captured table (a lookup of a lookup) made inductor's CPU
# code generation emit C++ that does not compile in this PyTorch build.

def _dense_mask(p: Dense, L: int, device: torch.device) -> MaskMod:
    if p.causal:
        def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
            return kv_idx <= q_idx
    else:
        def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
            return q_idx >= 0  # always True, as a tensor of the traced shape
    return mask_mod


def _sliding_mask(p: SlidingWindow, L: int, device: torch.device) -> MaskMod:
    # |i - j| < L: reaches and strides beyond L give the same mask capped at L, and stay
    # far from int64 overflow.
    reach = min(p.window * p.dilation, L)
    dilation = min(p.dilation, L)
    causal = p.causal
    is_global = torch.zeros(L, dtype=torch.bool, device=device)
    if p.global_tokens:
        is_global[torch.tensor(p.global_tokens, device=device)] = True
    has_global = bool(p.global_tokens)

    def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        d = q_idx - kv_idx
        m = d.abs() <= reach
        if dilation > 1:
            m = m & (d.remainder(dilation) == 0)
        if has_global:
            m = m | is_global[q_idx] | is_global[kv_idx]
        if causal:
            m = m & (kv_idx <= q_idx)
        return m
    return mask_mod


def _window2d_mask(p: Window2D, L: int, device: torch.device) -> MaskMod:
    # Window2D.allowed is integer arithmetic on the indices (window id and Swin region
    # from rows and columns): it serves as the mask_mod as it is.
    def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return p.allowed(q_idx, kv_idx)
    return mask_mod


def _bigbird_mask(p: BigBird, L: int, device: torch.device) -> MaskMod:
    layout = p.block_layout(L).to(device)  # (nb, nb), the pattern's own seeded layout
    block = min(p.block, L)

    def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return layout[q_idx // block, kv_idx // block]
    return mask_mod


def _strided_mask(p: Strided, L: int, device: torch.device) -> MaskMod:
    # Strided.allowed is elementwise (abs, remainder, floor division, comparisons).
    def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return p.allowed(q_idx, kv_idx)
    return mask_mod


# Exact types: a subclass may change ``allowed``, and then this mask would be wrong.
_MASKS: dict[type, Callable[[Pattern, int, torch.device], MaskMod]] = {
    Dense: _dense_mask,
    SlidingWindow: _sliding_mask,
    Window2D: _window2d_mask,
    BigBird: _bigbird_mask,
    Strided: _strided_mask,
}


def supports_flex(pattern: Pattern) -> bool:
    """Whether ``pattern`` has a ``mask_mod`` here (layouts fixed by fields and length)."""
    return type(pattern) in _MASKS


def mask_mod_for(pattern: Pattern, L: int, device: torch.device | str = "cpu") -> MaskMod:
    """``mask_mod(b, h, q_idx, kv_idx) -> bool`` equal to ``pattern.allowed`` at length ``L``.

    Tables it captures (global tokens, Window2D tags, BigBird layout) live on ``device``.
    ``NotImplementedError`` for patterns without one (see :func:`supports_flex`)."""
    build = _MASKS.get(type(pattern))
    if build is None:
        raise NotImplementedError(f"the flex backend has no mask_mod for {type(pattern).__name__}")
    return build(pattern, L, torch.device(device))


def _create_block_mask(mask_mod: MaskMod, B: int | None, L: int, device: torch.device):
    from torch.nn.attention.flex_attention import create_block_mask

    # On CUDA the mask is evaluated by a compiled kernel, which never forms the L x L
    # boolean grid that the eager evaluation would (4 GiB at 65,536 tokens).
    return create_block_mask(mask_mod, B, None, L, L, device=device, _compile=device.type == "cuda")


@functools.lru_cache(maxsize=64)
def block_mask_for(pattern: Pattern, L: int, device: torch.device):
    """The :class:`BlockMask` of ``pattern`` at length ``L`` on ``device`` (one for every
    batch and head), built once per (pattern, L, device): patterns are frozen and hashable."""
    if not torch.compiler.is_compiling():  # no logger call inside a traced graph
        _log.debug("building the flex BlockMask of %r at L=%d on %s", pattern, L, device)
    return _create_block_mask(mask_mod_for(pattern, L, device), None, L, device)


def _key_masked_block_mask(pattern: Pattern, L: int, device: torch.device, key_mask: Tensor):
    """BlockMask of ``pattern`` and ``key_mask`` ``(B, L)``: built per call (it holds the data)."""
    base = mask_mod_for(pattern, L, device)

    def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return base(b, h, q_idx, kv_idx) & key_mask[b, kv_idx]
    return _create_block_mask(mask_mod, key_mask.shape[0], L, device)


# score_mod builders ----------------------------------------------------------------------
# FlexAttention evaluates score_mod per (b, h, q_idx, kv_idx) on the scaled score, so each
# bias is rewritten as lookups in small tables indexed elementwise: the same values its
# ``tile`` method gives, without any tile. Tables that are parameters stay in the graph,
# so on CUDA their gradients flow (captured buffers with requires_grad).

def _alibi_score(bias, pattern: Pattern, L: int, device: torch.device) -> ScoreMod:
    slopes = bias.slopes.to(device=device, dtype=torch.float32)  # (H,)

    def score_mod(score: Tensor, b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return score - slopes[h] * (q_idx - kv_idx).abs().to(torch.float32)
    return score_mod


def _relative1d_score(bias, pattern: Pattern, L: int, device: torch.device) -> ScoreMod:
    # (2L - 1, H) bias of every relative position j - i in [-(L-1), L-1]: the bucket
    # gather runs here, in autograd, so the kernel does one lookup with an arithmetic
    # index, and the table's gradient flows back through this gather.
    buckets = bias.bucket(torch.arange(-(L - 1), L, device=device))  # (2L - 1,)
    per_offset = bias.table(buckets)  # (2L - 1, H)

    def score_mod(score: Tensor, b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return score + per_offset[kv_idx - q_idx + (L - 1), h]
    return score_mod


def _relative2d_score(bias, pattern: Pattern, L: int, device: torch.device) -> ScoreMod:
    if not hasattr(pattern, "coords"):
        raise ValueError("RelativeBias2D needs a 2-D pattern such as Window2D")
    ws = bias.window_size
    table = bias.table  # ((2ws - 1)^2, H), a parameter

    def score_mod(score: Tensor, b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        yi, xi = pattern.coords(q_idx)  # arithmetic: row = idx // W
        yj, xj = pattern.coords(kv_idx)
        dy = (yi - yj).clamp(-(ws - 1), ws - 1) + (ws - 1)
        dx = (xi - xj).clamp(-(ws - 1), ws - 1) + (ws - 1)
        return score + table[dy * (2 * ws - 1) + dx, h]
    return score_mod


_SCORES: dict[str, Callable[..., ScoreMod]] = {
    "ALiBi": _alibi_score,
    "RelativeBias1D": _relative1d_score,
    "RelativeBias2D": _relative2d_score,
}


def _bias_name(bias: object) -> str:
    """The longseq.positions class a bias is (or derives from), else its own class name."""
    for cls in type(bias).__mro__:
        if cls.__name__ in _SCORES and cls.__module__ == "longseq.positions":
            return cls.__name__
    return type(bias).__name__


def supports_bias(bias: object | None) -> bool:
    """Whether ``bias`` (None included) has a ``score_mod`` here."""
    return bias is None or _bias_name(bias) in _SCORES


def score_mod_for(bias, pattern: Pattern, L: int, device: torch.device | str = "cpu") -> ScoreMod:
    """``score_mod(score, b, h, q_idx, kv_idx)`` adding ``bias`` elementwise, equal to
    ``bias.tile(i, j, pattern)`` ``(H, nq, nk)`` at every pair.

    ``NotImplementedError`` naming the bias type for biases other than ALiBi,
    RelativeBias1D and RelativeBias2D (a ``tile`` method cannot be rewritten elementwise)."""
    name = _bias_name(bias)
    build = _SCORES.get(name)
    if build is None:
        raise NotImplementedError(f"the flex backend has no score_mod for bias type {type(bias).__name__}; "
                                  f"supported: {', '.join(_SCORES)}")
    return build(bias, pattern, L, torch.device(device))


# dispatch --------------------------------------------------------------------------------

def flex_unsupported(q: Tensor, pattern: Pattern, *, bias: object | None, dropout_p: float,
                     needs_grad: bool) -> str | None:
    """Why the flex backend cannot serve a call like this, or None when it can.

    ``q`` ``(B, H, L, D)`` (device and dtype matter); ``needs_grad``: whether the call is
    differentiated (inputs or a bias parameter require grad under autograd)."""
    if not supports_flex(pattern):
        return f"{type(pattern).__name__} has no flex mask_mod (its layout depends on the data or is not known)"
    if dropout_p != 0.0:
        return "FlexAttention applies no dropout"
    if not supports_bias(bias):
        return f"the flex backend has no score_mod for bias type {type(bias).__name__}"
    if q.device.type == "cpu":
        if q.dtype not in FLEX_CPU_DTYPES:
            return f"FlexAttention on CPU takes float32, float16 or bfloat16, not {q.dtype}"
        if needs_grad:
            return "FlexAttention computes no backward on CPU (call under torch.no_grad() or use another backend)"
    elif q.device.type != "cuda":
        return f"FlexAttention runs on CUDA and CPU only, not {q.device.type}"
    return None


@functools.lru_cache(maxsize=2)
def _compiled_flex(device_type: str) -> Callable[..., Tensor]:
    """``flex_attention`` compiled once per process and device type.

    On CPU with static shapes: once a second length had been seen, the automatic
    dynamic-shape recompilation produced C++ that did not compile in this PyTorch build
    (undeclared ``cur_kvSplitSize`` variables), so each length compiles its own kernel.
    On CUDA shapes stay automatic, so varying lengths share one kernel."""
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False if device_type == "cpu" else None)


def flex_attention_forward(q: Tensor, k: Tensor, v: Tensor, pattern: Pattern, *, key_mask: Tensor | None = None,
                           bias: object | None = None, scale: float) -> Tensor:
    """Attention of q ``(B, H, L, D)`` over k, v ``(B, Hkv, L, D)`` restricted to ``pattern``.

    ``Hkv`` divides ``H``: grouped-query attention runs natively (``enable_gqa``), without
    expanding k and v. ``key_mask`` ``(B, L)`` bool (True = may be attended) is folded into
    the mask. Returns ``(B, H, L, D)``; rows with no allowed key are zeros, as FlexAttention
    gives them (its row log-sum-exp is ``-inf`` and the output 0, never NaN).
    """
    from torch.nn.attention.flex_attention import flex_attention

    L = q.shape[2]
    if key_mask is None:
        block_mask = block_mask_for(pattern, L, q.device)
    else:
        block_mask = _key_masked_block_mask(pattern, L, q.device, key_mask)
    score_mod = None if bias is None else score_mod_for(bias, pattern, L, q.device)
    # Inside an outer torch.compile the call is traced into that graph; compiling again
    # here would nest compilations.
    fn = flex_attention if torch.compiler.is_compiling() else _compiled_flex(q.device.type)
    return fn(q, k, v, score_mod=score_mod, block_mask=block_mask, scale=scale, enable_gqa=k.shape[1] != q.shape[1])
