"""Reformer LSH attention as a data-dependent pattern on the blocked kernel.

Per round (``n_hashes`` rounds), tokens are hashed by random rotations
(``bucket = argmax([xR; -xR])``), sorted by (bucket, position) and cut into chunks of
``bucket_size``; each chunk attends itself and the previous chunk of the same round
(cyclically). Each round is one part of a tiling (its slots are the sorted order), so
rounds are merged by log-sum-exp in one autograd function. A pair met in several rounds
is counted once: its score carries ``-log(number of rounds it meets in)`` (Reformer's
correction). The layout depends on q (and k), so it is built per call and per head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from longseq.kernels.blocked import blocked_attention
from longseq.kernels.plan import Plan, Tiling
from longseq.patterns import Pattern, _check_positive_int

__all__ = ["LSH"]


@dataclass
class _Round:
    """Hash layout of one round for one (batch, head): sorted orders and chunk ids."""

    q_order: Tensor  # (L,) token at each sorted query position
    k_order: Tensor
    q_bucket: Tensor  # (L,) bucket of each token
    k_bucket: Tensor
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
    def hash(x: Tensor, rotations: Tensor, chunk: int = 2**23) -> Tensor:
        """Buckets (n_hashes, ..., L) of x (..., L, D) under rotations (n_hashes, D, nb/2).

        ``argmax([xR; -xR])`` without forming ``[xR; -xR]``, in chunks of tokens so the
        ``L x nb/2`` projections (quadratic, since ``nb`` grows with ``L``) never exist whole.
        """
        half = rotations.shape[-1]
        lead = x.shape[:-2]
        xf = x.reshape(-1, x.shape[-2], x.shape[-1])  # (N, L, D)
        out = torch.empty(rotations.shape[0], *xf.shape[:2], dtype=torch.long, device=x.device)
        step = max(1, chunk // max(1, half * xf.shape[0]))
        for r in range(rotations.shape[0]):
            R = rotations[r].float()
            for t0 in range(0, xf.shape[1], step):
                proj = xf[:, t0 : t0 + step].float() @ R  # (N, t, nb/2)
                hi, arg_hi = proj.max(-1)
                lo, arg_lo = proj.min(-1)
                # ties go to the first half, as argmax over the concatenation does
                out[r, :, t0 : t0 + step] = torch.where(hi >= -lo, arg_hi, arg_lo + half)
        return out.reshape(rotations.shape[0], *lead, x.shape[-2])

    def _rounds(self, qb: Tensor, kb: Tensor) -> list[_Round]:
        """Sorted layouts for buckets qb, kb (n_hashes, L) of one (batch, head)."""
        L = qb.shape[-1]
        pos = torch.arange(L, device=qb.device)
        rounds = []
        for r in range(self.n_hashes):
            q_order = torch.argsort(qb[r] * L + pos)
            k_order = q_order if self.shared_qk else torch.argsort(kb[r] * L + pos)
            q_chunk = torch.empty_like(pos)
            q_chunk[q_order] = pos // self.bucket_size
            k_chunk = q_chunk if self.shared_qk else torch.empty_like(pos)
            if not self.shared_qk:
                k_chunk[k_order] = pos // self.bucket_size
            rounds.append(_Round(q_order, k_order, qb[r], kb[r], q_chunk, k_chunk))
        return rounds

    def _base_rule(self, rd: _Round):
        """Bucket and causal rule of one round, on original indices (no self rule)."""
        def rule(i: Tensor, j: Tensor) -> Tensor:
            m = torch.ones(torch.broadcast_shapes(i.shape, j.shape), dtype=torch.bool, device=i.device)
            if not self.attend_across_buckets:
                m = m & (rd.q_bucket[i.clamp(min=0)] == rd.k_bucket[j.clamp(min=0)])
            if self.causal:
                m = m & (j <= i)
            return m
        return rule

    def _meets(self, rd: _Round, n_chunks: int, i: Tensor, j: Tensor) -> Tensor:
        """Do i and j share a chunk pair in this round (same or previous chunk)?"""
        d = (rd.q_chunk[i.clamp(min=0)] - rd.k_chunk[j.clamp(min=0)]).remainder(n_chunks)
        return d <= (1 if n_chunks > 1 else 0)

    def _rule(self, rd: _Round):
        base = self._base_rule(rd)
        if not self.shared_qk:
            return base

        def rule(i: Tensor, j: Tensor) -> Tensor:
            m = base(i, j)
            return m & ((i != j) | rd.self_ok[i.clamp(min=0)])
        return rule

    def _self_ok(self, rd: _Round, plan: Plan) -> Tensor:
        """Tokens with no allowed key but themselves in this round (chunked over blocks)."""
        L = plan.L
        base = self._base_rule(rd)
        has_other = torch.zeros(L, dtype=torch.bool, device=rd.q_order.device)
        q = plan.query_index(has_other.device)
        kidx = plan.key_index(has_other.device)
        step = max(1, 2**22 // (plan.block * plan.span))
        for n0 in range(0, plan.n_blocks, step):
            n1 = min(plan.n_blocks, n0 + step)
            qi, kj = q[n0:n1, :, None], plan.block_keys(kidx, n0, n1)[:, None, :]
            other = (base(qi, kj) & (kj >= 0) & (qi != kj)).any(-1)  # (n, bq)
            valid = q[n0:n1] >= 0
            has_other[q[n0:n1][valid]] = other[valid]
        return ~has_other

    def _count_bias(self, rounds: list[_Round], n_chunks: int):
        """Additive ``-log(count)`` of the rounds in which each tile pair meets.

        All rounds are compared at once on small integers: a pair meets in a round when its
        key's chunk is the query's chunk or the one before (cyclically). Causality is the
        same in every round, so it never changes a count where the pair is allowed; the
        diagonal counts the rounds in which a token may attend itself.
        """
        device = rounds[0].q_chunk.device
        small = torch.int16 if n_chunks < 2**15 else torch.int32
        qc = torch.stack([rd.q_chunk for rd in rounds]).to(small)  # (R, L)
        kc = torch.stack([rd.k_chunk for rd in rounds]).to(small)
        qb = kb = None
        if not self.attend_across_buckets:
            qb = torch.stack([rd.q_bucket for rd in rounds]).to(torch.int32)
            kb = torch.stack([rd.k_bucket for rd in rounds]).to(torch.int32)
        self_count = None
        if self.shared_qk:
            self_count = torch.stack([rd.self_ok for rd in rounds]).sum(0).to(torch.int8)  # (L,)
        neg_log = -torch.arange(1, len(rounds) + 1, device=device, dtype=torch.float32).log()

        def extra(qi: Tensor, kj: Tensor) -> Tensor:
            qi0, kj0 = qi.clamp(min=0), kj.clamp(min=0)
            if n_chunks <= 2:  # every chunk pair meets
                meets = torch.ones((len(rounds), *qi.shape, kj.shape[-1]), dtype=torch.bool, device=device)
            else:
                d = qc[:, qi0].unsqueeze(-1) - kc[:, kj0].unsqueeze(-2)  # (R, n, bq, span)
                meets = (d == 0) | (d == 1) | (d == 1 - n_chunks)
            if qb is not None:
                meets &= qb[:, qi0].unsqueeze(-1) == kb[:, kj0].unsqueeze(-2)
            count = meets.sum(0, dtype=torch.int8)
            if self_count is not None:
                diag = qi.unsqueeze(-1) == kj.unsqueeze(-2)
                count = torch.where(diag, self_count[qi0].unsqueeze(-1), count)
            return neg_log[(count.long() - 1).clamp(min=0)]
        return extra

    def _tiling(self, rounds: list[_Round], L: int, device: torch.device) -> Tiling:
        bs = self.bucket_size
        n_chunks = math.ceil(L / bs)
        pad = n_chunks * bs - L
        parts = []
        for rd in rounds:
            fill = rd.q_order.new_full((pad,), -1)
            plan = Plan(L=L, block=bs, n_blocks=n_chunks, span=2 * bs if n_chunks > 1 else bs,
                        left=bs if n_chunks > 1 else 0, slots=torch.cat([rd.q_order, fill]),
                        key_slots=torch.cat([rd.k_order, fill]), wrap=n_chunks > 1)
            if self.shared_qk:
                rd.self_ok = self._self_ok(rd, plan)
            plan.rule = self._rule(rd)
            plan.regular = torch.zeros(n_chunks, dtype=torch.bool, device=device)
            parts.append(plan)
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
        B, H, L, D = q.shape
        if self.shared_qk:
            k = F.normalize(q, dim=-1)
        layouts = self.layout(q.detach(), k.detach(), rotations)
        n_chunks = math.ceil(L / self.bucket_size)
        rows = []
        for b in range(B):
            heads = []
            for h in range(H):
                rounds = layouts[b][h]
                tiling = self._tiling(rounds, L, q.device)
                extra = self._count_bias(rounds, n_chunks)
                sl = (slice(b, b + 1), slice(h, h + 1))
                heads.append(blocked_attention(
                    q[sl], k[sl], v[sl], tiling, pattern=self,
                    key_mask=None if key_mask is None else key_mask[b : b + 1],
                    scale=scale, dropout_p=dropout_p, extra_bias=extra))
            rows.append(torch.cat(heads, dim=1))
        return torch.cat(rows, dim=0)

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
