"""Reformer LSH attention as a data-dependent pattern on the blocked kernel.

Per round (``n_hashes`` rounds), tokens are hashed by random rotations
(``bucket = argmax([xR; -xR])``), sorted by (bucket, position) and cut into chunks of
``bucket_size``; each chunk attends itself and the previous chunk of the same round
(cyclically). Each round is one part of a tiling (its slots are the sorted order), so
rounds are merged by log-sum-exp in one autograd function. A pair met in several rounds
is counted once (Reformer's correction, which lowers its score by ``log`` of the number
of rounds it meets in), here in exact form: it is kept only in the first round that
allows it. The layout depends on q (and k), so it is built per call and per head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from longseq.kernels.blocked import blocked_attention_per_head
from longseq.kernels.plan import Plan, Tiling
from longseq.patterns import Pattern, _check_positive_int

__all__ = ["LSH"]


@dataclass
class _Round:
    """Hash layout of one round for one (batch, head): sorted orders and chunk ids."""

    q_order: Tensor  # (n_chunks * bucket_size,) token at each sorted query position, -1 = padding
    k_order: Tensor
    q_bucket: Tensor | None  # (L,) bucket of each token; None when attend_across_buckets
    k_bucket: Tensor | None
    q_chunk: Tensor  # (L,) chunk of each token in the sorted query order
    k_chunk: Tensor
    self_ok: Tensor | None = None  # (L,) may a token attend itself (no other allowed key)


@dataclass(frozen=True)
class LSH(Pattern):
    """Reformer locality-sensitive-hashing attention.

    ``n_buckets = max(2, 2 * ceil(L / (2 * bucket_size)))``; rotations ``(D, n_buckets/2)``
    per round come from a CPU generator seeded with ``seed`` (identical on every device)
    or, with ``seed=None``, fresh from torch's global RNG at every call. With
    ``shared_qk=True`` the keys are the unit-normalised queries (the ``k`` passed to
    :func:`longseq.attend` is not used, and it must have as many heads as ``q``), and a
    position attends to itself only when it has no other allowed key. ``causal`` adds
    ``j <= i`` in original positions. ``attend_across_buckets=False`` masks pairs from
    different buckets inside a chunk pair.
    """

    bucket_size: int = 64
    n_hashes: int = 4
    causal: bool = False
    shared_qk: bool = True
    attend_across_buckets: bool = True
    seed: int | None = None

    def __post_init__(self) -> None:
        _check_positive_int("bucket_size", self.bucket_size)
        _check_positive_int("n_hashes", self.n_hashes)

    @property
    def supports_gqa(self) -> bool:  # type: ignore[override]
        return not self.shared_qk

    def n_buckets(self, L: int) -> int:
        return max(2, 2 * math.ceil(L / (2 * self.bucket_size)))

    def allowed(self, i: Tensor, j: Tensor) -> Tensor:
        raise ValueError("LSH is data-dependent: use pattern.dense_masks(q, k) for its masks")

    def dense_mask(self, L: int, device=None) -> Tensor:
        raise ValueError("LSH is data-dependent: use pattern.dense_masks(q, k) for its masks")

    # Hashing -----------------------------------------------------------------------
    def rotations(self, D: int, L: int, device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
        """(n_hashes, D, n_buckets/2) random rotations."""
        shape = (self.n_hashes, D, self.n_buckets(L) // 2)
        if self.seed is None:
            return torch.randn(shape, device=device, dtype=dtype)
        gen = torch.Generator().manual_seed(self.seed)
        return torch.randn(shape, generator=gen).to(device=device, dtype=dtype)

    @staticmethod
    def hash(x: Tensor, rotations: Tensor, block: int = 2**20, cols: int = 512) -> Tensor:
        """Buckets (n_hashes, ..., L) of x (..., L, D) under rotations (n_hashes, D, nb/2).

        ``argmax([xR; -xR])`` without forming ``[xR; -xR]``, exactly (ties go to the first
        index, as ``argmax`` over the concatenation does). The projections (``L x nb/2`` per
        round, quadratic since ``nb`` grows with ``L``) never exist whole: they are made
        ``block`` elements at a time (all rounds, ``cols`` directions each: a few MB that stay
        in cache), and a running max and min per row carry across column blocks.
        """
        n_hashes, D, half = rotations.shape
        lead = x.shape[:-2]
        xf = x.detach().reshape(-1, D)  # (N*L, D); buckets are not differentiable
        cols = min(cols, half)
        rot = rotations.detach().permute(1, 0, 2).float()  # (D, n_hashes, half)
        rot_blocks = [(c0, rot[:, :, c0 : c0 + cols].reshape(D, -1)) for c0 in range(0, half, cols)]
        out = torch.empty(n_hashes, xf.shape[0], dtype=torch.long, device=x.device)
        step = max(256, block // (n_hashes * cols))
        buf = torch.empty(step * n_hashes * cols, dtype=torch.float32, device=x.device)  # reused across blocks
        for t0 in range(0, xf.shape[0], step):
            xs = xf[t0 : t0 + step].float()
            for c0, rb in rot_blocks:
                proj = buf[: xs.shape[0] * rb.shape[1]].view(xs.shape[0], rb.shape[1])
                torch.mm(xs, rb, out=proj)
                proj = proj.view(xs.shape[0], n_hashes, -1)  # (rows, n_hashes, cols)
                b_hi, b_arg_hi = _first_extreme(proj, largest=True)
                b_lo, b_arg_lo = _first_extreme(proj, largest=False)
                if c0 == 0:
                    hi, arg_hi, lo, arg_lo = b_hi, b_arg_hi, b_lo, b_arg_lo
                    continue
                up, down = b_hi > hi, b_lo < lo  # strict: an earlier column keeps a tie
                hi, arg_hi = torch.where(up, b_hi, hi), torch.where(up, b_arg_hi + c0, arg_hi)
                lo, arg_lo = torch.where(down, b_lo, lo), torch.where(down, b_arg_lo + c0, arg_lo)
            out[:, t0 : t0 + step] = torch.where(hi >= -lo, arg_hi, arg_lo + half).T
        return out.view(n_hashes, *lead, x.shape[-2])

    def _rounds(self, qb: Tensor, kb: Tensor) -> list[_Round]:
        """Sorted layouts for buckets qb, kb (n_hashes, L) of one (batch, head)."""
        L = qb.shape[-1]
        pos = torch.arange(L, device=qb.device)
        n_slots = math.ceil(L / self.bucket_size) * self.bucket_size
        chunk_of_pos = pos // self.bucket_size

        def order(buckets: Tensor) -> Tensor:
            # padded to whole chunks here, so the plan's slots are this tensor, not a copy
            slots = torch.full((n_slots,), -1, dtype=torch.long, device=qb.device)
            slots[:L] = torch.argsort(buckets * L + pos)
            return slots

        def chunk_of(slots: Tensor) -> Tensor:
            chunk = torch.empty_like(pos)
            chunk[slots[:L]] = chunk_of_pos
            return chunk

        # Buckets are kept (as int32) only where the tile rule reads them.
        keep = (lambda b: b.to(torch.int32)) if not self.attend_across_buckets else (lambda b: None)
        rounds = []
        for r in range(self.n_hashes):
            q_order = order(qb[r])
            k_order = q_order if self.shared_qk else order(kb[r])
            q_chunk = chunk_of(q_order)
            k_chunk = q_chunk if self.shared_qk else chunk_of(k_order)
            q_bucket = keep(qb[r])
            k_bucket = q_bucket if self.shared_qk else keep(kb[r])
            rounds.append(_Round(q_order, k_order, q_bucket, k_bucket, q_chunk, k_chunk))
        return rounds

    def _constraint(self, rd: _Round, i: Tensor, j: Tensor) -> Tensor | None:
        """Bucket and causal rule of one round on original indices; None = no constraint."""
        m = None
        if not self.attend_across_buckets:
            m = rd.q_bucket[i.clamp(min=0)] == rd.k_bucket[j.clamp(min=0)]
        if self.causal:
            m = (j <= i) if m is None else m & (j <= i)
        return m

    def _base_rule(self, rd: _Round):
        """:meth:`_constraint` as a rule (no self rule)."""
        def rule(i: Tensor, j: Tensor) -> Tensor:
            m = self._constraint(rd, i, j)
            if m is None:
                m = torch.ones(torch.broadcast_shapes(i.shape, j.shape), dtype=torch.bool, device=i.device)
            return m
        return rule

    def _meets(self, rd: _Round, n_chunks: int, i: Tensor, j: Tensor) -> Tensor:
        """Do i and j share a chunk pair in this round (same or previous chunk)?"""
        d = (rd.q_chunk[i.clamp(min=0)] - rd.k_chunk[j.clamp(min=0)]).remainder(n_chunks)
        return d <= (1 if n_chunks > 1 else 0)

    def _rule(self, rd: _Round):
        """The mask a round's tiles use (as :meth:`dense_masks` reports it)."""
        base = self._base_rule(rd)
        if not self.shared_qk:
            return base

        def rule(i: Tensor, j: Tensor) -> Tensor:
            m = base(i, j)
            return m & ((i != j) | rd.self_ok[i.clamp(min=0)])
        return rule

    def _self_ok(self, rd: _Round, plan: Plan) -> Tensor:
        """Tokens with no allowed key but themselves in this round."""
        L = plan.L
        q = plan.query_index(rd.q_order.device)
        kidx = plan.key_index(rd.q_order.device)
        if self.attend_across_buckets and not self.causal:
            # Every key of the chunk pair is allowed: a token is alone iff its span holds one real key.
            n_keys = (plan.block_keys(kidx, 0, plan.n_blocks) >= 0).sum(-1)  # (n_blocks,)
            alone = (n_keys <= 1)[:, None].expand_as(q)
            ok = torch.zeros(L, dtype=torch.bool, device=q.device)
            ok[q[q >= 0]] = alone[q >= 0]
            return ok
        base = self._base_rule(rd)
        has_other = torch.zeros(L, dtype=torch.bool, device=rd.q_order.device)
        step = max(1, 2**22 // (plan.block * plan.span))
        for n0 in range(0, plan.n_blocks, step):
            n1 = min(plan.n_blocks, n0 + step)
            qi, kj = q[n0:n1, :, None], plan.block_keys(kidx, n0, n1)[:, None, :]
            other = (base(qi, kj) & (kj >= 0) & (qi != kj)).any(-1)  # (n, bq)
            valid = q[n0:n1] >= 0
            has_other[q[n0:n1][valid]] = other[valid]
        return ~has_other

    def _dedup_rule(self, rounds: list[_Round], r: int, n_chunks: int):
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
        across = self.attend_across_buckets
        left = self.bucket_size if n_chunks > 1 else 0  # a query's own key column is left + row
        if self.shared_qk:
            # The diagonal is allowed in a round iff the token is alone there: keep its first such round.
            earlier_alone = torch.zeros_like(rd.self_ok)
            for x in rounds[:r]:
                earlier_alone |= x.self_ok
            diag_here = rd.self_ok & ~earlier_alone

        def tile_rule(i: Tensor, j: Tensor) -> Tensor:
            """i (n, bq, 1), j (n, 1, span) original indices of a tile batch (-1 = padding)."""
            m = self._constraint(rd, i, j)
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
            if self.shared_qk:
                m = m.contiguous() if m.shape == (i.shape[0], i.shape[1], j.shape[2]) else \
                    m.expand(i.shape[0], i.shape[1], j.shape[2]).clone()
                m.diagonal(offset=left, dim1=1, dim2=2).copy_(diag_here[i0[:, :, 0]])
            return m
        return tile_rule

    def _tiling(self, rounds: list[_Round], L: int, device: torch.device) -> Tiling:
        bs = self.bucket_size
        n_chunks = math.ceil(L / bs)
        parts = []
        for rd in rounds:
            plan = Plan(L=L, block=bs, n_blocks=n_chunks, span=2 * bs if n_chunks > 1 else bs,
                        left=bs if n_chunks > 1 else 0, slots=rd.q_order,
                        key_slots=None if rd.k_order is rd.q_order else rd.k_order, wrap=n_chunks > 1)
            if self.shared_qk:
                rd.self_ok = self._self_ok(rd, plan)
            plan.regular = torch.zeros(n_chunks, dtype=torch.bool, device=device)
            parts.append(plan)
        for r, plan in enumerate(parts):  # after every round's self rule is known
            plan.rule = self._dedup_rule(rounds, r, n_chunks)
        return Tiling(parts)

    def layout(self, q: Tensor, k: Tensor, rotations: Tensor | None = None) -> list[list[list[_Round]]]:
        """Per (batch, head): the rounds' sorted layouts. q, k (B, H, L, D)."""
        L, D = q.shape[-2], q.shape[-1]
        R = self.rotations(D, L, q.device) if rotations is None else rotations
        qb = self.hash(q, R)  # (n_hashes, B, H, L)
        kb = qb if self.shared_qk else self.hash(k, R)
        return [[self._rounds(qb[:, b, h], kb[:, b, h]) for h in range(q.shape[1])] for b in range(q.shape[0])]

    # Entry points ------------------------------------------------------------------
    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, key_mask: Tensor | None, bias, dropout_p: float,
               scale: float, rotations: Tensor | None = None) -> Tensor:
        """Called by :func:`longseq.attend` (k, v already expanded to q's heads)."""
        if bias is not None:
            raise ValueError("LSH attention does not take a positional bias; use RoPE or absolute embeddings")
        L = q.shape[2]
        # Shared QK: the layout hashes q alone, and the kernel normalises the keys per head.
        layouts = self.layout(q.detach(), q.detach() if self.shared_qk else k.detach(), rotations)
        tilings = [[self._tiling(rounds, L, q.device) for rounds in row] for row in layouts]
        return blocked_attention_per_head(q, None if self.shared_qk else k, v, tilings, pattern=self,
                                          key_mask=key_mask, scale=scale, dropout_p=dropout_p,
                                          normalize_keys=self.shared_qk)

    def dense_masks(self, q: Tensor, k: Tensor | None = None, rotations: Tensor | None = None) -> Tensor:
        """(n_hashes, B, H, L, L) bool masks each round actually used (self rule included).

        Needs ``seed`` (or explicit ``rotations``) to reproduce the layout of an
        :func:`longseq.attend` call. For tests and small inputs only.
        """
        B, H, L, D = q.shape
        if self.shared_qk or k is None:
            k = F.normalize(q, dim=-1)
        layouts = self.layout(q, k, rotations)
        n_chunks = math.ceil(L / self.bucket_size)
        idx = torch.arange(L, device=q.device)
        out = torch.zeros(self.n_hashes, B, H, L, L, dtype=torch.bool, device=q.device)
        for b in range(B):
            for h in range(H):
                rounds = layouts[b][h]
                self._tiling(rounds, L, q.device)  # fills self_ok
                for r, rd in enumerate(rounds):
                    i, j = idx[:, None], idx[None, :]
                    out[r, b, h] = self._meets(rd, n_chunks, i, j) & self._rule(rd)(i, j)
        return out


_SUB = 32  # width of the sub-blocks _first_extreme scans with value-only reductions


def _first_extreme(p: Tensor, largest: bool) -> tuple[Tensor, Tensor]:
    """``p.max(-1)`` (or ``min``) of p (..., n): values and first indices, as torch returns them.

    ``max(dim)`` with indices is about 10x slower per element on CPU than the value-only
    ``amax``, so values come from ``amax`` over sub-blocks of 32, and indices are searched
    only inside the first sub-block that holds the extreme (which holds its first index).
    """
    n = p.shape[-1]
    if n % _SUB or n < 2 * _SUB:
        return p.max(-1) if largest else p.min(-1)
    sub = p.unflatten(-1, (n // _SUB, _SUB))  # (..., n/32, 32)
    per_sub = sub.amax(-1) if largest else sub.amin(-1)
    value, which = per_sub.max(-1) if largest else per_sub.min(-1)
    flat = sub.reshape(-1, n // _SUB, _SUB)
    inside = flat[torch.arange(flat.shape[0], device=p.device), which.reshape(-1)].view(*which.shape, _SUB)
    return value, which * _SUB + (inside.argmax(-1) if largest else inside.argmin(-1))
