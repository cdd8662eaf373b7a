"""Sequence parallelism for window patterns: :func:`attend_sharded`.

Each rank of a process group holds one contiguous slice of the sequence (ranks in order
of their rank id, slices of any lengths >= 1). :func:`attend_sharded` returns this rank's
slice of what :func:`longseq.attend` gives on the whole sequence, while no rank ever holds
more than its slice, the key/value rows its queries reach (the *halo*) and the global
tokens:

* :class:`~longseq.patterns.SlidingWindow`: the ``window * dilation`` key/value rows on
  either side of the slice come from the ranks that own them, by point-to-point
  ``isend``/``irecv``; a window wider than a slice takes rows from several neighbours.
  Global tokens' queries, keys and values (a few rows) are summed into every rank
  (an all-reduce of zero-padded rows); global queries, which attend the whole sequence,
  are computed as partial softmax sums over each rank's keys and combined by
  log-sum-exp (an all-reduce of the maximum, then of the rescaled sums).
* :class:`~longseq.patterns.Window2D` (``shift=0``): ranks hold whole rows of windows,
  so attention is local; only the slice lengths are exchanged.

Backward runs the same exchanges in reverse (halo gradients go back to the ranks that own
those rows), inside custom :class:`torch.autograd.Function` s, so every rank must run
backward whenever one does (as with any collective in autograd).

Run ``torchrun --standalone --nproc-per-node 2 -m longseq.distributed --demo`` for a
check against single-process :func:`longseq.attend` (``docs/distributed.md``).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from longseq.attention import _check_inputs, attend
from longseq.kernels.bias import TileBias
from longseq.patterns import Pattern, SlidingWindow, Window2D

__all__ = ["attend_sharded", "halo_plan", "halo_rows", "HaloPlan", "Traffic", "reset_traffic", "traffic"]

_log = logging.getLogger("longseq.distributed")  # the same name when run as __main__

# Fields of the per-rank record exchanged first: (L_r, B, H, Hkv, D, has key_mask, has bias, error)
_META_FIELDS = 8


# ---------------------------------------------------------------------------------------
# What this process sent


@dataclass
class Traffic:
    """Bytes this process handed to collectives inside :func:`attend_sharded` (forward and
    backward) since the last :func:`reset_traffic`: ``p2p_bytes`` sent point to point (halo
    rows and their gradients), ``collective_bytes`` contributed to all-reduces and
    all-gathers (each tensor counted once, whatever the backend's algorithm moves)."""

    p2p_bytes: int = 0
    collective_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return self.p2p_bytes + self.collective_bytes


_TRAFFIC = Traffic()


def traffic() -> Traffic:
    """This process's :class:`Traffic` counter (live: read it after the calls to measure)."""
    return _TRAFFIC


def reset_traffic() -> None:
    """Set this process's counts to zero."""
    _TRAFFIC.p2p_bytes = _TRAFFIC.collective_bytes = 0


def _all_reduce(t: Tensor, group: dist.ProcessGroup | None, op: object = dist.ReduceOp.SUM) -> None:
    _TRAFFIC.collective_bytes += t.numel() * t.element_size()
    dist.all_reduce(t, op=op, group=group)


# ---------------------------------------------------------------------------------------
# Who sends which rows to whom


@dataclass(frozen=True)
class HaloPlan:
    """The halo exchange of one rank for a window reaching ``reach`` rows on each side (on the
    left only for a causal window).

    Positions are global token indices. ``lo:hi`` is the extended key range of this rank
    (its slice plus the halo, cut to the sequence); ``recv`` lists ``(peer, start, stop)``
    global row ranges received, in sequence order; ``send`` lists ``(peer, start, stop)``
    ranges of this rank's rows, as offsets into its slice.
    """

    start: int
    stop: int
    lo: int
    hi: int
    recv: tuple[tuple[int, int, int], ...]
    send: tuple[tuple[int, int, int], ...]

    @property
    def left(self) -> int:
        """Rows of the halo before the slice."""
        return self.start - self.lo

    @property
    def right(self) -> int:
        """Rows of the halo after the slice."""
        return self.hi - self.stop


def _bounds(lengths: Sequence[int]) -> list[tuple[int, int]]:
    out, s = [], 0
    for n in lengths:
        out.append((s, s + n))
        s += n
    return out


def _extended(bounds: list[tuple[int, int]], rank: int, left: int, right: int, total: int) -> tuple[int, int]:
    s, e = bounds[rank]
    return max(0, s - left), min(total, e + right)


def halo_plan(lengths: Sequence[int], rank: int, reach: int, *, causal: bool = False,
              right: int | None = None) -> HaloPlan:
    """The halo exchange of ``rank`` when slices have ``lengths`` and queries reach ``reach`` rows
    on the left and ``right`` rows on the right (default ``reach``; ``causal``: 0).

    Every rank computes every rank's plan from the same lengths, so sends and receives
    match without any further message. A left halo is a suffix of each rank it touches
    and a right halo a prefix, so between two ranks at most one range travels each way.
    """
    bounds = _bounds(lengths)
    total = bounds[-1][1]
    s, e = bounds[rank]
    right = (0 if causal else reach) if right is None else right
    lo, hi = _extended(bounds, rank, reach, right, total)
    recv, send = [], []
    for peer, (ps, pe) in enumerate(bounds):
        if peer == rank:
            continue
        # rows of peer inside this rank's halo
        a, b = max(ps, lo), min(pe, hi)
        if a < b:
            recv.append((peer, a, b))
        # rows of this rank inside the peer's halo
        plo, phi = _extended(bounds, peer, reach, right, total)
        a, b = max(s, plo), min(e, phi)
        if a < b:
            send.append((peer, a - s, b - s))
    return HaloPlan(s, e, lo, hi, tuple(recv), tuple(send))


# ---------------------------------------------------------------------------------------
# Collectives with their backward


def _global_rank(group: dist.ProcessGroup | None, rank: int) -> int:
    return rank if group is None else dist.get_global_rank(group, rank)


def _exchange(outgoing: list[Tensor], incoming: list[Tensor], group: dist.ProcessGroup | None,
              peers_out: list[int], peers_in: list[int]) -> None:
    """Send ``outgoing[n]`` to ``peers_out[n]`` and fill ``incoming[n]`` from ``peers_in[n]`` (group ranks)."""
    ops = [dist.P2POp(dist.isend, t.contiguous(), _global_rank(group, p), group)
           for t, p in zip(outgoing, peers_out)]
    _TRAFFIC.p2p_bytes += sum(t.numel() * t.element_size() for t in outgoing)
    ops += [dist.P2POp(dist.irecv, t, _global_rank(group, p), group) for t, p in zip(incoming, peers_in)]
    if ops:
        for req in dist.batch_isend_irecv(ops):
            req.wait()


def _halo_forward(x: Tensor, plan: HaloPlan, group: dist.ProcessGroup | None) -> Tensor:
    """``x (..., L_r, D)`` -> ``(..., hi - lo, D)``: the slice with its halo rows around it."""
    outgoing = [x[..., a:b, :] for _, a, b in plan.send]
    incoming = [x.new_empty(*x.shape[:-2], b - a, x.shape[-1]) for _, a, b in plan.recv]
    _exchange(outgoing, incoming, group, [p for p, _, _ in plan.send], [p for p, _, _ in plan.recv])
    before = [t for t, (_, a, _) in zip(incoming, plan.recv) if a < plan.start]
    after = [t for t, (_, a, _) in zip(incoming, plan.recv) if a >= plan.stop]
    return torch.cat(before + [x] + after, dim=-2)


class _Halo(torch.autograd.Function):
    """Differentiable halo exchange: halo gradients are sent back to the owning ranks."""

    @staticmethod
    def forward(ctx, x: Tensor, plan: HaloPlan, group: dist.ProcessGroup | None) -> Tensor:  # type: ignore[override]
        ctx.plan, ctx.group = plan, group
        return _halo_forward(x, plan, group)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        plan: HaloPlan = ctx.plan
        grad = grad.contiguous()
        # the gradient of each received range goes back to its sender ...
        outgoing = [grad[..., a - plan.lo:b - plan.lo, :] for _, a, b in plan.recv]
        # ... and this rank receives the gradients of the rows it sent
        incoming = [grad.new_empty(*grad.shape[:-2], b - a, grad.shape[-1]) for _, a, b in plan.send]
        _exchange(outgoing, incoming, ctx.group, [p for p, _, _ in plan.recv], [p for p, _, _ in plan.send])
        out = grad[..., plan.left:plan.left + plan.stop - plan.start, :].clone()
        for t, (_, a, b) in zip(incoming, plan.send):
            out[..., a:b, :] += t
        return out, None, None


def halo_rows(x: Tensor, left: int, right: int, group: dist.ProcessGroup | None = None) -> Tensor:
    """``x (..., L_r, D)``, this rank's slice of a sequence split over ``group`` in rank order,
    with the ``left`` rows before it and the ``right`` rows after it taken from the ranks
    that hold them: ``(..., left + L_r + right, D)``, zeros past the ends of the sequence
    (the padding a convolution over the whole sequence would see). Differentiable: the
    gradients of the borrowed rows go back to their owners. Every rank must call it (one
    all-gather of the slice lengths, then point-to-point sends)."""
    if left < 0 or right < 0:
        raise ValueError(f"left and right must be >= 0, got {left}, {right}")
    mine = torch.tensor([x.shape[-2]], dtype=torch.int64)
    lengths = [torch.zeros_like(mine) for _ in range(dist.get_world_size(group))]
    _TRAFFIC.collective_bytes += mine.numel() * mine.element_size()
    dist.all_gather(lengths, mine, group=group)
    plan = halo_plan([int(n) for n in lengths], dist.get_rank(group), left, right=right)
    ext = _Halo.apply(x, plan, group)
    before, after = left - plan.left, right - plan.right
    if before or after:  # past the sequence ends
        shape = list(ext.shape)
        parts = [ext.new_zeros(*shape[:-2], before, shape[-1]), ext, ext.new_zeros(*shape[:-2], after, shape[-1])]
        ext = torch.cat(parts, dim=-2)
    return ext


class _GatherRows(torch.autograd.Function):
    """``x (B, C, L_r, D)`` -> ``(B, C, G, D)``: rows ``rows`` (local offsets) of each owner, summed
    into every rank (each row is non-zero on its owner only). Backward sums the gradients of
    all ranks and hands each owner its rows."""

    @staticmethod
    def forward(ctx, x: Tensor, rows: Tensor, slots: Tensor, n_rows: int,  # type: ignore[override]
                group: dist.ProcessGroup | None) -> Tensor:
        ctx.save_for_backward(rows, slots)
        ctx.group, ctx.length = group, x.shape[2]
        out = x.new_zeros(x.shape[0], x.shape[1], n_rows, x.shape[3])
        out[:, :, slots] = x[:, :, rows]
        _all_reduce(out, group)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None, None]:  # type: ignore[override]
        rows, slots = ctx.saved_tensors
        grad = grad.contiguous().clone()
        _all_reduce(grad, ctx.group)
        out = grad.new_zeros(grad.shape[0], grad.shape[1], ctx.length, grad.shape[3])
        out[:, :, rows] = grad[:, :, slots]
        return out, None, None, None, None


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; every rank uses the sum, so the gradient is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx, x: Tensor, group: dist.ProcessGroup | None) -> Tensor:  # type: ignore[override]
        ctx.group = group
        out = x.clone()
        _all_reduce(out, group)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        grad = grad.contiguous().clone()
        _all_reduce(grad, ctx.group)
        return grad, None


