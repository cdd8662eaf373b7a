"""longseq: one efficient-attention core for million-token images and genomes."""

from longseq import layers, patterns, positions
from longseq.attention import attend
from longseq.patterns import Dense, Pattern, SlidingWindow, Window2D

__version__ = "0.1.0"

__all__ = ["attend", "patterns", "positions", "layers", "Pattern", "Dense", "SlidingWindow", "Window2D"]
