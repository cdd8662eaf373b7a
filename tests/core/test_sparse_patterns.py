"""BigBird, Sparse Transformer (strided / fixed) and Reformer LSH: golden masks and
outputs + gradients against dense references."""

import math

import pytest
import torch
import torch.nn.functional as F

from longseq import attend
from longseq.kernels import use_backend
from longseq.kernels.lsh import lsh_attention, lsh_tiling
from longseq.layers import Encoder
from longseq.patterns import LSH, BigBird, SlidingWindow, Strided, as_causal

from .test_attend import _compare
from .test_patterns_golden import parse

# BigBird(block=2, window_blocks=1, global_blocks=1, random_blocks=0): 8 blocks of 2;
# blocks 0 and 7 global, others see their neighbours.
BIGBIRD_2 = """
1111111111111111
1111111111111111
1111110000000011
1111110000000011
1111111100000011
1111111100000011
1100111111000011
1100111111000011
1100001111110011
1100001111110011
1100000011111111
1100000011111111
1100000000111111
1100000000111111
1111111111111111
1111111111111111
"""

# Strided(4, "strided", causal=True): j <= i and (i - j < 4 or (i - j) % 4 == 0)
STRIDED_4 = """
1000000000000000
1100000000000000
1110000000000000
1111000000000000
1111100000000000
0111110000000000
0011111000000000
0001111100000000
1000111110000000
0100011111000000
0010001111100000
0001000111110000
1000100011111000
0100010001111100
0010001000111110
0001000100011111
"""

# Strided(4, "fixed", summary=1, causal=True): j <= i and (same block of 4 or j % 4 == 3)
FIXED_4 = """
1000000000000000
1100000000000000
1110000000000000
1111000000000000
0001100000000000
0001110000000000
0001111000000000
0001111100000000
0001000110000000
0001000111000000
0001000111100000
0001000111110000
0001000100011000
0001000100011100
0001000100011110
0001000100011111
"""

# Strided(4, "fixed", summary=2, causal=False): same block, or j % 4 in {2, 3}
FIXED_4_BIDIR = """
1111001100110011
1111001100110011
1111001100110011
1111001100110011
0011111100110011
0011111100110011
0011111100110011
0011111100110011
0011001111110011
0011001111110011
0011001111110011
0011001111110011
0011001100111111
0011001100111111
0011001100111111
0011001100111111
"""


def test_golden_masks():
    assert torch.equal(BigBird(2, random_blocks=0).dense_mask(16), parse(BIGBIRD_2))
    assert torch.equal(Strided(4).dense_mask(16), parse(STRIDED_4))
    assert torch.equal(Strided(4, mode="fixed").dense_mask(16), parse(FIXED_4))
    assert torch.equal(Strided(4, mode="fixed", summary=2, causal=False).dense_mask(16), parse(FIXED_4_BIDIR))


def test_bigbird_random_blocks():
    p = BigBird(4, window_blocks=1, global_blocks=1, random_blocks=2, seed=5)
    layout = p.block_layout(100)  # 25 blocks
    base = BigBird(4, window_blocks=1, global_blocks=1, random_blocks=0).block_layout(100)
    extra = layout & ~base
    assert torch.equal(extra[1:-1].sum(1), torch.full((23,), 2))  # exactly r new blocks per row
    assert extra[0].sum() == 0 and extra[-1].sum() == 0  # global rows have nothing left to draw
    assert torch.equal(BigBird(4, random_blocks=2, seed=5).block_layout(100), layout)
    assert not torch.equal(BigBird(4, random_blocks=2, seed=6).block_layout(100), layout)


