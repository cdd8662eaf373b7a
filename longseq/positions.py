"""Positional encodings.

Bias modules (``ALiBi``, ``RelativeBias1D``, ``RelativeBias2D``) are passed to
:func:`longseq.attend` as ``bias=`` and evaluated per tile by the kernel through
``tile(i, j, pattern) -> (..., H, nq, nk)`` on index tensors ``i (..., nq)`` and
``j (..., nk)``; they are never materialised at ``L x L``. Padding indices (-1) may
appear; they are masked by the kernel, so a bias only has to stay finite there.
These modules satisfy :class:`longseq.kernels.bias.TileBias`, the interface the kernels
call; the kernels do not import this module.

Rotary embeddings (``RoPE1D``, ``RoPE2D``) rotate q and k before ``attend``.
``AxialPositionalEmbedding`` adds a factorised absolute embedding (Reformer).
"""

from __future__ import annotations

import math
import weakref

import torch
from torch import Tensor, nn

__all__ = ["ALiBi", "RelativeBias1D", "RelativeBias2D", "RoPE1D", "RoPE2D", "AxialPositionalEmbedding"]


def _pairwise(i: Tensor, j: Tensor) -> Tensor:
    """(..., nq), (..., nk) -> (..., nq, nk) of ``i - j``."""
    return i.unsqueeze(-1) - j.unsqueeze(-2)


def _heads_before_pairs(t: Tensor) -> Tensor:
    """A bias table lookup (..., nq, nk, H) -> (..., H, nq, nk)."""
    # dims counted from the front: the TorchScript ONNX exporter (torch.onnx.export with
    # dynamo=False, which ultralytics uses) writes movedim(-1, -3) as a Transpose with a
    # negative perm, which onnxruntime refuses to load
    return t.movedim(t.dim() - 1, t.dim() - 3)


def alibi_slopes(heads: int) -> Tensor:
    """Geometric head slopes of ALiBi (Press et al.), extended for non powers of two."""
    def power_of_two(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**k for k in range(n)]

    if math.log2(heads).is_integer():
        slopes = power_of_two(heads)
    else:
        closest = 2 ** math.floor(math.log2(heads))
        slopes = power_of_two(closest) + power_of_two(2 * closest)[0::2][: heads - closest]
    return torch.tensor(slopes, dtype=torch.float32)


class ALiBi(nn.Module):
    """Linear distance penalty ``-slope_h * |i - j|`` (fixed, no parameters)."""

    def __init__(self, heads: int) -> None:
        super().__init__()
        if heads < 1:
            raise ValueError(f"heads must be >= 1, got {heads}")
        self.heads = heads
        self.register_buffer("slopes", alibi_slopes(heads), persistent=False)

    def tile(self, i: Tensor, j: Tensor, pattern=None) -> Tensor:
        dist = _pairwise(i, j).abs().float().unsqueeze(-3)  # (..., 1, nq, nk)
        return -self.slopes.to(dist.device).view(-1, 1, 1) * dist


class RelativeBias1D(nn.Module):
    """T5 bucketed relative-position bias, one learnable scalar per (bucket, head)."""

    def __init__(self, heads: int, max_distance: int = 128, num_buckets: int = 32, bidirectional: bool = True) -> None:
        super().__init__()
        if heads < 1 or max_distance < 1 or num_buckets < 2:
            raise ValueError("heads, max_distance must be >= 1 and num_buckets >= 2")
        self.heads, self.max_distance, self.num_buckets = heads, max_distance, num_buckets
        self.bidirectional = bidirectional
        self.table = nn.Embedding(num_buckets, heads)
        nn.init.zeros_(self.table.weight)

    def bucket(self, rel: Tensor) -> Tensor:
        """T5's bucket of the relative position ``j - i``."""
        n = self.num_buckets
        ret = torch.zeros_like(rel)
        if self.bidirectional:
            n //= 2
            ret = ret + (rel > 0).long() * n
            rel = rel.abs()
        else:
            rel = (-rel).clamp(min=0)
        max_exact = n // 2
        is_small = rel < max_exact
        large = max_exact + (
            torch.log(rel.float().clamp(min=1) / max_exact) / math.log(self.max_distance / max_exact) * (n - max_exact)
        ).long()
        large = large.clamp(max=n - 1)
        return ret + torch.where(is_small, rel, large)

    def tile(self, i: Tensor, j: Tensor, pattern=None) -> Tensor:
        b = self.bucket(-_pairwise(i, j))  # j - i
        return _heads_before_pairs(self.table(b))


