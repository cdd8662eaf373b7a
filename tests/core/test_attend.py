"""Every pattern against SDPA with its dense boolean mask: outputs and q/k/v gradients."""

import pytest
import torch

from longseq import attend
from longseq.kernels import use_backend
from longseq.patterns import Dense, SlidingWindow, Window2D
from longseq.positions import ALiBi, RelativeBias1D, RelativeBias2D

from .reference import reference_attend

TOL = 1e-5

PATTERNS_1D = [
    Dense(),
    Dense(causal=True),
    SlidingWindow(5),
    SlidingWindow(5, causal=True),
    SlidingWindow(3, dilation=2),
    SlidingWindow(2, dilation=3, causal=True),
    SlidingWindow(3, global_tokens=(0, 21)),
    SlidingWindow(4, dilation=2, causal=True, global_tokens=(1, 30)),
    SlidingWindow(40),  # reach wider than the sequence
]


def _inputs(B, H, Hkv, L, D, dtype=torch.float64, requires_grad=True):
    q = torch.randn(B, H, L, D, dtype=dtype, requires_grad=requires_grad)
    k = torch.randn(B, Hkv, L, D, dtype=dtype, requires_grad=requires_grad)
    v = torch.randn(B, Hkv, L, D, dtype=dtype, requires_grad=requires_grad)
    return q, k, v


def _compare(pattern, L, *, B=2, H=4, Hkv=4, D=16, key_mask=False, bias=None, backend="auto",
             dtype=torch.float32, tol=TOL):
    q, k, v = _inputs(B, H, Hkv, L, D, dtype)
    km = (torch.rand(B, L) > 0.3) if key_mask else None
    dout = torch.randn(B, H, L, D, dtype=dtype)
    with use_backend(backend):
        out = attend(q, k, v, pattern, key_mask=km, bias=bias)
    grads = torch.autograd.grad(out, (q, k, v), dout)
    i = torch.arange(L)
    dense_bias = bias.tile(i, i, pattern).detach().double() if bias is not None else None
    # The reference runs in float64, so the 1e-5 budget is spent on our error alone.
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    ref = reference_attend(q64, k64, v64, pattern.dense_mask(L), km, dense_bias)
    ref_grads = torch.autograd.grad(ref, (q64, k64, v64), dout.double())
    assert out.shape == (B, H, L, D)
    torch.testing.assert_close(out.double(), ref, atol=tol, rtol=tol)
    for name, g, r in zip("qkv", grads, ref_grads):
        torch.testing.assert_close(g.double(), r, atol=tol, rtol=tol, msg=lambda m: f"grad {name}: {m}")
    return out


@pytest.mark.parametrize("backend", ["auto", "math", "flash"])
@pytest.mark.parametrize("key_mask", [False, True])
@pytest.mark.parametrize("L", [37, 64, 200])
@pytest.mark.parametrize("pattern", PATTERNS_1D, ids=repr)
def test_1d_patterns_match_dense(pattern, L, key_mask, backend):
    _compare(pattern, L, key_mask=key_mask, backend=backend)


@pytest.mark.parametrize("pattern", [SlidingWindow(6), SlidingWindow(3, dilation=2, causal=True, global_tokens=(4,)), Dense(causal=True)], ids=repr)
@pytest.mark.parametrize("Hkv", [1, 2])
def test_grouped_query_attention(pattern, Hkv):
    _compare(pattern, 53, H=4, Hkv=Hkv, key_mask=True)


@pytest.mark.parametrize("backend", ["auto", "math", "flash"])
@pytest.mark.parametrize("key_mask", [False, True])
@pytest.mark.parametrize("shape", [(7, 9, 4, 0), (7, 9, 4, 2), (8, 8, 4, 2), (5, 12, 3, 1)])
def test_window2d_matches_dense(shape, key_mask, backend):
    H, W, ws, shift = shape
    _compare(Window2D(ws, (H, W), shift=shift), H * W, key_mask=key_mask, backend=backend)


