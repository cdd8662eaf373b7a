"""Reversible residual stack (RevNet / Reformer): activation memory flat in depth.

Each layer maps (x1, x2) to ``y1 = x1 + F(x2)``, ``y2 = x2 + G(y1)``. Forward keeps only
the last output; backward rebuilds every layer's input from its output
(``x2 = y2 - G(y1)``, ``x1 = y1 - F(x2)``) and backpropagates through one layer at a time.
Random state (dropout) is recorded per layer and replayed during the rebuild.

Parameter gradients are accumulated into ``.grad`` by the backward pass, as in
Reformer; use ``loss.backward()`` (``torch.autograd.grad`` on parameters is not supported).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from longseq.kernels.tracing import is_tracing

__all__ = ["ReversibleSequence"]


class _RngState:
    """CPU (and current-CUDA) random state captured before a branch runs."""

    def __init__(self, device: torch.device) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        self.device = device

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)


class _ReversibleFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x1: Tensor, x2: Tensor, blocks, kwargs: dict, *params: Tensor):
        states = []
        with torch.no_grad():
            for f, g in blocks:
                sf = _RngState(x1.device)
                x1 = x1 + f(x2, **kwargs)
                sg = _RngState(x1.device)
                x2 = x2 + g(x1)
                states.append((sf, sg))
        ctx.blocks, ctx.kwargs, ctx.states = blocks, kwargs, states
        y1, y2 = x1.detach(), x2.detach()
        ctx.save_for_backward(y1, y2)
        return y1, y2

    @staticmethod
    def backward(ctx, dy1: Tensor, dy2: Tensor):
        y1, y2 = ctx.saved_tensors
        for (f, g), (sf, sg) in zip(reversed(ctx.blocks), reversed(ctx.states)):
            with torch.enable_grad():
                y1 = y1.detach().requires_grad_(True)
                with torch.random.fork_rng(devices=[y1.device] if y1.device.type == "cuda" else []):
                    sg.restore()
                    gy1 = g(y1)
                torch.autograd.backward(gy1, dy2)
            with torch.no_grad():
                x2 = y2 - gy1
                dx1 = dy1 + y1.grad
            with torch.enable_grad():
                x2 = x2.detach().requires_grad_(True)
                with torch.random.fork_rng(devices=[x2.device] if x2.device.type == "cuda" else []):
                    sf.restore()
                    fx2 = f(x2, **ctx.kwargs)
                torch.autograd.backward(fx2, dx1)
            with torch.no_grad():
                x1 = y1 - fx2
                dx2 = dy2 + x2.grad
            y1, y2, dy1, dy2 = x1.detach(), x2.detach(), dx1, dx2
        return (dy1, dy2, None, None) + (None,) * len(ctx.needs_input_grad[4:])


class ReversibleSequence(nn.Module):
    """A stack of reversible layers.

    Args:
        blocks: ``(F, G)`` pairs of modules; ``F(x2, **kwargs)`` is typically attention,
            ``G(y1)`` a feed-forward, each mapping (B, L, dim) to (B, L, dim).

    ``forward(x1, x2, **kwargs) -> (y1, y2)``; keyword arguments go to every ``F``.
    Without gradients, and while a graph is traced
    (:func:`~longseq.kernels.tracing.is_tracing`), the layers run as plain residual
    updates: tracers cannot record the custom autograd Function.
    """

    def __init__(self, blocks: Sequence[tuple[nn.Module, nn.Module]]) -> None:
        super().__init__()
        blocks = list(blocks)
        if not blocks or any(len(b) != 2 for b in blocks):
            raise ValueError("blocks must be a non-empty sequence of (F, G) module pairs")
        self.f = nn.ModuleList(b[0] for b in blocks)
        self.g = nn.ModuleList(b[1] for b in blocks)

    def forward(self, x1: Tensor, x2: Tensor, **kwargs) -> tuple[Tensor, Tensor]:
        pairs = list(zip(self.f, self.g))
        if not torch.is_grad_enabled() or is_tracing():
            for f, g in pairs:
                x1 = x1 + f(x2, **kwargs)
                x2 = x2 + g(x1)
            return x1, x2
        params = [p for p in self.parameters() if p.requires_grad]
        return _ReversibleFunction.apply(x1, x2, pairs, kwargs, *params)