# ---------------------------------------------------------------------------------------
# Bias at global positions


class _PositionedBias:
    """A :class:`~longseq.kernels.bias.TileBias` that sees global token positions.

    ``attend`` numbers a rank's tokens from 0; the bias gets them back as global indices:
    ``positions[idx]`` when ``positions`` is given (the extended key sequence of a
    SlidingWindow rank is not contiguous: global tokens sit before and after it), else
    ``idx + offset``. ``-1`` (padding) stays ``-1``. ``grid_offset_window`` and ``heads``
    are passed on: an offset by whole rows of windows keeps a grid-offset bias's table.
    """

    def __init__(self, bias: TileBias, positions: Tensor | None = None, offset: int = 0) -> None:
        self.bias, self.positions, self.offset = bias, positions, offset
        self.heads = getattr(bias, "heads", None)
        self.grid_offset_window = getattr(bias, "grid_offset_window", None)

    def _map(self, idx: Tensor) -> Tensor:
        if self.positions is None:
            return torch.where(idx >= 0, idx + self.offset, idx)
        return torch.where(idx >= 0, self.positions[idx.clamp(min=0)], idx)

    def tile(self, i: Tensor, j: Tensor, pattern: object) -> Tensor:
        return self.bias.tile(self._map(i), self._map(j), pattern)

    def parameters(self) -> Iterator[Tensor]:
        return self.bias.parameters()


