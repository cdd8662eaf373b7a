"""The blocked attention kernel: tiles from a :class:`~longseq.kernels.plan.Plan`.

Memory: besides q, k, v, the output and their gradients, the kernel keeps one
log-sum-exp per query and ``O(chunk x block x span)`` working memory; nothing of size
``L x L`` is ever formed. Backward recomputes each tile's probabilities from the saved
log-sum-exp (flash-attention style), so activation memory is independent of the pattern.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
from torch import Tensor

from longseq.kernels import tiles
from longseq.kernels.plan import Plan

__all__ = ["blocked_attention", "use_backend", "merge_partial"]

_BACKEND = "auto"
_CHUNK_BYTES = 32 * 2**20
NEG_INF = float("-inf")


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Force the tile backend (``"auto"``, ``"flash"`` or ``"math"``) inside a ``with`` block."""
    global _BACKEND
    if name not in ("auto", "flash", "math"):
        raise ValueError(f"backend must be 'auto', 'flash' or 'math', got {name!r}")
    old, _BACKEND = _BACKEND, name
    try:
        yield
    finally:
        _BACKEND = old


def _pick_backend(q: Tensor, dropout_p: float, bias_grad: bool) -> tuple[str, str]:
    """(forward, backward) tile backends.

    On CPU ``auto`` runs the fused flash kernel forward and the matmul backward, which
    measured faster than the fused CPU backward on window tiles (docs/benchmarks.md).
    """
    flash_ok = q.device.type == "cpu" and dropout_p == 0.0 and not bias_grad
    if _BACKEND == "flash":
        if not flash_ok:
            raise ValueError("the flash backend needs a CPU tensor, dropout_p=0 and no learnable bias")
        return "flash", "flash"
    if _BACKEND == "math" or not flash_ok:
        return "math", "math"
    return "flash", "math"


def merge_partial(out1: Tensor, lse1: Tensor, out2: Tensor, lse2: Tensor) -> tuple[Tensor, Tensor]:
    """Combine two softmax-attention results over disjoint key sets.

    ``out*`` (..., L, D), ``lse*`` (..., L) float32; ``-inf`` lse marks an empty part.
    """
    m = torch.maximum(lse1, lse2)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    w1, w2 = (lse1 - m).exp(), (lse2 - m).exp()
    total = w1 + w2
    acc = w1.dtype
    out = (out1.to(acc) * w1.unsqueeze(-1) + out2.to(acc) * w2.unsqueeze(-1)) / total.clamp_min(
        torch.finfo(acc).tiny
    ).unsqueeze(-1)
    return out.to(out1.dtype), m + total.log()