@pytest.mark.parametrize("backend", ["auto", "math"])
@pytest.mark.parametrize("key_mask", [False, True])
@pytest.mark.parametrize("L", [37, 64, 150])
@pytest.mark.parametrize("pattern", [
    BigBird(8), BigBird(5, window_blocks=1, global_blocks=2, random_blocks=1, seed=3), BigBird(16, random_blocks=3),
    Strided(4), Strided(5, causal=False), Strided(1), Strided(4, mode="fixed"),
    Strided(6, mode="fixed", summary=2, causal=False), Strided(3, mode="fixed", summary=3),
], ids=repr)
def test_block_sparse_patterns_match_dense(pattern, L, key_mask, backend):
    _compare(pattern, L, key_mask=key_mask, backend=backend)


@pytest.mark.parametrize("pattern", [BigBird(6), Strided(5), Strided(4, mode="fixed", causal=False)], ids=repr)
def test_block_sparse_gqa(pattern):
    _compare(pattern, 50, H=4, Hkv=2, key_mask=True)


def test_pair_counts_match_masks():
    for p in [BigBird(7, random_blocks=2), Strided(5), Strided(5, causal=False), Strided(4, mode="fixed"),
              Strided(6, mode="fixed", summary=2, causal=False)]:
        for L in (41, 96):
            assert p.count_pairs(L) == int(p.dense_mask(L).sum()), (p, L)


def test_bigbird_has_no_causal_form():
    with pytest.raises(ValueError, match="bidirectional"):
        as_causal(BigBird(8))
    with pytest.raises(ValueError, match="bidirectional"):
        Encoder(16, depth=1, heads=2, pattern=BigBird(8), causal=True)
    assert Encoder(16, depth=1, heads=2, pattern=SlidingWindow(3), causal=True).blocks[0].pattern.causal


# ---------------------------------------------------------------------------- LSH
def lsh_reference(pattern, q, v, key_mask=None, rotations=None):
    """One masked softmax per round, combined by softmax over the rounds' log-sum-exp,
    with each pair's score lowered by log(rounds it meets in)."""
    B, H, L, D = q.shape
    k = F.normalize(q, dim=-1)
    masks = pattern.dense_masks(q, rotations=rotations)  # (R, B, H, L, L)
    if key_mask is not None:
        masks = masks & key_mask[None, :, None, None, :]
    count = masks.sum(0).clamp(min=1).to(q.dtype)
    s = (q @ k.transpose(-1, -2)) * D**-0.5 - count.log()
    outs, lses = [], []
    for m in masks:
        sr = s.masked_fill(~m, float("-inf"))
        lse = torch.logsumexp(sr, -1)
        p = torch.exp(sr - torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))[..., None])
        outs.append(p @ v)
        lses.append(lse)
    w = torch.nan_to_num(torch.softmax(torch.stack(lses), 0))
    return (torch.stack(outs) * w[..., None]).sum(0)


@pytest.mark.parametrize("key_mask", [False, True])
@pytest.mark.parametrize("L", [37, 64])
@pytest.mark.parametrize("pattern", [
    LSH(bucket_size=4, n_hashes=2, seed=1), LSH(bucket_size=4, n_hashes=3, seed=2, causal=True),
    LSH(bucket_size=8, n_hashes=2, seed=3, attend_across_buckets=False), LSH(bucket_size=16, n_hashes=1, seed=4),
    LSH(bucket_size=64, n_hashes=2, seed=5),  # a single chunk
    LSH(bucket_size=32, n_hashes=3, seed=6),  # two chunks: every pair meets in every round
], ids=repr)
def test_lsh_matches_round_by_round_reference(pattern, L, key_mask):
    q = torch.randn(2, 2, L, 8, requires_grad=True)
    k = torch.randn(2, 2, L, 8)
    v = torch.randn(2, 2, L, 8, requires_grad=True)
    km = (torch.rand(2, L) > 0.3) if key_mask else None
    out = attend(q, k, v, pattern, key_mask=km)
    ref = lsh_reference(pattern, q, v, km)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    dout = torch.randn_like(out)
    for g, r in zip(torch.autograd.grad(out, (q, v), dout), torch.autograd.grad(ref, (q, v), dout)):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)


