"""Bounded key/value caches for cached causal decoding.

A causal pattern whose queries only look a bounded distance back lets a decoder keep a
fixed number of past keys and values: :class:`SlidingWindow` (``causal=True``) needs the
last ``window * dilation`` positions, :class:`SegmentRecurrence` the last
``(memory + 1) * segment - 1``. :class:`LayerKVCache` holds those in a ring buffer (slot
``position % capacity``) plus, for a sliding window with ``global_tokens``, the keys and
values of the global positions, which every later query attends however far back they
lie. A step then costs ``O(capacity)`` per new token and the memory stays constant
however long the output grows. :class:`KVCache` is one :class:`LayerKVCache` per layer of
an :class:`~longseq.layers.Encoder`, plus named extra state for modules around it (a
causal convolution's last inputs).

Which keys a query may see is decided by the pattern's own rule
(``pattern.allowed(i, j)`` on absolute positions), so the cached step attends exactly
the keys a full recompute over the whole prefix attends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from longseq.patterns import Pattern, SegmentRecurrence, SlidingWindow

__all__ = ["LayerKVCache", "KVCache", "cache_capacity"]


def cache_capacity(pattern: Pattern) -> int:
    """Past positions a query of ``pattern`` may attend besides global tokens.

    Raises ``ValueError`` for patterns without a bounded causal reach (bidirectional
    patterns, data-dependent ones, a causal ``Dense``), naming the pattern.
    """
    if isinstance(pattern, SlidingWindow):
        if not pattern.causal:
            raise ValueError("cached decoding needs a causal pattern; got SlidingWindow(causal=False)")
        return pattern.window * pattern.dilation
    if isinstance(pattern, SegmentRecurrence):
        # query i sees keys from the start of segment i // s - memory: up to (memory + 1) * s - 1 back
        return (pattern.memory + 1) * pattern.segment - 1
    raise ValueError(f"cached decoding supports SlidingWindow(causal=True) and SegmentRecurrence layers, "
                     f"got {type(pattern).__name__}")


@dataclass
class LayerKVCache:
    """Keys and values one attention layer keeps between decoding steps.

    Attributes:
        pattern: the layer's pattern (decides which cached keys a query sees).
        k, v: ring buffers ``(B, Hkv, capacity, D)``; slot ``p % capacity`` holds position ``p``
            (keys stored after rotary embedding, at their absolute position).
        slot_pos: ``(capacity,)`` int64 position held by each slot, -1 while empty.
        global_k, global_v: ``(B, Hkv, G, D)`` keys and values of the global positions seen
            so far (G grows to at most ``len(global_tokens)``).
        global_pos: ``(G,)`` their positions.
        position: tokens seen so far (the absolute position of the next token).
        global_tokens: the pattern's global positions (empty for none).
        max_len: the most tokens this cache takes (None: unbounded), when it was made for
            a known total length.
    """

    pattern: Pattern
    k: Tensor
    v: Tensor
    slot_pos: Tensor
    global_k: Tensor
    global_v: Tensor
    global_pos: Tensor
    position: int = 0
    global_tokens: tuple[int, ...] = field(default=())
    max_len: int | None = None

    @classmethod
    def new(cls, pattern: Pattern, batch: int, kv_heads: int, head_dim: int, device: torch.device | str | None,
            dtype: torch.dtype, max_len: int | None = None) -> "LayerKVCache":
        """An empty cache for ``pattern``; ``ValueError`` when it cannot be decoded with one.

        ``max_len``: the total tokens that will be decoded, when known. The ring then holds
        ``min(capacity, max_len)`` slots, so a wide window costs only what the sequence
        fills, and stepping past ``max_len`` raises ``ValueError``.
        Global tokens must lie within the first ``capacity + 1`` positions: a global
        query attends every earlier key, which the ring only holds that early on (or
        anywhere below ``max_len`` when the ring covers it whole).
        """
        if max_len is not None and max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        capacity = max(cache_capacity(pattern), 1)
        globals_ = tuple(getattr(pattern, "global_tokens", None) or ())
        if max_len is not None and max_len <= capacity:
            capacity = max_len  # nothing is ever evicted
        elif globals_ and globals_[-1] > capacity:
            raise ValueError(f"cached decoding keeps the last {capacity} positions: global_tokens must be at most "
                             f"{capacity} (window * dilation), got {globals_[-1]}")
        empty = torch.zeros(batch, kv_heads, 0, head_dim, device=device, dtype=dtype)
        return cls(pattern=pattern,
                   k=torch.zeros(batch, kv_heads, capacity, head_dim, device=device, dtype=dtype),
                   v=torch.zeros(batch, kv_heads, capacity, head_dim, device=device, dtype=dtype),
                   slot_pos=torch.full((capacity,), -1, dtype=torch.long, device=device),
                   global_k=empty, global_v=empty.clone(),
                   global_pos=torch.zeros(0, dtype=torch.long, device=device), global_tokens=globals_,
                   max_len=max_len)

    @property
    def capacity(self) -> int:
        return self.k.shape[2]

    def keys_for(self, k_new: Tensor, v_new: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Keys, values ``(B, Hkv, K, D)`` and the allowed mask ``(n, K)`` for the ``n`` new
        tokens at positions ``position .. position + n - 1`` (k_new, v_new ``(B, Hkv, n, D)``).

        Keys are the ring, the global positions already evicted from it, and the new tokens.
        """
        n = k_new.shape[2]
        t0 = self.position
        if self.max_len is not None and t0 + n > self.max_len:
            raise ValueError(f"this cache was made for max_len={self.max_len} tokens; {t0} are cached and "
                             f"{n} more were given")
        device = k_new.device
        q_pos = torch.arange(t0, t0 + n, device=device)  # the new tokens: queries and keys
        # a global position still in the ring is a ring key: counting it twice would double its weight
        evicted = self.global_pos < t0 - self.capacity
        k_pos = torch.cat([self.slot_pos, self.global_pos, q_pos])
        valid = torch.cat([self.slot_pos >= 0, evicted, torch.ones(n, dtype=torch.bool, device=device)])
        allowed = self.pattern.allowed(q_pos[:, None], k_pos[None, :].clamp_min(0)) & valid[None, :]
        keys = torch.cat([self.k, self.global_k, k_new], 2)
        values = torch.cat([self.v, self.global_v, v_new], 2)
        return keys, values, allowed

    def append(self, k_new: Tensor, v_new: Tensor) -> None:
        """Store the ``n`` new tokens' keys and values and advance :attr:`position`."""
        n = k_new.shape[2]
        t0 = self.position
        pos = torch.arange(t0, t0 + n, device=k_new.device)
        if self.global_tokens:
            g = torch.tensor(self.global_tokens, device=k_new.device)
            is_global = torch.isin(pos, g)
            if bool(is_global.any()):
                self.global_k = torch.cat([self.global_k, k_new[:, :, is_global]], 2)
                self.global_v = torch.cat([self.global_v, v_new[:, :, is_global]], 2)
                self.global_pos = torch.cat([self.global_pos, pos[is_global]])
        keep = min(n, self.capacity)  # older ones of a long chunk would be overwritten anyway
        pos, k_new, v_new = pos[n - keep:], k_new[:, :, n - keep:], v_new[:, :, n - keep:]
        slots = pos % self.capacity
        self.k.index_copy_(2, slots, k_new.to(self.k.dtype))
        self.v.index_copy_(2, slots, v_new.to(self.v.dtype))
        self.slot_pos.index_copy_(0, slots, pos)
        self.position = t0 + n


@dataclass
class KVCache:
    """Decoding state of a layer stack: one :class:`LayerKVCache` per attention layer.

    Attributes:
        layers: per-layer caches, in the order of the stack's blocks.
        extra: state of modules around the stack, by name (e.g. the last inputs of a
            causal convolution); the owner of each name reads and replaces it.
    """

    layers: list[LayerKVCache]
    extra: dict[str, Tensor] = field(default_factory=dict)

    @property
    def position(self) -> int:
        """Tokens decoded so far (the absolute position of the next token)."""
        return self.layers[0].position if self.layers else 0