# ---------------------------------------------------------------------------------------
# The sharded attention


def _check_pattern(pattern: Pattern) -> None:
    """Raise for patterns this module cannot shard (the same on every rank: no collective yet)."""
    if isinstance(pattern, Window2D):
        if pattern.shift:
            raise NotImplementedError(
                f"attend_sharded supports Window2D with shift=0 only, got shift={pattern.shift}: "
                "shifted windows cross the row boundaries between ranks")
        return
    if type(pattern) is not SlidingWindow:
        raise NotImplementedError(
            f"attend_sharded supports SlidingWindow and Window2D, got {type(pattern).__name__}")


def _exchange_meta(q: Tensor, k: Tensor, key_mask: Tensor | None, bias: object, error: bool,
                   group: dist.ProcessGroup | None) -> Tensor:
    """``(P, _META_FIELDS)`` int64 records of every rank (one all-gather).

    Reads shapes only where the arguments were valid: a rank with invalid ones still
    joins the all-gather (with its error flag set), so no rank waits for it.
    """
    fields = [0] * _META_FIELDS
    if not error:
        B, H, L, D = q.shape
        fields[:7] = [L, B, H, k.shape[1], D, key_mask is not None, bias is not None]
    fields[7] = int(error)
    # NCCL moves CUDA tensors only; gloo takes CPU tensors
    nccl = dist.get_backend(group) == "nccl"
    device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
    mine = torch.tensor(fields, dtype=torch.int64, device=device)
    out = [torch.zeros_like(mine) for _ in range(dist.get_world_size(group))]
    _TRAFFIC.collective_bytes += mine.numel() * mine.element_size()
    dist.all_gather(out, mine, group=group)
    return torch.stack(out).cpu()


