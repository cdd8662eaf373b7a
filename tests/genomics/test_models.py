import pytest
import torch
import torch.nn.functional as F

import longseq.layers.attention as mha_module
from genomics.data.tokenizers import PAD, reverse_complement
from genomics.models import DNAClassifier, DNALanguageModel


def dense_attend(q, k, v, pattern, *, key_mask=None, bias=None, dropout_p=0.0, scale=None):
    """Reference: full (L, L) mask from the pattern, plain softmax attention."""
    L = q.shape[2]
    allowed = pattern.dense_mask(L, device=q.device)[None, None]  # 1, 1, L, L
    if key_mask is not None:
        allowed = allowed & key_mask[:, None, None, :]
    if k.shape[1] != q.shape[1]:
        k = k.repeat_interleave(q.shape[1] // k.shape[1], 1)
        v = v.repeat_interleave(q.shape[1] // v.shape[1], 1)
    scores = (q @ k.transpose(-1, -2)) * (scale or q.shape[-1] ** -0.5)
    scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.nan_to_num(scores.softmax(-1)) @ v


def _both(model, monkeypatch, *args):
    model.eval()
    with torch.no_grad():
        sparse = model(*args)
        with monkeypatch.context() as m:
            m.setattr(mha_module, "attend", dense_attend)
            dense = model(*args)
    return sparse, dense


@pytest.mark.parametrize("reversible", [False, True])
def test_lm_sparse_equals_dense_reference(monkeypatch, reversible):
    torch.manual_seed(0)
    model = DNALanguageModel(dim=32, depth=2, heads=2, window=8, reversible=reversible, ff_chunks=2)
    ids = torch.randint(0, 5, (2, 150))
    sparse, dense = _both(model, monkeypatch, ids)
    assert sparse.shape == (2, 150, 9)
    torch.testing.assert_close(sparse, dense, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kmer_kernel", [1, 7])
def test_causal_lm_does_not_see_the_future(kmer_kernel):
    torch.manual_seed(0)
    model = DNALanguageModel(dim=32, depth=2, heads=2, window=8, kmer_kernel=kmer_kernel).eval()
    ids = torch.randint(0, 4, (1, 64))
    changed = ids.clone()
    changed[0, 40:] = (changed[0, 40:] + 1) % 4
    with torch.no_grad():
        a, b = model(ids), model(changed)
    torch.testing.assert_close(a[:, :40], b[:, :40])
    assert not torch.allclose(a[:, 40:], b[:, 40:])


@pytest.mark.parametrize("extra", [{}, {"kmer_kernel": 5, "rope_dim": 8},
                                   {"kmer_kernel": 5, "rope_dim": 8, "global_length_scale": True}],
                         ids=["plain", "kmer+partial-rope", "kmer+partial-rope+length-scale"])
def test_classifier_global_tokens_and_padding_match_dense(monkeypatch, extra):
    torch.manual_seed(0)
    model = DNAClassifier(3, dim=32, depth=2, heads=2, window=4, global_tokens=1, pool="cls", **extra)
    ids = torch.randint(0, 4, (2, 100))
    mask = torch.ones(2, 100, dtype=torch.bool)
    mask[1, 70:] = False
    ids[1, 70:] = PAD
    sparse, dense = _both(model, monkeypatch, ids, mask)
    torch.testing.assert_close(sparse, dense, atol=1e-5, rtol=1e-4)
    # Padding does not leak: the padded row equals the same sequence cut to its real length.
    with torch.no_grad():
        alone = model(ids[1:, :70], mask[1:, :70])
    torch.testing.assert_close(sparse[1:], alone, atol=1e-5, rtol=1e-4)
    # A global token reaches the whole sequence even though the window is 4.
    changed = ids.clone()
    changed[0, 60] = (changed[0, 60] + 1) % 4
    with torch.no_grad():
        assert not torch.allclose(model(changed, mask)[0], sparse[0])
    if extra.get("global_length_scale"):  # the option scales global rows: without any it is an error
        with pytest.raises(ValueError, match="global_tokens"):
            DNAClassifier(3, dim=32, depth=2, heads=2, window=4, global_length_scale=True)


def test_rc_average_is_strand_invariant():
    torch.manual_seed(0)
    ids = torch.randint(0, 4, (2, 80))
    clf = DNAClassifier(2, dim=32, depth=1, heads=2, window=8, rc_average=True).eval()
    seg = DNAClassifier(3, dim=32, depth=1, heads=2, window=8, pool="none", rc_average=True).eval()
    mlm = DNALanguageModel(dim=32, depth=1, heads=2, window=8, objective="masked", rc_average=True).eval()
    rc = reverse_complement(ids)
    with torch.no_grad():
        torch.testing.assert_close(clf(ids), clf(rc))
        torch.testing.assert_close(seg(ids), seg(rc).flip(1))
        comp = mlm.complement
        torch.testing.assert_close(mlm(ids), mlm(rc).flip(1)[..., comp])
    with pytest.raises(ValueError, match="rc_average needs objective='masked'"):
        DNALanguageModel(rc_average=True)


def test_partial_rotary_matches_by_content_at_any_distance():
    """rope_dim=0 leaves attention position-free, so a global token sees one base the same
    wherever it sits; with full rotary it does not. Bad rope_dim / kmer_kernel are named."""
    torch.manual_seed(0)
    ids = torch.randint(0, 4, (1, 400))
    ids[0, 10], ids[0, 300] = 0, 1  # two different bases, so the swap below changes the input
    moved = ids.clone()
    moved[0, 10], moved[0, 300] = ids[0, 300], ids[0, 10]  # swap two far-apart bases
    for rope_dim, same in ((0, True), (None, False)):
        model = DNAClassifier(2, dim=32, depth=1, heads=2, window=4, global_tokens=1, pool="cls",
                              rope_dim=rope_dim).eval()
        with torch.no_grad():
            assert torch.allclose(model(ids), model(moved), atol=1e-5) == same
    with pytest.raises(ValueError, match="rope_dim"):
        DNAClassifier(2, dim=32, heads=2, rope_dim=18)
    with pytest.raises(ValueError, match="kmer_kernel"):
        DNALanguageModel(dim=32, heads=2, kmer_kernel=0)


def test_downsample_stem_and_param_count():
    model = DNAClassifier(2, dim=32, depth=1, heads=2, window=4, downsample=4)
    out = model(torch.randint(0, 4, (3, 101)), torch.ones(3, 101, dtype=torch.bool))
    assert out.shape == (3, 2)
    tiny = DNALanguageModel(dim=128, depth=2, heads=4, window=256)
    n = sum(p.numel() for p in tiny.parameters())
    assert 350_000 < n < 450_000  # tiny.yaml's "~0.4M parameters"
    with pytest.raises(ValueError, match="pool='cls' needs global_tokens"):
        DNAClassifier(2, pool="cls")


def test_backward_runs_through_reversible_stack():
    torch.manual_seed(0)
    model = DNALanguageModel(dim=32, depth=2, heads=2, window=8, reversible=True, ff_chunks=2)
    ids = torch.randint(0, 4, (1, 64))
    logits = model(ids)
    F.cross_entropy(logits[0, :-1], ids[0, 1:]).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_lsh_layers_reach_far_and_train():
    torch.manual_seed(0)
    model = DNAClassifier(2, dim=32, depth=2, heads=2, window=4, lsh_layers=[1], lsh_bucket_size=16, pool="query")
    assert [type(p).__name__ for p in model.backbone.patterns] == ["SlidingWindow", "LSH"]
    ids = torch.randint(0, 4, (2, 256))
    query = torch.tensor([255, 255])
    out = model(ids, query_index=query)
    F.cross_entropy(out, torch.tensor([0, 1])).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    # Receptive field of the window layer is 4 bases; the LSH layer lets the query see past it
    # for at least some change far away.
    model.eval()
    with torch.no_grad():
        base = model(ids, query_index=query)
        moved = [model(torch.cat([ids[:, :p], (ids[:, p : p + 1] + 1) % 4, ids[:, p + 1 :]], 1), query_index=query)
                 for p in range(0, 200, 10)]
    assert any(not torch.allclose(m, base) for m in moved)
    with pytest.raises(ValueError, match="lsh_layers must be layer indices"):
        DNAClassifier(2, depth=2, lsh_layers=[2])
