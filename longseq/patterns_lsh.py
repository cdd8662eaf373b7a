"""Reformer LSH attention as a pattern: hashing, sorted chunks and each round's mask.

Per round (``n_hashes`` rounds), tokens are hashed by random rotations
(``bucket = argmax([xR; -xR])``), sorted by (bucket, position) and cut into chunks of
``bucket_size``; each chunk attends itself and the previous chunk of the same round
(cyclically). The layout depends on q (and k), so it is built per call and per head.
This module says who attends whom; :mod:`longseq.kernels.lsh` computes the attention
(one blocked-kernel part per round, merged by log-sum-exp).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from longseq.patterns_base import Pattern, check_bool, check_int, check_seed, set_fields

__all__ = ["LSH", "LSHRound"]

Rule = Callable[[Tensor, Tensor], Tensor]


@dataclass
class LSHRound:
    """Hash layout of one round for one (batch, head): sorted orders and chunk ids."""

    q_order: Tensor  # (n_chunks * chunk_size,) token at each sorted query position, -1 = padding
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
    different buckets inside a chunk pair. A pair met in several rounds counts once.
    """

    bucket_size: int = 64
    n_hashes: int = 4
    causal: bool = False
    shared_qk: bool = True
    attend_across_buckets: bool = True
    seed: int | None = None

    def __post_init__(self) -> None:
        set_fields(self, bucket_size=check_int("LSH.bucket_size", self.bucket_size),
                   n_hashes=check_int("LSH.n_hashes", self.n_hashes),
                   causal=check_bool("LSH.causal", self.causal),
                   shared_qk=check_bool("LSH.shared_qk", self.shared_qk),
                   attend_across_buckets=check_bool("LSH.attend_across_buckets", self.attend_across_buckets),
                   seed=check_seed("LSH.seed", self.seed, optional=True))

    @property
    def supports_gqa(self) -> bool:  # type: ignore[override]
        return not self.shared_qk

    def n_buckets(self, L: int) -> int:
        return max(2, 2 * math.ceil(L / (2 * self.bucket_size)))

    def n_chunks(self, L: int) -> int:
        """Chunks of ``bucket_size`` sorted positions covering ``L`` tokens."""
        return math.ceil(L / self.bucket_size)

    def chunk_size(self, L: int) -> int:
        """Sorted positions per chunk at length ``L``: ``bucket_size``, or ``L`` when that is
        smaller (one chunk either way), so layouts never exceed the sequence."""
        return min(self.bucket_size, L)

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

    def sorted_rounds(self, qb: Tensor, kb: Tensor) -> list[LSHRound]:
        """Sorted layouts for buckets qb, kb (n_hashes, L) of one (batch, head)."""
        L = qb.shape[-1]
        pos = torch.arange(L, device=qb.device)
        size = self.chunk_size(L)
        n_slots = self.n_chunks(L) * size
        chunk_of_pos = pos // size

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
            rounds.append(LSHRound(q_order, k_order, q_bucket, k_bucket, q_chunk, k_chunk))
        return rounds

    def constraint(self, rd: LSHRound, i: Tensor, j: Tensor) -> Tensor | None:
        """Bucket and causal rule of one round on original indices; None = no constraint."""
        m = None
        if not self.attend_across_buckets:
            m = rd.q_bucket[i.clamp(min=0)] == rd.k_bucket[j.clamp(min=0)]
        if self.causal:
            m = (j <= i) if m is None else m & (j <= i)
        return m

    def base_rule(self, rd: LSHRound) -> Rule:
        """:meth:`constraint` as a rule (no self rule)."""
        def rule(i: Tensor, j: Tensor) -> Tensor:
            m = self.constraint(rd, i, j)
            if m is None:
                m = torch.ones(torch.broadcast_shapes(i.shape, j.shape), dtype=torch.bool, device=i.device)
            return m
        return rule

    def meets(self, rd: LSHRound, n_chunks: int, i: Tensor, j: Tensor) -> Tensor:
        """Do i and j share a chunk pair in this round (same or previous chunk)?"""
        d = (rd.q_chunk[i.clamp(min=0)] - rd.k_chunk[j.clamp(min=0)]).remainder(n_chunks)
        return d <= (1 if n_chunks > 1 else 0)

    def round_rule(self, rd: LSHRound) -> Rule:
        """The mask a round's tiles use (as :meth:`dense_masks` reports it)."""
        base = self.base_rule(rd)
        if not self.shared_qk:
            return base

        def rule(i: Tensor, j: Tensor) -> Tensor:
            m = base(i, j)
            return m & ((i != j) | rd.self_ok[i.clamp(min=0)])
        return rule

    def layout(self, q: Tensor, k: Tensor, rotations: Tensor | None = None) -> list[list[list[LSHRound]]]:
        """Per (batch, head): the rounds' sorted layouts. q, k (B, H, L, D)."""
        L, D = q.shape[-2], q.shape[-1]
        R = self.rotations(D, L, q.device) if rotations is None else rotations
        qb = self.hash(q, R)  # (n_hashes, B, H, L)
        kb = qb if self.shared_qk else self.hash(k, R)
        return [[self.sorted_rounds(qb[:, b, h], kb[:, b, h]) for h in range(q.shape[1])] for b in range(q.shape[0])]

    def dense_masks(self, q: Tensor, k: Tensor | None = None, rotations: Tensor | None = None) -> Tensor:
        """(n_hashes, B, H, L, L) bool masks each round actually used (self rule included).

        q, k ``(B, H, L, D)``. Needs ``seed`` (or explicit ``rotations``) to reproduce the
        layout of an :func:`longseq.attend` call. For tests and small inputs only.
        """
        B, H, L, D = q.shape
        if self.shared_qk or k is None:
            k = F.normalize(q, dim=-1)
        layouts = self.layout(q, k, rotations)
        n_chunks = self.n_chunks(L)
        idx = torch.arange(L, device=q.device)
        i, j = idx[:, None], idx[None, :]
        out = torch.zeros(self.n_hashes, B, H, L, L, dtype=torch.bool, device=q.device)
        for b in range(B):
            for h in range(H):
                for r, rd in enumerate(layouts[b][h]):
                    meets = self.meets(rd, n_chunks, i, j)
                    if self.shared_qk:
                        # alone = no other key of its chunk pair passes the round's rule
                        rd.self_ok = ~(meets & self.base_rule(rd)(i, j) & (i != j)).any(-1)
                    out[r, b, h] = meets & self.round_rule(rd)(i, j)
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