def _check_meta(meta: Tensor) -> list[int]:
    """Lengths of every rank's slice; ``ValueError`` on every rank when the ranks disagree."""
    bad = [r for r in range(len(meta)) if meta[r, 7]]
    if bad:
        raise ValueError(f"attend_sharded: invalid arguments on rank(s) {bad} (see the error there)")
    lengths = meta[:, 0].tolist()
    for name, col in (("batch size B", 1), ("query heads H", 2), ("key/value heads", 3), ("head size D", 4),
                      ("key_mask presence", 5), ("bias presence", 6)):
        if len(set(meta[:, col].tolist())) > 1:
            raise ValueError(f"attend_sharded: ranks disagree on {name}: {meta[:, col].tolist()}")
    return lengths


def attend_sharded(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    pattern: Pattern,
    *,
    group: dist.ProcessGroup | None = None,
    key_mask: Tensor | None = None,
    bias: TileBias | None = None,
    scale: float | None = None,
) -> Tensor:
    """This rank's slice of ``attend(q_full, k_full, v_full, pattern, ...)``, with the sequence sharded.

    Args:
        q: ``(B, H, L_r, D)`` this rank's contiguous slice of the queries; rank ``r`` of
            ``group`` holds the ``r``-th slice. Slices may differ in length (each >= 1).
        k, v: ``(B, Hkv, L_r, D)`` the same slice of keys and values; ``Hkv`` divides ``H``.
        pattern: the pattern of the WHOLE sequence (length ``N = sum(L_r)``):
            :class:`~longseq.patterns.SlidingWindow` (any window, dilation, causal,
            global tokens) or :class:`~longseq.patterns.Window2D` with ``shift=0``, whose
            ranks hold whole rows of windows (every slice but the last a multiple of
            ``window_shape[0] * grid[1]`` tokens).
        group: the process group (default: the world).
        key_mask: ``(B, L_r)`` bool, this rank's slice of the key mask.
        bias: a :class:`~longseq.kernels.bias.TileBias` (``ALiBi``, ``RelativeBias1D``;
            ``RelativeBias2D`` with Window2D); it sees global positions. A learnable
            bias gets this rank's share of its gradient: sum it over ranks, as for any
            replicated parameter.
        scale: score scale, default ``D ** -0.5``.

    Returns:
        ``(B, H, L_r, D)``: rows ``sum(L_<r) .. sum(L_<=r) - 1`` of the full attention.

    Communication per call, with ``R = min(window * dilation, N - 1)``, ``G`` global
    tokens and elements of q's dtype (forward; backward sends the same again):

    * an all-gather of 8 integers per rank (slice lengths and shapes);
    * SlidingWindow halo: each rank receives at most ``2 * R`` rows of k and v
      (``<= 4 * R * B * Hkv * D`` elements) point-to-point from the ranks owning them,
      and sends as many (``2 * R * B`` bytes more for a key_mask); nothing when one rank;
    * SlidingWindow global tokens: all-reduces of ``B * (H + 2 * Hkv) * G * D`` (their
      q, k, v), ``B * H * G`` (the max, forward only) and ``B * H * G * (D + 1)``
      elements (partial sums), plus ``B * G`` for a key_mask;
    * Window2D: nothing beyond the first all-gather.

    Memory per rank is ``O(L_r + 2 R + G)`` rows; the full sequence is never formed.
    Dropout is not supported. Every rank of ``group`` must call this with the same
    pattern, dtype and shapes (but ``L_r``), and run backward when any rank does.

    Raises:
        NotImplementedError: other patterns, or Window2D with ``shift > 0``.
        ValueError: invalid arguments (on every rank: ranks exchange an error flag
            before any other collective), Window2D slices that cut rows of windows.
    """
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("attend_sharded needs an initialised torch.distributed process group")
    _check_pattern(pattern)
    error: Exception | None = None
    try:
        _check_inputs(q, k, v, pattern, key_mask, bias, 0.0, scale)
    except (TypeError, ValueError) as exc:  # told to every rank first, so that none waits in a collective
        error = exc
    meta = _exchange_meta(q, k, key_mask, bias, error is not None, group)
    if error is not None:
        raise error
    rank = dist.get_rank(group)
    lengths = _check_meta(meta)
    total = sum(lengths)
    pattern.check_length(total)
    scale = float(scale) if scale is not None else q.shape[-1] ** -0.5
    if isinstance(pattern, Window2D):
        return _attend_window2d(q, k, v, pattern, lengths, rank, key_mask, bias, scale)
    return _attend_sliding(q, k, v, pattern, lengths, rank, key_mask, bias, scale, group)


