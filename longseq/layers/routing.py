"""Routing attention's learned state: online k-means centroids, and the layer that owns them.

:class:`~longseq.patterns.Routing` is a frozen pattern, so the centroids (a buffer that
changes while training) live here. :class:`RoutingState` initialises them from the first
batch it sees, so no cluster starts empty, and moves them by an exponential moving
average of the unit queries and keys routed to them; :class:`RoutingAttention` is a
:class:`MultiheadAttention` that owns one and binds it to its pattern.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longseq.layers.attention import MultiheadAttention
from longseq.patterns_routing import Routing

__all__ = ["RoutingState", "RoutingAttention"]

_log = logging.getLogger(__name__)


class RoutingState(nn.Module):
    """Centroids ``(heads, clusters, head_dim)`` for :class:`~longseq.patterns.Routing`.

    Args:
        heads: query heads of the attention (centroids are per head).
        clusters: number of clusters.
        head_dim: size of a head.
        decay: EMA factor; each training call moves a centroid to
            ``normalize(decay * c + (1 - decay) * mean of its members)``.

    On the first call the centroids are fitted to that call's data
    (:meth:`Routing.kmeans`). While training, every call also sets
    :attr:`commitment_loss`: the mean squared distance of the unit queries and real
    keys to their centroids (differentiable in q and k; add it to the training loss,
    scaled, to keep the projections near their clusters). It is None otherwise.
    """

    centroids: Tensor
    initialised: Tensor

    def __init__(self, heads: int, clusters: int, head_dim: int, decay: float = 0.999) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.register_buffer("centroids", torch.zeros(heads, clusters, head_dim))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))
        self.commitment_loss: Tensor | None = None

    def centroids_for(self, pattern: Routing, q: Tensor, k: Tensor, key_mask: Tensor | None = None) -> Tensor:
        """Centroids for one call on q, k ``(B, H, L, D)``: a copy taken before this call's update."""
        if q.shape[1] != self.centroids.shape[0] or q.shape[3] != self.centroids.shape[2]:
            raise ValueError(f"RoutingState holds centroids {tuple(self.centroids.shape)} (heads, clusters, D) "
                             f"but q has {q.shape[1]} heads of size {q.shape[3]}")
        if pattern.clusters != self.centroids.shape[1]:
            raise ValueError(f"Routing.clusters is {pattern.clusters} but the state holds {self.centroids.shape[1]}")
        if not bool(self.initialised):
            with torch.no_grad():
                self.centroids.copy_(pattern.kmeans(q, k, key_mask))
                self.initialised.fill_(True)
            _log.debug("routing centroids initialised from data: %s", tuple(self.centroids.shape))
        used = self.centroids.clone()
        self.commitment_loss = None
        if self.training:
            self._update(q, k, key_mask, used)
        return used

    def _update(self, q: Tensor, k: Tensor, key_mask: Tensor | None, c: Tensor) -> None:
        """Commitment loss and one EMA step towards the members' mean."""
        B, H, L, D = q.shape
        x = torch.cat([Routing.unit(q), Routing.unit(k)], 2)  # (B, H, 2L, D)
        real = torch.ones(B, 2 * L, dtype=torch.bool, device=q.device)
        if key_mask is not None:
            real[:, L:] = key_mask
        a = Routing.assign(x, c)  # (B, H, 2L)
        nearest = c.to(x.dtype)[torch.arange(H, device=q.device)[None, :, None], a]  # (B, H, 2L, D)
        dist = (x - nearest).square().sum(-1)
        w = real[:, None, :].to(x.dtype)
        self.commitment_loss = (dist * w).sum() / (w.sum() * H).clamp(min=1)
        with torch.no_grad():
            xs = (x.detach() * w[..., None]).transpose(0, 1).reshape(H, -1, D)
            idx = a.transpose(0, 1).reshape(H, -1)
            total = torch.zeros_like(c, dtype=x.dtype).scatter_add_(1, idx[..., None].expand_as(xs), xs)
            count = torch.zeros(H, c.shape[1], dtype=x.dtype, device=q.device).scatter_add_(
                1, idx, w.expand(B, H, 2 * L).transpose(0, 1).reshape(H, -1))
            mean = total / count.clamp(min=1)[..., None]
            moved = F.normalize(self.decay * c.to(x.dtype) + (1 - self.decay) * mean, dim=-1)
            self.centroids.copy_(torch.where(count[..., None] > 0, moved, c.to(x.dtype)))


class RoutingAttention(MultiheadAttention):
    """:class:`MultiheadAttention` with a :class:`~longseq.patterns.Routing` pattern and the
    :class:`RoutingState` it needs (``self.routing``, saved in the state dict).

    ``forward(x (B, L, dim), key_mask=None, pattern=None, positions=None)`` as for
    :class:`MultiheadAttention`; a Routing pattern given per call is bound to the same
    state. :attr:`commitment_loss` is the last training call's commitment loss.
    """

    def __init__(self, dim: int, heads: int, pattern: Routing, *, decay: float = 0.999, **kwargs) -> None:
        if not isinstance(pattern, Routing):
            raise TypeError(f"RoutingAttention needs a Routing pattern, got {type(pattern).__name__}")
        if kwargs.get("head_chunks", 1) != 1:
            raise ValueError("RoutingAttention computes all heads together: head_chunks must be 1")
        super().__init__(dim, heads, pattern, **kwargs)
        self.routing = RoutingState(heads, pattern.clusters, self.head_dim, decay)
        self.pattern = replace(pattern, state=self.routing)

    @property
    def commitment_loss(self) -> Tensor | None:
        return self.routing.commitment_loss

    def forward(self, x: Tensor, key_mask: Tensor | None = None, pattern: Routing | None = None,
                positions: Tensor | None = None) -> Tensor:
        if pattern is not None and isinstance(pattern, Routing) and pattern.state is not self.routing:
            pattern = replace(pattern, state=self.routing)
        return super().forward(x, key_mask=key_mask, pattern=pattern, positions=positions)
