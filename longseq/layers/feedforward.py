"""Feed-forward applied chunk by chunk along the sequence, so its hidden activations
(``mult`` times wider than the model) are never held for the whole sequence."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from longseq.kernels.tracing import is_tracing

__all__ = ["FeedForward", "ChunkedFeedForward", "AUTO_FF_CHUNK_TOKENS"]

#: ``chunks="auto"`` cuts the sequence into pieces of at most this many tokens.
AUTO_FF_CHUNK_TOKENS = 4096


class _ActivationLinear(torch.autograd.Function):
    """``linear(act(h), weight, bias)`` that keeps ``h`` for backward, not ``act(h)``.

    The activation is recomputed in backward (one cheap elementwise pass), so a
    feed-forward layer saves one hidden-width tensor instead of two.
    """

    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, bias: Tensor | None, act: nn.Module) -> Tensor:
        ctx.act, ctx.has_bias = act, bias is not None
        ctx.save_for_backward(h, weight)
        return F.linear(act(h), weight, bias)

    @staticmethod
    def backward(ctx, dy: Tensor):
        h, weight = ctx.saved_tensors
        with torch.enable_grad():
            h_leaf = h.detach().requires_grad_()
            a = ctx.act(h_leaf)
        dy_rows = dy.reshape(-1, dy.shape[-1])
        # under autocast the forward ran in low precision: stay in dy's dtype here too
        d_weight = dy_rows.t().mm(a.detach().reshape(-1, a.shape[-1]).to(dy.dtype)) if ctx.needs_input_grad[1] else None
        d_bias = dy_rows.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        d_h = None
        if ctx.needs_input_grad[0]:
            (d_h,) = torch.autograd.grad(a, h_leaf, dy.matmul(weight.to(dy.dtype)).to(a.dtype))
        return d_h, d_weight, d_bias, None


class FeedForward(nn.Module):
    """Linear -> activation -> dropout -> Linear.

    While training without dropout, the activation output is recomputed in backward
    rather than saved (``recompute_activation``): a quarter less activation memory for a
    standard transformer block, for one extra elementwise pass. Under a graph trace or
    export (:func:`~longseq.kernels.tracing.is_tracing`) the plain layers run: tracers
    cannot record the custom autograd Function, and an exported graph has no backward.
    x (..., dim) -> (..., dim).
    """

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0, activation: type[nn.Module] = nn.GELU,
                 recompute_activation: bool = True) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), activation(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.recompute_activation = recompute_activation

    def forward(self, x: Tensor) -> Tensor:
        fc1, act, drop, fc2 = self.net
        no_dropout = drop.p == 0.0 or not self.training
        if (self.recompute_activation and no_dropout and torch.is_grad_enabled()
                and not torch.compiler.is_compiling() and not is_tracing()):
            return _ActivationLinear.apply(fc1(x), fc2.weight, fc2.bias, act)
        return fc2(drop(act(fc1(x))))


class ChunkedFeedForward(nn.Module):
    """Feed-forward over ``chunks`` slices of the sequence axis.

    With ``chunks > 1`` each slice is recomputed in backward (activation checkpointing),
    so the tensors saved for backward are the input slices only, not the wide hidden
    layer. Output equals the unchunked feed-forward exactly (it is position-wise).
    ``chunks="auto"`` picks ``ceil(L / AUTO_FF_CHUNK_TOKENS)`` per training call: no
    chunking (and no recompute) for short sequences, bounded saved memory for long ones,
    which suits models whose length follows the input (images of any size). Without
    gradients (inference, export) "auto" is one chunk: nothing is saved to bound.
    x (B, L, dim) -> (B, L, dim).
    """

    def __init__(self, dim: int, hidden: int, chunks: int | str = 1, dropout: float = 0.0,
                 activation: type[nn.Module] = nn.GELU, chunk_above: int = 0) -> None:
        super().__init__()
        if chunks != "auto" and not (isinstance(chunks, int) and chunks >= 1):
            raise ValueError(f"chunks must be an int >= 1 or 'auto', got {chunks!r}")
        if chunk_above < 0:
            raise ValueError(f"chunk_above must be >= 0, got {chunk_above}")
        self.chunks, self.chunk_above = chunks, chunk_above
        self.ff = FeedForward(dim, hidden, dropout, activation)

    def n_chunks(self, length: int) -> int:
        """Number of sequence slices used for an input of ``length`` tokens (one up to
        ``chunk_above`` tokens: a short input's hidden layer is small, recomputing it is not worth it)."""
        if length <= self.chunk_above:
            return 1
        if self.chunks == "auto":
            if not torch.is_grad_enabled() or is_tracing():
                return 1
            return max(1, -(-length // AUTO_FF_CHUNK_TOKENS))
        return self.chunks

    def forward(self, x: Tensor, pre: nn.Module | None = None) -> Tensor:
        """``pre`` (a position-wise module such as the block's norm) is applied to x first,
        per chunk, so with ``chunks > 1`` its output is recomputed rather than saved."""
        chunks = self.n_chunks(x.shape[1])
        if chunks == 1:
            return self.ff(pre(x) if pre is not None else x)

        def fn(chunk: Tensor) -> Tensor:
            return self.ff(pre(chunk) if pre is not None else chunk)

        parts = x.chunk(chunks, dim=1)
        if not torch.is_grad_enabled() or is_tracing():  # a traced graph has no backward to checkpoint for
            return torch.cat([fn(p) for p in parts], dim=1)
        return torch.cat([checkpoint(fn, p, use_reentrant=False) for p in parts], dim=1)
