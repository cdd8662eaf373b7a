"""Layers: reversible stack vs ordinary residuals, chunked feed-forward, attention module, encodings."""

import copy

import pytest
import torch
from torch import nn

from longseq import attend
from longseq.layers import ChunkedFeedForward, Encoder, MultiheadAttention, ReversibleSequence, TransformerBlock
from longseq.patterns import Dense, SlidingWindow, Window2D
from longseq.positions import ALiBi, AxialPositionalEmbedding, RoPE1D, RoPE2D
from longseq.windows import window_partition, window_unpartition


def saved_bytes(fn) -> int:
    """Bytes of all tensors autograd saves for backward while running fn()."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def _encoder(depth, reversible, dim=32, patterns=None):
    patterns = patterns or [SlidingWindow(4)] * depth
    return Encoder(dim, depth=depth, heads=4, pattern=patterns, reversible=reversible).double()


def _plain_residual(rev_encoder, x):
    """The same blocks as ordinary residual two-stream layers: y1 = x1 + F(x2), y2 = x2 + G(y1)."""
    x1 = x2 = x
    for b in rev_encoder.blocks:
        x1 = x1 + b.attn_branch(x2)
        x2 = x2 + b.ff_branch(x1)
    return rev_encoder.norm((x1 + x2) / 2)


def test_reversible_gradients_equal_residual_stack():
    enc = _encoder(3, reversible=True, patterns=[SlidingWindow(3), SlidingWindow(2, dilation=2), Dense(causal=True)])
    ref = copy.deepcopy(enc)
    x = torch.randn(2, 29, 32, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    out = enc(x)
    out_ref = _plain_residual(ref, x_ref)
    torch.testing.assert_close(out, out_ref, atol=1e-10, rtol=1e-10)
    g = torch.randn_like(out)
    out.backward(g)
    out_ref.backward(g)
    torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-5, rtol=1e-5)
    for (name, p), p_ref in zip(enc.named_parameters(), ref.parameters()):
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, p_ref.grad, atol=1e-5, rtol=1e-5, msg=lambda m: f"{name}: {m}")


def test_reversible_saved_memory_flat_in_depth():
    x = torch.randn(1, 64, 32, dtype=torch.float64, requires_grad=True)
    rev = [saved_bytes(lambda d=d: _encoder(d, True)(x).sum()) for d in (2, 8)]
    plain = [saved_bytes(lambda d=d: _encoder(d, False)(x).sum()) for d in (2, 8)]
    assert rev[1] == rev[0], rev
    assert plain[1] > 3 * plain[0]  # the ordinary stack does grow: the measurement is live


def test_reversible_replays_dropout():
    torch.manual_seed(0)
    blocks = [TransformerBlock(8, 2, SlidingWindow(2), dropout=0.3).double() for _ in range(2)]
    enc = Encoder(blocks, reversible=True).double().train()
    x = torch.randn(1, 6, 8, dtype=torch.float64, requires_grad=True)

    def fn(x):
        torch.manual_seed(1)
        return enc(x)

    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-5)


def test_chunked_feedforward_equals_unchunked_and_saves_less():
    ff1 = ChunkedFeedForward(32, 128, chunks=1)
    ff4 = ChunkedFeedForward(32, 128, chunks=4)
    ff4.load_state_dict(ff1.state_dict())
    x = torch.randn(2, 50, 32, requires_grad=True)
    torch.testing.assert_close(ff4(x), ff1(x))
    g1 = torch.autograd.grad(ff1(x).square().sum(), [x] + list(ff1.parameters()))
    g4 = torch.autograd.grad(ff4(x).square().sum(), [x] + list(ff4.parameters()))
    for a, b in zip(g1, g4):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    s1 = saved_bytes(lambda: ff1(x).sum())
    s4 = saved_bytes(lambda: ff4(x).sum())
    assert s4 < s1 / 2, (s1, s4)


def test_auto_chunked_feedforward_follows_length(monkeypatch):
    """``chunks="auto"``: one chunk up to the threshold, ceil(L / threshold) above (so
    saving less there), one chunk without gradients; same values and gradients as unchunked."""
    import longseq.layers.feedforward as ffmod

    monkeypatch.setattr(ffmod, "AUTO_FF_CHUNK_TOKENS", 16)
    auto, plain = ChunkedFeedForward(8, 32, chunks="auto"), ChunkedFeedForward(8, 32, chunks=1)
    plain.load_state_dict(auto.state_dict())
    assert auto.n_chunks(16) == 1 and auto.n_chunks(17) == 2 and auto.n_chunks(50) == 4
    with torch.no_grad():
        assert auto.n_chunks(50) == 1
    short, long = torch.randn(2, 16, 8, requires_grad=True), torch.randn(2, 50, 8, requires_grad=True)
    assert saved_bytes(lambda: auto(short).sum()) == saved_bytes(lambda: plain(short).sum())
    assert saved_bytes(lambda: auto(long).sum()) < saved_bytes(lambda: plain(long).sum()) / 2
    ga = torch.autograd.grad(auto(long).square().sum(), [long] + list(auto.parameters()))
    gp = torch.autograd.grad(plain(long).square().sum(), [long] + list(plain.parameters()))
    for a, b in zip(ga, gp):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="chunks"):
        ChunkedFeedForward(8, 32, chunks="many")


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_head_chunks_equal_all_heads_and_save_less(kv_heads):
    """Head groups recomputed in backward: same output and gradients, less saved for backward."""
    torch.manual_seed(0)
    norm = nn.LayerNorm(32)
    full = MultiheadAttention(32, 4, SlidingWindow(5, causal=True), kv_heads=kv_heads, rope=RoPE1D(8))
    chunked = MultiheadAttention(32, 4, SlidingWindow(5, causal=True), kv_heads=kv_heads, rope=RoPE1D(8),
                                 head_chunks=2)
    chunked.load_state_dict(full.state_dict())
    x = torch.randn(2, 45, 32, requires_grad=True)
    km = torch.rand(2, 45) > 0.2
    y1, y2 = full(norm(x), key_mask=km), chunked(norm(x), key_mask=km)
    torch.testing.assert_close(y2, y1, atol=1e-5, rtol=1e-5)
    dy = torch.randn_like(y1)
    params = [x, *full.parameters(), *norm.parameters()]
    g1 = torch.autograd.grad(y1, params, dy)
    g2 = torch.autograd.grad(y2, [x, *chunked.parameters(), *norm.parameters()], dy)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    s1 = saved_bytes(lambda: full(x).sum())
    s2 = saved_bytes(lambda: chunked(x).sum())
    assert s2 < s1 / 2, (s1, s2)  # what the kept attention outputs cost is counted too
    with pytest.raises(ValueError, match="head_chunks"):
        MultiheadAttention(32, 4, Dense(), kv_heads=2, head_chunks=4)
    with pytest.raises(ValueError, match="bias"):
        MultiheadAttention(32, 4, Dense(), head_chunks=2, bias=ALiBi(4))


def test_auto_head_chunks_follow_length(monkeypatch):
    """"auto" groups heads only while training on long inputs, and changes no result."""
    import longseq.layers.attention as attention_mod

    monkeypatch.setattr(attention_mod, "AUTO_HEAD_CHUNK_TOKENS", 32)
    torch.manual_seed(0)
    auto = MultiheadAttention(48, 6, SlidingWindow(5), rope=RoPE1D(8), head_chunks="auto")
    plain = MultiheadAttention(48, 6, SlidingWindow(5), rope=RoPE1D(8))
    plain.load_state_dict(auto.state_dict())
    assert auto.n_head_chunks(32) == 1 and auto.n_head_chunks(33) == 2
    with torch.no_grad():
        assert auto.n_head_chunks(1000) == 1
    assert MultiheadAttention(32, 4, Dense(), kv_heads=1, head_chunks="auto").n_head_chunks(1000) == 1
    assert MultiheadAttention(32, 4, Dense(), bias=ALiBi(4), head_chunks="auto").n_head_chunks(1000) == 1
    x = torch.randn(2, 45, 48, requires_grad=True)
    torch.testing.assert_close(auto(x), plain(x), atol=1e-5, rtol=1e-5)
    assert saved_bytes(lambda: auto(x).sum()) < saved_bytes(lambda: plain(x).sum()) / 2
    ga = torch.autograd.grad(auto(x).square().sum(), [x, *auto.parameters()])
    gp = torch.autograd.grad(plain(x).square().sum(), [x, *plain.parameters()])
    for a, b in zip(ga, gp):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="head_chunks"):
        MultiheadAttention(32, 4, Dense(), head_chunks="many")


def test_multihead_attention_gqa_rope_and_pattern_override():
    mha = MultiheadAttention(32, 4, SlidingWindow(3), kv_heads=2, rope=RoPE1D(8), bias=ALiBi(4))
    x = torch.randn(2, 21, 32)
    y = mha(x)
    assert y.shape == x.shape
    # Overriding with a pattern that equals the default changes nothing; another one does.
    torch.testing.assert_close(mha(x, pattern=SlidingWindow(3)), y)
    assert not torch.allclose(mha(x, pattern=Dense()), y)
    with pytest.raises(ValueError, match="kv_heads"):
        MultiheadAttention(32, 4, Dense(), kv_heads=3)


def test_encoder_per_layer_patterns_and_key_mask():
    enc = Encoder(16, depth=2, heads=2, pattern=[SlidingWindow(2), SlidingWindow(2, global_tokens=(0,))])
    assert [b.pattern for b in enc.blocks] == [SlidingWindow(2), SlidingWindow(2, global_tokens=(0,))]
    x = torch.randn(2, 12, 16)
    km = torch.ones(2, 12, dtype=torch.bool)
    km[1, 8:] = False
    y = enc(x, key_mask=km)
    # Padding must not leak into real tokens: change padded inputs, real outputs stay.
    x2 = x.clone()
    x2[1, 8:] = torch.randn(4, 16)
    torch.testing.assert_close(enc(x2, key_mask=km)[1, :8], y[1, :8])
    with pytest.raises(ValueError, match="depth"):
        Encoder(16, depth=3, heads=2, pattern=[SlidingWindow(2)] * 2)


def test_rope1d_depends_on_relative_position_only():
    rope = RoPE1D(16)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)
    def score(i, j):
        return (rope(q, torch.tensor([i])) * rope(k, torch.tensor([j]))).sum()
    torch.testing.assert_close(score(5, 2), score(105, 102), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(score(5, 2), score(5, 3))


def test_rope2d_depends_on_relative_offset_only():
    rope = RoPE2D(16)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)
    def score(a, b):
        return (rope(q, torch.tensor([a])) * rope(k, torch.tensor([b]))).sum()
    torch.testing.assert_close(score((3, 4), (1, 1)), score((13, 24), (11, 21)), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(score((3, 4), (1, 1)), score((3, 4), (1, 2)))


def test_rope2d_rotates_each_half_by_its_axis_and_follows_new_positions():
    rope, row, col = RoPE2D(16), RoPE1D(8, base=100.0), RoPE1D(8, base=100.0)
    x = torch.randn(2, 3, 12, 20)  # 4 trailing dims pass through unrotated
    for grid in ((3, 4), (4, 3), (3, 4)):  # a changed grid must not reuse the cached table
        pos = torch.stack(torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij"), -1).view(-1, 2)
        ref = torch.cat((row(x[..., :8], pos[:, 0]), col(x[..., 8:16], pos[:, 1]), x[..., 16:]), -1)
        torch.testing.assert_close(rope(x, pos), ref)


def test_axial_positional_embedding():
    emb = AxialPositionalEmbedding((8, 16), 32)
    assert sum(p.numel() for p in emb.parameters()) == 8 * 16 + 16 * 16
    x = torch.zeros(2, 100, 32)
    y = emb(x)
    assert y.shape == x.shape and not torch.equal(y[:, 0], y[:, 1])
    with pytest.raises(ValueError, match="exceeds"):
        emb(torch.zeros(1, 129, 32))


def test_window_partition_round_trip_and_matches_window2d():
    x = torch.randn(2, 7, 10, 3)
    win, pad = window_partition(x, 4)
    assert win.shape == (2 * 2 * 3, 4, 4, 3) and pad == (8, 12)
    torch.testing.assert_close(window_unpartition(win, 4, pad, (7, 10)), x)
    # Tokens sharing a partition window are exactly those Window2D lets attend each other.
    ids = torch.arange(70, dtype=torch.float32).view(1, 7, 10, 1) + 1  # 0 marks padding
    w, _ = window_partition(ids, 4)
    same = torch.zeros(70, 70, dtype=torch.bool)
    for window in w.view(w.shape[0], -1).long() - 1:
        t = window[window >= 0]
        same[t[:, None], t[None, :]] = True
    assert torch.equal(same, Window2D(4, (7, 10)).dense_mask(70))


@pytest.mark.parametrize("activation", [nn.GELU, nn.SiLU])
def test_feed_forward_recomputed_activation_same_gradients_less_saved(activation):
    from longseq.layers.feedforward import FeedForward

    ff = FeedForward(12, 48, activation=activation).double()
    x = torch.randn(3, 7, 12, dtype=torch.float64, requires_grad=True)
    dy = torch.randn(3, 7, 12, dtype=torch.float64)
    grads = {}
    for recompute in (True, False):
        ff.recompute_activation = recompute
        out = ff(x)
        grads[recompute] = torch.autograd.grad(out, (x, *ff.parameters()), dy)
    for a, b in zip(grads[True], grads[False]):
        torch.testing.assert_close(a, b)
    ff.recompute_activation = True
    kept = saved_bytes(lambda: ff(x).sum())
    ff.recompute_activation = False
    full = saved_bytes(lambda: ff(x).sum())
    hidden = 3 * 7 * 48 * 8  # one hidden-width float64 tensor
    assert full - kept >= hidden


def test_rope2d_cache_follows_the_tensor_and_pickles():
    """The cos/sin table is reused for the same positions tensor, rebuilt for another one or
    after an in-place change, skipped for inference tensors, and never pickled."""
    import copy
    import pickle

    rope = RoPE2D(8)
    pos = torch.stack(torch.meshgrid(torch.arange(3), torch.arange(4), indexing="ij"), -1).reshape(12, 2)
    x = torch.randn(1, 2, 12, 8)
    y = rope(x, pos)
    table = rope._table
    assert rope(x, pos) is not None and rope._table is table  # same tensor: cache hit
    other = pos.flip(0).contiguous()
    assert not torch.allclose(rope(x, other), y) and rope._table is not table
    pos2 = pos.clone()
    rope(x, pos2)
    pos2[0, 0] = 2  # in place: the version changes, so the stale table is not used
    fresh = RoPE2D(8)
    torch.testing.assert_close(rope(x, pos2), fresh(x, pos2))
    with torch.inference_mode():
        inf_pos = pos.clone()
        torch.testing.assert_close(rope(x, inf_pos), y)
    for clone in (pickle.loads(pickle.dumps(rope)), copy.deepcopy(rope)):
        assert clone._table is None
        torch.testing.assert_close(clone(x, pos), y)


def _global_scale_reference(mha: MultiheadAttention, x, key_mask):
    """Dense SDPA with the global rows' queries times s_h * ln(real keys), from the module's weights."""
    B, L, dim = x.shape
    H, D = mha.heads, mha.head_dim
    q = mha.q(x).view(B, L, H, D).transpose(1, 2)
    k, v = mha.kv(x).view(B, L, 2, H, D).unbind(2)
    k, v = k.transpose(1, 2), v.transpose(1, 2)
    q, k = mha.rope(q), mha.rope(k)
    rows = torch.tensor(mha.pattern.global_tokens)
    n = key_mask.sum(-1).to(x.dtype)
    factor = torch.ones(B, H, L, 1, dtype=x.dtype)
    factor[:, :, rows] = (mha.global_scale[None, :] * torch.log(n)[:, None])[:, :, None, None]
    mask = mha.pattern.dense_mask(L)[None, None] & key_mask[:, None, None, :]
    out = nn.functional.scaled_dot_product_attention(q * factor, k, v, attn_mask=mask)
    return mha.proj(out.transpose(1, 2).reshape(B, L, dim))


@pytest.mark.parametrize("head_chunks", [1, 2])
def test_global_length_scale_matches_dense_reference(head_chunks):
    """Global rows' logits times s_h * ln(n real keys); other rows untouched; gradients reach s_h."""
    torch.manual_seed(0)
    pattern = SlidingWindow(3, global_tokens=(0, 5))
    mha = MultiheadAttention(32, 4, pattern, rope=RoPE1D(8), global_length_scale=True, head_chunks=head_chunks)
    with torch.no_grad():
        mha.global_scale.copy_(torch.rand(4) * 0.5 + 0.1)  # distinct per head, so a head mix-up shows
    x = torch.randn(2, 37, 32, requires_grad=True)
    km = torch.ones(2, 37, dtype=torch.bool)
    km[1, 20:] = False  # batch rows see different numbers of real keys
    y, ref = mha(x, key_mask=km), _global_scale_reference(mha, x, km)
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)
    dy = torch.randn_like(y)
    params = [x, mha.global_scale, mha.q.weight]
    grads = torch.autograd.grad(y, params, dy)
    for a, b in zip(grads, torch.autograd.grad(ref, params, dy)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert grads[1].abs().min() > 0  # every head's factor is learned


def test_global_length_scale_starts_as_identity_at_reference_keys():
    from longseq.layers.attention import GLOBAL_SCALE_REF_KEYS

    torch.manual_seed(0)
    pattern = SlidingWindow(4, global_tokens=(0, 1))
    scaled = MultiheadAttention(16, 2, pattern, global_length_scale=True)
    plain = MultiheadAttention(16, 2, pattern)
    plain.load_state_dict(scaled.state_dict(), strict=False)
    x = torch.randn(1, GLOBAL_SCALE_REF_KEYS, 16)
    torch.testing.assert_close(scaled(x), plain(x), atol=1e-5, rtol=1e-5)
    x = torch.randn(1, 4 * GLOBAL_SCALE_REF_KEYS, 16)  # more keys: global rows sharpen, others do not
    diff = (scaled(x) - plain(x)).abs().amax(-1)[0]
    assert diff[:2].min() > 1e-4 and diff[2:].max() < 1e-5
