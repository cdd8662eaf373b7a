"""DNA classifier on :class:`~genomics.models.encoder.DNAEncoder`: one label per sequence
(pooled) or one per base (``pool="none"``).

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

Pool = Literal["cls", "mean", "query", "none"]


class DNAClassifier(nn.Module):
    """Classifier: ids (B, L) -> logits (B, num_classes), or (B, L, num_classes) with ``pool="none"``.

    ``pool``: ``"cls"`` reads the first global token (needs ``global_tokens >= 1``);
    ``"mean"`` averages real positions; ``"query"`` reads the position given by
    ``forward(query_index=...)`` (e.g. a marker base); ``"none"`` labels every base.
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
        global_length_scale: bool = False,
        layer_patterns: Sequence[str | Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        if pool not in ("cls", "mean", "query", "none"):
            raise ValueError(f"pool must be 'cls', 'mean', 'query' or 'none', got {pool!r}")
        if pool == "cls" and global_tokens < 1:
            raise ValueError("pool='cls' needs global_tokens >= 1")
        if pool in ("none", "query") and downsample != 1:
            raise ValueError(f"pool={pool!r} reads single bases; it needs downsample=1")
        self.config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.pool, self.rc_average, self.num_classes = pool, rc_average, num_classes
        self.backbone = DNAEncoder(
            vocab_size, dim, depth, heads, window, causal=False, global_tokens=global_tokens,
            lsh_layers=lsh_layers, lsh_bucket_size=lsh_bucket_size, lsh_n_hashes=lsh_n_hashes,
            mlp_ratio=mlp_ratio, kv_heads=kv_heads, reversible=reversible, ff_chunks=ff_chunks,
            head_chunks=head_chunks, chunk_above=chunk_above, downsample=downsample, dropout=dropout, rope_dim=rope_dim,
            kmer_kernel=kmer_kernel, global_length_scale=global_length_scale, layer_patterns=layer_patterns,
        )
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
