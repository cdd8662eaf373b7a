"""Dense references for tests: boolean masks fed to scaled_dot_product_attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def reference_attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, key_mask: Tensor | None = None,
                     bias: Tensor | None = None, scale: float | None = None) -> Tensor:
    """SDPA with an (L, L) bool mask (True = may attend), optional (B, L) key mask and
    (H, L, L) float bias. Rows with no allowed key are defined as zeros."""
    B, H, L, D = q.shape
    if k.shape[1] != H:
        rep = H // k.shape[1]
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    m = mask[None, None].expand(B, 1, L, L)
    if key_mask is not None:
        m = m & key_mask[:, None, None, :]
    has_key = m.any(-1, keepdim=True)
    m = m | ~has_key  # SDPA would return NaN on empty rows; they are zeroed below
    f = torch.zeros(m.shape, dtype=q.dtype).masked_fill(~m, float("-inf"))
    if bias is not None:
        f = f + bias[None].to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=f, scale=scale) * has_key
