"""Multi-head attention module: owns projections; the pattern and kernel do the rest."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

from longseq.attention import attend
from longseq.kernels.tracing import is_tracing
from longseq.layers.kv_cache import LayerKVCache
from longseq.patterns import Pattern

__all__ = ["MultiheadAttention", "AUTO_HEAD_CHUNK_TOKENS", "GLOBAL_SCALE_REF_KEYS"]

#: ``head_chunks="auto"`` groups the heads (recomputing their projections in backward) above
#: this many tokens; below it the saved q, k, v are small and recomputing them is not worth it.
AUTO_HEAD_CHUNK_TOKENS = 4096

#: ``global_length_scale`` starts as the identity for rows that see this many keys.
GLOBAL_SCALE_REF_KEYS = 1024

# Fused attention kernels whose outputs head-chunked layers keep instead of recomputing:
# the recomputation in backward then redoes only the cheap projections, not attention.
_KEEP_OPS = tuple(
    op for name in ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
                    "_scaled_dot_product_efficient_attention")
    if (op := getattr(getattr(torch.ops.aten, name, None), "default", None)) is not None
)


def _keep_attention(ctx, op, *args, **kwargs) -> CheckpointPolicy:
    return CheckpointPolicy.MUST_SAVE if op in _KEEP_OPS else CheckpointPolicy.PREFER_RECOMPUTE


def _keep_attention_contexts():
    return create_selective_checkpoint_contexts(_keep_attention)


class MultiheadAttention(nn.Module):
    """Projections around :func:`longseq.attend`.

    Args:
        dim: model width.
        heads: query heads; ``dim`` must be divisible by it.
        pattern: default pattern (``forward(pattern=...)`` overrides it per call, e.g. when
            an image size changes a ``Window2D`` grid).
        kv_heads: key/value heads for grouped-query attention (divides ``heads``).
        bias: a :mod:`longseq.positions` bias module.
        rope: a rotary module (``RoPE1D`` / ``RoPE2D``) applied to q and k.
        head_chunks: compute the heads in this many groups (it must divide ``kv_heads``).
            While training, each group's projections are recomputed in backward (selective
            activation checkpointing: the fused attention kernel's outputs are kept, so
            attention itself is not rerun), so q, k, v exist for one group at a time and
            the layer saves its input and the attention output: the memory lever for
            million-token inputs. Not combinable with ``bias``. ``"auto"``: while
            training on more than ``AUTO_HEAD_CHUNK_TOKENS`` tokens, the smallest divisor
            of ``kv_heads`` above 1 (with no bias module); otherwise one group, so short
            inputs, inference and export pay nothing.
        chunk_above: inputs of at most this many tokens use one group whatever
            ``head_chunks`` (0: the groups apply at every length).
        global_length_scale: multiply the logits of the pattern's global rows (its
            ``global_tokens``, which attend every key) by ``s_h * ln(n)``, with ``n`` the
            number of real keys and ``s_h`` a learned per-head factor starting at
            ``1 / ln(GLOBAL_SCALE_REF_KEYS)`` (scalable softmax, Nakanishi 2025). Why: a
            global row spreads its softmax over all L keys, so a match that wins at the
            training length fades as L grows; with the ln(n) factor a logit gap learned
            in training grows with L and the match keeps its weight at a million keys.
            Other rows see a bounded number of keys and are left as they are. On the DNA
            needle task (docs/genomics.md) the model reaches 100% at 1M keys without it
            too: an option to try, not a requirement.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        pattern: Pattern,
        kv_heads: int | None = None,
        bias: nn.Module | None = None,
        rope: nn.Module | None = None,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        head_chunks: int | str = 1,
        chunk_above: int = 0,
        global_length_scale: bool = False,
    ) -> None:
        super().__init__()
        kv_heads = heads if kv_heads is None else kv_heads
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        if kv_heads < 1 or heads % kv_heads:
            raise ValueError(f"kv_heads ({kv_heads}) must divide heads ({heads})")
        if isinstance(head_chunks, str):
            if head_chunks != "auto":
                raise ValueError(f"head_chunks must be an int or 'auto', got {head_chunks!r}")
        elif head_chunks < 1 or kv_heads % head_chunks:
            raise ValueError(f"head_chunks ({head_chunks}) must divide kv_heads ({kv_heads})")
        elif head_chunks > 1 and bias is not None:
            raise ValueError("head_chunks > 1 does not support a positional bias module (use rope)")
        if chunk_above < 0:
            raise ValueError(f"chunk_above must be >= 0, got {chunk_above}")
        self.dim, self.heads, self.kv_heads, self.head_chunks = dim, heads, kv_heads, head_chunks
        self.chunk_above = chunk_above
        self.head_dim = dim // heads
        self.pattern = pattern
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * kv_heads * self.head_dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.attn_drop = attn_drop
        self.bias = bias
        self.rope = rope
        self.global_scale = (
            nn.Parameter(torch.full((heads,), 1.0 / math.log(GLOBAL_SCALE_REF_KEYS))) if global_length_scale else None
        )

    def forward(
        self,
        x: Tensor,
        key_mask: Tensor | None = None,
        pattern: Pattern | None = None,
        positions: Tensor | None = None,
    ) -> Tensor:
        """x (B, L, dim) -> (B, L, dim)."""
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"x must be (B, L, {self.dim}), got {tuple(x.shape)}")
        pattern = pattern or self.pattern
        chunks = self.n_head_chunks(x.shape[1])
        if chunks == 1:
            return self.proj_drop(self.proj(self._heads(x, 0, self.heads, self.kv_heads, key_mask, pattern,
                                                        positions)))
        hq, hkv = self.heads // chunks, self.kv_heads // chunks
        out = None
        for g in range(chunks):
            if torch.is_grad_enabled():
                y = checkpoint(self._group, x, g, hq, hkv, key_mask, pattern, positions, use_reentrant=False,
                               context_fn=_keep_attention_contexts, respect_saved_tensors_hooks=True)
            else:
                y = self._group(x, g, hq, hkv, key_mask, pattern, positions)
            out = y if out is None else out + y
        return self.proj_drop(out + self.proj.bias if self.proj.bias is not None else out)

    def new_cache(self, batch: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
                  max_len: int | None = None) -> LayerKVCache:
        """An empty :class:`~longseq.layers.kv_cache.LayerKVCache` for :meth:`step` with this
        layer's pattern (``ValueError`` for a pattern without a bounded causal reach);
        ``max_len``: the total tokens to decode, when known (bounds the ring by it)."""
        if self.bias is not None:
            raise ValueError("cached decoding does not support a positional bias module (use rope)")
        if self.global_scale is not None:
            # a global row's scale depends on the whole input's length, so it changes as the prefix grows
            raise ValueError("cached decoding does not support global_length_scale")
        return LayerKVCache.new(self.pattern, batch, self.kv_heads, self.head_dim, device, dtype, max_len)

    def step(self, x: Tensor, cache: LayerKVCache) -> Tensor:
        """Attention of ``n`` new tokens x ``(B, n, dim)`` at positions ``cache.position ..
        cache.position + n - 1`` over the cached keys and their own: ``(B, n, dim)``.

        Equals rows ``cache.position ..`` of :meth:`forward` over the whole prefix (rotary
        positions are the absolute ones) and stores the new keys and values in ``cache``.
        Costs ``O(n * (capacity + n))``.
        """
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"x must be (B, n, {self.dim}), got {tuple(x.shape)}")
        B, n, _ = x.shape
        D, H, Hkv = self.head_dim, self.heads, self.kv_heads
        q = self.q(x).view(B, n, H, D).transpose(1, 2)  # B, H, n, D
        kv = self.kv(x).view(B, n, 2, Hkv, D)
        k, v = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)  # B, Hkv, n, D
        if self.rope is not None:
            pos = torch.arange(cache.position, cache.position + n, device=x.device)
            q, k = self.rope(q, pos), self.rope(k, pos)
        keys, values, allowed = cache.keys_for(k.to(cache.k.dtype), v.to(cache.v.dtype))
        if Hkv != H:  # query head h reads kv head h // (H / Hkv), as attend does
            keys, values = keys.repeat_interleave(H // Hkv, 1), values.repeat_interleave(H // Hkv, 1)
        out = F.scaled_dot_product_attention(q, keys.to(q.dtype), values.to(q.dtype), attn_mask=allowed,
                                             dropout_p=self.attn_drop if self.training else 0.0)
        cache.append(k, v)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(B, n, H * D)))

    def n_head_chunks(self, length: int) -> int:
        """Head groups used for an input of ``length`` tokens (see ``head_chunks``)."""
        if length <= self.chunk_above:
            return 1
        if self.head_chunks != "auto":
            return self.head_chunks
        if length <= AUTO_HEAD_CHUNK_TOKENS or self.bias is not None or not torch.is_grad_enabled() or is_tracing():
            return 1
        return next((d for d in range(2, self.kv_heads + 1) if self.kv_heads % d == 0), 1)

    def _group(self, x: Tensor, g: int, hq: int, hkv: int, key_mask: Tensor | None, pattern: Pattern,
               positions: Tensor | None) -> Tensor:
        """Head group g through the output projection (without its bias): (B, L, dim)."""
        D = self.head_dim
        out = self._heads(x, g * hq, hq, hkv, key_mask, pattern, positions, kv_start=g * hkv)
        return F.linear(out, self.proj.weight[:, g * hq * D : (g + 1) * hq * D])

    def _heads(self, x: Tensor, q_start: int, hq: int, hkv: int, key_mask: Tensor | None, pattern: Pattern,
               positions: Tensor | None, kv_start: int = 0) -> Tensor:
        """Query heads [q_start, q_start + hq) with kv heads [kv_start, kv_start + hkv):
        x (B, L, dim) -> attention output (B, L, hq * head_dim) before the projection."""
        B, L, _ = x.shape
        D = self.head_dim
        if hq == self.heads:
            q = self.q(x)
            kv = self.kv(x).view(B, L, 2, hkv, D)
            k, v = kv[:, :, 0], kv[:, :, 1]
        else:
            def rows(layer: nn.Linear, start: int, n: int) -> tuple[Tensor, Tensor | None]:
                b = layer.bias[start * D : (start + n) * D] if layer.bias is not None else None
                return layer.weight[start * D : (start + n) * D], b

            q = F.linear(x, *rows(self.q, q_start, hq))
            k = F.linear(x, *rows(self.kv, kv_start, hkv)).view(B, L, hkv, D)
            v = F.linear(x, *rows(self.kv, self.kv_heads + kv_start, hkv)).view(B, L, hkv, D)
        q = q.view(B, L, hq, D).transpose(1, 2)  # B, H, L, Dh
        k, v = k.transpose(1, 2), v.transpose(1, 2)  # B, Hkv, L, Dh
        if self.rope is not None:
            q, k = self.rope(q, positions), self.rope(k, positions)
        if self.global_scale is not None:
            q = self._scale_global_rows(q, q_start, key_mask, pattern)
        # No .contiguous(): the kernel works token-major, which is how these views already lie.
        out = attend(
            q,
            k,
            v,
            pattern,
            key_mask=key_mask,
            bias=self.bias,
            dropout_p=self.attn_drop if self.training else 0.0,
        )
        return out.transpose(1, 2).reshape(B, L, hq * D)

    def _scale_global_rows(self, q: Tensor, q_start: int, key_mask: Tensor | None, pattern: Pattern) -> Tensor:
        """q (B, hq, L, Dh) with the pattern's global rows times ``s_h * ln(real keys)``."""
        rows = getattr(pattern, "global_tokens", None)
        if not rows:
            return q
        B, hq, L, _ = q.shape
        n = (key_mask.sum(-1) if key_mask is not None else torch.full((B,), L, device=q.device)).clamp_min(2)
        factor = self.global_scale[q_start : q_start + hq] * torch.log(n.to(torch.float32))[:, None]  # B, hq
        idx = torch.tensor(rows, device=q.device)
        scaled = q.index_select(2, idx) * factor[:, :, None, None].to(q.dtype)
        return q.index_copy(2, idx, scaled)  # out of place: autograd reaches s_h and q
