"""Which kernel code serves which pattern type: tilings and whole implementations.

Patterns only say who attends whom; this registry, keyed by pattern type (subclasses
inherit their base's entry, as with :func:`functools.singledispatch`), maps them to

* a *tiling builder* ``fn(pattern, L, device) -> Tiling`` for the blocked kernel
  (:func:`register_tiling`, looked up by :func:`tiling_for`), or
* a whole *attention implementation* ``fn(pattern, q, k, v, *, key_mask, bias,
  dropout_p, scale) -> Tensor`` for data-dependent patterns whose layout is built per
  call, such as LSH (:func:`register_attention`, looked up by :func:`attention_for`).
  Implementations registered here run on the blocked kernel's tile backends.

A pattern class defined outside longseq may instead carry its own ``tiling(L, device)``
or ``attend(q, k, v, *, key_mask, bias, dropout_p, scale)`` method; a method on the
pattern takes precedence over the registry.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Callable

import torch
from torch import Tensor

if TYPE_CHECKING:
    from longseq.kernels.plan import Tiling

__all__ = ["register_tiling", "tiling_for", "register_attention", "attention_for", "attention_info",
           "has_own_attention"]

TilingBuilder = Callable[..., "Tiling"]
AttentionImpl = Callable[..., Tensor]


def _no_tiling(pattern, L: int, device: torch.device) -> Tiling:
    raise NotImplementedError(f"{type(pattern).__name__} has no blocked-kernel tiling")


def _no_attention(pattern, *args, **kwargs) -> Tensor:  # marker: never called
    raise NotImplementedError(f"{type(pattern).__name__} has no attention implementation of its own")


# singledispatch gives MRO lookup and a per-type dispatch cache for free.
_TILINGS = functools.singledispatch(_no_tiling)
_ATTENTION = functools.singledispatch(_no_attention)
_HOW: dict[Callable[..., Tensor], tuple[bool, str]] = {}


def register_tiling(pattern_type: type) -> Callable[[TilingBuilder], TilingBuilder]:
    """Decorator: ``fn(pattern, L, device) -> Tiling`` covers patterns of ``pattern_type``."""
    def register(fn: TilingBuilder) -> TilingBuilder:
        _TILINGS.register(pattern_type, fn)
        return fn
    return register


def register_attention(pattern_type: type, *, tiles: bool = True,
                       how: str = "data-dependent layout: the pattern's registered implementation, blocked kernel "
                                  "per head") -> Callable[[AttentionImpl], AttentionImpl]:
    """Decorator: ``fn(pattern, q, k, v, *, key_mask, bias, dropout_p, scale)`` computes
    :func:`longseq.attend` for patterns of ``pattern_type`` (q, k, v ``(B, H, L, D)``, k
    and v already expanded to q's heads; returns ``(B, H, L, D)``). ``tiles`` says whether
    it runs on the blocked kernel's tile backends, ``how`` what it does, for
    :func:`longseq.explain`."""
    def register(fn: AttentionImpl) -> AttentionImpl:
        _ATTENTION.register(pattern_type, fn)
        _HOW[fn] = (tiles, how)
        return fn
    return register


def attention_info(pattern) -> tuple[bool, str]:
    """(runs on the tile backends, what it does) of the implementation registered for
    ``pattern``'s type; see :func:`register_attention`."""
    return _HOW.get(_ATTENTION.dispatch(type(pattern)), (True, "the pattern's registered implementation"))


def tiling_for(pattern, L: int, device: torch.device) -> Tiling:
    """How the blocked kernel covers ``pattern`` at length ``L`` (``NotImplementedError`` if
    nothing covers it)."""
    own = getattr(pattern, "tiling", None)
    if own is not None:
        return own(L, device)
    return _TILINGS(pattern, L, device)


def has_own_attention(pattern) -> bool:
    """Whether the pattern carries its own ``attend`` method (a pattern defined outside longseq)."""
    return getattr(pattern, "attend", None) is not None


def attention_for(pattern) -> AttentionImpl | None:
    """``fn(q, k, v, *, key_mask, bias, dropout_p, scale)`` computing attention for this
    pattern as a whole, or None when the pattern is computed from a tiling instead."""
    own = getattr(pattern, "attend", None)
    if own is not None:
        return own
    impl = _ATTENTION.dispatch(type(pattern))
    if impl is _no_attention:
        return None
    return functools.partial(impl, pattern)
