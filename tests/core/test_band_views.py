"""Band tiles read q, k, v, out and dout where they lie: no whole padded copy of any of
them is made (only a chunk reaching past either end of the sequence copies its own
rows), and the output and dq come back in the caller's layout."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import longseq.kernels.blocked as blocked
from longseq import attend
from longseq.kernels.blocked import use_backend
from longseq.patterns import Dense, SlidingWindow

from .test_new_patterns import masked_reference


class _LargeAllocations(TorchDispatchMode):
    """Counts the ops that return a tensor on new storage of at least ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit, self.ops = limit, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if (isinstance(t, torch.Tensor) and t.untyped_storage().nbytes() >= self.limit
                    and t.untyped_storage().data_ptr() not in inputs):
                self.ops.append(str(func))
        return out


@pytest.mark.parametrize("backend", ["flash", "math", "fused"])
@pytest.mark.parametrize(("L", "causal"), [(1000, False), (1024, True), (1000, True)])
def test_no_whole_copies_and_the_callers_layout(backend, L, causal, monkeypatch):
    dtype = torch.bfloat16 if backend == "fused" else torch.float32
    if backend == "fused":
        from longseq.kernels import fused_bf16

        if not fused_bf16.available():
            pytest.skip("the fused kernel needs AVX512-BF16 and a C compiler")
    pattern = SlidingWindow(100, causal=causal)
    q, k, v = (torch.randn(1, 4, L, 64, dtype=dtype, requires_grad=True) for _ in range(3))
    g = torch.randn(1, 4, L, 64, dtype=dtype)
    limit = q.numel() * q.element_size() * 9 // 10
    # one block per chunk, so per-chunk tiles stay far below q's size at this small length
    monkeypatch.setattr(blocked, "_CHUNK_BYTES", 1)
    with use_backend(backend):
        attend(q.detach(), k.detach(), v.detach(), pattern)  # the tiling is built (and cached) outside the count
        with _LargeAllocations(limit) as fwd:
            out = attend(q, k, v, pattern)
        with _LargeAllocations(limit) as bwd:
            dq, dk, dv = torch.autograd.grad(out, (q, k, v), g)
    # forward: the output; backward: dq, dk, dv (the slot copies of k and v are gone)
    assert len(fwd.ops) == 1 and len(bwd.ops) == 3, (fwd.ops, bwd.ops)
    if L % 128 == 0:  # slots are exactly the tokens: results in q's own strides
        assert out.stride() == q.stride() and dq.stride() == q.stride()
    qd, kd, vd = (t.detach().double().requires_grad_() for t in (q, k, v))
    ref = masked_reference(qd, kd, vd, pattern.dense_mask(L)[None, None])
    dref = torch.autograd.grad(ref, (qd, kd, vd), g.double())
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    for got, want in zip((out, dq, dk, dv), (ref, *dref)):
        assert float((got.double() - want).norm() / want.norm()) < tol


def test_token_major_inputs_match_the_reference():
    """Projections give (B, L, H, D) tensors viewed as (B, H, L, D) (with B > 1, put in
    token order once per call): outputs and the shared input's gradient as the dense reference."""
    L, pattern = 700, SlidingWindow(50)
    x = torch.randn(2, L, 3, 16, requires_grad=True)
    q = k = v = x.transpose(1, 2)
    out = attend(q, k, v, pattern)
    (gx,) = torch.autograd.grad(out, x, torch.ones_like(out))
    xd = x.detach().double().requires_grad_()
    ref = masked_reference(*(xd.transpose(1, 2),) * 3, pattern.dense_mask(L)[None, None])
    (gref,) = torch.autograd.grad(ref, xd, torch.ones_like(ref))
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gx.double(), gref, atol=1e-4, rtol=1e-4)


def test_dense_tiles_pad_their_keys_once_per_call(monkeypatch):
    """Every block of a dense plan reads all keys: where the length is off the block, the
    padded keys are copied once per call, not once per chunk."""
    L = 1000
    monkeypatch.setattr(blocked, "_CHUNK_BYTES", 1)  # one block per chunk: 8 chunks
    copies = []
    real = blocked._Part._padded_rows

    def spy(x, first, last):
        out = real(x, first, last)
        if out.shape[0] >= L and out.untyped_storage().data_ptr() != x.untyped_storage().data_ptr():
            copies.append(out.shape[0])
        return out

    monkeypatch.setattr(blocked._Part, "_padded_rows", staticmethod(spy))
    q, k, v = (torch.randn(2, 2, L, 16, requires_grad=True) for _ in range(3))
    km = torch.rand(2, L) > 0.2
    pattern = Dense(causal=True)  # causal with a key mask: the blocked route's dense tiles
    out = attend(q, k, v, pattern, key_mask=km)
    grads = torch.autograd.grad(out, (q, k, v), torch.ones_like(out))
    assert len(copies) == 4, copies  # k and v, in forward and in backward
    qd, kd, vd = (t.detach().double().requires_grad_() for t in (q, k, v))
    ref = masked_reference(qd, kd, vd, pattern.dense_mask(L)[None, None] & km[:, None, None, :])
    dref = torch.autograd.grad(ref, (qd, kd, vd), torch.ones_like(ref))
    for got, want in zip((out, *grads), (ref, *dref)):
        assert float((got.double() - want).norm() / want.norm()) < 1e-5
