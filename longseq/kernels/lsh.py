"""Reformer LSH attention on the blocked kernel: one part per hash round, merged exactly.

:class:`~longseq.patterns.LSH` says who attends whom (hashing, sorted chunks). Here each
round of one (batch, head) becomes one part of a tiling whose slots are that round's
sorted order, and :func:`~longseq.kernels.blocked.blocked_attention_per_head` merges the
rounds by log-sum-exp in one autograd function. A pair met in several rounds is counted
once (Reformer's correction, which lowers its score by ``log`` of the number of rounds
it meets in), here in exact form: it is kept only in the first round that allows it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from longseq.kernels.bias import TileBias
from longseq.kernels.blocked import blocked_attention_per_head
from longseq.kernels.plan import Plan, Rule, Tiling
from longseq.kernels.registry import register_attention
from longseq.patterns_lsh import LSH, LSHRound

__all__ = ["lsh_attention", "lsh_tiling"]


def _self_ok(pattern: LSH, rd: LSHRound, plan: Plan) -> Tensor:
    """Tokens with no allowed key but themselves in this round."""
    L = plan.L
    q = plan.query_index(rd.q_order.device)
    kidx = plan.key_index(rd.q_order.device)
    if pattern.attend_across_buckets and not pattern.causal:
        # Every key of the chunk pair is allowed: a token is alone iff its span holds one real key.
        n_keys = (plan.block_keys(kidx, 0, plan.n_blocks) >= 0).sum(-1)  # (n_blocks,)
        alone = (n_keys <= 1)[:, None].expand_as(q)
        ok = torch.zeros(L, dtype=torch.bool, device=q.device)
        ok[q[q >= 0]] = alone[q >= 0]
        return ok
    base = pattern.base_rule(rd)
    has_other = torch.zeros(L, dtype=torch.bool, device=rd.q_order.device)
    step = max(1, 2**22 // (plan.block * plan.span))
    for n0 in range(0, plan.n_blocks, step):
        n1 = min(plan.n_blocks, n0 + step)
        qi, kj = q[n0:n1, :, None], plan.block_keys(kidx, n0, n1)[:, None, :]
        other = (base(qi, kj) & (kj >= 0) & (qi != kj)).any(-1)  # (n, bq)
        valid = q[n0:n1] >= 0
        has_other[q[n0:n1][valid]] = other[valid]
    return ~has_other


def _dedup_rule(pattern: LSH, rounds: list[LSHRound], r: int, n_chunks: int) -> Rule:
    """Round ``r``'s tile rule with each pair kept only in the first round that allows it.

    This is Reformer's correction (a pair met in ``c`` rounds has its score lowered by
    ``log c`` in each) in exact form: merging the rounds' softmaxes by log-sum-exp then
    counts every allowed pair exactly once. Dropping repeats instead of down-weighting
    them needs comparisons with the earlier rounds only, and no score bias.
    """
    rd = rounds[r]
    small = torch.int16 if n_chunks < 2**15 else torch.int32
    # A pair meets in round t iff the key's chunk is the query's or the one before
    # (cyclically): c_t(j) == c_t(i) or (c_t(j) + 1) % n == c_t(i). Two equalities,
    # no subtraction, and the wrap-around comes free.
    qc = [x.q_chunk.to(small) for x in rounds[:r]]
    kc = [x.k_chunk.to(small) for x in rounds[:r]]
    kn = [((x.k_chunk + 1) % n_chunks).to(small) for x in rounds[:r]]
    across = pattern.attend_across_buckets
    # a query's own key column is left + row; several chunks mean bucket_size < L
    left = pattern.bucket_size if n_chunks > 1 else 0
    if pattern.shared_qk:
        # The diagonal is allowed in a round iff the token is alone there: keep its first such round.
        earlier_alone = torch.zeros_like(rd.self_ok)
        for x in rounds[:r]:
            earlier_alone |= x.self_ok
        diag_here = rd.self_ok & ~earlier_alone

    def tile_rule(i: Tensor, j: Tensor) -> Tensor:
        """i (n, bq, 1), j (n, 1, span) original indices of a tile batch (-1 = padding)."""
        m = pattern.constraint(rd, i, j)
        i0, j0 = i.clamp(min=0), j.clamp(min=0)
        met = None
        for t in range(r):
            meet = None
            if n_chunks > 2:  # with one or two chunks every pair meets in every round
                ci = qc[t][i0]
                meet = (kc[t][j0] == ci).logical_or_(kn[t][j0] == ci)
            if not across:
                same = rounds[t].q_bucket[i0] == rounds[t].k_bucket[j0]
                meet = same if meet is None else meet.logical_and_(same)
            if meet is None:  # met in every earlier round: nothing is new here
                met = torch.ones(torch.broadcast_shapes(i.shape, j.shape), dtype=torch.bool, device=i.device)
                break
            met = meet if met is None else met.logical_or_(meet)
        if met is not None:
            m = met.logical_not_() if m is None else m & met.logical_not_()
        if m is None:
            m = torch.ones(torch.broadcast_shapes(i.shape, j.shape), dtype=torch.bool, device=i.device)
        if pattern.shared_qk:
            m = m.contiguous() if m.shape == (i.shape[0], i.shape[1], j.shape[2]) else \
                m.expand(i.shape[0], i.shape[1], j.shape[2]).clone()
            m.diagonal(offset=left, dim1=1, dim2=2).copy_(diag_here[i0[:, :, 0]])
        return m
    return tile_rule


def lsh_tiling(pattern: LSH, rounds: list[LSHRound], L: int, device: torch.device) -> Tiling:
    """One blocked-kernel part per round of one (batch, head): chunk ``c`` of the sorted
    order attends chunks ``c`` and ``c - 1`` (cyclically), deduplicated across rounds."""
    bs = pattern.chunk_size(L)
    n_chunks = pattern.n_chunks(L)
    parts = []
    for rd in rounds:
        plan = Plan(L=L, block=bs, n_blocks=n_chunks, span=2 * bs if n_chunks > 1 else bs,
                    left=bs if n_chunks > 1 else 0, slots=rd.q_order,
                    key_slots=None if rd.k_order is rd.q_order else rd.k_order, wrap=n_chunks > 1)
        if pattern.shared_qk:
            rd.self_ok = _self_ok(pattern, rd, plan)
        plan.regular = torch.zeros(n_chunks, dtype=torch.bool, device=device)
        parts.append(plan)
    for r, plan in enumerate(parts):  # after every round's self rule is known
        plan.rule = _dedup_rule(pattern, rounds, r, n_chunks)
    return Tiling(parts)


@register_attention(LSH)
def lsh_attention(pattern: LSH, q: Tensor, k: Tensor, v: Tensor, *, key_mask: Tensor | None,
                  bias: TileBias | None, dropout_p: float, scale: float,
                  rotations: Tensor | None = None) -> Tensor:
    """:func:`longseq.attend` for an :class:`~longseq.patterns.LSH` pattern.

    q, k, v ``(B, H, L, D)`` (k, v already expanded to q's heads; k unused with
    ``shared_qk``), ``key_mask`` ``(B, L)``; returns ``(B, H, L, D)``. ``rotations``
    ``(n_hashes, D, n_buckets/2)`` replaces the pattern's own (to reproduce a layout).
    """
    if bias is not None:
        raise ValueError("LSH attention does not take a positional bias; use RoPE or absolute embeddings")
    L = q.shape[2]
    # Shared QK: the layout hashes q alone, and the kernel normalises the keys per head.
    layouts = pattern.layout(q.detach(), q.detach() if pattern.shared_qk else k.detach(), rotations)
    tilings = [[lsh_tiling(pattern, rounds, L, q.device) for rounds in row] for row in layouts]
    return blocked_attention_per_head(q, None if pattern.shared_qk else k, v, tilings, pattern=pattern,
                                      key_mask=key_mask, scale=scale, dropout_p=dropout_p,
                                      normalize_keys=pattern.shared_qk)
