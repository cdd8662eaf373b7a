"""Block plans: how the blocked kernel covers a pattern without an ``L x L`` tensor.

Tokens are laid out in *slots* (an optional permutation of the sequence, padded to a
multiple of the query block). Query block ``n`` holds slots ``[n*block, (n+1)*block)`` and
sees the ``span`` key slots starting at ``n*key_step - left`` (zero-padded at both ends,
or wrapped cyclically). Inside that tile the pattern's element rule decides, on original
token indices, who may attend whom. Blocks whose tile is a translate of one reference
tile are *regular*: they share one precomputed ``template`` mask, so the hot loop adds a
broadcast template instead of evaluating the rule.

Global tokens are covered by two small dense parts instead of tiles: ``global_keys``
(columns every query may attend, merged with the tiles by log-sum-exp) and
``global_rows`` (queries that attend every key, computed densely and written over).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

Rule = Callable[[Tensor, Tensor], Tensor]

DEFAULT_BLOCK = 128


@dataclass
class Plan:
    """A pattern's tiling for one sequence length (see module docstring)."""

    L: int
    block: int
    n_blocks: int
    left: int
    span: int
    slots: Tensor | None  # (n_blocks*block,) original index per slot, -1 = padding; None = identity
    rule: Rule  # element rule used inside tiles, on original indices
    template: Tensor | None  # (block, span) bool for regular blocks
    regular: Tensor | None  # (n_blocks,) bool
    key_step: int = -1  # slot distance between the key spans of consecutive blocks; -1 = block
    wrap: bool = False
    global_keys: Tensor | None = None  # (G,) key indices attended by every query (rule: key_rule)
    key_rule: Rule | None = None
    global_rows: Tensor | None = None  # (G,) query indices attending every key (rule: row_rule)
    row_rule: Rule | None = None

    def __post_init__(self) -> None:
        if self.key_step < 0:
            self.key_step = self.block
        # Key spans are cut into `block`-sized segments for the overlap-add of key gradients.
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

    @property
    def key_pad(self) -> tuple[int, int]:
        """Slots added before and after the slot sequence so every key span is in range."""
        last_end = (self.n_blocks - 1) * self.key_step - self.left + self.span
        return self.left, max(0, last_end - self.n_slots)

    def key_index(self, device: torch.device) -> Tensor:
        """(left + n_slots + right,) original index of every padded key slot, -1 = padding."""
        flat = self.query_index(device).reshape(-1)
        front, back = self.key_pad
        if self.wrap:
            reps = math.ceil((front + back) / max(1, self.n_slots)) + 1
            tiled = flat.repeat(2 * reps + 1)
            start = reps * self.n_slots - front
            return tiled[start : start + front + self.n_slots + back]
        pad = flat.new_full((1,), -1)
        return torch.cat([pad.expand(front), flat, pad.expand(back)])

    def block_keys(self, key_index: Tensor, n0: int, n1: int) -> Tensor:
        """(n1-n0, span) original key index per tile of blocks [n0, n1)."""
        return key_index.as_strided((n1 - n0, self.span), (self.key_step, 1), n0 * self.key_step)


def _mark_regular(plan: Plan, device: torch.device, extra_irregular: Tensor | None = None) -> Plan:
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


def _block_for(L: int, block: int = DEFAULT_BLOCK) -> int:
    # Short sequences get one block rounded to 16, not a mostly-padding block of 128.
    return min(block, max(16, math.ceil(L / 16) * 16))


def sliding_window_plan(pattern, L: int, device: torch.device, block: int = DEFAULT_BLOCK) -> Plan:
    """Band tiles; dilation lays each residue class mod ``dilation`` out contiguously."""
    d, w = pattern.dilation, pattern.window
    g = pattern.global_tokens
    g_t = torch.tensor(g, device=device, dtype=torch.long) if g else None

    def rule(i: Tensor, j: Tensor) -> Tensor:
        m = pattern.band(i, j)
        if pattern.causal:
            m = m & (j <= i)
        if g_t is not None:
            m = m & ~torch.isin(j, g_t)
        return m

    if d == 1:
        bq = _block_for(L, block)
        n_blocks = math.ceil(L / bq)
        slots = None
        n_class_tokens = L
    else:
        n_class_tokens = math.ceil(L / d)
        bq = _block_for(n_class_tokens, block)
        per_class = math.ceil(n_class_tokens / bq) * bq
        n_blocks = d * per_class // bq
        # slot (r, m) holds token m*d + r; each class padded to whole blocks.
        r = torch.arange(d, device=device)[:, None]
        m = torch.arange(per_class, device=device)[None, :]
        tok = m * d + r
        slots = torch.where((tok < L) & (m < n_class_tokens), tok, -1).reshape(-1)
    span = bq + (w if pattern.causal else 2 * w)
    plan = Plan(L=L, block=bq, n_blocks=n_blocks, left=w, span=span, slots=slots, rule=rule,
                template=None, regular=None)
    irregular = None
    if g_t is not None:
        kidx = plan.block_keys(plan.key_index(device), 0, plan.n_blocks)
        irregular = torch.isin(kidx, g_t).any(1)
        plan.global_keys = g_t
        plan.key_rule = (lambda i, j: j <= i) if pattern.causal else None
        plan.global_rows = g_t
        plan.row_rule = (lambda i, j: j <= i) if pattern.causal else None
    return _mark_regular(plan, device, irregular)


def dense_plan(pattern, L: int, device: torch.device, block: int = DEFAULT_BLOCK) -> Plan:
    """Every block sees every key (key_step 0): used when a bias must be applied densely."""
    bq = _block_for(L, block)
    n_blocks = math.ceil(L / bq)
    plan = Plan(L=L, block=bq, n_blocks=n_blocks, left=0, span=n_blocks * bq, slots=None,
                rule=pattern.allowed, template=None, regular=None, key_step=0)
    plan.regular = torch.zeros(n_blocks, dtype=torch.bool, device=device)
    return plan


def window2d_plan(pattern, L: int, device: torch.device) -> Plan:
    """One tile per (rolled, padded) window: the window attends itself."""
    ws = pattern.window_size
    hp, wp = pattern.padded_grid
    n_windows = (hp // ws) * (wp // ws)
    bq = ws * ws
    idx = torch.arange(L, device=device)
    window, region, slot = pattern.window_and_region(idx)
    slots = torch.full((n_windows * bq,), -1, dtype=torch.long, device=device)
    slots[window * bq + slot] = idx
    plan = Plan(L=L, block=bq, n_blocks=n_windows, left=0, span=bq, slots=slots,
                rule=pattern.allowed, template=None, regular=None)
    # Regular = full window inside one Swin region: everyone attends everyone.
    full = (slots.view(n_windows, bq) >= 0).all(1)
    reg_per_window = torch.zeros(n_windows, 9, dtype=torch.long, device=device)
    reg_per_window.index_put_((window, region), torch.ones_like(region), accumulate=True)
    one_region = (reg_per_window > 0).sum(1) == 1
    plan.regular = full & one_region
    plan.template = torch.ones(bq, bq, dtype=torch.bool, device=device)
    return plan
