"""Routing Transformer attention as a pattern: shared clusters of queries and keys plus a window.

Queries and keys are unit-normalised and routed to their nearest centroid (cosine
similarity); a query attends the keys routed to its own cluster and, as in the Routing
Transformer (Roy et al. 2021), the keys within ``window`` positions. Centroids come from
an owned state object (:class:`longseq.layers.RoutingState`, online k-means with EMA
updates) when the pattern carries one, and otherwise from a few k-means steps on the
call's own queries and keys. :mod:`longseq.kernels.routing` computes the attention.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from longseq.patterns_base import Pattern, check_bool, check_int, set_fields

__all__ = ["Routing"]


@dataclass(frozen=True)
class Routing(Pattern):
    """Attention within k-means clusters of queries and keys, united with a local window.

    Query ``i`` attends key ``j`` iff ``cluster(q_i) == cluster(k_j)`` or ``|i - j| <= window``
    (and ``j <= i`` when ``causal``), all in one softmax. ``clusters`` centroids per head
    ``(H, clusters, D)``; a token's cluster is ``argmax`` of its unit vector against them.

    ``state``: an object with ``centroids_for(pattern, q, k, key_mask) -> (H, clusters, D)``
    (such as :class:`longseq.layers.RoutingState`, which owns the centroids, initialises
    them from data on its first call and moves them by EMA while training). Not part of
    the pattern's identity (equality and hash ignore it). Without a state, each call fits
    centroids to its own q and k by ``iters`` k-means steps from evenly spaced tokens.
    Cost: ``O(L * window)`` for the window plus the sum over clusters of
    ``queries x keys`` in it (``O(L^2 / clusters)`` when clusters are balanced).
    """

    clusters: int
    window: int = 0
    causal: bool = False
    iters: int = 2
    state: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        set_fields(self, clusters=check_int("Routing.clusters", self.clusters),
                   window=check_int("Routing.window", self.window, 0),
                   causal=check_bool("Routing.causal", self.causal),
                   iters=check_int("Routing.iters", self.iters, 0))
        if self.state is not None and not callable(getattr(self.state, "centroids_for", None)):
            raise TypeError(f"Routing.state must have a centroids_for method, got {type(self.state).__name__}")

    def allowed(self, i: Tensor, j: Tensor) -> Tensor:
        raise ValueError("Routing is data-dependent: use pattern.dense_masks(q, k) for its masks")

    def dense_mask(self, L: int, device=None) -> Tensor:
        raise ValueError("Routing is data-dependent: use pattern.dense_masks(q, k) for its masks")

    @staticmethod
    def unit(x: Tensor) -> Tensor:
        """Unit vectors in float32 at least (what centroids are compared with)."""
        return F.normalize(x.to(torch.promote_types(x.dtype, torch.float32)), dim=-1)

    @staticmethod
    def assign(x: Tensor, centroids: Tensor) -> Tensor:
        """Clusters ``(B, H, L)`` of x ``(B, H, L, D)`` under centroids ``(H, C, D)``."""
        with torch.no_grad():
            xu = Routing.unit(x.detach())
            return torch.einsum("bhld,hcd->bhlc", xu, centroids.to(xu.dtype)).argmax(-1)

    def kmeans(self, q: Tensor, k: Tensor, key_mask: Tensor | None = None) -> Tensor:
        """Centroids ``(H, clusters, D)`` fitted to the unit queries and real keys of q, k
        ``(B, H, L, D)``: ``clusters`` evenly spaced tokens, then ``iters`` Lloyd steps
        (a cluster left empty keeps its centroid). Deterministic; no gradient."""
        B, H, L, D = q.shape
        with torch.no_grad():
            qu, ku = self.unit(q.detach()), self.unit(k.detach())
            x = torch.cat([qu, ku], 2).transpose(0, 1)  # (H, B, 2L, D)
            real = torch.ones(B, 2 * L, dtype=torch.bool, device=q.device)
            if key_mask is not None:
                real[:, L:] = key_mask
            x = x[:, real]  # (H, N, D): every query, the admitted keys
            pick = torch.linspace(0, x.shape[1] - 1, self.clusters, device=q.device).round().long()
            c = x[:, pick]
            for _ in range(self.iters):
                a = torch.einsum("hnd,hcd->hnc", x, c).argmax(-1)  # (H, N)
                total = torch.zeros_like(c).scatter_add_(1, a[..., None].expand_as(x), x)
                c = torch.where(total.norm(dim=-1, keepdim=True) > 0, F.normalize(total, dim=-1), c)
            return c

    def centroids_for(self, q: Tensor, k: Tensor, key_mask: Tensor | None = None) -> Tensor:
        """Centroids ``(H, clusters, D)`` of a call: the state's, or fitted by :meth:`kmeans`."""
        if self.state is not None:
            return self.state.centroids_for(self, q, k, key_mask)
        return self.kmeans(q, k, key_mask)

    def dense_masks(self, q: Tensor, k: Tensor, key_mask: Tensor | None = None,
                    centroids: Tensor | None = None) -> Tensor:
        """``(B, H, L, L)`` bool: cluster-or-window mask for q, k ``(B, H, L, D)``, with
        ``key_mask`` ``(B, L)`` applied. ``centroids`` default to a state-free fit
        (:meth:`kmeans`), what :func:`longseq.attend` uses for a pattern without state.
        For tests and small inputs only."""
        L = q.shape[2]
        c = self.kmeans(q, k, key_mask) if centroids is None else centroids
        cq, ck = self.assign(q, c), self.assign(k, c)
        idx = torch.arange(L, device=q.device)
        d = idx[:, None] - idx[None, :]
        m = (cq[..., :, None] == ck[..., None, :]) | (d.abs() <= self.window)
        if self.causal:
            m = m & (d >= 0)
        if key_mask is not None:
            m = m & key_mask[:, None, None, :]
        return m
