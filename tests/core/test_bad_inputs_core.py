"""Inputs that fail cleanly, parameters that cannot blow up memory, non-finite inputs that
stay local, and LSH's shared keys in half precision."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import longseq.attention as attention_mod
from longseq import attend, explain
from longseq.kernels import use_backend
from longseq.kernels.registry import tiling_for
from longseq.patterns import LSH, BigBird, Dense, SlidingWindow, Strided, Window2D
from longseq.patterns_base import ArgumentTypeError
from longseq.positions import ALiBi, RelativeBias1D, RelativeBias2D, RoPE1D

from .reference import reference_attend
from .test_sparse_patterns import lsh_reference

B, H, L, D = 1, 2, 16, 8


def _args(**overrides) -> dict:
    """Valid ``attend`` arguments (q, k, v ``(1, 2, 16, 8)``), with ``overrides`` applied."""
    args = dict(q=torch.randn(B, H, L, D), k=torch.randn(B, H, L, D), v=torch.randn(B, H, L, D),
                pattern=SlidingWindow(2), key_mask=None, bias=None, dropout_p=0.0, scale=None)
    args.update(overrides)
    return args


def _call(fn, args: dict):
    args = dict(args)
    return fn(args.pop("q"), args.pop("k"), args.pop("v"), args.pop("pattern"), **args)


def _meta(*shape: int, dtype=torch.float32) -> torch.Tensor:
    return torch.empty(*shape, dtype=dtype, device="meta")


# (id, overrides, exception, message pattern naming the argument)
ATTEND_CASES = [
    ("q-not-tensor", dict(q=[[1.0]]), TypeError, "q must be a torch.Tensor"),
    ("k-not-tensor", dict(k=np.zeros((B, H, L, D))), TypeError, "k must be a torch.Tensor"),
    ("v-none", dict(v=None), TypeError, "v must be a torch.Tensor"),
    ("q-rank-3", dict(q=torch.randn(H, L, D)), ValueError, r"q must have shape \(B, H, L, D\)"),
    ("q-int-dtype", dict(q=torch.ones(B, H, L, D, dtype=torch.int64)), ValueError, "q must be a floating-point"),
    ("k-dtype-mismatch", dict(k=torch.randn(B, H, L, D, dtype=torch.float16)), ValueError, "k has dtype"),
    ("v-dtype-mismatch", dict(v=torch.randn(B, H, L, D, dtype=torch.float64)), ValueError, "v has dtype"),
    ("k-device-mismatch", dict(k=_meta(B, H, L, D), v=_meta(B, H, L, D)), ValueError, "k is on meta"),
    ("v-device-mismatch", dict(v=_meta(B, H, L, D)), ValueError, "v is on meta"),
    ("kv-shapes-differ", dict(v=torch.randn(B, H, L, D + 1)), ValueError, "k and v must have the same shape"),
    ("kv-length", dict(k=torch.randn(B, H, L - 1, D), v=torch.randn(B, H, L - 1, D)), ValueError,
     "k/v shape .* does not match q shape"),
    ("gqa-heads-not-dividing", dict(q=torch.randn(B, 4, L, D), k=torch.randn(B, 3, L, D), v=torch.randn(B, 3, L, D)),
     ValueError, r"k heads \(3\) must divide q heads \(4\)"),
    ("head-dim-zero", dict(q=torch.randn(B, H, L, 0), k=torch.randn(B, H, L, 0), v=torch.randn(B, H, L, 0)),
     ValueError, "head dimension"),
    ("scale-inf", dict(scale=math.inf), ValueError, "scale must be a finite number > 0"),
    ("scale-nan", dict(scale=math.nan), ValueError, "scale must be a finite number > 0"),
    ("scale-zero", dict(scale=0.0), ValueError, "scale must be a finite number > 0"),
    ("scale-negative", dict(scale=-0.5), ValueError, "scale must be a finite number > 0"),
    ("scale-string", dict(scale="0.5"), TypeError, "scale must be a real number"),
    ("scale-bool", dict(scale=True), TypeError, "scale must be a real number"),
    ("scale-vector", dict(scale=torch.ones(2)), TypeError, "scale must be a real number"),
    ("dropout-one", dict(dropout_p=1.0), ValueError, r"dropout_p must be in \[0, 1\)"),
    ("dropout-negative", dict(dropout_p=-0.1), ValueError, r"dropout_p must be in \[0, 1\)"),
    ("dropout-nan", dict(dropout_p=math.nan), ValueError, r"dropout_p must be in \[0, 1\)"),
    ("dropout-string", dict(dropout_p="0.1"), TypeError, "dropout_p must be a real number"),
    ("key-mask-float", dict(key_mask=torch.ones(B, L)), ValueError, "key_mask must be a bool tensor"),
    ("key-mask-int", dict(key_mask=torch.ones(B, L, dtype=torch.int64)), ValueError, "key_mask must be a bool tensor"),
    ("key-mask-shape", dict(key_mask=torch.ones(B, L - 1, dtype=torch.bool)), ValueError, "key_mask must have shape"),
    ("key-mask-rank", dict(key_mask=torch.ones(L, dtype=torch.bool)), ValueError, "key_mask must have shape"),
    ("key-mask-list", dict(key_mask=[[True] * L]), TypeError, "key_mask must be a bool tensor or None"),
    ("key-mask-device", dict(key_mask=_meta(B, L, dtype=torch.bool)), ValueError, "key_mask is on meta"),
    ("bias-alibi-heads", dict(bias=ALiBi(8)), ValueError, "bias has 8 heads but q has 2"),
    ("bias-t5-heads", dict(bias=RelativeBias1D(3)), ValueError, "bias has 3 heads but q has 2"),
    ("bias-swin-heads", dict(pattern=Window2D(2, (4, 4)), bias=RelativeBias2D(4, 2)), ValueError,
     "bias has 4 heads but q has 2"),
    ("bias-dense-tensor", dict(bias=torch.zeros(H, L, L)), TypeError, "bias must be a longseq.positions bias"),
    ("bias-rope", dict(bias=RoPE1D(D)), TypeError, "bias must be a longseq.positions bias"),
    ("pattern-string", dict(pattern="window"), TypeError, "pattern must be a longseq.patterns.Pattern"),
    ("pattern-global-out-of-range", dict(pattern=SlidingWindow(2, global_tokens=(L,))), ValueError, "global_tokens"),
    ("pattern-grid-length", dict(pattern=Window2D(2, (3, 5))), ValueError, "needs L=15"),
    ("lsh-shared-gqa", dict(pattern=LSH(bucket_size=4, seed=0), k=torch.randn(B, 1, L, D), v=torch.randn(B, 1, L, D)),
     ValueError, "needs as many k heads"),
]


@pytest.mark.parametrize("fn", [attend, explain], ids=["attend", "explain"])
@pytest.mark.parametrize("overrides, exc, match", [c[1:] for c in ATTEND_CASES], ids=[c[0] for c in ATTEND_CASES])
def test_attend_rejects_bad_arguments(fn, overrides, exc, match):
    with pytest.raises(exc, match=match):
        _call(fn, _args(**overrides))


# (id, constructor, exception, message pattern naming the field)
PATTERN_CASES = [
    ("dense-causal-str", lambda: Dense(causal="yes"), TypeError, r"Dense\.causal must be a bool, got 'yes'"),
    ("dense-causal-int", lambda: Dense(causal=1), TypeError, r"Dense\.causal must be a bool"),
    ("window-str", lambda: SlidingWindow("x"), TypeError, r"SlidingWindow\.window must be a positive int, got 'x'"),
    ("window-float", lambda: SlidingWindow(2.0), TypeError, r"SlidingWindow\.window must be a positive int"),
    ("window-bool", lambda: SlidingWindow(True), TypeError, r"SlidingWindow\.window must be a positive int"),
    ("window-zero", lambda: SlidingWindow(0), ValueError, r"SlidingWindow\.window must be a positive int, got 0"),
    ("window-negative", lambda: SlidingWindow(-3), ValueError, r"SlidingWindow\.window"),
    ("dilation-zero", lambda: SlidingWindow(2, dilation=0), ValueError, r"SlidingWindow\.dilation"),
    ("dilation-float", lambda: SlidingWindow(2, dilation=1.5), TypeError, r"SlidingWindow\.dilation"),
    ("sw-causal-none", lambda: SlidingWindow(2, causal=None), TypeError, r"SlidingWindow\.causal must be a bool"),
    ("global-negative", lambda: SlidingWindow(2, global_tokens=(-1,)), ValueError, r"SlidingWindow\.global_tokens"),
    ("global-string", lambda: SlidingWindow(2, global_tokens="ab"), TypeError, r"SlidingWindow\.global_tokens"),
    ("global-scalar", lambda: SlidingWindow(2, global_tokens=3), TypeError, r"SlidingWindow\.global_tokens"),
    ("global-float", lambda: SlidingWindow(2, global_tokens=(0.5,)), TypeError, r"SlidingWindow\.global_tokens"),
    ("ws-zero", lambda: Window2D(0, (4, 4)), ValueError, r"Window2D\.window_size must be a positive int"),
    ("ws-str", lambda: Window2D("4", (4, 4)), TypeError, r"Window2D\.window_size"),
    ("grid-one-axis", lambda: Window2D(4, (4,)), ValueError, r"Window2D\.grid must be a tuple of two positive ints"),
    ("grid-three-axes", lambda: Window2D(4, (4, 4, 4)), ValueError, r"Window2D\.grid"),
    ("grid-int", lambda: Window2D(4, 16), TypeError, r"Window2D\.grid must be a tuple of two positive ints"),
    ("grid-str", lambda: Window2D(4, "44"), TypeError, r"Window2D\.grid"),
    ("grid-zero", lambda: Window2D(4, (4, 0)), ValueError, r"Window2D\.grid\[1\]"),
    ("grid-float", lambda: Window2D(4, (4.0, 4)), TypeError, r"Window2D\.grid\[0\]"),
    ("shift-too-big", lambda: Window2D(4, (4, 4), shift=4), ValueError, r"Window2D\.shift must be an int in \[0"),
    ("shift-negative", lambda: Window2D(4, (4, 4), shift=-1), ValueError, r"Window2D\.shift"),
    ("shift-float", lambda: Window2D(4, (4, 4), shift=1.0), TypeError, r"Window2D\.shift"),
    ("block-zero", lambda: BigBird(0), ValueError, r"BigBird\.block must be a positive int"),
    ("block-str", lambda: BigBird("8"), TypeError, r"BigBird\.block"),
    ("window-blocks-negative", lambda: BigBird(8, window_blocks=-1), ValueError,
     r"BigBird\.window_blocks must be a non-negative int"),
    ("global-blocks-none", lambda: BigBird(8, global_blocks=None), TypeError, r"BigBird\.global_blocks"),
    ("random-blocks-float", lambda: BigBird(8, random_blocks=1.5), TypeError, r"BigBird\.random_blocks"),
    ("bigbird-seed-str", lambda: BigBird(8, seed="s"), TypeError, r"BigBird\.seed must be an int"),
    ("bigbird-seed-range", lambda: BigBird(8, seed=2**64), ValueError, r"BigBird\.seed must be in"),
    ("stride-zero", lambda: Strided(0), ValueError, r"Strided\.stride must be a positive int"),
    ("mode-unknown", lambda: Strided(4, mode="diagonal"), ValueError, r"Strided\.mode must be 'strided' or 'fixed'"),
    ("mode-int", lambda: Strided(4, mode=1), TypeError, r"Strided\.mode"),
    ("summary-above-stride", lambda: Strided(4, summary=5), ValueError, r"Strided\.summary \(5\) must not exceed"),
    ("summary-zero", lambda: Strided(4, summary=0), ValueError, r"Strided\.summary must be a positive int"),
    ("strided-causal-str", lambda: Strided(4, causal="no"), TypeError, r"Strided\.causal must be a bool"),
    ("bucket-zero", lambda: LSH(bucket_size=0), ValueError, r"LSH\.bucket_size must be a positive int"),
    ("hashes-float", lambda: LSH(n_hashes=1.0), TypeError, r"LSH\.n_hashes"),
    ("lsh-causal-int", lambda: LSH(causal=1), TypeError, r"LSH\.causal must be a bool"),
    ("shared-qk-str", lambda: LSH(shared_qk="y"), TypeError, r"LSH\.shared_qk must be a bool"),
    ("across-none", lambda: LSH(attend_across_buckets=None), TypeError, r"LSH\.attend_across_buckets"),
    ("lsh-seed-float", lambda: LSH(seed=1.5), TypeError, r"LSH\.seed must be an int or None"),
]


@pytest.mark.parametrize("make, exc, match", [c[1:] for c in PATTERN_CASES], ids=[c[0] for c in PATTERN_CASES])
def test_patterns_reject_bad_fields(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_type_errors_are_value_errors_too():
    """``except ValueError`` catches a wrong type as well as a wrong value."""
    assert issubclass(ArgumentTypeError, TypeError) and issubclass(ArgumentTypeError, ValueError)
    with pytest.raises(ValueError, match="SlidingWindow.window"):
        SlidingWindow("x")
    with pytest.raises(ValueError, match="scale"):
        _call(attend, _args(scale="x"))


def test_valid_fields_are_normalised():
    """Integers of other types become ``int`` and sequences tuples, so equal patterns hash alike."""
    p = SlidingWindow(np.int64(3), dilation=torch.tensor(2), global_tokens=[5, np.int32(1), 5])
    assert p == SlidingWindow(3, dilation=2, global_tokens=(1, 5))
    assert hash(p) == hash(SlidingWindow(3, 2, False, (1, 5)))
    assert type(p.window) is int and type(p.dilation) is int and p.global_tokens == (1, 5)
    w = Window2D(np.int16(4), [np.int64(6), 7], shift=np.uint8(2))
    assert w.grid == (6, 7) and type(w.grid[0]) is int and type(w.window_size) is int and type(w.shift) is int
    assert SlidingWindow(2, global_tokens=()).global_tokens is None
    assert LSH(seed=None).seed is None and BigBird(8, seed=-3).seed == -3


# ------------------------------------------------------------------ huge parameters
HUGE = 10**9
HUGE_CASES = [
    (SlidingWindow(HUGE), Dense()),
    (SlidingWindow(HUGE, causal=True), Dense(causal=True)),
    (SlidingWindow(10**30, dilation=10**30, global_tokens=(0, 7)), None),
    (SlidingWindow(3, dilation=HUGE), None),
    (SlidingWindow(HUGE, dilation=HUGE, causal=True), None),
    (SlidingWindow(HUGE, dilation=7), None),
    (Strided(HUGE), Dense(causal=True)),
    (Strided(HUGE, causal=False), Dense()),
    (Strided(HUGE, mode="fixed", summary=HUGE - 3), Dense(causal=True)),
    (Strided(10**30, mode="fixed", causal=False), Dense()),
    (BigBird(HUGE), Dense()),
    (BigBird(10**30, window_blocks=10**30, global_blocks=10**30, random_blocks=10**30), Dense()),
    (Window2D(HUGE, (12, 25)), Dense()),
    (Window2D(HUGE, (12, 25), shift=7), None),
    (Window2D(HUGE, (12, 25), shift=20), None),
    (Window2D(HUGE, (12, 25), shift=HUGE - 1), Dense()),
    (Window2D(20, (12, 25), shift=3), None),  # window between the two sides of the grid
]


@pytest.mark.parametrize("pattern, dense", HUGE_CASES, ids=repr)
def test_huge_parameters_cost_memory_of_the_sequence(pattern, dense):
    """A reach, stride, block or window far beyond the sequence lays out O(L) slots and keys
    and gives the pattern's own answer (Dense's, where the pattern then is Dense)."""
    n = 300
    if dense is not None:
        assert torch.equal(pattern.dense_mask(n), dense.dense_mask(n))
    tiling = tiling_for(pattern, n, torch.device("cpu"))
    for plan in tiling.parts:  # at most 16 slots per token: one token per residue class, blocks of 16
        assert plan.n_slots <= 16 * n and plan.span <= 3 * n, (plan.n_slots, plan.span)
        assert plan.key_index(torch.device("cpu")).numel() <= 16 * n + 3 * n
    if isinstance(pattern, Window2D):
        hp, wp = pattern.padded_grid
        assert hp * wp <= 4 * n
    q, k, v = (torch.randn(1, 2, n, 16, dtype=torch.float64) for _ in range(3))
    ref = reference_attend(q, k, v, pattern.dense_mask(n))
    for backend in ("auto", "math", "flash"):
        with use_backend(backend):
            out = attend(q, k, v, pattern)
        torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-10)


def test_huge_lsh_bucket_is_one_chunk():
    """A bucket far beyond the sequence is one chunk of L slots: every pair, as Dense."""
    n = 200
    q, k, v = (torch.randn(1, 2, n, 16, dtype=torch.float64) for _ in range(3))
    out = attend(q, k, v, LSH(bucket_size=HUGE, n_hashes=2, seed=0, shared_qk=False))
    torch.testing.assert_close(out, reference_attend(q, k, v, Dense().dense_mask(n)), atol=1e-10, rtol=1e-10)
    p = LSH(bucket_size=HUGE, n_hashes=2, seed=0)
    rounds = p.layout(q, torch.nn.functional.normalize(q, dim=-1))[0][0]
    assert rounds[0].q_order.numel() == n


@pytest.mark.parametrize("pattern", [SlidingWindow(5), SlidingWindow(3, dilation=2, global_tokens=(4,)),
                                     Window2D(4, (10, 15), shift=2), BigBird(8)], ids=repr)
def test_float64_on_flash_tiles_matches_reference(pattern):
    """PyTorch's CPU flash kernels read a float32 mask wrongly for float64 queries: the
    tiles hand them a float64 one."""
    n = 150
    q, k, v = (torch.randn(2, 2, n, 16, dtype=torch.float64) for _ in range(3))
    with use_backend("flash"):
        out = attend(q, k, v, pattern)
    torch.testing.assert_close(out, reference_attend(q, k, v, pattern.dense_mask(n)), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("pattern", [SlidingWindow(3), Dense(causal=True), Window2D(2, (4, 4)), BigBird(4),
                                     LSH(bucket_size=4, seed=0)], ids=repr)
def test_empty_batch_returns_empty_output(pattern):
    """No batch row: an empty result with gradients, not a crash in the fused kernels."""
    q, k, v = (torch.randn(0, 2, 16, 8, requires_grad=True) for _ in range(3))
    out = attend(q, k, v, pattern)
    assert out.shape == (0, 2, 16, 8)
    out.sum().backward()
    assert q.grad.shape == q.shape and k.grad.shape == k.shape and v.grad.shape == v.shape


# ------------------------------------------------------------------ non-finite inputs
def where_reference(q, k, v, mask, key_mask=None, scale=None):
    """float64 attention in which only admitted pairs meet: masked scores are selected
    away (not added to), and masked products never formed, so NaN travels only through
    admitted pairs. Rows without an admitted key are zeros. k, v may have fewer heads."""
    q, k, v = q.double(), k.double(), v.double()
    if k.shape[1] != q.shape[1]:
        k, v = (t.repeat_interleave(q.shape[1] // k.shape[1], 1) for t in (k, v))
    n, d = q.shape[-2], q.shape[-1]
    m = mask[None, None].expand(q.shape[0], q.shape[1], n, n)
    if key_mask is not None:
        m = m & key_mask[:, None, None, :]
    s = torch.where(m, q @ k.transpose(-1, -2) * (scale or d**-0.5), -math.inf)
    top = s.amax(-1, keepdim=True)
    p = torch.where(m, torch.exp(s - torch.where(torch.isfinite(top), top, 0.0)), 0.0)
    p = p / p.sum(-1, keepdim=True).clamp_min(1e-300)
    return torch.where(m[..., None], p[..., None] * v[:, :, None], 0.0).sum(-2)


NAN_PATTERNS = [
    SlidingWindow(5), SlidingWindow(5, causal=True), SlidingWindow(3, dilation=2),
    SlidingWindow(4, dilation=2, causal=True), SlidingWindow(4, global_tokens=(0, 70)),
    Window2D(4, (10, 15), shift=2), Window2D(5, (10, 15)), BigBird(8, seed=1), Strided(6),
    Strided(5, mode="fixed", causal=False), Dense(causal=True),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("backend", ["auto", "math", "flash"])
@pytest.mark.parametrize("where", ["key", "value", "query"])
@pytest.mark.parametrize("pattern", NAN_PATTERNS, ids=repr)
def test_nan_reaches_only_the_queries_that_admit_it(pattern, where, backend, dtype):
    n = 150
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, n, 16, dtype=dtype) for _ in range(3))
    if where == "key":
        k[0, 1, 60] = math.nan  # a whole key row
    elif where == "value":
        v[0, 1, 60, 3] = math.nan  # one element of a value
    else:
        q[1, 0, 60, 5] = math.nan
    with use_backend(backend):
        out = attend(q, k, v, pattern)
    ref = where_reference(q, k, v, pattern.dense_mask(n))
    assert ref.isnan().any()
    assert torch.equal(out.isnan(), ref.isnan()), (int(out.isnan().sum()), int(ref.isnan().sum()))
    tol = 3e-2 if dtype == torch.bfloat16 else 1e-5
    torch.testing.assert_close(out.double().nan_to_num(), ref.nan_to_num(), atol=tol, rtol=tol)


@pytest.mark.parametrize("backend", ["auto", "math"])
@pytest.mark.parametrize("pattern", NAN_PATTERNS + [Dense()], ids=repr)
def test_non_finite_keys_hidden_by_the_key_mask_change_nothing(pattern, backend):
    """Padding tokens may hold anything: NaN or inf keys and values the key mask hides
    leave every output finite and equal to the reference (grouped-query heads too)."""
    n = 150
    torch.manual_seed(1)
    q = torch.randn(2, 4, n, 16)
    k, v = (torch.randn(2, 2, n, 16) for _ in range(2))
    km = torch.rand(2, n) > 0.2
    km[:, 60] = False
    k[:, :, 60] = math.nan
    v[:, 1, 60, 2] = math.inf
    with use_backend(backend):
        out = attend(q, k, v, pattern, key_mask=km)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), where_reference(q, k, v, pattern.dense_mask(n), km),
                               atol=1e-5, rtol=1e-5)


def test_infinite_key_stays_local_and_gradients_flow():
    """An infinite key makes the rows admitting it NaN, and no other; backward still runs
    through the finite rows."""
    n = 120
    pattern = SlidingWindow(4, causal=True)
    q, k, v = (torch.randn(1, 2, n, 16, requires_grad=True) for _ in range(3))
    k_bad = k.detach().clone()
    k_bad[0, 0, 50, 0] = math.inf
    k_bad.requires_grad_()
    out = attend(q, k_bad, v, pattern)
    admits = pattern.dense_mask(n)[:, 50]  # queries that may attend key 50
    assert out[0, 0][admits].isnan().all() and torch.isfinite(out[0, 0][~admits]).all()
    assert torch.isfinite(out[0, 1]).all()
    ref = where_reference(q.detach(), k_bad.detach(), v.detach(), pattern.dense_mask(n))
    torch.testing.assert_close(out.detach()[0, 0][~admits].double(), ref[0, 0][~admits], atol=1e-5, rtol=1e-5)
    out[0, :, :40].sum().backward()  # rows that do not admit the key
    for t in (q, k_bad, v):
        assert torch.isfinite(t.grad).all()


def test_finite_inputs_take_the_plain_path(monkeypatch):
    """The non-finite path runs only when an input holds NaN or inf."""
    calls = []
    real = attention_mod._attend_non_finite
    monkeypatch.setattr(attention_mod, "_attend_non_finite", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    q, k, v = (torch.randn(1, 2, 64, 16) for _ in range(3))
    for pattern in (SlidingWindow(4), Window2D(4, (8, 8)), Dense(causal=True)):
        attend(q, k, v, pattern)
    assert calls == []
    k[0, 0, 3, 3] = math.nan
    attend(q, k, v, SlidingWindow(4))
    assert calls == [1]


# ------------------------------------------------------------------ LSH in half precision
@pytest.mark.parametrize("logit", [10.0, 100.0, 1000.0])
@pytest.mark.parametrize("backend", ["auto", "math", "flash"])
def test_lsh_shared_keys_in_bf16_within_three_ulps(logit, backend):
    """Shared-QK LSH on bf16 inputs stays within 3 bf16 ulps of the output scale of the
    float64 answer on the same inputs, with query-key logits up to ``logit``."""
    torch.manual_seed(0)
    n, d = 256, 32
    p = LSH(bucket_size=16, n_hashes=2, seed=3)
    q = torch.randn(1, 2, n, d)
    q = (q / q.norm(dim=-1, keepdim=True) * logit * d**0.5).bfloat16()  # a key's logit with itself
    v = torch.randn(1, 2, n, d).bfloat16()
    with use_backend(backend):
        out = attend(q, q, v, p)
    ref = lsh_reference(p, q.double(), v.double())
    ulp = 2.0 ** (math.floor(math.log2(ref.abs().max().item())) - 7)  # bf16: 8 significant bits
    err = (out.double() - ref).abs().max().item()
    assert err <= 3 * ulp, (err, ulp)


def test_lsh_bf16_backward_is_finite_and_close():
    torch.manual_seed(0)
    n, d = 128, 16
    p = LSH(bucket_size=16, n_hashes=2, seed=5)
    q32 = torch.randn(1, 1, n, d) * 20
    v32 = torch.randn(1, 1, n, d)
    q, v = (t.bfloat16().requires_grad_() for t in (q32, v32))
    out = attend(q, q, v, p)
    dout = torch.randn_like(out)
    gq, gv = torch.autograd.grad(out, (q, v), dout)
    q64, v64 = (t.detach().double().requires_grad_() for t in (q, v))
    ref = lsh_reference(p, q64, v64)
    rq, rv = torch.autograd.grad(ref, (q64, v64), dout.double())
    for g, r in ((gq, rq), (gv, rv)):
        assert torch.isfinite(g.float()).all()
        torch.testing.assert_close(g.double(), r, atol=3e-2 * r.abs().max().item(), rtol=0)