class RelativeBias2D(nn.Module):
    """Swin's relative-position table over (dy, dx) in ``[-(ws-1), ws-1]^2``.

    Needs a pattern with a ``coords(idx) -> (row, col)`` method (``Window2D``).
    """

    def __init__(self, heads: int, window_size: int) -> None:
        super().__init__()
        if heads < 1 or window_size < 1:
            raise ValueError("heads and window_size must be >= 1")
        self.heads, self.window_size = heads, window_size
        self.table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, heads))
        nn.init.trunc_normal_(self.table, std=0.02)

    @property
    def grid_offset_window(self) -> int:
        """Inside a ``window_size`` window the bias depends only on the (dy, dx) offset
        (:class:`longseq.kernels.bias.TileBias`): one table serves every window."""
        return self.window_size

    def tile(self, i: Tensor, j: Tensor, pattern=None) -> Tensor:
        if pattern is None or not hasattr(pattern, "coords"):
            raise ValueError("RelativeBias2D needs a 2-D pattern such as Window2D")
        ws = self.window_size
        yi, xi = pattern.coords(i.clamp(min=0))
        yj, xj = pattern.coords(j.clamp(min=0))
        dy = _pairwise(yi, yj).clamp(-(ws - 1), ws - 1) + ws - 1
        dx = _pairwise(xi, xj).clamp(-(ws - 1), ws - 1) + ws - 1
        return _heads_before_pairs(self.table[dy * (2 * ws - 1) + dx])


