"""Attention patterns: who may attend to whom.

A pattern is a small frozen dataclass. It answers two questions:

* ``allowed(i, j)``: the element rule, on broadcastable integer index tensors
  (True = query ``i`` may attend key ``j``; the one mask convention of longseq).
* ``dense_mask(L)``: the same rule as an ``(L, L)`` boolean matrix, the test reference
  fed to ``torch.nn.functional.scaled_dot_product_attention``.

Patterns know no kernel: :mod:`longseq.kernels.plan` turns each of them into a tiling
of the blocked kernel (``tiling_for(pattern, L, device)``), and data-dependent patterns
such as :class:`LSH` get their implementation from :mod:`longseq.kernels` too.
Patterns never hold tensors of size ``L``; they are cheap to build and hashable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from longseq.geometry import band_pair_count
from longseq.patterns_base import Pattern, _check_positive_int
from longseq.patterns_lsh import LSH

__all__ = ["Pattern", "Dense", "SlidingWindow", "Window2D", "BigBird", "Strided", "LSH", "as_causal"]


@dataclass(frozen=True)
class Dense(Pattern):
    """Every query attends every key (``j <= i`` when causal)."""

    causal: bool = False

    def allowed(self, i: Tensor, j: Tensor) -> Tensor:
        if self.causal:
            return j <= i
        return torch.ones_like(i - j, dtype=torch.bool)


@dataclass(frozen=True)
class SlidingWindow(Pattern):
    """Banded attention with optional dilation and global tokens.

    Query ``i`` may attend key ``j`` iff ``(i - j) % dilation == 0`` and
    ``|i - j| <= window * dilation``. ``window`` is the one-sided reach in steps.
    ``global_tokens`` (indices) attend everything and are attended by everything.
    With ``causal=True`` the union above is intersected with ``j <= i``.
    """

    window: int
    dilation: int = 1
    causal: bool = False
    global_tokens: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        _check_positive_int("window", self.window)
        _check_positive_int("dilation", self.dilation)
        if self.global_tokens is not None:
            tokens = tuple(int(t) for t in self.global_tokens)
            if any(t < 0 for t in tokens):
                raise ValueError(f"global_tokens must be non-negative indices, got {tokens}")
            object.__setattr__(self, "global_tokens", tuple(sorted(set(tokens))) or None)

    def band(self, i: Tensor, j: Tensor) -> Tensor:
        d = i - j
        band = d.abs() <= self.window * self.dilation
        if self.dilation > 1:
            band = band & (d.remainder(self.dilation) == 0)
        return band

    def allowed(self, i: Tensor, j: Tensor) -> Tensor:
        mask = self.band(i, j)
        if self.global_tokens:
            g = torch.tensor(self.global_tokens, device=i.device)
            mask = mask | torch.isin(i, g) | torch.isin(j, g)
        if self.causal:
            mask = mask & (j <= i)
        return mask

    def check_length(self, L: int) -> None:
        if self.global_tokens and self.global_tokens[-1] >= L:
            raise ValueError(
                f"global_tokens index {self.global_tokens[-1]} is out of range for length {L}"
            )


@dataclass(frozen=True)
class Window2D(Pattern):
    """Non-overlapping ``window_size x window_size`` windows over a row-major grid.

    ``grid = (H, W)`` and ``L = H * W``. Windows are tiled from the top-left after padding
    the grid up to a multiple of ``window_size``. With ``shift`` the padded grid is rolled
    by ``-shift`` on both axes before tiling (``torch.roll(x, (-shift, -shift))`` as in
    Swin), and tokens only attend tokens that were contiguous before the roll (Swin's
    region mask). Padding tokens are not tokens: they are never attended.
    """

    window_size: int
    grid: tuple[int, int]
    shift: int = 0

    def __post_init__(self) -> None:
        _check_positive_int("window_size", self.window_size)
        if len(tuple(self.grid)) != 2:
            raise ValueError(f"grid must be (H, W), got {self.grid!r}")
        grid = tuple(g if isinstance(g, torch.SymInt) else int(g) for g in self.grid)
        object.__setattr__(self, "grid", grid)
        _check_positive_int("grid[0]", self.grid[0])
        _check_positive_int("grid[1]", self.grid[1])
        if isinstance(self.shift, bool) or not isinstance(self.shift, int) or not (
            0 <= self.shift < self.window_size
        ):
            raise ValueError(f"shift must be an integer in [0, window_size), got {self.shift!r}")

    @property
    def padded_grid(self) -> tuple[int, int]:
        ws = self.window_size
        # integer ceil without negative floor division (which ONNX export mistranslates)
        return ((self.grid[0] + ws - 1) // ws * ws, (self.grid[1] + ws - 1) // ws * ws)

    def coords(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """Row and column of flattened grid indices."""
        row = idx // self.grid[1]
        return row, idx - row * self.grid[1]  # no symbolic % in onnxscript

    def window_and_region(self, idx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """For flattened indices: (window id, Swin region id, slot inside the window)."""
        ws, s = self.window_size, self.shift
        hp, wp = self.padded_grid
        y, x = self.coords(idx)
        # position after torch.roll(-s), as floor-division remainders (export-friendly)
        ry, rx = (y - s) - ((y - s) // hp) * hp, (x - s) - ((x - s) // wp) * wp

        def region(r: Tensor, n: int) -> Tensor:
            # Swin's slices (0, -ws), (-ws, -s), (-s, None) on each axis.
            if s == 0:
                return torch.zeros_like(r)
            return (r >= n - ws).long() + (r >= n - s).long()

        window = (ry // ws) * (wp // ws) + rx // ws
        reg = region(ry, hp) * 3 + region(rx, wp)
        slot = (ry % ws) * ws + rx % ws
        return window, reg, slot

    def allowed(self, i: Tensor, j: Tensor) -> Tensor:
        wi, ri, _ = self.window_and_region(i)
        wj, rj, _ = self.window_and_region(j)
        return (wi == wj) & (ri == rj)

    def check_length(self, L: int) -> None:
        if L != self.grid[0] * self.grid[1]:
            raise ValueError(f"Window2D over grid {self.grid} needs L={self.grid[0] * self.grid[1]}, got L={L}")


@dataclass(frozen=True)
class BigBird(Pattern):
    """BigBird block-sparse attention (bidirectional only).

    With query block ``a`` and key block ``b`` (blocks of ``block`` tokens, the last may be
    partial): allowed iff ``|a - b| <= window_blocks``, or ``a`` or ``b`` is among the first
    or last ``global_blocks`` blocks, or ``b`` is one of ``random_blocks`` blocks drawn for
    ``a`` without replacement from the blocks not already allowed, by a CPU generator
    seeded with ``seed`` (so the layout is the same on every device).
    """

    block: int
    window_blocks: int = 1
    global_blocks: int = 1
    random_blocks: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        _check_positive_int("block", self.block)
        _check_positive_int("window_blocks", self.window_blocks, 0)
        _check_positive_int("global_blocks", self.global_blocks, 0)
        _check_positive_int("random_blocks", self.random_blocks, 0)

    def n_blocks(self, L: int) -> int:
        return math.ceil(L / self.block)

    def block_layout(self, L: int) -> Tensor:
        """(nb, nb) bool block mask (CPU), deterministic from ``seed``."""
        return _bigbird_layout(self, self.n_blocks(L))

    def allowed(self, i: Tensor, j: Tensor) -> Tensor:
        L = int(max(int(i.max()), int(j.max()))) + 1
        layout = self.block_layout(L).to(i.device)
        return layout[i // self.block, j // self.block]

    def dense_mask(self, L: int, device: torch.device | str | None = None) -> Tensor:
        _check_positive_int("L", L)
        idx = torch.arange(L) // self.block
        return self.block_layout(L)[idx[:, None], idx[None, :]].to(device)

    def count_pairs(self, L: int) -> int:
        sizes = torch.full((self.n_blocks(L),), self.block, dtype=torch.float64)
        sizes[-1] = L - self.block * (len(sizes) - 1)
        return int(sizes @ self.block_layout(L).double() @ sizes)


_LAYOUT_CACHE: dict = {}


def _bigbird_layout(p: BigBird, nb: int) -> Tensor:
    key = (p, nb)
    if key in _LAYOUT_CACHE:
        return _LAYOUT_CACHE[key]
    a = torch.arange(nb)
    layout = (a[:, None] - a[None, :]).abs() <= p.window_blocks
    g = p.global_blocks
    is_global = (a < g) | (a >= nb - g)
    layout |= is_global[:, None] | is_global[None, :]
    gen = torch.Generator().manual_seed(p.seed)
    if p.random_blocks:
        for row in range(nb):
            candidates = torch.nonzero(~layout[row]).squeeze(1)
            if len(candidates):
                pick = candidates[torch.randperm(len(candidates), generator=gen)[: p.random_blocks]]
                layout[row, pick] = True
    if len(_LAYOUT_CACHE) > 32:
        _LAYOUT_CACHE.clear()
    _LAYOUT_CACHE[key] = layout
    return layout


@dataclass(frozen=True)
class Strided(Pattern):
    """Sparse Transformer factorised patterns (Child et al.).

    ``mode="strided"``: allowed iff ``|i - j| < stride`` or ``(i - j) % stride == 0``.
    ``mode="fixed"``: allowed iff ``i // stride == j // stride`` or
    ``j % stride >= stride - summary``. ``causal`` adds ``j <= i``.
    """

    stride: int
    mode: str = "strided"
    summary: int = 1
    causal: bool = True

    def __post_init__(self) -> None:
        _check_positive_int("stride", self.stride)
        if self.mode not in ("strided", "fixed"):
            raise ValueError(f"mode must be 'strided' or 'fixed', got {self.mode!r}")
        _check_positive_int("summary", self.summary)
        if self.summary > self.stride:
            raise ValueError(f"summary ({self.summary}) must not exceed stride ({self.stride})")

    def allowed(self, i: Tensor, j: Tensor) -> Tensor:
        s = self.stride
        if self.mode == "strided":
            d = i - j
            m = (d.abs() < s) | (d.remainder(s) == 0)
        else:
            m = (i // s == j // s) | (j.remainder(s) >= s - self.summary)
        if self.causal:
            m = m & (j <= i)
        return m

    def count_pairs(self, L: int) -> int:
        s = self.stride
        if self.mode == "strided":
            sizes = torch.tensor([len(range(r, L, s)) for r in range(min(s, L))], dtype=torch.float64)
            per_class = sizes * (sizes + 1) / 2 if self.causal else sizes**2
            return band_pair_count(L, s - 1, self.causal) + int(per_class.sum()) - L
        n_full, rest = divmod(L, s)
        sizes = torch.tensor([s] * n_full + ([rest] if rest else []), dtype=torch.float64)
        total = int((sizes * (sizes + 1) / 2 if self.causal else sizes**2).sum())
        j = torch.arange(L)
        summary = j[j.remainder(s) >= s - self.summary]
        block = summary // s
        if self.causal:  # queries from the next block on
            total += int((L - (block + 1) * s).clamp(min=0).sum())
        else:  # every query outside the column's own block
            total += int((L - sizes.long()[block]).sum())
        return total


def as_causal(pattern: Pattern) -> Pattern:
    """The causal version of ``pattern``; ``ValueError`` for patterns that have none."""
    if getattr(pattern, "causal", False):
        return pattern
    if isinstance(pattern, BigBird):
        raise ValueError("BigBird is bidirectional only: it has no causal form")
    if hasattr(pattern, "causal") and "causal" in getattr(pattern, "__dataclass_fields__", {}):
        from dataclasses import replace

        return replace(pattern, causal=True)
    raise ValueError(f"{type(pattern).__name__} has no causal form")
