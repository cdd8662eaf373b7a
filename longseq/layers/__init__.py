"""Modules built on :func:`longseq.attend`."""

from longseq.layers.attention import MultiheadAttention
from longseq.layers.feedforward import ChunkedFeedForward, FeedForward
from longseq.layers.reversible import ReversibleSequence
from longseq.layers.transformer import DropPath, Encoder, TransformerBlock

__all__ = [
    "MultiheadAttention",
    "ChunkedFeedForward",
    "FeedForward",
    "ReversibleSequence",
    "DropPath",
    "TransformerBlock",
    "Encoder",
]