def _attend_window2d(q: Tensor, k: Tensor, v: Tensor, pattern: Window2D, lengths: list[int], rank: int,
                     key_mask: Tensor | None, bias: TileBias | None, scale: float) -> Tensor:
    """Whole rows of windows per rank: plain :func:`attend` on the local rows."""
    width = pattern.grid[1]
    rows = pattern.window_shape[0]
    step = rows * width
    for r, n in enumerate(lengths[:-1]):
        if n % step:
            raise ValueError(
                f"attend_sharded with Window2D(window_size={pattern.window_size}, grid={pattern.grid}) needs "
                f"whole rows of windows on every rank but the last: rank {r} holds {n} tokens, not a multiple "
                f"of window rows * grid width = {rows} * {width} = {step}")
    start = sum(lengths[:rank])
    local = Window2D(pattern.window_size, (q.shape[2] // width, width))
    # the local grid starts at a window boundary, so its windows are the global ones
    local_bias = _PositionedBias(bias, offset=start) if bias is not None else None
    return attend(q, k, v, local, key_mask=key_mask, bias=local_bias, scale=scale)


def _attend_sliding(q: Tensor, k: Tensor, v: Tensor, pattern: SlidingWindow, lengths: list[int], rank: int,
                    key_mask: Tensor | None, bias: TileBias | None, scale: float,
                    group: dist.ProcessGroup | None) -> Tensor:
    total = sum(lengths)
    reach = min(pattern.window * pattern.dilation, total - 1)
    plan = halo_plan(lengths, rank, reach, causal=pattern.causal)
    B, H, L, D = q.shape
    Hkv = k.shape[1]
    device = q.device
    kv = torch.cat([k, v], dim=1)  # one exchange for both
    kv_ext = _Halo.apply(kv, plan, group) if len(lengths) > 1 else kv
    km_ext = None
    if key_mask is not None:
        km_ext = key_mask
        if len(lengths) > 1:
            # uint8 rows of shape (B, 1, L, 1): the halo code moves (..., L, D) tensors
            km_ext = _halo_forward(key_mask.to(torch.uint8)[:, None, :, None], plan, group)[:, 0, :, 0].bool()

    glob = torch.tensor(pattern.global_tokens or (), dtype=torch.long)
    G = len(glob)
    pre = glob[glob < plan.lo]
    # for causal attention no query of this rank reaches a later global token
    post = glob[glob >= plan.hi] if not pattern.causal else glob[:0]
    n_pre, n_post = len(pre), len(post)
    positions = torch.cat([pre, torch.arange(plan.lo, plan.hi), post])

    global_out = None
    if G:
        owned = (glob >= plan.start) & (glob < plan.stop)
        rows_local = (glob[owned] - plan.start).to(device)
        slots = torch.nonzero(owned).squeeze(1).to(device)
        # queries, keys and values of the global tokens, on every rank
        packed = _GatherRows.apply(torch.cat([q, kv], dim=1), rows_local, slots, G, group)
        q_g, kv_g = packed[:, :H], packed[:, H:]
        pre_slot, post_slot = torch.searchsorted(glob, pre).to(device), torch.searchsorted(glob, post).to(device)
        kv_ext = torch.cat([kv_g[:, :, pre_slot], kv_ext, kv_g[:, :, post_slot]], dim=2)
        if key_mask is not None:
            km_g = key_mask.new_zeros(B, G, dtype=torch.int32)
            km_g[:, slots] = key_mask[:, rows_local].to(torch.int32)
            _all_reduce(km_g, group)
            km_g = km_g.bool()
            km_ext = torch.cat([km_g[:, pre_slot], km_ext, km_g[:, post_slot]], dim=1)
        full_rows = _global_rows(q_g, k, v, glob.to(device), plan.start, key_mask, bias, pattern, scale, group)
        global_out = (full_rows, rows_local, slots)

    # queries only at this rank's rows: the others are zeros whose outputs are dropped
    before = n_pre + plan.left
    after = plan.right + n_post
    q_ext = torch.cat([q.new_zeros(B, H, before, D), q, q.new_zeros(B, H, after, D)], dim=2)
    ext_glob = torch.nonzero(torch.isin(positions, glob)).squeeze(1).tolist() if G else None
    local_pattern = SlidingWindow(pattern.window, pattern.dilation, pattern.causal, ext_glob or None)
    ext_bias = _PositionedBias(bias, positions.to(device)) if bias is not None else None
    out = attend(q_ext, kv_ext[:, :Hkv], kv_ext[:, Hkv:], local_pattern, key_mask=km_ext, bias=ext_bias,
                 scale=scale)
    out = out[:, :, before:before + L]
    if global_out is not None:
        # global queries attend the whole sequence: their rows come from the reduced sums.
        # Indexing ``full_rows`` on every rank (even with no row owned) keeps its all-reduce
        # in each rank's backward graph, so all ranks run that collective.
        full_rows, rows_local, slots = global_out
        out = out.index_copy(2, rows_local, full_rows[:, :, slots].to(out.dtype))
    return out


def _global_rows(q_g: Tensor, k: Tensor, v: Tensor, glob: Tensor, start: int, key_mask: Tensor | None,
                 bias: TileBias | None, pattern: SlidingWindow, scale: float,
                 group: dist.ProcessGroup | None) -> Tensor:
    """Attention of the ``G`` global queries ``q_g (B, H, G, D)`` over the whole sequence.

    Each rank scores its own keys ``k, v (B, Hkv, L_r, D)`` only; the softmax is combined
    across ranks: an all-reduce of the row maxima (a stabiliser, not differentiated),
    then one of the rescaled exponential sums and weighted values. Returns ``(B, H, G, D)``
    in float32 or wider; rows with no allowed key are zeros, as in :func:`attend`.
    """
    B, H, G, D = q_g.shape
    Hkv, L = k.shape[1], k.shape[2]
    rep = H // Hkv
    acc = torch.promote_types(q_g.dtype, torch.float32)
    # head h uses key head h // rep (repeat_interleave order): group the query heads
    s = (q_g.to(acc).reshape(B, Hkv, rep * G, D) @ k.to(acc).transpose(-1, -2)).view(B, H, G, L) * scale
    kpos = torch.arange(start, start + L, device=q_g.device)
    if bias is not None:
        s = s + bias.tile(glob, kpos, pattern).to(acc)
    allowed = torch.ones(G, L, dtype=torch.bool, device=q_g.device)
    if pattern.causal:
        allowed = kpos[None, :] <= glob[:, None]
    allowed = allowed[None, None]
    if key_mask is not None:
        allowed = allowed & key_mask[:, None, None, :]
    s = s.masked_fill(~allowed, float("-inf"))
    with torch.no_grad():
        m = s.amax(-1)  # (B, H, G); -inf where this rank has no allowed key
        _all_reduce(m, group, dist.ReduceOp.MAX)
        m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    p = torch.exp(s - m[..., None])
    o = (p.view(B, Hkv, rep * G, L) @ v.to(acc)).view(B, H, G, D)
    sums = _AllReduceSum.apply(torch.cat([o, p.sum(-1, keepdim=True)], dim=-1), group)
    o, den = sums[..., :D], sums[..., D:]
    has = den > 0
    return o / torch.where(has, den, torch.ones_like(den)) * has


# ---------------------------------------------------------------------------------------
# Demo: python -m longseq.distributed --demo (under torchrun)


def _demo_case(seed: int, total: int, B: int = 2, H: int = 4, Hkv: int = 2, D: int = 16):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, total, D, generator=g)
    k = torch.randn(B, Hkv, total, D, generator=g)
    v = torch.randn(B, Hkv, total, D, generator=g)
    key_mask = torch.rand(B, total, generator=g) > 0.2
    return q, k, v, key_mask


def demo(total: int = 1000, window: int = 64) -> float:
    """Compare :func:`attend_sharded` with :func:`attend` on the full sequence (forward and q/k/v
    gradients). Every rank builds the same inputs from one seed and keeps its slice; rank 0
    also runs the single-process reference (the demo, unlike real use, holds the whole
    sequence). Returns the largest absolute difference (on every rank)."""
    rank, world = dist.get_rank(), dist.get_world_size()
    pattern = SlidingWindow(window, causal=True, global_tokens=(0, total // 2))
    q, k, v, key_mask = _demo_case(0, total)
    bounds = [(int(c[0]), int(c[-1]) + 1) for c in torch.arange(total).tensor_split(world)]
    s, e = bounds[rank]
    parts = [t[:, :, s:e].clone().requires_grad_() for t in (q, k, v)]
    out = attend_sharded(*parts, pattern, key_mask=key_mask[:, s:e])
    dout = torch.randn(out.shape[0], out.shape[1], total, out.shape[3], generator=torch.Generator().manual_seed(1))
    grads = torch.autograd.grad(out, parts, dout[:, :, s:e])
    gathered: list = [None] * world
    dist.all_gather_object(gathered, (out.detach(), *grads))
    err = torch.zeros(())
    if rank == 0:
        full = [t.clone().requires_grad_() for t in (q, k, v)]
        ref = attend(*full, pattern, key_mask=key_mask)
        ref_grads = torch.autograd.grad(ref, full, dout)
        for n, expect in enumerate((ref.detach(), *ref_grads)):
            got = torch.cat([parts_r[n] for parts_r in gathered], dim=2)
            err = torch.maximum(err, (got - expect).abs().max())
    dist.broadcast(err, src=0)
    return float(err)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry of ``python -m longseq.distributed`` (run by torchrun, which sets RANK and WORLD_SIZE)."""
    parser = argparse.ArgumentParser(prog="python -m longseq.distributed",
                                     description="Check attend_sharded against attend (run under torchrun).")
    parser.add_argument("--demo", action="store_true", help="compare attend_sharded with attend on one case")
    parser.add_argument("--length", type=int, default=1000, help="total sequence length of the demo")
    parser.add_argument("--window", type=int, default=64, help="window of the demo's SlidingWindow")
    args = parser.parse_args(argv)
    if not args.demo:
        parser.print_help()
        return 0
    logging.basicConfig(level=logging.INFO, format="%(name)s rank " + os.environ.get("RANK", "0") + ": %(message)s")
    own_group = not dist.is_initialized()
    if own_group:
        dist.init_process_group("gloo")
    try:
        err = demo(args.length, args.window)
        _log.info("world %d, N=%d, window %d: max |attend_sharded - attend| = %.3g (output and q/k/v gradients)",
                  dist.get_world_size(), args.length, args.window, err)
        ok = math.isfinite(err) and err <= 1e-5
        dist.barrier()  # no send in flight when gloo tears its pairs down
    finally:
        if own_group:
            dist.destroy_process_group()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