@pytest.mark.parametrize("pattern, make_bias", [
    (SlidingWindow(5), lambda: ALiBi(4)),
    (SlidingWindow(4, causal=True, global_tokens=(3,)), lambda: ALiBi(4)),
    (SlidingWindow(5, dilation=2), lambda: RelativeBias1D(4, max_distance=16, num_buckets=8)),
    (Dense(causal=True), lambda: RelativeBias1D(4, max_distance=16, num_buckets=8)),
    (Window2D(3, (7, 8), shift=1), lambda: RelativeBias2D(4, 3)),
], ids=lambda x: repr(x) if not callable(x) else "")
@pytest.mark.parametrize("key_mask", [False, True])
def test_bias_matches_dense_float_mask(pattern, make_bias, key_mask):
    bias = make_bias()
    for p in bias.parameters():  # non-trivial tables
        torch.nn.init.normal_(p)
    L = pattern.grid[0] * pattern.grid[1] if isinstance(pattern, Window2D) else 45
    _compare(pattern, L, key_mask=key_mask, bias=bias)


@pytest.mark.parametrize("pattern", [SlidingWindow(5, global_tokens=(2,)), Window2D(3, (7, 8), shift=1)], ids=repr)
def test_learnable_bias_gradient(pattern):
    bias = RelativeBias2D(4, 3) if isinstance(pattern, Window2D) else RelativeBias1D(4, 16, 8)
    for p in bias.parameters():
        torch.nn.init.normal_(p)
    L = 56 if isinstance(pattern, Window2D) else 45
    q, k, v = _inputs(1, 4, 4, L, 8, torch.float32)
    dout = torch.randn(1, 4, L, 8)
    out = attend(q, k, v, pattern, bias=bias)
    (g,) = torch.autograd.grad(out, [next(bias.parameters())], dout)
    i = torch.arange(L)
    ref = reference_attend(q, k, v, pattern.dense_mask(L), None, bias.tile(i, i, pattern))
    (r,) = torch.autograd.grad(ref, [next(bias.parameters())], dout)
    assert g.abs().sum() > 0
    torch.testing.assert_close(g, r, atol=1e-4, rtol=1e-4)


def test_rows_without_keys_are_zero_not_nan():
    L = 40
    q, k, v = _inputs(2, 2, 2, L, 8, torch.float32)
    km = torch.ones(2, L, dtype=torch.bool)
    km[0] = False  # batch 0 has no real key at all
    km[1, :20] = False  # batch 1: early causal rows see nothing
    out = attend(q, k, v, SlidingWindow(4, causal=True), key_mask=km)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all()
    assert out[0].abs().max() == 0
    assert out[1, :, :20].abs().max() == 0
    assert out[1, :, 20:].abs().min() > 0


def test_dropout_zero_equals_dense_path_and_dropout_is_seeded():
    L = 70
    q, k, v = _inputs(1, 2, 2, L, 8, torch.float32)
    p = SlidingWindow(6)
    base = attend(q, k, v, p)
    torch.testing.assert_close(attend(q, k, v, p, dropout_p=0.0), base, atol=TOL, rtol=TOL)
    torch.manual_seed(123)
    d1 = attend(q, k, v, p, dropout_p=0.5)
    torch.manual_seed(123)
    d2 = attend(q, k, v, p, dropout_p=0.5)
    assert torch.equal(d1, d2)
    assert not torch.allclose(d1, base)
    # Unbiased: the mean over many draws approaches the dropout-free output.
    mean = torch.stack([attend(q, k, v, p, dropout_p=0.5) for _ in range(200)]).mean(0)
    assert (mean - base).abs().mean() < 0.1 * base.abs().mean()


