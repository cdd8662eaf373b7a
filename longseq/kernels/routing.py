"""Routing attention: a banded window part and a per-cluster part, merged by log-sum-exp.

The window part runs on query blocks against their key band (``O(L * window)``). The
cluster part gathers, for each cluster, its queries and keys (sorted by cluster, padded
to the largest count over batch and heads) and keeps only the pairs the window part has
not already counted, so the merge is exactly one softmax over the union.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from torch import Tensor

from longseq.kernels.bias import TileBias
from longseq.kernels.registry import register_attention
from longseq.patterns_routing import Routing

__all__ = ["routing_attention"]

_WINDOW_BLOCK = 64
#: Query-key pairs of one cluster chunk (B x H x queries x keys): bounds the transient
#: score, mask and probability tensors to tens of MB whatever a cluster's size.
_PAIR_BUDGET = 1 << 22


def _partial(q: Tensor, k: Tensor, v: Tensor, ok: Tensor, scale: float, dropout_p: float) -> tuple[Tensor, Tensor]:
    """Softmax attention over the allowed keys: normalised output and log-sum-exp
    (``-inf`` and a zero output for rows without a key)."""
    s = (q @ k.transpose(-1, -2) * scale).masked_fill(~ok, float("-inf"))
    m = s.amax(-1, keepdim=True).detach()
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    e = torch.exp(s - m)
    den = e.sum(-1, keepdim=True)
    has = den > 0
    # no logsumexp: its gradient on a row without keys is NaN even when multiplied by 0
    lse = torch.where(has, m + torch.log(torch.where(has, den, torch.ones_like(den))), float("-inf"))
    p = e / torch.where(has, den, torch.ones_like(den))
    if dropout_p > 0:
        p = F.dropout(p, dropout_p)
    return p @ v, lse


def _gather_rows(x: Tensor, idx: Tensor) -> Tensor:
    """x (B, H, L, D), idx (B, H, n) -> (B, H, n, D)."""
    return x.gather(2, idx[..., None].expand(*idx.shape, x.shape[-1]))


def _cluster_chunk(qg: Tensor, kg: Tensor, vg: Tensor, qi: Tensor, kj: Tensor, q_ok: Tensor, k_ok: Tensor,
                   window: int, causal: bool, scale: float, dropout_p: float) -> tuple[Tensor, Tensor]:
    """One block of a cluster's queries against all of its keys: the pairs the window part
    has not counted. qg ``(B, H, n, D)`` at positions qi ``(B, H, n)``; kg, vg ``(B, H, m, D)``
    at kj ``(B, H, m)``; q_ok, k_ok mark real members (and admitted keys)."""
    d = qi[..., :, None] - kj[..., None, :]
    ok = q_ok[..., :, None] & k_ok[..., None, :] & (d.abs() > window)  # window pairs counted there
    if causal:
        ok = ok & (d >= 0)
    return _partial(qg, kg, vg, ok, scale, dropout_p)


def _window_part(pattern: Routing, q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None, scale: float,
                 dropout_p: float) -> tuple[Tensor, Tensor]:
    L, w = q.shape[2], min(pattern.window, q.shape[2])
    outs, lses = [], []
    for s0 in range(0, L, _WINDOW_BLOCK):
        s1 = min(L, s0 + _WINDOW_BLOCK)
        k0, k1 = max(0, s0 - w), min(L, s1 + (0 if pattern.causal else w))
        i = torch.arange(s0, s1, device=q.device)[:, None]
        j = torch.arange(k0, k1, device=q.device)[None, :]
        ok = (i - j).abs() <= w
        if pattern.causal:
            ok = ok & (j <= i)
        ok = ok[None, None]
        if key_mask is not None:
            ok = ok & key_mask[:, None, None, k0:k1]
        o, lse = _partial(q[:, :, s0:s1], k[:, :, k0:k1], v[:, :, k0:k1], ok, scale, dropout_p)
        outs.append(o)
        lses.append(lse)
    return torch.cat(outs, 2), torch.cat(lses, 2)


def _cluster_part(pattern: Routing, q: Tensor, k: Tensor, v: Tensor, cq: Tensor, ck: Tensor,
                  key_mask: Tensor | None, scale: float, dropout_p: float) -> tuple[Tensor, Tensor]:
    B, H, L, D = q.shape
    C = pattern.clusters
    pos = torch.arange(L, device=q.device)
    q_order, k_order = torch.argsort(cq * L + pos), torch.argsort(ck * L + pos)  # by (cluster, position)
    arange_c = torch.arange(C, device=q.device)
    q_count = (cq[..., None] == arange_c).sum(2)  # (B, H, C)
    k_count = (ck[..., None] == arange_c).sum(2)
    q_start, k_start = q_count.cumsum(-1) - q_count, k_count.cumsum(-1) - k_count
    q_max, k_max = q_count.amax((0, 1)).tolist(), k_count.amax((0, 1)).tolist()
    outs, lses, dests = [], [], []
    for c in range(C):
        if q_max[c] == 0 or k_max[c] == 0:
            continue

        def members(order: Tensor, start: Tensor, count: Tensor, n: int) -> tuple[Tensor, Tensor]:
            r = torch.arange(n, device=q.device)
            slot = (start[..., c, None] + r).clamp(max=L - 1)
            return order.gather(2, slot), r < count[..., c, None]  # positions, real member

        qi, q_ok = members(q_order, q_start, q_count, q_max[c])
        kj, k_ok = members(k_order, k_start, k_count, k_max[c])
        kg, vg = _gather_rows(k, kj), _gather_rows(v, kj)
        km = k_ok if key_mask is None else k_ok & key_mask.gather(1, kj.flatten(1)).view_as(kj)
        rows = max(1, _PAIR_BUDGET // (B * H * k_max[c]))
        for r0 in range(0, q_max[c], rows):
            r1 = min(q_max[c], r0 + rows)
            n = k_max[c]
            if pattern.causal:  # a cluster's keys are in position order: drop those after the chunk's last query
                last = torch.where(q_ok[..., r0:r1], qi[..., r0:r1], -1).amax(-1, keepdim=True)
                n = max(1, int(((kj <= last) & k_ok).sum(-1).max()))
            args = (_gather_rows(q, qi[..., r0:r1]), kg[..., :n, :], vg[..., :n, :], qi[..., r0:r1], kj[..., :n],
                    q_ok[..., r0:r1], km[..., :n])
            if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
                # recomputed in backward: only the chunk's output and log-sum-exp are kept,
                # so a large cluster costs time, not O(queries x keys) memory
                o, lse = checkpoint(_cluster_chunk, *args, pattern.window, pattern.causal, scale, dropout_p,
                                    use_reentrant=False)
            else:
                o, lse = _cluster_chunk(*args, pattern.window, pattern.causal, scale, dropout_p)
            outs.append(o)
            lses.append(lse)
        dests.append(torch.where(q_ok, qi, L))  # padding rows go to a spare row, dropped below
    if not outs:  # no cluster holds both a query and a key
        return torch.zeros_like(q), torch.full((B, H, L, 1), float("-inf"), dtype=q.dtype, device=q.device)
    dest = torch.cat(dests, 2)[..., None]
    o, l = torch.cat(outs, 2), torch.cat(lses, 2)  # under autocast their dtype may differ from q's
    out = o.new_zeros(B, H, L + 1, D).scatter(2, dest.expand(-1, -1, -1, D), o)
    lse = l.new_full((B, H, L + 1, 1), float("-inf")).scatter(2, dest, l)
    return out[:, :, :L], lse[:, :, :L]


@register_attention(Routing, tiles=False, how="k-means routing: attention within each cluster plus a local window, one softmax")
def routing_attention(pattern: Routing, q: Tensor, k: Tensor, v: Tensor, *, key_mask: Tensor | None,
                      bias: TileBias | None, dropout_p: float, scale: float,
                      centroids: Tensor | None = None) -> Tensor:
    """:func:`longseq.attend` for a :class:`~longseq.patterns_routing.Routing` pattern.

    q, k, v ``(B, H, L, D)`` (k, v already expanded to q's heads), key_mask ``(B, L)``;
    returns ``(B, H, L, D)``. ``centroids`` ``(H, clusters, D)`` replace the pattern's
    own (state or per-call fit).
    """
    if bias is not None:
        raise ValueError("Routing attention does not take a positional bias; use RoPE or absolute embeddings")
    c = pattern.centroids_for(q, k, key_mask) if centroids is None else centroids
    if c.shape != (q.shape[1], pattern.clusters, q.shape[3]):
        raise ValueError(f"Routing centroids must have shape (H, clusters, D) = "
                         f"{(q.shape[1], pattern.clusters, q.shape[3])}, got {tuple(c.shape)}")
    cq, ck = pattern.assign(q, c), pattern.assign(k, c)
    acc = torch.promote_types(q.dtype, torch.float32)  # softmax in float32 for half inputs
    qf, kf, vf = (t.to(acc) for t in (q, k, v))
    o1, l1 = _window_part(pattern, qf, kf, vf, key_mask, scale, dropout_p)
    o2, l2 = _cluster_part(pattern, qf, kf, vf, cq, ck, key_mask, scale, dropout_p)
    m = torch.maximum(l1, l2)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m)).detach()
    w1, w2 = torch.exp(l1 - m), torch.exp(l2 - m)
    den = w1 + w2
    out = (w1 * o1 + w2 * o2) / torch.where(den > 0, den, torch.ones_like(den))
    return out.to(q.dtype)