def _rotate_half(x: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def _rope_angles(pos: Tensor, dim: int, base: float) -> Tensor:
    inv = 1.0 / (base ** (torch.arange(0, dim, 2, device=pos.device, dtype=torch.float32) / dim))
    ang = pos.float()[:, None] * inv[None, :]  # (L, dim/2)
    return torch.cat((ang, ang), dim=-1)  # (L, dim)


class RoPE1D(nn.Module):
    """Rotary embedding over token index; ``rope(x, positions)`` with x (B, H, L, D)."""

    def __init__(self, dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"RoPE1D dim must be even and >= 2, got {dim}")
        self.dim, self.base = dim, base
        self._table: tuple[tuple, Tensor, Tensor] | None = None  # (key, cos, sin) for positions 0..L-1

    def _cos_sin(self, x: Tensor, positions: Tensor | None) -> tuple[Tensor, Tensor]:
        """(L, dim) cos and sin; the table for positions 0..L-1 is kept, since long inputs
        call this for q and k of every layer (and again when layers are recomputed)."""
        L = x.shape[-2]
        key = (L, x.device, x.dtype)
        cacheable = positions is None and not torch.compiler.is_compiling()
        if cacheable and self._table is not None and self._table[0] == key:
            return self._table[1], self._table[2]
        pos = torch.arange(L, device=x.device) if positions is None else positions
        if pos.shape != (L,):
            raise ValueError(f"RoPE1D positions must have shape (L,) = ({L},), got {tuple(pos.shape)}")
        ang = _rope_angles(pos, self.dim, self.base)
        cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
        if cacheable:
            self._table = (key, cos, sin)
        return cos, sin

    def forward(self, x: Tensor, positions: Tensor | None = None) -> Tensor:
        xr = x[..., : self.dim]
        cos, sin = self._cos_sin(x, positions)
        out = xr * cos + _rotate_half(xr) * sin
        if x.shape[-1] == self.dim:
            return out
        return torch.cat((out, x[..., self.dim :]), dim=-1)


class RoPE2D(nn.Module):
    """Axial rotary embedding: half the rotated dims follow the row, half the column.

    ``rope(x, positions)`` with x (B, H, L, D) and positions (L, 2) = (row, col).
    """

    def __init__(self, dim: int, base: float = 100.0) -> None:
        super().__init__()
        if dim < 4 or dim % 4:
            raise ValueError(f"RoPE2D dim must be a multiple of 4, got {dim}")
        self.dim, self.base = dim, base
        # (weakref to positions, its version, dtype, cos, sin) of the last call: a ViT passes
        # one positions tensor to q and k of every block, so the table is built once per
        # forward. The key is the tensor's identity, not its values: comparing values is a
        # tensor op, and recomputing checkpointed layers needs the same ops in backward as
        # in forward, whatever the cache held.
        self._table: tuple[weakref.ref, int, torch.dtype, Tensor, Tensor] | None = None

    def __getstate__(self) -> dict:
        # the table is a cache holding a weakref (which cannot be pickled): copies and
        # checkpoints start without it
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
        state = dict(state)
        state["_table"] = None
        return state

    def _cos_sin(self, x: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        """(L, dim) cos and sin: row angles on the first half of the dims, columns on the second."""
        # inference tensors carry no version counter: no cache for them (the table is cheap)
        cacheable = not torch.compiler.is_compiling() and not positions.is_inference()
        t = self._table
        if cacheable and t is not None and t[0]() is positions and t[1] == positions._version and t[2] == x.dtype:
            return t[3], t[4]
        h = self.dim // 2
        ang = torch.cat((_rope_angles(positions[:, 0], h, self.base), _rope_angles(positions[:, 1], h, self.base)), -1)
        cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
        if cacheable:
            self._table = (weakref.ref(positions), positions._version, x.dtype, cos, sin)
        return cos, sin

    def forward(self, x: Tensor, positions: Tensor) -> Tensor:
        L = x.shape[-2]
        if positions is None or positions.shape != (L, 2):
            raise ValueError(f"RoPE2D positions must have shape (L, 2) = ({L}, 2)")
        cos, sin = self._cos_sin(x, positions)
        xr = x[..., : self.dim]
        # rotate_half inside each axis half, in one pass: [a1, a2 | b1, b2] -> [-a2, a1 | -b2, b1]
        parts = xr.unflatten(-1, (2, 2, self.dim // 4))
        rotated = torch.stack((-parts[..., 1, :], parts[..., 0, :]), dim=-2).flatten(-3)
        out = xr * cos + rotated * sin
        if x.shape[-1] == self.dim:
            return out
        return torch.cat((out, x[..., self.dim :]), dim=-1)


class AxialPositionalEmbedding(nn.Module):
    """Reformer's factorised absolute embedding over ``shape = (a, b, ...)``.

    Each axis owns an embedding of ``dim // len(shape)`` channels (the last takes the
    remainder); their concatenation covers ``prod(shape)`` positions with
    ``sum(shape)``-sized tables. ``forward(x (B, L, dim))`` adds it to the first L.
    """

    def __init__(self, shape: tuple[int, ...], dim: int) -> None:
        super().__init__()
        shape = tuple(int(s) for s in shape)
        if len(shape) < 1 or any(s < 1 for s in shape):
            raise ValueError(f"shape must be a tuple of positive sizes, got {shape}")
        if dim < len(shape):
            raise ValueError(f"dim ({dim}) must be at least the number of axes ({len(shape)})")
        self.shape, self.dim = shape, dim
        dims = [dim // len(shape)] * len(shape)
        dims[-1] += dim - sum(dims)
        self.weights = nn.ParameterList()
        for axis, (size, d) in enumerate(zip(shape, dims)):
            view = [1] * len(shape) + [d]
            view[axis] = size
            self.weights.append(nn.Parameter(torch.randn(view) * 0.02))

    @property
    def max_length(self) -> int:
        return math.prod(self.shape)

    def forward(self, x: Tensor) -> Tensor:
        L = x.shape[1]
        if L > self.max_length:
            raise ValueError(f"sequence length {L} exceeds the axial shape's capacity {self.max_length}")
        parts = [w.expand(*self.shape, w.shape[-1]) for w in self.weights]
        emb = torch.cat(parts, dim=-1).reshape(self.max_length, self.dim)
        return x + emb[:L].to(x.dtype)
