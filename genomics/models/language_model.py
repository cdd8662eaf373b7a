"""Single-nucleotide DNA language model (causal or masked) on :class:`~genomics.models.encoder.DNAEncoder`.

Every constructor argument is a plain value, so a YAML ``model:`` section mirrors the
signature and ``config`` rebuilds the model from a checkpoint.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, Sequence

import torch
from torch import Tensor, nn

from genomics.data.tokenizers import NucleotideTokenizer, reverse_complement_rows
from genomics.models.encoder import DNAEncoder
from longseq.layers import KVCache

__all__ = ["DNALanguageModel", "Objective"]

Objective = Literal["causal", "masked"]


class DNALanguageModel(nn.Module):
    """Single-nucleotide language model: ids (B, L) -> logits (B, L, vocab_size).

    ``objective="causal"``: logits at position i predict token i + 1 (sliding window is
    causal). ``"masked"``: bidirectional; logits at i predict the original token i.
    ``rc_average=True`` (masked only) averages the logits of both strands in eval mode:
    the reverse complement is run through the same weights, flipped back and complemented.
    ``layer_patterns`` chooses each layer's attention (see :class:`DNAEncoder`).

    Cached decoding (causal, sliding-window or segment layers): ``cache = model.new_cache(B)``,
    then ``model.step(ids (B, n), cache)`` gives the logits of the ``n`` new bases as
    ``forward`` on the whole sequence so far would, at a cost per base bounded by the window.
    """

    def __init__(
        self,
        vocab_size: int = 9,
        dim: int = 128,
        depth: int = 2,
        heads: int = 4,
        window: int = 256,
        *,
        objective: Objective = "causal",
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
        if objective not in ("causal", "masked"):
            raise ValueError(f"objective must be 'causal' or 'masked', got {objective!r}")
        if rc_average and objective == "causal":
            raise ValueError("rc_average needs objective='masked' (a causal LM reads one direction)")
        self.config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.objective, self.rc_average, self.vocab_size = objective, rc_average, vocab_size
        self.backbone = DNAEncoder(
            vocab_size, dim, depth, heads, window, causal=objective == "causal", global_tokens=global_tokens,
            lsh_layers=lsh_layers, lsh_bucket_size=lsh_bucket_size, lsh_n_hashes=lsh_n_hashes,
            mlp_ratio=mlp_ratio, kv_heads=kv_heads, reversible=reversible, ff_chunks=ff_chunks,
            head_chunks=head_chunks, chunk_above=chunk_above, dropout=dropout, rope_dim=rope_dim,
            kmer_kernel=kmer_kernel, conv_layers=conv_layers, conv_kernel=conv_kernel,
            global_length_scale=global_length_scale, layer_patterns=layer_patterns,
        )
        self.head = nn.Linear(dim, vocab_size)
        complement = NucleotideTokenizer("keep" if vocab_size > 9 else "upper").complement_table
        self.register_buffer("complement", torch.as_tensor(complement[:vocab_size]), persistent=False)

    def _logits(self, input_ids: Tensor, mask: Tensor | None) -> Tensor:
        feats, _ = self.backbone(input_ids, mask)
        return self.head(feats[:, self.backbone.num_global :])  # B, L, V

    def new_cache(self, batch: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
                  max_len: int | None = None) -> KVCache:
        """An empty decoding cache for :meth:`step` (``ValueError`` for a masked LM or a layer
        without a bounded causal reach, naming the layer); ``max_len``: the total bases to
        decode, when known (no layer keeps more)."""
        if self.objective != "causal":
            raise ValueError("cached decoding needs objective='causal'")
        return self.backbone.new_cache(batch, device, dtype, max_len)

    def step(self, input_ids: Tensor, cache: KVCache) -> Tensor:
        """ids (B, n) of the next bases -> logits (B, n, vocab_size); logits at i predict i + 1."""
        return self.head(self.backbone.step(input_ids, cache))

    def forward(self, input_ids: Tensor, mask: Tensor | None = None) -> Tensor:
        """ids (B, L) int64, mask (B, L) bool (True = real base) -> logits (B, L, vocab_size)."""
        logits = self._logits(input_ids, mask)
        if self.rc_average and not self.training:
            rc_ids, rc_mask, index = reverse_complement_rows(input_ids, mask, self.complement)
            rc = self._logits(rc_ids, rc_mask)
            rc = rc.gather(1, index.unsqueeze(-1).expand_as(rc))[..., self.complement]
            logits = (logits + rc) / 2
        return logits
