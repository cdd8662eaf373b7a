"""Modules built on :func:`longseq.attend`."""

from longseq.layers.attention import MultiheadAttention
from longseq.layers.feedforward import ChunkedFeedForward, FeedForward
from longseq.layers.kv_cache import KVCache, LayerKVCache, cache_capacity
from longseq.layers.lowrank import LowRank, lowrank_attention
from longseq.layers.recurrence import SegmentStream, stream_segments
from longseq.layers.reversible import ReversibleSequence
from longseq.layers.routing import RoutingAttention, RoutingState
from longseq.layers.transformer import DropPath, Encoder, TransformerBlock

__all__ = [
    "MultiheadAttention",
    "ChunkedFeedForward",
    "FeedForward",
    "ReversibleSequence",
    "DropPath",
    "TransformerBlock",
    "Encoder",
    "RoutingAttention",
    "RoutingState",
    "LowRank",
    "lowrank_attention",
    "SegmentStream",
    "stream_segments",
    "KVCache",
    "LayerKVCache",
    "cache_capacity",
]
