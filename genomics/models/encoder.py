"""The shared DNA backbone: embeddings, optional k-mer convolution and down-sampling stem,
and a ``longseq.layers.Encoder`` of sliding-window (optionally global-token and LSH) layers.

Sliding-window attention with rotary positions lets a model trained on short windows run
unchanged on longer ones; global tokens (prepended learned tokens that attend, and are
attended by, every position) and LSH layers (Reformer hashing) add long-range paths;
reversible layers and a chunked feed-forward keep activation memory flat in depth and in
the MLP width.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from longseq.layers import Encoder, KVCache, LowRank, RoutingAttention, TransformerBlock
from longseq.lsh import LSH
from longseq.patterns import Dense, Hierarchical, Pattern, Routing, SegmentRecurrence, SlidingWindow, TopK
from longseq.positions import RoPE1D

__all__ = ["DNAEncoder", "LAYER_TYPES", "ResidualConv", "layer_specs"]

#: Per-layer attention types of ``layer_patterns`` and the keys each takes besides ``type``
#: (defaults: the model's ``window``; the model's ``lsh_*`` settings; the values below).
LAYER_TYPES: dict[str, tuple[str, ...]] = {
    "window": ("window", "dilation"),  # SlidingWindow (with the model's global tokens)
    "global": (),  # Dense: every position (causal: every earlier one)
    "lsh": ("bucket_size", "n_hashes", "seed"),  # Reformer hashing, shared QK
    "topk": ("k", "block"),  # TopK(k=32, block=128)
    "hierarchical": ("segment",),  # Hierarchical(segment=64)
    "routing": ("clusters", "window", "iters", "decay"),  # RoutingAttention(Routing(clusters=8, window=0))
    "segment": ("segment", "memory"),  # SegmentRecurrence(segment=window, memory=1); causal only
    "lowrank": ("k", "max_len"),  # LowRank(k=64, max_len required); bidirectional only
}


def layer_specs(layer_patterns: Sequence[str | Mapping[str, Any]], depth: int) -> list[dict[str, Any]]:
    """``layer_patterns`` as one ``{"type": ..., key: value}`` dict per layer, checked.

    Each entry is a type name (``"window"``) or a mapping with a ``type`` and that type's
    keys (:data:`LAYER_TYPES`). Raises ``ValueError`` naming the entry
    (``model.layer_patterns[2]``) and the offending key.
    """
    if isinstance(layer_patterns, (str, bytes, Mapping)) or not isinstance(layer_patterns, Sequence):
        raise ValueError(f"model.layer_patterns must be a list of {depth} entries (one per layer), "
                         f"got {layer_patterns!r}")
    if len(layer_patterns) != depth:
        raise ValueError(f"model.layer_patterns has {len(layer_patterns)} entries but depth is {depth}")
    specs = []
    known = ", ".join(LAYER_TYPES)
    for i, entry in enumerate(layer_patterns):
        where = f"model.layer_patterns[{i}]"
        spec = {"type": entry} if isinstance(entry, str) else dict(entry) if isinstance(entry, Mapping) else None
        if spec is None:
            raise ValueError(f"{where} must be a type name or a mapping with 'type', got {entry!r}")
        kind = spec.get("type")
        if kind not in LAYER_TYPES:
            raise ValueError(f"{where}.type must be one of {known}, got {kind!r}")
        unknown = sorted(set(spec) - {"type", *LAYER_TYPES[kind]})
        if unknown:
            allowed = ", ".join(LAYER_TYPES[kind]) or "none"
            raise ValueError(f"{where}: unknown key {unknown[0]!r} for type {kind!r} (its keys: {allowed})")
        for key, value in spec.items():
            if key == "decay":
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                    raise ValueError(f"{where}.decay must be a number in [0, 1), got {value!r}")
            elif key == "seed":
                if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                    raise ValueError(f"{where}.seed must be an int or null, got {value!r}")
            elif key != "type":
                minimum = 0 if (kind, key) == ("routing", "window") or key == "memory" else 1
                if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                    raise ValueError(f"{where}.{key} must be an int >= {minimum}, got {value!r}")
        specs.append(spec)
    return specs


class ResidualConv(nn.Module):
    """One block of the convolution tower: ``x + conv(GELU(LayerNorm(x)))``. The encoder pads
    and masks the conv's input (:meth:`DNAEncoder._conv_features`), so the block holds only
    the weights: ``pre`` (the norm and activation) and ``conv``."""

    def __init__(self, dim: int, kernel: int) -> None:
        super().__init__()
        self.pre = nn.Sequential(nn.LayerNorm(dim), nn.GELU())
        self.conv = nn.Conv1d(dim, dim, kernel)


class _LowRankBranch(LowRank):
    """:class:`LowRank` with the call signature of :class:`MultiheadAttention` (a block's attention)."""

    pattern = None  # no pattern: the keys are learned mixtures of positions

    def forward(self, x: Tensor, key_mask: Tensor | None = None, pattern: Pattern | None = None,
                positions: Tensor | None = None) -> Tensor:
        return super().forward(x, key_mask)

    def new_cache(self, *args: Any, **kwargs: Any) -> Any:
        raise ValueError("cached decoding does not support LowRank layers (bidirectional only)")


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
        chunk_above: ``ff_chunks`` and ``head_chunks`` apply only to windows longer than this
            many tokens (0: always): the memory levers cost ~35% step time, which short
            windows need not pay. Longer training windows also run the k-mer convolution in
            slices of this many tokens, each recomputed in backward.
        downsample: stride of a convolutional stem (1 = single-nucleotide resolution).
        dropout: dropout in attention and MLP.
        rope_dim: rotate only the first ``rope_dim`` features of each head (partial rotary,
            as GPT-NeoX); the rest match by content alone, at any distance, which is what a
            global token or an LSH bucket needs to find a motif 500k bases away. Default
            (None): the whole head.
        kmer_kernel: width of a stride-1 convolution over the embeddings before attention,
            so each position starts with features of the k-mer around it (1 = none). In a
            causal model it reads only the current and earlier bases.
        conv_layers: residual convolution blocks after the k-mer convolution, each
            ``x + conv(GELU(LayerNorm(x)))`` (causal in a causal model): a small CNN tower,
            so attention starts from motif features built over several layers, as in
            DeepSEA- and Basenji-style stems (0 = none).
        conv_kernel: width of the tower's convolutions.
        layer_patterns: one entry per layer choosing its attention (default None: every
            layer a sliding window, LSH in ``lsh_layers``): a type name or a mapping with
            ``type`` and its keys, among ``window`` (``window``, ``dilation``), ``global``
            (dense), ``lsh`` (``bucket_size``, ``n_hashes``, ``seed``), ``topk`` (``k``,
            ``block``), ``hierarchical`` (``segment``), ``routing`` (``clusters``,
            ``window``, ``iters``, ``decay``; a :class:`RoutingAttention` with learned
            centroids, its heads in one group whatever ``head_chunks``), ``segment`` (``segment``, ``memory``; causal only) and ``lowrank``
            (``k``, ``max_len``; bidirectional only). See :data:`LAYER_TYPES`.
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
        chunk_above: int = 0,
        downsample: int = 1,
        dropout: float = 0.0,
        rope_dim: int | None = None,
        kmer_kernel: int = 1,
        conv_layers: int = 0,
        conv_kernel: int = 7,
        global_length_scale: bool = False,
        layer_patterns: Sequence[str | Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        if layer_patterns is not None and lsh_layers:
            raise ValueError("give LSH layers either by lsh_layers or in model.layer_patterns, not both")
        specs = layer_specs(layer_patterns, depth) if layer_patterns is not None else None
        if specs is not None:
            lsh_layers = [i for i, spec in enumerate(specs) if spec["type"] == "lsh"]
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
        if conv_layers < 0 or conv_kernel < 1:
            raise ValueError(f"conv_layers must be >= 0 and conv_kernel >= 1, "
                             f"got conv_layers={conv_layers}, conv_kernel={conv_kernel}")
        head_dim = dim // heads
        rope_dim = head_dim if rope_dim is None else rope_dim
        if not 0 <= rope_dim <= head_dim or rope_dim % 2:
            raise ValueError(f"rope_dim must be even and in [0, {head_dim}] (the head size), got {rope_dim}")
        self.dim, self.causal, self.num_global, self.downsample = dim, causal, global_tokens, downsample
        self.chunk_above = chunk_above
        #: False: the whole window on this process; else the process group whose ranks hold
        #: its slices (None = the world), set by :func:`genomics.models.sequence_parallel.shard_encoder`.
        self.sequence_group: Any = False
        self.embed = nn.Embedding(vocab_size, dim)
        self.kmer = nn.Conv1d(dim, dim, kmer_kernel) if kmer_kernel > 1 else None
        self.convs = nn.ModuleList(ResidualConv(dim, conv_kernel) for _ in range(conv_layers))
        self.stem = nn.Conv1d(dim, dim, downsample, stride=downsample) if downsample > 1 else None
        self.global_embed = nn.Parameter(torch.randn(global_tokens, dim) * 0.02) if global_tokens else None
        window_pattern = SlidingWindow(window, causal=causal, global_tokens=tuple(range(global_tokens)) or None)
        lsh = LSH(lsh_bucket_size, lsh_n_hashes, causal=causal, shared_qk=True, seed=lsh_seed)
        block_kwargs = dict(mlp_ratio=mlp_ratio, kv_heads=kv_heads, rope=RoPE1D(rope_dim) if rope_dim else None,
                            ff_chunks=ff_chunks, head_chunks=head_chunks, chunk_above=chunk_above, dropout=dropout,
                            global_length_scale=global_length_scale)
        if specs is None:
            self.patterns: list[Pattern | None] = [lsh if i in lsh_layers else window_pattern for i in range(depth)]
            self.encoder = Encoder(dim, depth, heads, self.patterns, reversible=reversible, **block_kwargs)
        else:
            blocks = []
            for i, spec in enumerate(specs):
                try:
                    blocks.append(self._block(spec, dim, heads, window, causal, global_tokens, lsh_bucket_size,
                                              lsh_n_hashes, lsh_seed, block_kwargs))
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"model.layer_patterns[{i}] ({spec['type']}): {exc}") from None
            self.patterns = [b.attn.pattern for b in blocks]
            self.encoder = Encoder(blocks, reversible=reversible)

    @staticmethod
    def _block(spec: Mapping[str, Any], dim: int, heads: int, window: int, causal: bool, global_tokens: int,
               lsh_bucket_size: int, lsh_n_hashes: int, lsh_seed: int | None,
               block_kwargs: dict[str, Any]) -> TransformerBlock:
        """One transformer block whose attention ``spec`` (a :func:`layer_specs` entry) selects."""
        kind = spec["type"]
        globals_ = tuple(range(global_tokens)) or None
        pattern: Pattern
        if kind == "window":
            pattern = SlidingWindow(spec.get("window", window), spec.get("dilation", 1), causal=causal,
                                    global_tokens=globals_)
        elif kind == "global":
            pattern = Dense(causal=causal)
        elif kind == "lsh":
            pattern = LSH(spec.get("bucket_size", lsh_bucket_size), spec.get("n_hashes", lsh_n_hashes),
                          causal=causal, shared_qk=True, seed=spec.get("seed", lsh_seed))
        elif kind == "topk":
            pattern = TopK(spec.get("k", 32), causal=causal, block=spec.get("block", 128))
        elif kind == "hierarchical":
            pattern = Hierarchical(spec.get("segment", 64), causal=causal)
        elif kind == "segment":
            if not causal:
                raise ValueError("SegmentRecurrence is causal only: use it in a causal language model")
            pattern = SegmentRecurrence(spec.get("segment", window), spec.get("memory", 1))
        elif kind == "routing":
            pattern = Routing(spec.get("clusters", 8), spec.get("window", 0), causal=causal,
                              iters=spec.get("iters", 2))
        else:  # lowrank
            if causal:
                raise ValueError("LowRank mixes the whole sequence into every key: it has no causal form")
            if "max_len" not in spec:
                raise ValueError("lowrank needs max_len (the longest input, global tokens included)")
            pattern = SlidingWindow(window)  # placeholder; the branch is replaced below
        if not getattr(pattern, "supports_gqa", True) and block_kwargs["kv_heads"] not in (None, heads):
            raise ValueError(f"{type(pattern).__name__} shares queries and keys: it needs kv_heads == heads")
        block = TransformerBlock(dim, heads, pattern, **block_kwargs)
        if kind == "routing":
            # routing clusters all heads together, so this layer computes them in one group
            # whatever the model's head_chunks (a memory lever for the window layers)
            block.attn_branch.attn = RoutingAttention(dim, heads, pattern, decay=spec.get("decay", 0.999),
                                                      kv_heads=block_kwargs["kv_heads"], rope=block_kwargs["rope"],
                                                      attn_drop=block_kwargs["dropout"],
                                                      proj_drop=block_kwargs["dropout"])
        elif kind == "lowrank":
            block.attn_branch.attn = _LowRankBranch(dim, heads, spec.get("k", 64), spec["max_len"],
                                                    attn_drop=block_kwargs["dropout"])
        return block

    def new_cache(self, batch: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
                  max_len: int | None = None) -> KVCache:
        """An empty :class:`~longseq.layers.KVCache` for :meth:`step` (causal models with
        sliding-window or segment layers, no down-sampling; ``ValueError`` otherwise).
        ``max_len``: the total bases to decode, when known (no layer keeps more)."""
        if not self.causal:
            raise ValueError("cached decoding needs a causal model")
        if self.stem is not None:
            raise ValueError("cached decoding needs single-base resolution (downsample=1)")
        cache = self.encoder.new_cache(batch, device, dtype, max_len)
        convs = {"kmer": self.kmer} if self.kmer is not None else {}
        convs.update((f"conv{i}", block.conv) for i, block in enumerate(self.convs))
        for key, conv in convs.items():  # each conv's left context: zeros, as the padding of forward
            cache.extra[key] = torch.zeros(batch, self._padding(conv)[0], self.dim, device=device, dtype=dtype)
        return cache

    def step(self, input_ids: Tensor, cache: KVCache) -> Tensor:
        """Features (B, n, dim) of ``n`` new bases ids (B, n) after the prefix in ``cache``.

        Equals the last ``n`` rows of :meth:`forward` on the whole (unpadded) sequence so
        far, at a cost per base bounded by the layers' windows; updates ``cache``.
        """
        x = self.embed(input_ids)  # B, n, dim
        if self.kmer is not None:
            x = x + self._step_conv(self.kmer, x, cache, "kmer")
        for i, block in enumerate(self.convs):
            x = x + self._step_conv(block.conv, block.pre(x), cache, f"conv{i}")
        return self.encoder.step(x, cache)

    @staticmethod
    def _step_conv(conv: nn.Conv1d, x: Tensor, cache: KVCache, key: str) -> Tensor:
        """A causal ``conv`` of ``x`` (B, n, dim) after the rows of ``cache.extra[key]`` -> (B, n, dim)."""
        past = cache.extra[key]
        ctx = torch.cat([past.to(x.dtype), x], 1)  # the conv reads the current and earlier bases
        cache.extra[key] = ctx[:, ctx.shape[1] - past.shape[1]:]
        return conv(ctx.transpose(1, 2)).transpose(1, 2)

    def _padding(self, conv: nn.Conv1d) -> tuple[int, int]:
        """Rows of context ``conv`` reads (before, after) each position: only earlier ones if causal."""
        k = conv.kernel_size[0]
        left = k - 1 if self.causal else (k - 1) // 2
        return left, k - 1 - left

    def _conv_features(self, conv: nn.Conv1d, x: Tensor, mask: Tensor | None) -> Tensor:
        """``conv`` over ``x`` (B, L, dim) -> (B, L, dim), the rows past the ends (and padded
        rows) read as zeros. Training on windows longer than ``chunk_above`` runs it over slices
        of ``chunk_above`` outputs, each recomputed in backward, so its workspace stays that of
        one slice at a million bases."""
        real = x if mask is None else x.masked_fill(~mask[..., None], 0.0)  # padding never leaks in
        if self.sequence_group is not False:  # a slice of a window: the context rows of its neighbours
            from longseq.distributed import halo_rows

            padded = halo_rows(real, *self._padding(conv), group=self.sequence_group).transpose(1, 2)
        else:
            padded = nn.functional.pad(real.transpose(1, 2), self._padding(conv))
        k = conv.kernel_size[0]
        length = padded.shape[-1] - (k - 1)
        step = self.chunk_above
        if not step or length <= step or not torch.is_grad_enabled():
            return conv(padded).transpose(1, 2)
        parts = [checkpoint(conv, padded[..., start:start + step + k - 1], use_reentrant=False)
                 for start in range(0, length, step)]
        return torch.cat(parts, dim=-1).transpose(1, 2)

    def forward(self, input_ids: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """ids (B, L), mask (B, L) bool -> features (B, G + L', dim), mask (B, G + L') or None."""
        x = self.embed(input_ids)  # B, L, dim
        if self.kmer is not None:  # x + conv(x): the residual keeps single-base identity
            x = x + self._conv_features(self.kmer, x, mask)
        for block in self.convs:
            x = x + self._conv_features(block.conv, block.pre(x), mask)
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
        if mask is not None and bool(mask.all()) and self.sequence_group is False:
            mask = None  # no padding: skip masking work in the kernel (sharded: every rank passes one or none)
        if self.sequence_group is not False:  # one slice of a window split over ranks (shard_encoder)
            from genomics.models.sequence_parallel import slice_positions

            return self.encoder(x, key_mask=mask, positions=slice_positions(x.shape[1], self.sequence_group,
                                                                            x.device)), mask
        return self.encoder(x, key_mask=mask), mask
