"""Tile backends: attention of a batch of query blocks against their key spans.

Every backend has the same two functions on 4-D tiles, where ``n`` counts tiles and
``G`` is the merged batch*heads axis (any strides; key spans may overlap in memory):

* ``forward(q, k, v, mask, scale) -> (out, lse)``: q ``(n, G, bq, D)``, k/v
  ``(n, G, span, D)``, ``mask`` an additive float tensor broadcastable to
  ``(n, G, bq, span)`` (``-inf`` = may not attend) or None. ``out`` ``(n, G, bq, D)``,
  ``lse`` ``(n, G, bq)`` float32 log-sum-exp of the scaled, masked scores.
* ``backward(dout, q, k, v, out, lse, mask, scale) -> (dq, dk, dv, dmask)``: ``out`` and
  ``lse`` may be those of a larger softmax this tile is part of (split-key attention),
  so tiles of one row can be differentiated independently. ``dmask`` (the gradient of
  the additive mask, i.e. of the scores) is returned only by backends that form it.

``flash`` wraps PyTorch's fused CPU flash-attention kernels (fast, memory-flat, no
dropout, no score gradient). ``math`` is plain batched matmuls: any device, dropout,
and score gradients for learnable biases.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "flash_forward", "flash_backward", "math_forward", "math_backward", "dropout_keep", "acc_dtype", "upcast_tile",
]


def _flash_mask(mask: Tensor | None, q: Tensor) -> Tensor | None:
    """The additive mask in a dtype PyTorch's CPU flash kernels read correctly.

    They take a float32 mask for float32 and half-precision queries, but read a float32
    mask wrongly for float64 queries (outputs off by O(1)): those get a float64 mask."""
    if mask is not None and q.dtype == torch.float64 and mask.dtype != torch.float64:
        return mask.to(torch.float64)
    return mask


def flash_forward(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float) -> tuple[Tensor, Tensor]:
    if q.numel() == 0 or k.numel() == 0:  # the CPU flash kernels divide by these sizes
        lse = torch.full(q.shape[:-1], float("-inf"), dtype=acc_dtype(q.dtype), device=q.device)
        return q.new_zeros(*q.shape[:-1], v.shape[-1]), lse
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        q, k, v, 0.0, False, attn_mask=_flash_mask(mask, q), scale=scale
    )
    return out, lse


def flash_backward(
    dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, mask: Tensor | None, scale: float
) -> tuple[Tensor, Tensor, Tensor, None]:
    if q.numel() == 0 or k.numel() == 0:  # the CPU flash kernels divide by these sizes
        return torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v), None
    dq, dk, dv = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
        dout, q, k, v, out, lse, 0.0, False, attn_mask=_flash_mask(mask, q), scale=scale
    )
    return dq, dk, dv, None


def upcast_tile(x: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """``x.to(dtype)`` of an ``(n, G, rows, D)`` tile view, copying each slot row once.

    Key tiles are overlapping views (tile ``t`` starts ``step`` rows after tile ``t-1``
    and reads ``rows >= step`` of them): ``x.to(dtype)`` would copy every shared row once
    per tile that reads it. Here the rows the tiles cover are converted once per ``G``
    and viewed again with the same overlap. Other layouts fall back to ``x.to(dtype)``.
    """
    n, G, rows, D = x.shape
    s_tile, s_g, s_row, s_d = x.stride()
    if x.dtype == dtype or s_d != 1 or s_row <= 0:
        return x.to(dtype)
    if s_tile == 0:  # every tile reads the same rows
        return x[:1].to(dtype).expand(x.shape)
    if s_tile % s_row or s_tile >= rows * s_row:  # no overlap to save
        return x.to(dtype)
    step = s_tile // s_row
    covered = (n - 1) * step + rows
    slab = x.as_strided((G, covered, D), (s_g, s_row, 1)).to(dtype, memory_format=torch.contiguous_format)
    return slab.as_strided((n, G, rows, D), (step * D, covered * D, D, 1))


def dropout_keep(shape: torch.Size, p: float, seed: int, device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
    """Deterministic keep-mask (float, already divided by 1-p) so backward can redraw it."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    keep = torch.rand(shape, generator=gen, device=device) >= p
    return keep.to(dtype) / (1.0 - p)


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Softmax statistics are kept in float32 (float64 for float64 inputs)."""
    return torch.promote_types(dtype, torch.float32)


def _scores(q: Tensor, k: Tensor, mask: Tensor | None, scale: float) -> Tensor:
    s = torch.matmul(q, k.transpose(-1, -2)).to(acc_dtype(q.dtype)).mul_(scale)
    if mask is not None:
        s = s.add_(mask)
    return s


def math_forward(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float, dropout_p: float = 0.0, seed: int = 0
) -> tuple[Tensor, Tensor]:
    s = _scores(q, k, mask, scale)
    m = s.amax(-1, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))  # empty rows: no NaN
    p = s.sub_(m).exp_()
    denom = p.sum(-1, keepdim=True)
    lse = (m + denom.log()).squeeze(-1)  # -inf for rows with no allowed key
    p = p.div_(denom.clamp_min(torch.finfo(p.dtype).tiny))
    if dropout_p > 0.0:
        p = p.mul_(dropout_keep(p.shape, dropout_p, seed, p.device, p.dtype))
    out = torch.matmul(p.to(v.dtype), v)
    return out, lse


def math_backward(
    dout: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    out: Tensor,
    lse: Tensor,
    mask: Tensor | None,
    scale: float,
    dropout_p: float = 0.0,
    seed: int = 0,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    lse = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))
    p = _scores(q, k, mask, scale).sub_(lse.unsqueeze(-1))  # (n, G, bq, span)
    if q.dtype in (torch.float16, torch.bfloat16):
        # Scores recomputed from half-precision products can exceed the forward's
        # log-sum-exp by their rounding error; probabilities are <= 1 by definition.
        p = p.clamp_max_(0.0)
    p = p.exp_()
    acc = acc_dtype(q.dtype)
    delta = (dout.to(acc) * out.to(acc)).sum(-1, keepdim=True)
    if acc != dout.dtype:
        # dp - delta cancels: dp rounded to half precision left bf16 key gradients up to
        # a quarter off where the difference is small, so this one product is taken in
        # float32 (the other three round only their own result).
        dp = torch.matmul(dout.to(acc), upcast_tile(v, acc).transpose(-1, -2))
    else:
        dp = torch.matmul(dout, v.transpose(-1, -2))
    if dropout_p > 0.0:
        keep = dropout_keep(p.shape, dropout_p, seed, p.device, p.dtype)
        dv = torch.matmul((p * keep).to(dout.dtype).transpose(-1, -2), dout)
        dp = dp.mul_(keep)
    else:
        dv = torch.matmul(p.to(dout.dtype).transpose(-1, -2), dout)
    ds = dp.sub_(delta).mul_(p)  # gradient of the (scaled, masked) scores
    ds_c = ds.to(q.dtype)
    dq = torch.matmul(ds_c, k).mul_(scale)
    dk = torch.matmul(ds_c.transpose(-1, -2), q).mul_(scale)
    return dq, dk, dv, ds