def test_lsh_hand_checked_two_rounds():
    """16 tokens in D=2, 4 buckets (+x, +y, -x, -y under the identity rotation), 4 per bucket."""
    direction = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    bucket_of = [0, 1, 2, 3, 1, 0, 3, 2, 2, 3, 0, 1, 3, 2, 1, 0]  # each bucket has 4 tokens
    q = (direction[bucket_of] * torch.linspace(1, 2, 16)[:, None]).view(1, 1, 16, 2)
    # round 0: identity; round 1: swap axes, so +x <-> +y and -x <-> -y
    R = torch.stack([torch.eye(2), torch.tensor([[0.0, 1.0], [1.0, 0.0]])])
    p = LSH(bucket_size=4, n_hashes=2, seed=0)
    masks = p.dense_masks(q, rotations=R)[:, 0, 0]
    swap = {0: 1, 1: 0, 2: 3, 3: 2}
    for r, buckets in enumerate([bucket_of, [swap[b] for b in bucket_of]]):
        # chunks are the buckets (4 tokens each, sorted by bucket then position);
        # chunk c attends chunks c and c-1 (cyclic), and never itself (others exist).
        expected = torch.zeros(16, 16, dtype=torch.bool)
        for i in range(16):
            for j in range(16):
                expected[i, j] = i != j and buckets[j] in (buckets[i], (buckets[i] - 1) % 4)
        assert torch.equal(masks[r], expected), r
    # and attend uses exactly these rounds
    v = torch.randn(1, 1, 16, 2)
    out = lsh_attention(p, q, q, v, key_mask=None, bias=None, dropout_p=0.0, scale=2**-0.5, rotations=R)
    torch.testing.assert_close(out, lsh_reference(p, q, v, rotations=R), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cols", [1, 3, 16, 512])
def test_lsh_hash_in_column_blocks_is_argmax_over_concatenation(cols):
    """The blocked running max/min gives exactly argmax([xR; -xR]), ties included."""
    torch.manual_seed(0)
    n_hashes, D, half = 3, 8, 20
    x = torch.randn(2, 300, D)
    x[0, :4] = 0.0  # all projections tie at 0: bucket 0
    R = torch.randn(n_hashes, D, half)
    R[:, :, 13] = R[:, :, 2]  # a tie inside the positive half, across column blocks
    R[:, :, 17] = -R[:, :, 5]  # the same value in both halves
    x[1, :5] = R[0, :, 2] * 3.0  # rows whose maximum is the duplicated column
    x[1, 5:10] = -R[1, :, 17] * 3.0
    got = LSH.hash(x, R, block=256, cols=cols)
    proj = torch.einsum("bld,rdh->rblh", x, R)
    expected = torch.cat([proj, -proj], -1).argmax(-1)
    assert torch.equal(got, expected)
    assert (got[:, 0, :4] == 0).all()


def test_lsh_self_attends_only_without_other_keys():
    p = LSH(bucket_size=4, n_hashes=1, seed=0, causal=True)
    q = torch.randn(1, 1, 16, 8)
    m = p.dense_masks(q)[0, 0, 0]
    has_other = (m & ~torch.eye(16, dtype=torch.bool)).any(1)
    assert torch.equal(m.diagonal(), ~has_other)
    assert bool(m[0, 0])  # position 0 has no earlier key


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_lsh_half_precision_large_logits_no_nan(dtype):
    L = 65_536
    q = (torch.randn(1, 1, L, 32) * 100).to(dtype).requires_grad_()
    v = torch.randn(1, 1, L, 32, dtype=dtype, requires_grad=True)
    out = attend(q, q, v, LSH(bucket_size=64, n_hashes=2, seed=0))
    out.float().square().mean().backward()
    for t in (out, q.grad, v.grad):
        assert torch.isfinite(t.float()).all()


def test_lsh_same_seed_same_layout_and_rotations_fixed():
    p = LSH(bucket_size=4, n_hashes=2, seed=11)
    assert torch.equal(p.rotations(8, 32, torch.device("cpu")), p.rotations(8, 32, torch.device("cpu")))
    q = torch.randn(1, 2, 32, 8)
    assert torch.equal(p.dense_masks(q), p.dense_masks(q))
    assert LSH(bucket_size=4, n_hashes=2, seed=None).rotations(8, 32, torch.device("cpu")).shape == (2, 8, 4)
    with pytest.raises(ValueError, match="k heads"):
        attend(q, q[:, :1], q[:, :1], p)
    with pytest.raises(ValueError, match="data-dependent"):
        p.dense_mask(8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.cuda
def test_same_layout_on_cuda():
    assert torch.equal(BigBird(8, seed=3).block_layout(200), BigBird(8, seed=3).block_layout(200))
    p = LSH(bucket_size=4, n_hashes=2, seed=11)
    q = torch.randn(1, 1, 32, 8)
    assert torch.equal(p.dense_masks(q), p.dense_masks(q.cuda()).cpu())


@pytest.mark.parametrize("pattern", [LSH(bucket_size=4, n_hashes=3, seed=7), BigBird(8, seed=1)], ids=repr)
def test_mask_cache_gives_the_same_gradients(pattern, monkeypatch):
    """Backward with the forward's cached irregular masks equals backward recomputing them."""
    from longseq.kernels import blocked

    q, k, v = (torch.randn(2, 2, 45, 8, requires_grad=True) for _ in range(3))
    km = torch.rand(2, 45) > 0.2
    dout = torch.randn(2, 2, 45, 8)
    grads = []
    for budget in (blocked._MASK_CACHE_BYTES, 0):
        monkeypatch.setattr(blocked, "_MASK_CACHE_BYTES", budget)
        out = attend(q, k, v, pattern, key_mask=km)
        grads.append((out, *torch.autograd.grad(out, (q, v), dout)))  # LSH shares q and k
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


@pytest.mark.parametrize("shared_qk", [True, False])
def test_per_head_kernel_equals_one_call_per_head(shared_qk):
    """`blocked_attention_per_head` (LSH's path) equals `blocked_attention` on each head alone."""
    import torch.nn.functional as F

    from longseq.kernels.blocked import blocked_attention, blocked_attention_per_head

    p = LSH(bucket_size=8, n_hashes=3, seed=3, shared_qk=shared_qk)
    q, k, v = (torch.randn(2, 3, 53, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    km = torch.rand(2, 53) > 0.2
    kk = F.normalize(q, dim=-1) if shared_qk else k
    tilings = [[lsh_tiling(p, rounds, 53, q.device) for rounds in row] for row in p.layout(q.detach(), kk.detach())]
    out = blocked_attention_per_head(q, None if shared_qk else k, v, tilings, pattern=p, key_mask=km,
                                     scale=8**-0.5, normalize_keys=shared_qk)
    ref = torch.cat([torch.cat([
        blocked_attention(q[b:b + 1, h:h + 1], kk[b:b + 1, h:h + 1], v[b:b + 1, h:h + 1], tilings[b][h], pattern=p,
                          key_mask=km[b:b + 1], scale=8**-0.5) for h in range(3)], 1) for b in range(2)], 0)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-12)
    dout = torch.randn_like(out)
    for g, r in zip(torch.autograd.grad(out, (q, k, v), dout, allow_unused=True, retain_graph=True),
                    torch.autograd.grad(ref, (q, k, v), dout, allow_unused=True)):
        if r is None:
            assert g is None
        else:
            torch.testing.assert_close(g, r, atol=1e-12, rtol=1e-12)
    with pytest.raises(ValueError, match="one tiling per"):
        blocked_attention_per_head(q, kk, v, tilings[:1], pattern=p, scale=1.0)
