"""Tilings: how the blocked kernel covers a pattern without an ``L x L`` tensor.

A pattern is covered by a :class:`Tiling`: one or more :class:`Plan` parts whose key sets
are disjoint for every query (their softmax results are merged by log-sum-exp), plus
optional *global rows* (queries that attend every key, computed densely and written
over the result).

Inside one plan, queries are laid out in *slots* (an optional permutation of the
sequence, padded to a multiple of the block) and keys in key slots (by default the same
order). Query block ``n`` holds slots ``[n*block, (n+1)*block)`` and sees either

* a contiguous *span* of key slots starting at ``n*key_step - left`` (zero-padded at both
  ends, or wrapped cyclically), read through an overlapping strided view, or
* a list of gathered key blocks ``key_blocks[n]`` (block-sparse layouts such as BigBird).

Inside a tile the plan's element ``rule`` decides, on original token indices, who may
attend whom. Tiles that are translates of one reference tile are *regular*: they share
one precomputed ``template`` mask, so the hot loop adds a broadcast template instead of
evaluating the rule.

Which builder covers which pattern type lives in :mod:`longseq.kernels.registry`; the
builders below register themselves there, and :func:`tiling_for` looks them up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from longseq.geometry import band_pair_count
from longseq.kernels.registry import register_tiling, tiling_for
from longseq.patterns import BigBird, Dense, SlidingWindow, Strided, Window2D

__all__ = [
    "Plan", "Tiling", "Rule", "DEFAULT_BLOCK", "register_tiling", "tiling_for", "band_pair_count", "block_for",
    "mark_regular", "global_key_plan", "band_plan", "dense_tiling", "sliding_window_tiling", "window2d_tiling",
    "bigbird_tiling", "strided_tiling",
]

Rule = Callable[[Tensor, Tensor], Tensor]

DEFAULT_BLOCK = 128


def _always(i: Tensor, j: Tensor) -> Tensor:
    return torch.ones_like(i - j, dtype=torch.bool)


def _causal(i: Tensor, j: Tensor) -> Tensor:
    return j <= i


@dataclass
class Plan:
    """One part of a tiling (see module docstring)."""

    L: int
    block: int
    n_blocks: int
    span: int = 0
    left: int = 0
    slots: Tensor | None = None  # (n_blocks*block,) original index per query slot, -1 = padding
    rule: Rule = _always  # element rule inside tiles, on original indices
    template: Tensor | None = None  # (block, span) bool for regular blocks
    regular: Tensor | None = None  # (n_blocks,) bool
    key_step: int = -1  # key-span start distance between consecutive blocks; -1 = block
    wrap: bool = False
    key_slots: Tensor | None = None  # original index per key slot (-1 = padding); None = query order
    key_blocks: Tensor | None = None  # (n_blocks, K) gathered key-block indices, -1 = none

    def __post_init__(self) -> None:
        if self.key_step < 0:
            self.key_step = self.block
        if self.key_blocks is not None:
            self.span = self.key_blocks.shape[1] * self.block
        elif self.key_step == self.block:
            # Spans are cut into block-sized segments for the overlap-add of key gradients.
            self.span = math.ceil(self.span / self.block) * self.block

    @property
    def n_slots(self) -> int:
        return self.n_blocks * self.block

    def query_index(self, device: torch.device) -> Tensor:
        """(n_blocks, block) original index of every query slot, -1 = padding."""
        if self.slots is None:
            idx = torch.arange(self.n_slots, device=device)
            idx = torch.where(idx < self.L, idx, -1)
        else:
            idx = self.slots.to(device)
        return idx.view(self.n_blocks, self.block)

    def _key_base(self, device: torch.device) -> Tensor:
        if self.key_slots is not None:
            return self.key_slots.to(device)
        return self.query_index(device).reshape(-1)

    @property
    def contiguous_keys(self) -> bool:
        """Keys in original order at slot offset ``left`` (no gather needed)."""
        return self.slots is None and self.key_slots is None and not self.wrap and self.key_blocks is None

    def key_pad(self, n_key_slots: int) -> tuple[int, int]:
        """Slots added before and after the key slots so every span is in range."""
        if self.key_blocks is not None:
            return 0, self.block  # one trash block of padding for "no block" (-1) entries
        needed = (self.n_blocks - 1) * self.key_step + self.span  # padded key slots read
        return self.left, max(0, needed - self.left - n_key_slots)

    def key_index(self, device: torch.device) -> Tensor:
        """(front + key slots + back,) original index of every padded key slot, -1 = padding."""
        base = self._key_base(device)
        front, back = self.key_pad(base.numel())
        if self.wrap:
            n = base.numel()
            reps = math.ceil((front + back) / max(1, n)) + 1
            start = reps * n - front
            return base.repeat(2 * reps + 1)[start : start + front + n + back].clone()
        pad = base.new_full((1,), -1)
        return torch.cat([pad.expand(front), base, pad.expand(back)])

    def block_keys(self, key_index: Tensor, n0: int, n1: int) -> Tensor:
        """(n1-n0, span) original key index per tile of blocks [n0, n1)."""
        if self.key_blocks is not None:
            kb = self.key_blocks[n0:n1].to(key_index.device)
            trash = key_index.numel() // self.block - 1
            kb = torch.where(kb >= 0, kb, trash)
            return key_index.view(-1, self.block)[kb].reshape(n1 - n0, self.span)
        key_index = key_index.contiguous()
        return key_index.as_strided((n1 - n0, self.span), (self.key_step, 1),
                                    key_index.storage_offset() + n0 * self.key_step)


@dataclass
class Tiling:
    """All parts covering one pattern at one length."""

    parts: list[Plan]
    global_rows: Tensor | None = None  # (G,) query indices attending every key (rule: row_rule)
    row_rule: Rule | None = None


def mark_regular(plan: Plan, device: torch.device, extra_irregular: Tensor | None = None) -> Plan:
    """Find tiles that are translates of a reference tile; store its mask as the template.

    Only valid for rules that depend on ``i - j`` alone (in original indices).
    """
    q = plan.query_index(device)
    kidx = plan.block_keys(plan.key_index(device), 0, plan.n_blocks)
    ok = (q >= 0).all(1) & (kidx >= 0).all(1)
    if extra_irregular is not None:
        ok &= ~extra_irregular
    q_off = q - q[:, :1]
    k_off = kidx - q[:, :1]
    if bool(ok.any()):
        ref = int(torch.nonzero(ok)[0])
        ok &= (q_off == q_off[ref]).all(1) & (k_off == k_off[ref]).all(1)
        plan.template = plan.rule(q[ref][:, None], kidx[ref][None, :])
    plan.regular = ok
    return plan


def block_for(L: int, block: int = DEFAULT_BLOCK) -> int:
    """Short sequences get one block rounded to 16, not a mostly-padding block of 128."""
    return min(block, max(16, math.ceil(L / 16) * 16))


def global_key_plan(L: int, keys: Tensor, rule: Rule | None, device: torch.device) -> Plan:
    """Every query block sees the same few key columns ``keys`` (global tokens)."""
    bq = block_for(L)
    plan = Plan(L=L, block=bq, n_blocks=math.ceil(L / bq), span=len(keys), key_step=0,
                key_slots=keys.to(device), rule=rule or _always)
    plan.regular = torch.zeros(plan.n_blocks, dtype=torch.bool, device=device)
    return plan


def band_plan(L: int, window: int, dilation: int, causal: bool, rule: Rule, device: torch.device,
              irregular_keys: Tensor | None = None, block: int = DEFAULT_BLOCK) -> Plan:
    """Band tiles; dilation lays each residue class mod ``dilation`` out contiguously.

    Every pair the band allows lies in one residue class mod ``dilation``, at most
    ``window`` class steps apart. Both are capped by the sequence: a dilation of ``L`` or
    more leaves one token per class (only ``i == j`` shares a class), and a class of ``n``
    tokens spans ``n - 1`` steps. So the slots and spans stay ``O(L)`` whatever the
    arguments, and ``rule`` (which keeps the uncapped values) decides the same pairs.
    """
    d = min(dilation, L)
    w = max(0, min(window, math.ceil(L / d) - 1))
    if d == 1:
        bq = block_for(L, block)
        n_blocks = math.ceil(L / bq)
        slots = None
    else:
        n_class_tokens = math.ceil(L / d)
        bq = block_for(n_class_tokens, block)
        per_class = math.ceil(n_class_tokens / bq) * bq
        n_blocks = d * per_class // bq
        # slot (r, m) holds token m*d + r; each class padded to whole blocks.
        r = torch.arange(d, device=device)[:, None]
        m = torch.arange(per_class, device=device)[None, :]
        tok = m * d + r
        slots = torch.where((tok < L) & (m < n_class_tokens), tok, -1).reshape(-1)
    span = bq + (w if causal else 2 * w)
    plan = Plan(L=L, block=bq, n_blocks=n_blocks, left=w, span=span, slots=slots, rule=rule)
    irregular = None
    if irregular_keys is not None:
        kidx = plan.block_keys(plan.key_index(device), 0, plan.n_blocks)
        irregular = torch.isin(kidx, irregular_keys).any(1)
    return mark_regular(plan, device, irregular)


@register_tiling(SlidingWindow)
def sliding_window_tiling(pattern: SlidingWindow, L: int, device: torch.device) -> Tiling:
    """Band (minus global columns) + a global-key strip + dense global rows."""
    g = pattern.global_tokens
    g_t = torch.tensor(g, device=device, dtype=torch.long) if g else None

    def rule(i: Tensor, j: Tensor) -> Tensor:
        m = pattern.band(i, j)
        if pattern.causal:
            m = m & (j <= i)
        if g_t is not None:
            m = m & ~torch.isin(j, g_t)
        return m

    parts = [band_plan(L, pattern.window, pattern.dilation, pattern.causal, rule, device, g_t)]
    if g_t is None:
        return Tiling(parts)
    parts.append(global_key_plan(L, g_t, _causal if pattern.causal else None, device))
    return Tiling(parts, global_rows=g_t, row_rule=_causal if pattern.causal else None)


@register_tiling(Dense)
def dense_tiling(pattern: Dense, L: int, device: torch.device) -> Tiling:
    """Every block sees every key (key_step 0)."""
    bq = block_for(L)
    n_blocks = math.ceil(L / bq)
    plan = Plan(L=L, block=bq, n_blocks=n_blocks, span=n_blocks * bq, rule=pattern.allowed, key_step=0)
    plan.regular = torch.zeros(n_blocks, dtype=torch.bool, device=device)
    return Tiling([plan])


@register_tiling(Window2D)
def window2d_tiling(pattern: Window2D, L: int, device: torch.device) -> Tiling:
    """One tile per (rolled, padded) window: the window attends itself.

    Windows are ``pattern.window_shape`` (cut to the grid where ``window_size`` exceeds
    it), so the slots number ``O(L)`` whatever ``window_size`` is."""
    wy, wx = pattern.window_shape
    hp, wp = pattern.padded_grid
    n_windows = (hp // wy) * (wp // wx)
    bq = wy * wx
    idx = torch.arange(L, device=device)
    window, region, slot = pattern.window_and_region(idx)
    slots = torch.full((n_windows * bq,), -1, dtype=torch.long, device=device)
    slots[window * bq + slot] = idx
    plan = Plan(L=L, block=bq, n_blocks=n_windows, span=bq, slots=slots, rule=pattern.allowed)
    # Regular = full window inside one Swin region: everyone attends everyone.
    full = (slots.view(n_windows, bq) >= 0).all(1)
    reg_per_window = torch.zeros(n_windows, 9, dtype=torch.long, device=device)
    reg_per_window.index_put_((window, region), torch.ones_like(region), accumulate=True)
    one_region = (reg_per_window > 0).sum(1) == 1
    plan.regular = full & one_region
    plan.template = torch.ones(bq, bq, dtype=torch.bool, device=device)
    return Tiling([plan])


def _gathered_plan(L: int, block: int, slots: Tensor | None, key_lists: list[list[int]], rule: Rule,
                   device: torch.device, full_template: bool) -> Plan:
    """A plan whose block ``n`` sees the key blocks ``key_lists[n]`` (same slot order)."""
    n_blocks = len(key_lists)
    K = max(1, max(len(x) for x in key_lists))
    kb = torch.full((n_blocks, K), -1, dtype=torch.long)
    for n, blocks in enumerate(key_lists):
        kb[n, : len(blocks)] = torch.tensor(blocks, dtype=torch.long)
    plan = Plan(L=L, block=block, n_blocks=n_blocks, slots=slots, rule=rule, key_blocks=kb.to(device))
    q = plan.query_index(device)
    kidx = plan.block_keys(plan.key_index(device), 0, n_blocks)
    plan.regular = (q >= 0).all(1) & (kidx >= 0).all(1) & full_template
    plan.template = torch.ones(block, plan.span, dtype=torch.bool, device=device)
    return plan


@register_tiling(BigBird)
def bigbird_tiling(pattern: BigBird, L: int, device: torch.device) -> Tiling:
    """Gathered key blocks per query block; global query blocks become dense rows."""
    # A block of L tokens or more is one block holding the whole sequence: slots stay O(L).
    bq = min(pattern.block, L)
    layout = pattern.block_layout(L)
    nb = layout.shape[0]
    g = pattern.global_blocks
    is_global = [a < g or a >= nb - g for a in range(nb)]
    # Global query blocks are computed as dense rows below; their tiles (whose outputs are
    # overwritten) only see their neighbours, so they do not widen every tile to L keys.
    key_lists = [
        torch.nonzero(layout[a]).squeeze(1).tolist()
        if not is_global[a]
        else list(range(max(0, a - pattern.window_blocks), min(nb, a + pattern.window_blocks + 1)))
        for a in range(nb)
    ]
    plan = _gathered_plan(L, bq, None, key_lists, _always, device, True)
    rows = None
    if g:
        blocks = sorted(set(range(min(g, nb))) | set(range(max(0, nb - g), nb)))
        rows = torch.cat([torch.arange(b * bq, min((b + 1) * bq, L)) for b in blocks]).to(device)
    return Tiling([plan], global_rows=rows)


def _residue_slots(L: int, stride: int, block: int, device: torch.device) -> tuple[Tensor, int, int]:
    """Slots grouping tokens by ``i % stride``, each class padded to whole blocks."""
    n_class = math.ceil(L / stride)
    bq = block_for(n_class, block)
    per_class = math.ceil(n_class / bq) * bq
    r = torch.arange(stride, device=device)[:, None]
    m = torch.arange(per_class, device=device)[None, :]
    tok = m * stride + r
    slots = torch.where(tok < L, tok, -1).reshape(-1)
    return slots, bq, per_class // bq


@register_tiling(Strided)
def strided_tiling(pattern: Strided, L: int, device: torch.device) -> Tiling:
    """Sparse Transformer layouts: a band plus residue classes ("strided"), or blocks plus
    a strip of summary columns ("fixed")."""
    # A stride of L or more allows every (causal) pair in both modes, as a stride of L
    # does: capping it keeps the slots and spans O(L) and changes no pair.
    s, causal = min(pattern.stride, L), pattern.causal
    summary_width = min(pattern.summary, s)
    if pattern.mode == "strided":
        # Part 1: the local band without the diagonal. Part 2: whole residue classes
        # (which own the diagonal), as gathered blocks.
        def near(i: Tensor, j: Tensor) -> Tensor:
            d = i - j
            m = (d.abs() < s) & (d != 0)
            return m & (j <= i) if causal else m

        parts = [band_plan(L, max(s - 1, 0), 1, causal, near, device)] if s > 1 else []
        slots, bq, n_pc = _residue_slots(L, min(s, L), DEFAULT_BLOCK, device)
        key_lists = []
        for r in range(min(s, L)):
            for m in range(n_pc):
                last = m if causal else n_pc - 1
                key_lists.append([r * n_pc + t for t in range(last + 1)])
        same_class = (lambda i, j: j <= i) if causal else _always
        parts.append(_gathered_plan(L, bq, slots, key_lists, same_class, device, not causal))
        return Tiling(parts)

    # fixed: blocks of `stride` tokens attend themselves; summary columns of earlier
    # (or, bidirectionally, all other) blocks are a shared strip of keys.
    bq = s * max(1, DEFAULT_BLOCK // s)

    def same_block(i: Tensor, j: Tensor) -> Tensor:
        m = i // s == j // s
        return m & (j <= i) if causal else m

    band = band_plan(L, s - 1, 1, causal, same_block, device, block=bq)
    j = torch.arange(L, device=device)
    summary = j[j.remainder(s) >= s - summary_width]

    def other_block(i: Tensor, jj: Tensor) -> Tensor:
        m = i // s != jj // s
        return m & (jj <= i) if causal else m

    strip = global_key_plan(L, summary, other_block, device)
    return Tiling([band, strip])
