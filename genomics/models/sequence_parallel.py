"""Sequence parallelism for the DNA encoder: one window split over the ranks of a process group.

:func:`shard_encoder` makes a :class:`~genomics.models.encoder.DNAEncoder` run on this rank's
contiguous slice of a window (rank ``r`` holds bases ``sum(L_<r) .. sum(L_<=r) - 1``): its
attention layers call :func:`longseq.distributed.attend_sharded` with the pattern of the whole
window instead of :func:`longseq.attend`, and rotary positions are the slice's global ones.
Every other layer of the model (embedding, norms, MLP, head) works per token, so the features
of a slice equal those rows of the single-process features, forward and backward.

Supported: sliding-window layers (any window and dilation, causal or not) and the k-mer
convolution (its ``kmer_kernel - 1`` context rows come from the neighbouring slice,
:func:`longseq.distributed.halo_rows`), without global tokens or down-sampling, and without
attention dropout. The rest is refused with a ``ValueError`` naming the model key: a
down-sampling stem needs whole strides on every rank, global tokens are prepended
to the whole window, not to a slice, and the other patterns (``lsh``, ``global``, ``topk``,
...) have no sharded form.

Every parameter is replicated, so each rank gets its share of every gradient: sum the
gradients over the group (DDP over the same group does, with the loss of each rank
``sum of its tokens' losses / tokens of the whole window * group size``, as DDP averages).
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from longseq.layers.attention import MultiheadAttention
from longseq.patterns import SlidingWindow

__all__ = ["ShardEncoder", "check_shardable", "encoder_of", "shard_encoder", "slice_bounds", "slice_positions"]


def slice_bounds(length: int, rank: int, world_size: int) -> tuple[int, int]:
    """``[start, stop)`` of rank ``rank``'s contiguous slice of a ``length``-token window split
    into ``world_size`` slices as equal as possible (the first ``length % world_size`` one longer)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    if length < world_size:
        raise ValueError(f"a window of {length} tokens cannot be split over {world_size} ranks")
    base, extra = divmod(length, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def encoder_of(model: Any) -> Any:
    """The :class:`~genomics.models.encoder.DNAEncoder` of a ``DNALanguageModel`` or ``DNAClassifier``."""
    backbone = model.backbone
    return backbone.backbone if hasattr(backbone, "backbone") else backbone


def check_shardable(encoder: Any) -> None:
    """``ValueError`` naming the model key when ``encoder`` cannot run on a slice of its window."""
    if encoder.stem is not None:
        raise ValueError("sequence parallelism: model.downsample > 1 needs whole strides on every rank; "
                         "use downsample: 1")
    if len(encoder.convs):
        raise ValueError("sequence parallelism: model.conv_layers are not split over ranks; use conv_layers: 0")
    if encoder.num_global:
        raise ValueError("sequence parallelism: model.global_tokens are prepended to the whole window; "
                         "use global_tokens: 0")
    for i, block in enumerate(_blocks(encoder)):
        attn = block.attn_branch.attn
        if type(attn) is not MultiheadAttention or not isinstance(attn.pattern, SlidingWindow):
            raise ValueError(f"sequence parallelism: layer {i} is not a sliding-window layer "
                             f"({type(getattr(attn, 'pattern', attn)).__name__}); only model.layer_patterns "
                             f"entries of type 'window' can be split")
        if attn.global_scale is not None:
            raise ValueError("sequence parallelism: model.global_length_scale needs global tokens; remove it")
        if attn.attn_drop:
            raise ValueError("sequence parallelism: attention dropout is not supported; use model.dropout: 0")


def _blocks(encoder: Any) -> list[Any]:
    return [m for m in encoder.encoder.modules() if hasattr(m, "attn_branch")]


def _sharded_heads(self: MultiheadAttention, x: Tensor, q_start: int, hq: int, hkv: int, key_mask: Tensor | None,
                   pattern: Any, positions: Tensor | None, kv_start: int = 0) -> Tensor:
    """:meth:`MultiheadAttention._heads` on this rank's slice, through ``attend_sharded``."""
    from longseq.distributed import attend_sharded

    B, L, _ = x.shape
    D = self.head_dim

    def rows(layer: torch.nn.Linear, start: int, n: int) -> tuple[Tensor, Tensor | None]:
        b = layer.bias[start * D:(start + n) * D] if layer.bias is not None else None
        return layer.weight[start * D:(start + n) * D], b

    q = torch.nn.functional.linear(x, *rows(self.q, q_start, hq)).view(B, L, hq, D).transpose(1, 2)
    k = torch.nn.functional.linear(x, *rows(self.kv, kv_start, hkv)).view(B, L, hkv, D).transpose(1, 2)
    v = torch.nn.functional.linear(x, *rows(self.kv, self.kv_heads + kv_start, hkv)).view(B, L, hkv, D)
    v = v.transpose(1, 2)
    if self.rope is not None:
        q, k = self.rope(q, positions), self.rope(k, positions)
    out = attend_sharded(q, k, v, pattern, key_mask=key_mask, bias=self.bias, group=self._sequence_group)
    return out.transpose(1, 2).reshape(B, L, hq * D)


def shard_encoder(encoder: Any, group: dist.ProcessGroup | None = None) -> Any:
    """Make ``encoder`` (a :class:`~genomics.models.encoder.DNAEncoder`, changed in place and
    returned) run on this rank's slice of the window, ``group`` (default: the world) holding
    the slices in rank order. Raises ``ValueError`` for what cannot be split
    (:func:`check_shardable`). The weights and their names do not change."""
    check_shardable(encoder)
    for block in _blocks(encoder):
        attn = block.attn_branch.attn
        attn._sequence_group = group
        attn._heads = types.MethodType(_sharded_heads, attn)
    encoder.sequence_group = group
    return encoder


def slice_positions(length: int, group: dist.ProcessGroup | None, device: torch.device) -> Tensor:
    """Global positions ``(length,)`` of this rank's slice: the slices before it, from an
    all-gather of every rank's length."""
    world = dist.get_world_size(group)
    mine = torch.tensor([length], dtype=torch.int64)
    lengths = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(lengths, mine, group=group)
    start = int(sum(int(t) for t in lengths[:dist.get_rank(group)]))
    return torch.arange(start, start + length, device=device)


def _lightning_callback() -> type:
    from lightning.pytorch.callbacks import Callback

    from longseq.training.errors import UserError

    class ShardEncoder(Callback):
        """Lightning callback of ``longseq-train-dna --sequence-parallel N``: when the
        processes exist, groups ranks ``0..N-1``, ``N..2N-1``, ... (each splitting one window)
        and shards the language model's encoder over its rank's group."""

        def __init__(self, slices: int) -> None:
            self.slices = int(slices)

        def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
            world = int(trainer.world_size)
            if world % self.slices:
                raise UserError(f"--sequence-parallel {self.slices}: the processes ({world} = devices x num_nodes) "
                                f"must be a multiple of it")
            if getattr(pl_module.backbone.backbone, "sequence_group", False) is not False:
                return  # sharded already (fit, then validate)
            group = None
            if world > self.slices:  # every rank creates every group, in the same order
                for first in range(0, world, self.slices):
                    g = dist.new_group(list(range(first, first + self.slices)))
                    if first <= trainer.global_rank < first + self.slices:
                        group = g
            shard_encoder(pl_module.backbone.backbone, group)

    return ShardEncoder


def __getattr__(name: str) -> Any:
    if name == "ShardEncoder":  # Lightning is imported only when the callback is asked for
        return _lightning_callback()
    raise AttributeError(name)
