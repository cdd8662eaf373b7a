"""The FlexAttention backend: masks equal to the patterns, biases equal to their tiles,
forward equal to the blocked kernel and the float64 dense reference.

Compiling FlexAttention on CPU takes seconds per new mask, so every pattern's
``mask_mod`` and every bias's ``score_mod`` are checked densely in eager mode, and the
compiled forward runs on a representative set of cases (each pattern, lengths that do
and do not divide 128, key masks, GQA, each bias type).
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo

from longseq import attend, explain
from longseq.kernels import use_backend
from longseq.kernels.flex import block_mask_for, mask_mod_for, score_mod_for, supports_flex
from longseq.patterns import LSH, BigBird, Dense, SlidingWindow, Strided, Window2D
from longseq.positions import ALiBi, RelativeBias1D, RelativeBias2D
from tests.core.reference import reference_attend

# (pattern, L): lengths 200, 240, 300 do not divide 128; 256 does
MASK_CASES = [
    (Dense(), 200), (Dense(causal=True), 256),
    (SlidingWindow(8), 200), (SlidingWindow(5, dilation=3), 256),
    (SlidingWindow(6, causal=True, global_tokens=(0, 57, 199)), 200),
    (SlidingWindow(4, dilation=2, causal=True, global_tokens=(130,)), 300),
    (SlidingWindow(10**9, dilation=7), 200),
    (Window2D(4, (12, 20)), 240), (Window2D(8, (16, 16), shift=3), 256), (Window2D(7, (15, 14), shift=2), 210),
    (Window2D(32, (10, 20), shift=5), 200),
    (BigBird(32, window_blocks=1, global_blocks=1, random_blocks=2, seed=3), 300),
    (BigBird(50, window_blocks=0, global_blocks=0, random_blocks=1, seed=1), 256),
    (Strided(16), 200), (Strided(16, causal=False), 256),
    (Strided(12, mode="fixed", summary=3), 300), (Strided(20, mode="fixed", summary=4, causal=False), 200),
]


def _ids(case) -> str:
    return f"{case[0]!r}-L{case[1]}"


def _grid(L: int) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.arange(L)
    return idx[:, None], idx[None, :]


@pytest.mark.parametrize("case", MASK_CASES, ids=_ids)
def test_mask_mod_equals_dense_mask(case) -> None:
    pattern, L = case
    assert supports_flex(pattern)
    i, j = _grid(L)
    zero = torch.zeros((), dtype=torch.long)
    # mask_mods are elementwise, so broadcast index grids evaluate them densely
    got = mask_mod_for(pattern, L)(zero, zero, i, j).expand(L, L)
    assert torch.equal(got, pattern.dense_mask(L))


@pytest.mark.parametrize("case", MASK_CASES[::3], ids=_ids)
def test_block_mask_covers_every_allowed_block(case) -> None:
    pattern, L = case
    bm = block_mask_for(pattern, L, torch.device("cpu"))
    assert block_mask_for(pattern, L, torch.device("cpu")) is bm  # built once per (pattern, L, device)
    blocks = bm.to_dense()[0, 0].bool()  # (nq, nk) blocks FlexAttention visits
    n = -(-L // 128)
    dense = torch.zeros(n * 128, n * 128, dtype=torch.bool)
    dense[:L, :L] = pattern.dense_mask(L)
    needed = dense.view(n, 128, n, 128).any(3).any(1)
    assert torch.equal(blocks[:n, :n], needed)


def test_data_dependent_patterns_have_no_mask_mod() -> None:
    pattern = LSH(bucket_size=8, n_hashes=2, seed=0)
    assert not supports_flex(pattern)
    with pytest.raises(NotImplementedError, match="LSH"):
        mask_mod_for(pattern, 64)


def _biases(H: int) -> dict[str, object]:
    t5 = RelativeBias1D(H, max_distance=64, num_buckets=16)
    swin = RelativeBias2D(H, 4)
    with torch.no_grad():  # zero-initialised tables would test nothing
        t5.table.weight.normal_()
        swin.table.normal_()
    return {"alibi": ALiBi(H), "t5": t5, "t5-causal": RelativeBias1D(H, bidirectional=False), "swin": swin}


@pytest.mark.parametrize("name", ["alibi", "t5", "t5-causal", "swin"])
def test_score_mod_equals_tile(name) -> None:
    H, pattern = 3, Window2D(4, (10, 12), shift=1)
    L = 120
    bias = _biases(H)[name]
    if name == "t5-causal":
        with torch.no_grad():
            bias.table.weight.normal_()
    i, j = _grid(L)
    h = torch.arange(H)[:, None, None]
    zero = torch.zeros((), dtype=torch.long)
    with torch.no_grad():
        got = score_mod_for(bias, pattern, L)(torch.zeros((), dtype=torch.float32), zero, h, i[None], j[None])
        want = bias.tile(torch.arange(L), torch.arange(L), pattern)  # (H, L, L)
    torch.testing.assert_close(got.expand(H, L, L), want.float(), atol=1e-6, rtol=1e-6)


def test_unknown_bias_type_is_named() -> None:
    class MyBias:
        heads = 2

        def tile(self, i, j, pattern=None):
            return torch.zeros(2, i.shape[-1], j.shape[-1])

        def parameters(self):
            return iter(())

    with pytest.raises(NotImplementedError, match="MyBias"):
        score_mod_for(MyBias(), SlidingWindow(2), 16)
    q = torch.randn(1, 2, 32, 16)
    with use_backend("flex"), pytest.raises(NotImplementedError, match="MyBias"):
        explain(q, q, q, SlidingWindow(2), bias=MyBias())


# Routes ----------------------------------------------------------------------------------

def test_explain_reports_flex_when_forced() -> None:
    q = torch.randn(1, 2, 64, 16)
    for pattern in (SlidingWindow(4), Window2D(4, (8, 8), shift=2), BigBird(16), Strided(8), Dense(causal=True)):
        with use_backend("flex"):
            route = explain(q, q, q, pattern, key_mask=torch.ones(1, 64, dtype=torch.bool), bias=ALiBi(2))
        assert (route.route, route.backend) == ("flex", "flex"), str(route)
        assert "use_backend('flex')" in route.reason


def test_auto_never_picks_flex_on_cpu() -> None:
    q = torch.randn(1, 2, 64, 16)
    for pattern in (SlidingWindow(4), Window2D(4, (8, 8)), BigBird(16), Strided(8)):
        assert explain(q, q, q, pattern).route != "flex"


def test_dense_without_bias_stays_on_sdpa_under_flex() -> None:
    q = torch.randn(1, 2, 64, 16)
    with use_backend("flex"):
        assert explain(q, q, q, Dense()).route == "dense_sdpa"


def test_data_dependent_pattern_under_flex_keeps_its_tiles() -> None:
    q = torch.randn(1, 2, 64, 16)
    with use_backend("flex"):
        route = explain(q, q, q, LSH(bucket_size=8, n_hashes=2, seed=0))
    with use_backend("auto"):
        auto = explain(q, q, q, LSH(bucket_size=8, n_hashes=2, seed=0))
    assert (route.route, route.backend) == ("pattern", auto.backend) and auto.backend in ("flash", "fused"), str(route)
    assert "use_backend('flex')" in route.reason


@pytest.mark.parametrize("what", ["dropout", "float64", "grad"])
def test_forced_flex_raises_for_what_it_cannot_do(what) -> None:
    q = torch.randn(1, 2, 64, 16, dtype=torch.float64 if what == "float64" else torch.float32,
                    requires_grad=what == "grad")
    kw = {"dropout_p": 0.1} if what == "dropout" else {}
    match = {"dropout": "dropout", "float64": "float64", "grad": "backward on CPU"}[what]
    with use_backend("flex"), pytest.raises(ValueError, match=match):
        attend(q, q.detach(), q.detach(), SlidingWindow(4), **kw)


# Compiled forward on CPU -------------------------------------------------------------------

def _key_mask(B: int, L: int, empty_span: tuple[int, int] | None) -> torch.Tensor:
    km = torch.rand(B, L) > 0.2
    if empty_span is not None:  # a long masked run: queries in its middle have no key
        km[0, empty_span[0]:empty_span[1]] = False
    return km


# (pattern, L, B, H, Hkv, key mask (None / "rand" / masked span), bias name)
FORWARD_CASES = [
    (SlidingWindow(8, dilation=2, global_tokens=(3,)), 200, 2, 2, 1, (0, 170), "alibi"),
    (SlidingWindow(16, causal=True), 256, 1, 2, 2, None, "t5"),
    (Window2D(4, (12, 20), shift=2), 240, 2, 2, 2, "rand", "swin"),
    (BigBird(32, seed=3), 300, 2, 4, 2, "rand", None),
    (Strided(16), 200, 1, 2, 2, None, None),
    (Strided(16, mode="fixed", summary=4, causal=False), 256, 1, 2, 2, None, "alibi"),
    (Dense(causal=True), 200, 2, 2, 2, "rand", None),
]


@pytest.fixture(scope="module")
def many_compiles():
    # each (mask, bias) compiles once; past dynamo's default limit of 8 recompilations
    # flex_attention would run uncompiled and these cases would not test the kernel
    with torch._dynamo.config.patch(recompile_limit=64, accumulated_recompile_limit=512):
        yield


@pytest.mark.parametrize("case", FORWARD_CASES, ids=lambda c: f"{type(c[0]).__name__}-L{c[1]}-{c[6]}")
def test_compiled_forward_matches_blocked_and_reference(case, many_compiles) -> None:
    pattern, L, B, H, Hkv, km_kind, bias_name = case
    D = 16
    q = torch.randn(B, H, L, D)
    k, v = torch.randn(B, Hkv, L, D), torch.randn(B, Hkv, L, D)
    key_mask = None
    if km_kind is not None:
        key_mask = _key_mask(B, L, None if km_kind == "rand" else km_kind)
        if km_kind != "rand":
            key_mask[0, 3] = False  # the global token too: rows in the masked run keep no key
    bias = _biases(H)[bias_name] if bias_name else None
    with torch.no_grad():
        with use_backend("flex"):
            route = explain(q, k, v, pattern, key_mask=key_mask, bias=bias)
            out = attend(q, k, v, pattern, key_mask=key_mask, bias=bias)
        blocked = attend(q, k, v, pattern, key_mask=key_mask, bias=bias)
        idx = torch.arange(L)
        tile = None if bias is None else bias.tile(idx, idx, pattern).double()
        ref = reference_attend(q.double(), k.double(), v.double(), pattern.dense_mask(L), key_mask, tile)
    assert route.route == "flex", str(route)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, blocked, atol=2e-5, rtol=2e-5)
    torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=2e-5)
    if key_mask is not None:
        allowed = pattern.dense_mask(L)[None] & key_mask[:, None, :]
        empty = ~allowed.any(-1)  # (B, L) queries with no allowed key
        if km_kind not in (None, "rand"):
            assert empty.any()
        assert torch.equal(out.transpose(1, 2)[empty], torch.zeros_like(out.transpose(1, 2)[empty]))  # not NaN


# CUDA: forward and backward ------------------------------------------------------------------

CUDA_CASES = [
    (SlidingWindow(8, dilation=2, global_tokens=(3,)), 200, "alibi", True),
    (SlidingWindow(16, causal=True), 256, "t5", False),
    (Window2D(4, (12, 20), shift=2), 240, "swin", True),
    (BigBird(32, seed=3), 300, None, True),
    (Strided(16, mode="fixed", summary=4, causal=False), 256, None, False),
    (Dense(causal=True), 200, "alibi", True),
]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.cuda
@pytest.mark.parametrize("case", CUDA_CASES, ids=lambda c: f"{type(c[0]).__name__}-L{c[1]}-{c[2]}")
def test_cuda_flex_forward_backward_matches_reference(case) -> None:
    pattern, L, bias_name, masked = case
    B, H, Hkv, D = 2, 4, 2, 16
    dev = torch.device("cuda")
    q = torch.randn(B, H, L, D, device=dev, requires_grad=True)
    k = torch.randn(B, Hkv, L, D, device=dev, requires_grad=True)
    v = torch.randn(B, Hkv, L, D, device=dev, requires_grad=True)
    key_mask = _key_mask(B, L, (0, 170) if masked else None).to(dev) if masked else None
    bias = _biases(H)[bias_name].to(dev) if bias_name else None
    route = explain(q, k, v, pattern, key_mask=key_mask, bias=bias)
    assert (route.route, route.backend) == ("flex", "flex"), str(route)
    out = attend(q, k, v, pattern, key_mask=key_mask, bias=bias)
    g = torch.randn_like(out)
    params = [p for p in (bias.parameters() if bias is not None else ()) if p.requires_grad]
    grads = torch.autograd.grad(out, [q, k, v, *params], g)

    qd, kd, vd = (t.detach().double().requires_grad_() for t in (q, k, v))
    idx = torch.arange(L, device=dev)
    tile = None if bias is None else bias.tile(idx, idx, pattern).detach().double()
    ref = reference_attend(qd, kd, vd, pattern.dense_mask(L, dev), key_mask, tile)
    ref_grads = torch.autograd.grad(ref, [qd, kd, vd], g.double())
    torch.testing.assert_close(out.double(), ref, atol=2e-4, rtol=2e-4)
    for got, want in zip(grads[:3], ref_grads):
        torch.testing.assert_close(got.double(), want, atol=2e-3, rtol=2e-3)
    if params:  # learnable tables: compared with the blocked kernel's gradients (matmul tiles)
        with use_backend("math"):
            out_b = attend(q, k, v, pattern, key_mask=key_mask, bias=bias)
        want_p = torch.autograd.grad(out_b, params, g)
        for got, want in zip(grads[3:], want_p):
            torch.testing.assert_close(got, want, atol=2e-3, rtol=2e-3)


def test_non_finite_key_reaches_only_the_queries_that_admit_it(many_compiles) -> None:
    # the same two-pass treatment as the blocked route: rows in the NaN key's window only
    L, pattern = 200, SlidingWindow(4)
    q, k, v = torch.randn(1, 2, L, 16), torch.randn(1, 1, L, 16), torch.randn(1, 1, L, 16)
    k[0, 0, 50, 3] = float("nan")
    with torch.no_grad(), use_backend("flex"):
        out = attend(q, k, v, pattern)
    nan_rows = torch.isnan(out).any(-1)  # (1, 2, L)
    admits = pattern.dense_mask(L)[:, 50]  # (L,) queries that may attend key 50
    assert torch.equal(nan_rows, admits.expand(1, 2, L))
    assert not torch.isnan(out[..., ~admits, :]).any()
