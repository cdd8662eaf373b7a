"""Band tiles sum their key gradients in a rolling fp32 buffer (only the overlap between
chunks is carried) instead of whole-length zeroed accumulators: the same numbers, bit for
bit, as the whole-length sum, rounded to k's dtype once; other layouts keep the old sum."""

from __future__ import annotations

import pytest
import torch

import longseq.kernels.blocked as blocked
from longseq import attend
from longseq.kernels.blocked import use_backend
from longseq.kernels.registry import tiling_for
from longseq.patterns import BigBird, SlidingWindow

from .test_new_patterns import masked_reference


def _grads(q, k, v, pattern, g, key_mask=None):
    out = attend(q, k, v, pattern, key_mask=key_mask)
    return (out, *torch.autograd.grad(out, (q, k, v), g))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("L", "window", "causal"), [(1000, 37, False), (700, 300, True), (130, 5, False)])
def test_rolling_equals_the_whole_length_sum(monkeypatch, dtype, L, window, causal):
    monkeypatch.setattr(blocked, "_CHUNK_BYTES", 1)  # one block per chunk: every chunk carries rows on
    q, k, v = (torch.randn(2, 3, L, 16, dtype=dtype, requires_grad=True) for _ in range(3))
    g = torch.randn(2, 3, L, 16, dtype=dtype)
    km = torch.rand(2, L) > 0.1
    pattern = SlidingWindow(window, causal=causal)
    with use_backend("flash"):
        rolled = [_grads(q, k, v, pattern, g, km)]
        monkeypatch.setattr(blocked._Part, "_rolling_ok", lambda self: False)
        rolled.append(_grads(q, k, v, pattern, g, km))
    for a, b in zip(*rolled):
        assert a.dtype == dtype and torch.equal(a, b)
    qd, kd, vd = (t.detach().double().requires_grad_() for t in (q, k, v))
    ref = masked_reference(qd, kd, vd, pattern.dense_mask(L)[None, None] & km[:, None, None, :])
    dref = torch.autograd.grad(ref, (qd, kd, vd), g.double())
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    for got, want in zip(rolled[0][1:], dref):
        assert float((got.double() - want).norm() / want.norm()) < tol


def test_which_layouts_roll():
    part = lambda pattern, L: blocked._Part(tiling_for(pattern, L, torch.device("cpu")).parts[0],  # noqa: E731
                                            1, 2, torch.device("cpu"), None, None, pattern, 0)
    assert part(SlidingWindow(40), 500)._rolling_ok()
    assert part(SlidingWindow(40, causal=True), 500)._rolling_ok()
    assert not part(SlidingWindow(40, dilation=3), 500)._rolling_ok()  # permuted slots
    bigbird = BigBird(block=16, window_blocks=1, global_blocks=1, random_blocks=1)
    assert not part(bigbird, 512)._rolling_ok()  # gathered key blocks
