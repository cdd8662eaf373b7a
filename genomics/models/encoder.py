"""The shared DNA backbone: embeddings, optional k-mer convolution and down-sampling stem,
and a ``longseq.layers.Encoder`` of sliding-window (optionally global-token and LSH) layers.

Sliding-window attention with rotary positions lets a model trained on short windows run
unchanged on longer ones; global tokens (prepended learned tokens that attend, and are
attended by, every position) and LSH layers (Reformer hashing) add long-range paths;
reversible layers and a chunked feed-forward keep activation memory flat in depth and in
the MLP width.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from longseq.layers import Encoder
from longseq.lsh import LSH
from longseq.patterns import Pattern, SlidingWindow
from longseq.positions import RoPE1D

__all__ = ["DNAEncoder"]


class DNAEncoder(nn.Module):
    """ids (B, L) -> features (B, G + L // downsample, dim) (the first G are global tokens).

    Args:
        vocab_size: nucleotide vocabulary (:class:`NucleotideTokenizer` ids).
        dim, depth, heads, mlp_ratio, kv_heads: transformer sizes.
        window: one-sided reach of every layer's sliding window (tokens after down-sampling).
        causal: causal attention (language modelling left to right).
        global_tokens: learned tokens prepended to the sequence and made global in every
            sliding-window layer.
        lsh_layers: indices of layers that use ``LSH(lsh_bucket_size, lsh_n_hashes)``
            (shared-QK, fixed rotations from ``lsh_seed``) instead of the sliding window.
        reversible: reversible residual stack (activation memory flat in depth).
        ff_chunks: feed-forward applied in this many sequence chunks (hidden layer never whole).
        head_chunks: attention heads computed in this many groups, each recomputed in
            backward, so q, k, v exist for one group at a time (memory at a million bases).
        downsample: stride of a convolutional stem (1 = single-nucleotide resolution).
        dropout: dropout in attention and MLP.
        rope_dim: rotate only the first ``rope_dim`` features of each head (partial rotary,
            as GPT-NeoX); the rest match by content alone, at any distance, which is what a
            global token or an LSH bucket needs to find a motif 500k bases away. Default
            (None): the whole head.
        kmer_kernel: width of a stride-1 convolution over the embeddings before attention,
            so each position starts with features of the k-mer around it (1 = none). In a
            causal model it reads only the current and earlier bases.
        global_length_scale: scale the global tokens' attention logits by a learned
            ``s_h * ln(L)`` (scalable softmax, see :class:`longseq.layers.MultiheadAttention`),
            meant to keep a motif the global tokens learned to pick out of a 65,536-base
            window sharp among a million bases (the needle task reached 100% at 1M without
            it too; docs/genomics.md). Needs ``global_tokens``.
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int = 128,
        depth: int = 2,
        heads: int = 4,
        window: int = 256,
        *,
        causal: bool = False,
        global_tokens: int = 0,
        lsh_layers: Sequence[int] = (),
        lsh_bucket_size: int = 64,
        lsh_n_hashes: int = 2,
        lsh_seed: int | None = 0,
        mlp_ratio: float = 4.0,
        kv_heads: int | None = None,
        reversible: bool = False,
        ff_chunks: int = 1,
        head_chunks: int = 1,
        downsample: int = 1,
        dropout: float = 0.0,
        rope_dim: int | None = None,
        kmer_kernel: int = 1,
        global_length_scale: bool = False,
    ) -> None:
        super().__init__()
        bad = [i for i in lsh_layers if not 0 <= i < depth]
        if bad:
            raise ValueError(f"lsh_layers must be layer indices in [0, {depth}), got {bad}")
        if lsh_layers and kv_heads not in (None, heads):
            raise ValueError("LSH layers share queries and keys: they need kv_heads == heads")
        if dim % heads or (dim // heads) % 2:
            raise ValueError(f"dim ({dim}) must split into an even head size over heads ({heads})")
        if causal and global_tokens:
            raise ValueError("global_tokens need bidirectional attention; set causal=False or global_tokens=0")
        if global_length_scale and not global_tokens:
            raise ValueError("global_length_scale scales the global tokens' rows; it needs global_tokens >= 1")
        if downsample < 1:
            raise ValueError(f"downsample must be >= 1, got {downsample}")
        if kmer_kernel < 1:
            raise ValueError(f"kmer_kernel must be >= 1, got {kmer_kernel}")
        head_dim = dim // heads
        rope_dim = head_dim if rope_dim is None else rope_dim
        if not 0 <= rope_dim <= head_dim or rope_dim % 2:
            raise ValueError(f"rope_dim must be even and in [0, {head_dim}] (the head size), got {rope_dim}")
        self.dim, self.causal, self.num_global, self.downsample = dim, causal, global_tokens, downsample
        self.embed = nn.Embedding(vocab_size, dim)
        self.kmer = nn.Conv1d(dim, dim, kmer_kernel) if kmer_kernel > 1 else None
        left = kmer_kernel - 1 if causal else (kmer_kernel - 1) // 2
        self.kmer_padding = (left, kmer_kernel - 1 - left)
        self.stem = nn.Conv1d(dim, dim, downsample, stride=downsample) if downsample > 1 else None
        self.global_embed = nn.Parameter(torch.randn(global_tokens, dim) * 0.02) if global_tokens else None
        window_pattern = SlidingWindow(window, causal=causal, global_tokens=tuple(range(global_tokens)) or None)
        lsh = LSH(lsh_bucket_size, lsh_n_hashes, causal=causal, shared_qk=True, seed=lsh_seed)
        self.patterns: list[Pattern] = [lsh if i in lsh_layers else window_pattern for i in range(depth)]
        self.encoder = Encoder(
            dim, depth, heads, self.patterns, mlp_ratio=mlp_ratio, kv_heads=kv_heads,
            rope=RoPE1D(rope_dim) if rope_dim else None, ff_chunks=ff_chunks, head_chunks=head_chunks,
            reversible=reversible, dropout=dropout, global_length_scale=global_length_scale,
        )

    def forward(self, input_ids: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """ids (B, L), mask (B, L) bool -> features (B, G + L', dim), mask (B, G + L') or None."""
        x = self.embed(input_ids)  # B, L, dim
        if self.kmer is not None:  # x + conv(x): the residual keeps single-base identity
            # padded positions read as zeros, as past the ends, so padding never leaks in
            real = x if mask is None else x.masked_fill(~mask[..., None], 0.0)
            x = x + self.kmer(nn.functional.pad(real.transpose(1, 2), self.kmer_padding)).transpose(1, 2)
        if self.stem is not None:
            B, L, _ = x.shape
            pad = (-L) % self.downsample
            x = self.stem(nn.functional.pad(x.transpose(1, 2), (0, pad))).transpose(1, 2)  # B, L', dim
            if mask is not None:  # a down-sampled slot is real if any of its bases is
                mask = nn.functional.pad(mask, (0, pad)).view(B, -1, self.downsample).any(-1)
        if self.global_embed is not None:
            B = x.shape[0]
            x = torch.cat([self.global_embed.to(x.dtype).expand(B, -1, -1), x], dim=1)
            if mask is not None:
                mask = torch.cat([mask.new_ones(B, self.num_global), mask], dim=1)
        if mask is not None and bool(mask.all()):
            mask = None  # no padding: skip masking work in the kernel
        return self.encoder(x, key_mask=mask), mask
