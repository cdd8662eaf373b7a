"""Blocked attention kernel: plans (tilings), tile backends and the autograd driver."""

from longseq.kernels.blocked import blocked_attention, merge_partial, use_backend
from longseq.kernels.plan import Plan, Tiling

__all__ = ["Plan", "Tiling", "blocked_attention", "merge_partial", "use_backend"]