class _Context:
    """Index bookkeeping shared by forward and backward of one call."""

    def __init__(self, plan: Plan, B: int, H: int, device: torch.device, key_mask: Tensor | None,
                 bias, pattern, dtype: torch.dtype) -> None:
        self.plan, self.B, self.H, self.G = plan, B, H, B * H
        self.bias, self.pattern, self.key_mask = bias, pattern, key_mask
        self.qidx = plan.query_index(device)  # (n_blocks, block)
        self.kidx = plan.key_index(device)  # (Lk,)
        valid = self.kidx >= 0
        self.kvalid_pos = torch.nonzero(valid).squeeze(1)
        self.kvalid_idx = self.kidx[valid]
        if plan.slots is not None:
            slots = plan.slots.to(device)
            self.q_slot_of = torch.empty(plan.L, dtype=torch.long, device=device)
            real = slots >= 0
            self.q_slot_of[slots[real]] = torch.nonzero(real).squeeze(1)
        else:
            self.q_slot_of = None
        regular = plan.regular if plan.regular is not None else torch.zeros(plan.n_blocks, dtype=torch.bool)
        regular = regular.to(device)
        if key_mask is not None:
            spans = plan.block_keys(self.kidx, 0, plan.n_blocks).clamp(min=0)  # (n_blocks, span)
            km_ok = key_mask[:, spans].all(-1).all(0)
            regular = regular & km_ok
        self.regular = regular.cpu()
        self.template = None
        self._template_biased = None
        if plan.template is not None and bool(self.regular.any()):
            ref = int(torch.nonzero(self.regular)[0])
            self.ref = ref
            self.template = self._float_mask(plan.template.to(device), dtype)[None, None]  # (1, 1, bq, span)
            self.template_rows = plan.template.any(-1).to(device)  # (bq,)
        span = plan.span
        per_block = max(1, self.G * plan.block * span * 4)
        self.chunk = max(1, _CHUNK_BYTES // per_block)

    @staticmethod
    def _float_mask(allowed: Tensor, dtype: torch.dtype) -> Tensor:
        return torch.zeros(allowed.shape, dtype=torch.float32, device=allowed.device).masked_fill_(
            ~allowed, NEG_INF
        )

    def chunks(self) -> Iterator[tuple[int, int]]:
        n = self.plan.n_blocks
        # Runs of regular / irregular blocks are chunked separately so regular runs
        # can use the broadcast template.
        reg = self.regular.tolist()
        start = 0
        while start < n:
            kind = reg[start]
            end = start + 1
            while end < n and reg[end] == kind and end - start < self.chunk:
                end += 1
            yield start, end
            start = end

    def to_slots(self, x: Tensor, zero_pad: bool = False) -> Tensor:
        """(B, H, L, D) -> (G, n_slots, D) query slots; padding slots hold zeros if asked."""
        plan = self.plan
        x = x.reshape(self.G, plan.L, x.shape[-1])
        if plan.slots is None:
            return torch.nn.functional.pad(x, (0, 0, 0, plan.n_slots - plan.L))
        flat = self.qidx.reshape(-1)
        xs = x.index_select(1, flat.clamp(min=0))
        if zero_pad:
            # Padding slots borrowed token 0's values; their output gradient must be zero.
            xs = xs * (flat >= 0).to(xs.dtype)[None, :, None]
        return xs

    def to_key_slots(self, x: Tensor) -> Tensor:
        """(B, H, L, D) -> (G, Lk, D) padded key slots."""
        x = x.reshape(self.G, self.plan.L, x.shape[-1])
        if self.plan.slots is None and not self.plan.wrap:
            front, back = self.plan.key_pad
            return torch.nn.functional.pad(x, (0, 0, front, back + self.plan.n_slots - self.plan.L))
        return x.index_select(1, self.kidx.clamp(min=0))

    def from_slots(self, xs: Tensor) -> Tensor:
        """(G, n_slots, ...) -> (B, H, L, ...)."""
        if self.q_slot_of is None:
            x = xs[:, : self.plan.L]
        else:
            x = xs.index_select(1, self.q_slot_of)
        return x.reshape(self.B, self.H, self.plan.L, *xs.shape[2:])

    def from_key_slots(self, xs: Tensor) -> Tensor:
        """(G, Lk, D) key-slot gradients -> (B, H, L, D), summing duplicates (wrap)."""
        out = xs.new_zeros(self.G, self.plan.L, xs.shape[-1])
        out.index_add_(1, self.kvalid_idx, xs.index_select(1, self.kvalid_pos))
        return out.reshape(self.B, self.H, self.plan.L, -1)

    def tile_views(self, qs: Tensor, kp: Tensor, vp: Tensor, n0: int, n1: int) -> tuple[Tensor, Tensor, Tensor]:
        """Overlapping strided views (n, G, bq|span, D): no copies of key blocks."""
        plan, G = self.plan, self.G
        D = qs.shape[-1]
        n = n1 - n0
        qv = qs.as_strided((n, G, plan.block, D), (plan.block * D, qs.stride(0), D, 1), qs.storage_offset() + n0 * plan.block * D)
        kshape = (n, G, plan.span, D)
        kstride = (plan.key_step * D, kp.stride(0), D, 1)
        kv = kp.as_strided(kshape, kstride, kp.storage_offset() + n0 * plan.key_step * D)
        vv = vp.as_strided(kshape, kstride, vp.storage_offset() + n0 * plan.key_step * D)
        return qv, kv, vv

    def bias_tile(self, qi: Tensor, kj: Tensor) -> Tensor:
        """(..., H, bq, span) bias for index tensors qi (..., bq), kj (..., span)."""
        return self.bias.tile(qi, kj, self.pattern)

    def tile_mask(self, n0: int, n1: int, dtype: torch.dtype, with_bias: bool = True) -> tuple[Tensor, Tensor]:
        """Additive mask broadcastable to (n, G, bq, span) and row occupancy (n|1, G|1, bq)."""
        plan = self.plan
        if bool(self.regular[n0]):
            rows = self.template_rows[None, None]
            if self.bias is None or not with_bias:
                return self.template, rows
            if self._template_biased is None:
                ref = self.ref
                b = self.bias_tile(self.qidx[ref], plan.block_keys(self.kidx, ref, ref + 1)[0])
                self._template_biased = self.template + self._expand_heads(b[None, None].detach())
            return self._template_biased, rows
        qi = self.qidx[n0:n1]  # (n, bq)
        kj = plan.block_keys(self.kidx, n0, n1)  # (n, span)
        allowed = plan.rule(qi[:, :, None], kj[:, None, :]) & (kj >= 0)[:, None, :]
        allowed = allowed[:, None]  # (n, 1, bq, span)
        if self.key_mask is not None:
            km = self.key_mask[:, kj.clamp(min=0)]  # (B, n, span)
            allowed = allowed & km.permute(1, 0, 2)[:, :, None, :]  # (n, B, bq, span)
        mask = self._float_mask(allowed, dtype)[:, :, None]  # (n, B|1, 1, bq, span)
        rows = allowed.any(-1)[:, :, None]  # (n, B|1, 1, bq)
        if self.bias is not None and with_bias:
            mask = mask + self.bias_tile(qi, kj)[:, None]  # (n, B|1, H, bq, span)
        return self._merge_bh(mask), self._merge_bh(rows)

    def _expand_heads(self, b: Tensor) -> Tensor:
        """(1, 1, H, ...) -> (1, G, ...)."""
        return b.expand(1, self.B, *b.shape[2:]).reshape(1, self.G, *b.shape[3:])

    def _merge_bh(self, x: Tensor) -> Tensor:
        """(n, B|1, H|1, ...) -> (n, G|1, ...), expanding only when needed."""
        n, b, h = x.shape[:3]
        if b == 1 and h == 1:
            return x.squeeze(2)
        return x.expand(n, self.B, self.H, *x.shape[3:]).reshape(n, self.G, *x.shape[3:])

    # Dense parts for global tokens -------------------------------------------------
    def global_key_mask(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Mask (B|1, H|1, L, Gk) and row occupancy for the global-key part."""
        plan, L = self.plan, self.plan.L
        device = self.qidx.device
        g = plan.global_keys
        i = torch.arange(L, device=device)
        allowed = plan.key_rule(i[:, None], g[None, :]) if plan.key_rule else torch.ones(L, len(g), dtype=torch.bool, device=device)
        allowed = allowed[None, None]
        if self.key_mask is not None:
            allowed = allowed & self.key_mask[:, g][:, None, None, :]
        mask = self._float_mask(allowed, dtype)
        if self.bias is not None:
            mask = mask + self.bias_tile(i, g)[None]
        return mask, allowed.any(-1)


class _BlockedAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, c: _Context, scale: float, dropout_p: float, backend: tuple[str, str], *bias_params):
        plan = c.plan
        seed = int(torch.randint(0, 2**62, (1,)).item()) if dropout_p > 0 else 0
        qs, kp, vp = c.to_slots(q), c.to_key_slots(k), c.to_key_slots(v)
        out_s = torch.empty_like(qs)
        lse_s = torch.empty(qs.shape[:2], dtype=tiles.acc_dtype(q.dtype), device=q.device)
        D, bq = q.shape[-1], plan.block
        for n0, n1 in c.chunks():
            qv, kv, vv = c.tile_views(qs, kp, vp, n0, n1)
            mask, rows = c.tile_mask(n0, n1, q.dtype)
            if backend[0] == "flash":
                o, lse = tiles.flash_forward(qv, kv, vv, mask, scale)
                lse = lse.masked_fill(~rows.expand_as(lse), NEG_INF)
            else:
                o, lse = tiles.math_forward(qv, kv, vv, mask, scale, dropout_p, seed + n0)
            out_s.view(c.G, plan.n_blocks, bq, D)[:, n0:n1] = o.transpose(0, 1)
            lse_s.view(c.G, plan.n_blocks, bq)[:, n0:n1] = lse.transpose(0, 1)
        out, lse = c.from_slots(out_s), c.from_slots(lse_s)
        if plan.global_keys is not None:
            kg, vg = k[:, :, plan.global_keys], v[:, :, plan.global_keys]
            mask, rows = c.global_key_mask(q.dtype)
            if backend[0] == "flash":
                o2, lse2 = tiles.flash_forward(q, kg, vg, mask, scale)
                lse2 = lse2.masked_fill(~rows.expand_as(lse2), NEG_INF)
            else:
                o2, lse2 = tiles.math_forward(q, kg, vg, mask, scale, dropout_p, seed - 1)
            out, lse = merge_partial(out, lse, o2, lse2)
        ctx.save_for_backward(q, k, v, out, lse, *bias_params)
        ctx.c, ctx.scale, ctx.dropout_p, ctx.backend, ctx.seed = c, scale, dropout_p, backend, seed
        ctx.n_bias = len(bias_params)
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse, *bias_params = ctx.saved_tensors
        c, scale, backend, p, seed = ctx.c, ctx.scale, ctx.backend, ctx.dropout_p, ctx.seed
        plan = c.plan
        D, bq = q.shape[-1], plan.block
        dout = dout.contiguous()
        bias_grad = [torch.zeros_like(t) for t in bias_params] if ctx.n_bias else []
        qs, kp, vp = c.to_slots(q), c.to_key_slots(k), c.to_key_slots(v)
        dos, os_ = c.to_slots(dout, zero_pad=True), c.to_slots(out)
        lse_b = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))
        lses = c.to_slots(lse_b.unsqueeze(-1)).squeeze(-1)
        dqs = torch.empty_like(qs)
        acc = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
        dkp = torch.zeros(kp.shape, dtype=acc, device=q.device)
        dvp = torch.zeros(vp.shape, dtype=acc, device=q.device)
        G = c.G
        for n0, n1 in c.chunks():
            n = n1 - n0
            qv, kv, vv = c.tile_views(qs, kp, vp, n0, n1)
            sl = (slice(None), slice(n0, n1))
            dov = dos.view(G, plan.n_blocks, bq, D)[sl].transpose(0, 1)
            ov = os_.view(G, plan.n_blocks, bq, D)[sl].transpose(0, 1)
            lv = lses.view(G, plan.n_blocks, bq)[sl].transpose(0, 1)
            mask, _ = c.tile_mask(n0, n1, q.dtype)
            if backend[1] == "flash":
                dq, dk, dv, dmask = tiles.flash_backward(dov, qv, kv, vv, ov, lv, mask, scale)
            else:
                dq, dk, dv, dmask = tiles.math_backward(dov, qv, kv, vv, ov, lv, mask, scale, p, seed + n0)
            dqs.view(G, plan.n_blocks, bq, D)[sl] = dq.transpose(0, 1)
            _overlap_add(dkp, dk, plan, n0, n1)
            _overlap_add(dvp, dv, plan, n0, n1)
            if bias_grad and dmask is not None:
                _bias_backward(c, n0, n1, dmask, bias_params, bias_grad)
        dq = c.from_slots(dqs)
        dk, dv = c.from_key_slots(dkp), c.from_key_slots(dvp)
        if plan.global_keys is not None:
            g = plan.global_keys
            kg, vg = k[:, :, g], v[:, :, g]
            mask, _ = c.global_key_mask(q.dtype)
            if backend[1] == "flash":
                dq2, dkg, dvg, dmask = tiles.flash_backward(dout, q, kg, vg, out, lse_b, mask, scale)
            else:
                dq2, dkg, dvg, dmask = tiles.math_backward(dout, q, kg, vg, out, lse_b, mask, scale, p, seed - 1)
            dq = dq + dq2
            dk = dk.index_add(2, g, dkg.to(dk.dtype))
            dv = dv.index_add(2, g, dvg.to(dv.dtype))
            if bias_grad and dmask is not None:
                i = torch.arange(plan.L, device=q.device)
                with torch.enable_grad():
                    tile = c.bias_tile(i, g)  # (H, L, Gk)
                grads = torch.autograd.grad(tile, bias_params, dmask.sum(0).to(tile.dtype), allow_unused=True)
                for acc_g, gr in zip(bias_grad, grads):
                    if gr is not None:
                        acc_g += gr
        grads_bias = tuple(bias_grad) if bias_grad else ()
        return (dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None, None, None, *grads_bias)


def _overlap_add(acc: Tensor, d: Tensor, plan: Plan, n0: int, n1: int) -> None:
    """Add per-tile key gradients (n, G, span, D) into padded key slots (G, Lk, D)."""
    n, G, span, D = d.shape
    bq, step = plan.block, plan.key_step
    d = d.to(acc.dtype)
    if step == 0:
        acc[:, :span] += d.sum(0)
        return
    if step != bq:
        for t in range(n):
            start = (n0 + t) * step
            acc[:, start : start + span] += d[t]
        return
    for s in range(span // bq):
        start = (n0 + s) * bq
        dst = acc[:, start : start + n * bq].view(G, n, bq, D)
        dst += d[:, :, s * bq : (s + 1) * bq].transpose(0, 1)


def _bias_backward(c: _Context, n0: int, n1: int, dmask: Tensor, params, grads: list[Tensor]) -> None:
    """Route the score gradient of tiles [n0, n1) into the bias parameters."""
    plan = c.plan
    n = n1 - n0
    ds = dmask.reshape(n, c.B, c.H, plan.block, plan.span).sum(1)  # (n, H, bq, span)
    with torch.enable_grad():
        if bool(c.regular[n0]):
            ref = c.ref
            tile = c.bias_tile(c.qidx[ref], plan.block_keys(c.kidx, ref, ref + 1)[0])  # (H, bq, span)
            ds = ds.sum(0)
        else:
            tile = c.bias_tile(c.qidx[n0:n1], plan.block_keys(c.kidx, n0, n1))  # (n, H, bq, span)
            # Padding rows/keys carry -inf in the mask and zero gradient; clamp their
            # index-derived bias lookups harmlessly.
    gr = torch.autograd.grad(tile, params, ds.to(tile.dtype), allow_unused=True)
    for acc_g, g in zip(grads, gr):
        if g is not None:
            acc_g += g


def blocked_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    plan: Plan,
    *,
    pattern,
    key_mask: Tensor | None = None,
    bias=None,
    scale: float,
    dropout_p: float = 0.0,
) -> Tensor:
    """Attention of q (B, H, L, D) over k, v (B, H, L, D) as tiled by ``plan``."""
    B, H, L, D = q.shape
    params = tuple(p for p in bias.parameters() if p.requires_grad) if bias is not None else ()
    bias_grad = bool(params) and torch.is_grad_enabled()
    backend = _pick_backend(q, dropout_p, bias_grad)
    c = _Context(plan, B, H, q.device, key_mask, bias, pattern, q.dtype)
    out = _BlockedAttention.apply(q, k, v, c, scale, dropout_p, backend, *params)
    if plan.global_rows is not None:
        out = _global_rows(q, k, v, out, plan, c, scale, dropout_p)
    return out


def _global_rows(q: Tensor, k: Tensor, v: Tensor, out: Tensor, plan: Plan, c: _Context, scale: float,
                 dropout_p: float) -> Tensor:
    """Queries that attend every key: dense over (G x L), written over the tile result."""
    g = plan.global_rows
    L = plan.L
    j = torch.arange(L, device=q.device)
    allowed = plan.row_rule(g[:, None], j[None, :]) if plan.row_rule else torch.ones(len(g), L, dtype=torch.bool, device=q.device)
    allowed = allowed[None, None]
    if c.key_mask is not None:
        allowed = allowed & c.key_mask[:, None, None, :]
    has_key = allowed.any(-1, keepdim=True)
    # Rows with no allowed key would give NaN: let them attend everything, then zero them.
    allowed = allowed | ~has_key
    mask = torch.zeros(allowed.shape, dtype=q.dtype, device=q.device).masked_fill_(~allowed, NEG_INF)
    if c.bias is not None:
        mask = mask + c.bias_tile(g, j)[None].to(q.dtype)
    rows = torch.nn.functional.scaled_dot_product_attention(
        q[:, :, g], k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale
    )
    rows = rows * has_key.to(rows.dtype)
    return out.index_copy(2, g, rows)
