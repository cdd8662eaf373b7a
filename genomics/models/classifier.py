"""DNA classifier on :class:`~genomics.models.encoder.DNAEncoder`: one label per sequence
(pooled) or one per base (``pool="none"``).

``pool="flatten"`` is the readout of aligned windows (promoters around a TSS, splice sites,
peak centres): each position is projected to ``flatten_dim`` features and a dense layer reads
them all, so a motif counts by where it sits, as in the dense layers of DeepSEA-style CNNs.
Attention with rotary positions sees only relative offsets and a mean forgets where features
were, so on aligned windows this readout is what carries absolute position.

Every constructor argument is a plain value, so a YAML ``model:`` section mirrors the
signature (``num_classes`` comes from the data module) and ``config`` rebuilds the model
from a checkpoint.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, Sequence

import torch
from torch import Tensor, nn

from genomics.data.tokenizers import NucleotideTokenizer, reverse_complement_rows
from genomics.models.encoder import DNAEncoder

__all__ = ["DNAClassifier", "Pool"]

Pool = Literal["cls", "mean", "query", "flatten", "none"]


class DNAClassifier(nn.Module):
    """Classifier: ids (B, L) -> logits (B, num_classes), or (B, L, num_classes) with ``pool="none"``.

    ``pool``: ``"cls"`` reads the first global token (needs ``global_tokens >= 1``);
    ``"mean"`` averages real positions; ``"query"`` reads the position given by
    ``forward(query_index=...)`` (e.g. a marker base); ``"flatten"`` reads every position of
    sequences up to ``positions`` bases through its own weights (shorter rows count as
    padded with zero features; longer ones are an error); ``"none"`` labels every base.
    ``rc_average=True`` averages the logits of both strands in eval mode: each row is
    reverse-complemented up to its last real base (padded batches are fine) and per-base
    logits are flipped back first. ``layer_patterns`` chooses each layer's attention (see
    :class:`~genomics.models.encoder.DNAEncoder`).
    """

    def __init__(
        self,
        num_classes: int,
        vocab_size: int = 9,
        dim: int = 128,
        depth: int = 2,
        heads: int = 4,
        window: int = 256,
        *,
        pool: Pool = "mean",
        positions: int | None = None,
        flatten_dim: int = 16,
        global_tokens: int = 0,
        lsh_layers: Sequence[int] = (),
        lsh_bucket_size: int = 64,
        lsh_n_hashes: int = 2,
        mlp_ratio: float = 4.0,
        kv_heads: int | None = None,
        reversible: bool = False,
        ff_chunks: int = 1,
        head_chunks: int = 1,
        chunk_above: int = 0,
        downsample: int = 1,
        rc_average: bool = False,
        dropout: float = 0.0,
        rope_dim: int | None = None,
        kmer_kernel: int = 1,
        conv_layers: int = 0,
        conv_kernel: int = 7,
        global_length_scale: bool = False,
        layer_patterns: Sequence[str | Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        if pool not in ("cls", "mean", "query", "flatten", "none"):
            hint = " ('auto' is resolved from the data by longseq-train-dna --task classification)" if pool == "auto" else ""
            raise ValueError(f"pool must be 'cls', 'mean', 'query', 'flatten' or 'none', got {pool!r}{hint}")
        if pool == "cls" and global_tokens < 1:
            raise ValueError("pool='cls' needs global_tokens >= 1")
        if pool == "flatten" and (positions is None or positions < 1 or flatten_dim < 1):
            raise ValueError(f"pool='flatten' needs positions >= 1 (the sequence length it reads) and "
                             f"flatten_dim >= 1, got positions={positions}, flatten_dim={flatten_dim}")
        if pool in ("none", "query", "flatten") and downsample != 1:
            raise ValueError(f"pool={pool!r} reads single bases; it needs downsample=1")
        self.config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.pool, self.rc_average, self.num_classes = pool, rc_average, num_classes
        self.backbone = DNAEncoder(
            vocab_size, dim, depth, heads, window, causal=False, global_tokens=global_tokens,
            lsh_layers=lsh_layers, lsh_bucket_size=lsh_bucket_size, lsh_n_hashes=lsh_n_hashes,
            mlp_ratio=mlp_ratio, kv_heads=kv_heads, reversible=reversible, ff_chunks=ff_chunks,
            head_chunks=head_chunks, chunk_above=chunk_above, downsample=downsample, dropout=dropout, rope_dim=rope_dim,
            kmer_kernel=kmer_kernel, conv_layers=conv_layers, conv_kernel=conv_kernel,
            global_length_scale=global_length_scale, layer_patterns=layer_patterns,
        )
        self.positions = positions if pool == "flatten" else None
        if pool == "flatten":
            assert positions is not None
            self.position_proj = nn.Linear(dim, flatten_dim)  # per position: dim -> flatten_dim
            self.position_mix = nn.Sequential(nn.Linear(positions * flatten_dim, dim), nn.GELU(), nn.Dropout(dropout))
        self.head = nn.Linear(dim, num_classes)
        complement = NucleotideTokenizer("keep" if vocab_size > 9 else "upper").complement_table
        self.register_buffer("complement", torch.as_tensor(complement[:vocab_size]), persistent=False)

    def _logits(self, input_ids: Tensor, mask: Tensor | None, query_index: Tensor | None) -> Tensor:
        feats, fmask = self.backbone(input_ids, mask)
        g = self.backbone.num_global
        if self.pool == "cls":
            pooled = feats[:, 0]
        elif self.pool == "query":
            if query_index is None:
                raise ValueError("pool='query' needs query_index (B,) in forward")
            pooled = feats[torch.arange(feats.shape[0], device=feats.device), g + query_index]
        elif self.pool == "flatten":
            pooled = self._flatten(feats[:, g:], None if fmask is None else fmask[:, g:])
        elif self.pool == "mean":
            body = feats[:, g:]
            if fmask is None:
                pooled = body.mean(1)
            else:
                w = fmask[:, g:].unsqueeze(-1).to(body.dtype)
                pooled = (body * w).sum(1) / w.sum(1).clamp_min(1)
        else:
            return self.head(feats[:, g:])  # B, L, C
        return self.head(pooled)  # B, C

    def _flatten(self, body: Tensor, mask: Tensor | None) -> Tensor:
        """Position-wise readout: features (B, L, D), mask (B, L) -> (B, D), L <= positions."""
        b, n, _ = body.shape
        assert self.positions is not None
        if n > self.positions:
            raise ValueError(f"pool='flatten' reads sequences of up to {self.positions} bases (model.positions), "
                             f"got {n}; predict longer sequences in windows of {self.positions} bases")
        z = self.position_proj(body)  # B, L, flatten_dim
        if mask is not None:
            z = z * mask.unsqueeze(-1).to(z.dtype)
        if n < self.positions:
            z = nn.functional.pad(z, (0, 0, 0, self.positions - n))
        return self.position_mix(z.reshape(b, -1))

    def forward(self, input_ids: Tensor, mask: Tensor | None = None, query_index: Tensor | None = None) -> Tensor:
        """ids (B, L), mask (B, L) bool, query_index (B,) -> logits (B, C) or (B, L, C)."""
        logits = self._logits(input_ids, mask, query_index)
        if self.rc_average and not self.training:
            rc_ids, rc_mask, index = reverse_complement_rows(input_ids, mask, self.complement)
            rc_query = None if query_index is None else index.gather(1, query_index.long()[:, None]).squeeze(1)
            rc = self._logits(rc_ids, rc_mask, rc_query)
            if self.pool == "none":  # per-base logits back onto the forward strand
                rc = rc.gather(1, index.unsqueeze(-1).expand_as(rc))
            logits = (logits + rc) / 2
        return logits
