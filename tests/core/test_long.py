"""A million tokens, forward and backward, checked against dense attention on sampled rows."""

import pytest
import torch
import torch.nn.functional as F

from longseq import SlidingWindow, attend

L = 2**20
W = 256


def _band_reference(q, k, v, dout, rows):
    """Dense SDPA on the neighbourhood of each sampled row: output and dq at the row,
    dk and dv at the key with the same index (all queries within reach of it)."""
    out_ref, dq_ref, dk_ref, dv_ref = [], [], [], []
    for i in rows.tolist():
        lo, hi = max(0, i - 2 * W), min(L, i + 2 * W + 1)
        qs, ks, vs = (t[:, :, lo:hi].detach().double().requires_grad_() for t in (q, k, v))
        idx = torch.arange(lo, hi)
        mask = (idx[:, None] - idx[None, :]).abs() <= W
        o = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask)
        # Queries near the slice edge lack keys outside it: only rows within W of i feed dk_i.
        keep = ((idx - i).abs() <= W).double()[None, None, :, None]
        o.backward(dout[:, :, lo:hi].double() * keep)
        r = i - lo
        out_ref.append(o[:, :, r])
        dq_ref.append(qs.grad[:, :, r])
        dk_ref.append(ks.grad[:, :, r])
        dv_ref.append(vs.grad[:, :, r])
    return [torch.stack(x, 2) for x in (out_ref, dq_ref, dk_ref, dv_ref)]


@pytest.mark.slow
def test_million_token_sliding_window_forward_backward():
    H, D = 1, 16
    q, k, v = (torch.randn(1, H, L, D, requires_grad=True) for _ in range(3))
    dout = torch.randn(1, H, L, D)
    out = attend(q, k, v, SlidingWindow(W))
    out.backward(dout)
    rows = torch.cat([torch.tensor([0, 1, W, L - 1, L - W - 1]), torch.randint(0, L, (11,))])
    ref_out, ref_dq, ref_dk, ref_dv = _band_reference(q, k, v, dout, rows)
    torch.testing.assert_close(out[:, :, rows].double(), ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(q.grad[:, :, rows].double(), ref_dq, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(k.grad[:, :, rows].double(), ref_dk, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(v.grad[:, :, rows].double(), ref_dv, atol=1e-5, rtol=1e-5)