def test_dropout_gradient_matches_its_own_mask():
    """Backward replays the forward's dropout mask: finite differences agree (float64)."""
    L = 20
    q, k, v = _inputs(1, 1, 1, L, 4, torch.float64)
    p = SlidingWindow(3)

    def fn(q, k, v):
        torch.manual_seed(7)
        return attend(q, k, v, p, dropout_p=0.3)

    assert torch.autograd.gradcheck(fn, (q, k, v), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("backend", ["auto", "math"])
@pytest.mark.parametrize("pattern, L", [
    (SlidingWindow(5), 200),
    (SlidingWindow(3, dilation=2, causal=True), 137),
    (SlidingWindow(4, global_tokens=(0, 70)), 150),
    (Window2D(4, (9, 11), shift=2), 99),
], ids=repr)
def test_bf16_matches_float64_reference(pattern, L, backend):
    """Half-precision inputs: the flash path differentiates upcast fp32 tiles, the math
    path bf16 products; both stay within bf16 rounding of the float64 answer."""
    _compare(pattern, L, B=2, H=2, Hkv=2, D=32, key_mask=True, backend=backend, dtype=torch.bfloat16, tol=3e-2)


def test_bf16_large_logits_no_nan():
    L = 65_536
    q, k, v = _inputs(1, 2, 2, L, 32, torch.bfloat16)
    with torch.no_grad():
        q.mul_(100.0)  # logits ~ 1e4 after scaling
        k.mul_(100.0)
    out = attend(q, k, v, SlidingWindow(64))
    out.float().square().mean().backward()
    for t in (out, q.grad, k.grad, v.grad):
        assert torch.isfinite(t.float()).all()


@pytest.mark.parametrize("kwargs, match", [
    (dict(q=torch.randn(2, 8, 4)), "q must have shape"),
    (dict(k=torch.randn(1, 3, 16, 8), v=torch.randn(1, 3, 16, 8)), "must divide q heads"),
    (dict(k=torch.randn(1, 2, 15, 8), v=torch.randn(1, 2, 15, 8)), "does not match q shape"),
    (dict(key_mask=torch.ones(1, 16)), "key_mask must be a bool"),
    (dict(key_mask=torch.ones(1, 15, dtype=torch.bool)), "key_mask must have shape"),
    (dict(pattern="window"), "pattern must be"),
    (dict(bias=torch.zeros(2, 16, 16)), "bias must be"),
    (dict(dropout_p=1.0), "dropout_p"),
    (dict(v=torch.randn(1, 2, 16, 8, dtype=torch.float64)), "dtype"),
    (dict(pattern=SlidingWindow(2, global_tokens=(16,))), "global_tokens"),
    (dict(pattern=Window2D(2, (3, 5))), "needs L=15"),
])
def test_bad_input_raises_value_error(kwargs, match):
    args = dict(q=torch.randn(1, 2, 16, 8), k=torch.randn(1, 2, 16, 8), v=torch.randn(1, 2, 16, 8),
                pattern=SlidingWindow(2), key_mask=None, bias=None, dropout_p=0.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        attend(args.pop("q"), args.pop("k"), args.pop("v"), args.pop("pattern"), **args)


@pytest.mark.parametrize("make", [lambda: SlidingWindow(0), lambda: SlidingWindow(2, dilation=0),
                                  lambda: SlidingWindow(-1), lambda: Window2D(0, (4, 4)),
                                  lambda: Window2D(4, (4, 4), shift=4), lambda: SlidingWindow(2, global_tokens=(-1,))])
def test_bad_pattern_raises_value_error(make):
    with pytest.raises(ValueError):
        make()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.cuda
def test_cuda_matches_dense():
    torch.set_default_device("cuda")
    try:
        _compare(SlidingWindow(5, global_tokens=(1,)), 77, key_mask=True)
    finally:
        torch.set_default_device("cpu")


@pytest.mark.parametrize("shift", [0, 2])
def test_window2d_window_without_keys_is_zero_not_nan(shift):
    # grid 9 x 10 with 4 x 4 windows (padded); the key mask empties the whole top-left window
    H, W, ws = 9, 10, 4
    pattern = Window2D(ws, (H, W), shift=shift)
    q, k, v = _inputs(2, 2, 2, H * W, 8, torch.float32)
    km = torch.ones(2, H, W, dtype=torch.bool)
    km[0, :6, :6] = False
    km = km.view(2, -1)
    out = attend(q, k, v, pattern, key_mask=km)
    out.sum().backward()
    for t in (out, q.grad, k.grad, v.grad):
        assert torch.isfinite(t).all()
    ref = reference_attend(q.detach(), k.detach(), v.detach(), pattern.dense_mask(H * W), km, None)
    torch.testing.assert_close(out.detach(), ref, atol=TOL, rtol=TOL)
    empty = ~(pattern.dense_mask(H * W)[None] & km[:, None, :]).any(-1)  # (B, L) rows with no key
    assert empty.any()
    assert out.detach().transpose(1, 2)[empty].abs().max() == 0
