"""Blocked attention kernel: plans (tilings), tile backends and the autograd driver.

Importing the package registers every built-in pattern's tiling and implementation
(:mod:`longseq.kernels.registry`), so :func:`tiling_for` and :func:`attention_for` see them.
"""

from longseq.kernels import lsh  # registers LSH's implementation
from longseq.kernels import hierarchical, routing, segment, topk  # register their patterns' implementations
from longseq.kernels.bias import TileBias
from longseq.kernels.blocked import blocked_attention, current_backend, merge_partial, use_backend
from longseq.kernels.plan import Plan, Tiling
from longseq.kernels.registry import attention_for, register_attention, register_tiling, tiling_for

__all__ = [
    "Plan", "Tiling", "TileBias", "blocked_attention", "merge_partial", "use_backend", "current_backend",
    "register_tiling", "tiling_for", "register_attention", "attention_for", "lsh",
]
