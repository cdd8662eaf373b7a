"""Attention patterns: who may attend to whom.

A pattern is a small frozen dataclass. It answers two questions:

* ``allowed(i, j)``: the element rule, on broadcastable integer index tensors
  (True = query ``i`` may attend key ``j``; the one mask convention of longseq).
* ``dense_mask(L)``: the same rule as an ``(L, L)`` boolean matrix, the test reference
  fed to ``torch.nn.functional.scaled_dot_product_attention``.

Patterns know no kernel: :mod:`longseq.kernels.plan` turns each of them into a tiling
of the blocked kernel (``tiling_for(pattern, L, device)``), and data-dependent patterns
such as :class:`LSH` get their implementation from :mod:`longseq.kernels` too.
Patterns never hold tensors of size ``L``; they are cheap to build and hashable. Their
fields are checked when built: a wrong type raises
:class:`~longseq.patterns_base.ArgumentTypeError` (a ``TypeError`` that is also a
``ValueError``), a wrong value ``ValueError``, each naming the field
(``SlidingWindow.window must be a positive int, got 'x'``). Values far beyond any
sequence (``window=10**9``) are valid: the kernels cap them at the sequence length.

:class:`TopK`, :class:`Hierarchical`, :class:`Routing` and :class:`SegmentRecurrence` are
defined in their own modules (``patterns_topk.py`` and so on) and re-exported here; see
docs/patterns.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from longseq.geometry import band_pair_count
from longseq.patterns_base import (
    ArgumentTypeError, Pattern, _check_positive_int, check_bool, check_int, check_seed, set_fields,
)
from longseq.patterns_hierarchical import Hierarchical
from longseq.patterns_lsh import LSH
from longseq.patterns_routing import Routing
from longseq.patterns_segment import SegmentRecurrence
from longseq.patterns_topk import TopK

__all__ = ["Pattern", "Dense", "SlidingWindow", "Window2D", "BigBird", "Strided", "LSH", "TopK", "Hierarchical",
           "Routing", "SegmentRecurrence", "as_causal"]

# Reaches and strides are compared with index differences below L: capping them here
# keeps huge values (window=10**30) from overflowing int64 without changing any mask.
_INDEX_CAP = 2**62


def _index_tuple(label: str, value: object) -> tuple[int, ...]:
    """A sequence of non-negative int indices as a tuple; errors name ``label``."""
    kind = "a sequence of non-negative int indices or None"
    if isinstance(value, (str, bytes)):
        raise ArgumentTypeError(f"{label} must be {kind}, got {value!r}")
    try:
        items = list(value)  # type: ignore[call-overload]
    except TypeError:
        raise ArgumentTypeError(f"{label} must be {kind}, got {value!r}") from None
    return tuple(check_int(label, t, 0, kind) for t in items)


@dataclass(frozen=True)
class Dense(Pattern):
    """Every query attends every key (``j <= i`` when causal)."""

    causal: bool = False

    def __post_init__(self) -> None:
        set_fields(self, causal=check_bool("Dense.causal", self.causal))

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
        set_fields(self, window=check_int("SlidingWindow.window", self.window),
                   dilation=check_int("SlidingWindow.dilation", self.dilation),
                   causal=check_bool("SlidingWindow.causal", self.causal))
        if self.global_tokens is not None:
            tokens = _index_tuple("SlidingWindow.global_tokens", self.global_tokens)
            set_fields(self, global_tokens=tuple(sorted(set(tokens))) or None)

    def band(self, i: Tensor, j: Tensor) -> Tensor:
        d = i - j
        band = d.abs() <= min(self.window * self.dilation, _INDEX_CAP)
        if self.dilation > 1:
            band = band & (d.remainder(min(self.dilation, _INDEX_CAP)) == 0)
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

    A window longer than an axis of the grid covers that whole axis; the tiling then cuts
    it to the axis (:meth:`axis_windows`), so what the kernels lay out stays proportional
    to the grid whatever ``window_size`` is, and no allowed pair changes.
    """

    window_size: int
    grid: tuple[int, int]
    shift: int = 0

    def __post_init__(self) -> None:
        ws = check_int("Window2D.window_size", self.window_size)
        kind = "a tuple of two positive ints (H, W)"
        if isinstance(self.grid, (str, bytes)):
            raise ArgumentTypeError(f"Window2D.grid must be {kind}, got {self.grid!r}")
        try:
            grid = tuple(self.grid)
        except TypeError:
            raise ArgumentTypeError(f"Window2D.grid must be {kind}, got {self.grid!r}") from None
        if len(grid) != 2:
            raise ValueError(f"Window2D.grid must be {kind}, got {self.grid!r}")
        grid = (check_int("Window2D.grid[0]", grid[0], kind=kind), check_int("Window2D.grid[1]", grid[1], kind=kind))
        shift_kind = "an int in [0, window_size)"
        shift = check_int("Window2D.shift", self.shift, 0, shift_kind)
        if shift >= ws:
            raise ValueError(f"Window2D.shift must be {shift_kind} = [0, {ws}), got {self.shift!r}")
        set_fields(self, window_size=ws, grid=grid, shift=shift)

    def axis_windows(self) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """Per grid axis (rows, then columns): (window length, shift, padded length).

        Where ``window_size`` is at least the axis, the axis holds one window: it is cut to
        the axis length and the shift is kept only when smaller than the axis. Both give
        the same allowed pairs as Swin's padded layout: one window per axis, split by the
        shift into the tokens before and from it (Swin's regions). Elsewhere the window
        is ``window_size`` and the padded length a multiple of it.
        """
        ws, s = self.window_size, self.shift

        def axis(g: int) -> tuple[int, int, int]:
            if not isinstance(g, torch.SymInt) and ws >= g:
                return g, (s if s < g else 0), g
            # integer ceil without negative floor division (which ONNX export mistranslates)
            return ws, s, (g + ws - 1) // ws * ws

        return axis(self.grid[0]), axis(self.grid[1])

    @property
    def padded_grid(self) -> tuple[int, int]:
        """(H, W) padded to whole windows (see :meth:`axis_windows`)."""
        (_, _, hp), (_, _, wp) = self.axis_windows()
        return hp, wp

    @property
    def window_shape(self) -> tuple[int, int]:
        """(rows, columns) of a window in the tiling (see :meth:`axis_windows`)."""
        (wy, _, _), (wx, _, _) = self.axis_windows()
        return wy, wx

    def coords(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """Row and column of flattened grid indices."""
        row = idx // self.grid[1]
        return row, idx - row * self.grid[1]  # no symbolic % in onnxscript

    def window_and_region(self, idx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """For flattened indices: (window id, Swin region id, slot inside the window).

        Windows and slots follow :meth:`axis_windows`: a slot is ``row * cols + col``
        inside a ``window_shape`` window."""
        (wy, sy, hp), (wx, sx, wp) = self.axis_windows()
        y, x = self.coords(idx)

        def rolled(c: Tensor, s: int, n: int) -> Tensor:
            # position after torch.roll(-s), as floor-division remainders (export-friendly)
            return (c - s) - ((c - s) // n) * n

        def region(r: Tensor, n: int, w: int, s: int) -> Tensor:
            # Swin's slices (0, -w), (-w, -s), (-s, None) on one axis.
            if s == 0:
                return torch.zeros_like(r)
            return (r >= n - w).long() + (r >= n - s).long()

        ry, rx = rolled(y, sy, hp), rolled(x, sx, wp)
        window = (ry // wy) * (wp // wx) + rx // wx
        reg = region(ry, hp, wy, sy) * 3 + region(rx, wp, wx, sx)
        slot = (ry % wy) * wx + rx % wx
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
        set_fields(self, block=check_int("BigBird.block", self.block),
                   window_blocks=check_int("BigBird.window_blocks", self.window_blocks, 0),
                   global_blocks=check_int("BigBird.global_blocks", self.global_blocks, 0),
                   random_blocks=check_int("BigBird.random_blocks", self.random_blocks, 0),
                   seed=check_seed("BigBird.seed", self.seed))

    def n_blocks(self, L: int) -> int:
        return math.ceil(L / self.block)

    def block_layout(self, L: int) -> Tensor:
        """(nb, nb) bool block mask (CPU), deterministic from ``seed``."""
        return _bigbird_layout(self, self.n_blocks(L))

    def allowed(self, i: Tensor, j: Tensor) -> Tensor:
        L = int(max(int(i.max()), int(j.max()))) + 1
        layout = self.block_layout(L).to(i.device)
        block = min(self.block, _INDEX_CAP)
        return layout[i // block, j // block]

    def dense_mask(self, L: int, device: torch.device | str | None = None) -> Tensor:
        _check_positive_int("L", L)
        idx = torch.arange(L) // min(self.block, _INDEX_CAP)
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
    # capped at nb: larger values mean the same and would overflow int64 comparisons
    layout = (a[:, None] - a[None, :]).abs() <= min(p.window_blocks, nb)
    g = min(p.global_blocks, nb)
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
        stride = check_int("Strided.stride", self.stride)
        if not isinstance(self.mode, str):
            raise ArgumentTypeError(f"Strided.mode must be 'strided' or 'fixed', got {self.mode!r}")
        if self.mode not in ("strided", "fixed"):
            raise ValueError(f"Strided.mode must be 'strided' or 'fixed', got {self.mode!r}")
        summary = check_int("Strided.summary", self.summary)
        if summary > stride:
            raise ValueError(f"Strided.summary ({summary}) must not exceed Strided.stride ({stride})")
        set_fields(self, stride=stride, summary=summary, causal=check_bool("Strided.causal", self.causal))

    def allowed(self, i: Tensor, j: Tensor) -> Tensor:
        s = min(self.stride, _INDEX_CAP)
        if self.mode == "strided":
            d = i - j
            m = (d.abs() < s) | (d.remainder(s) == 0)
        else:
            m = (i // s == j // s) | (j.remainder(s) >= min(self.stride - self.summary, _INDEX_CAP))
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
        s = min(s, _INDEX_CAP)
        summary = j[j.remainder(s) >= min(self.stride - self.summary, _INDEX_CAP)]
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
