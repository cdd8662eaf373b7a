import pytest
import torch
import torch.nn.functional as F

import longseq.layers.attention as mha_module
from genomics.data.tokenizers import PAD, SEP, reverse_complement, strand_flip_index
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


@pytest.mark.parametrize("extra", [{}, {"kmer_kernel": 7}, {"kmer_kernel": 5, "conv_layers": 2, "conv_kernel": 4}],
                         ids=["plain", "kmer", "kmer+conv-tower"])
def test_causal_lm_does_not_see_the_future(extra):
    torch.manual_seed(0)
    model = DNALanguageModel(dim=32, depth=2, heads=2, window=8, **extra).eval()
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


def test_rc_average_on_padded_batches_matches_each_row_alone():
    """Rows of different lengths in one right-padded batch give, with rc_average, what each
    row gives alone, and the same as their own reverse complements."""
    torch.manual_seed(1)
    lengths = [37, 50, 23]  # none divides the window
    rows = [torch.randint(0, 4, (n,)) for n in lengths]
    ids = torch.full((3, 50), PAD)
    mask = torch.zeros(3, 50, dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = r, True
    small = dict(dim=32, heads=2, window=8, rc_average=True)
    clf = DNAClassifier(2, depth=2, kmer_kernel=7, **small).eval()
    cls = DNAClassifier(2, depth=1, global_tokens=2, pool="cls", **small).eval()
    seg = DNAClassifier(3, depth=1, kmer_kernel=7, pool="none", **small).eval()
    query = DNAClassifier(2, depth=1, pool="query", **small).eval()
    mlm = DNALanguageModel(depth=1, objective="masked", **small).eval()
    q = torch.tensor([5, 49, 0], dtype=torch.int32)
    close = dict(atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        batch = {name: m(ids, mask) for name, m in (("clf", clf), ("cls", cls), ("seg", seg), ("mlm", mlm))}
        batch_q = query(ids, mask, q)
        for i, r in enumerate(rows):
            one, rc = r[None], reverse_complement(r[None])
            for name, model in (("clf", clf), ("cls", cls)):
                torch.testing.assert_close(batch[name][i], model(one)[0], **close)
                torch.testing.assert_close(batch[name][i], model(rc)[0], **close)
            torch.testing.assert_close(batch["seg"][i, : len(r)], seg(one)[0], **close)
            torch.testing.assert_close(batch["seg"][i, : len(r)], seg(rc)[0].flip(0), **close)
            torch.testing.assert_close(batch["mlm"][i, : len(r)], mlm(one)[0], **close)
            torch.testing.assert_close(batch_q[i], query(one, None, q[i : i + 1])[0], **close)
            torch.testing.assert_close(batch_q[i], query(rc, None, len(r) - 1 - q[i : i + 1])[0], **close)
        clf.rc_average = False  # one strand alone differs: the average is not a no-op
        assert not torch.allclose(clf(ids, mask)[0], batch["clf"][0])


def test_rc_average_with_holes_in_the_mask_is_strand_invariant():
    """A mask with a hole (a record separator) and padding after the last base: the row and
    its reverse complement, hole moved with its bases, give the same outputs."""
    torch.manual_seed(2)
    ids = torch.randint(0, 4, (1, 40))
    mask = torch.ones(1, 40, dtype=torch.bool)
    ids[0, 12], mask[0, 12] = SEP, False  # a hole
    ids[0, 33:], mask[0, 33:] = PAD, False  # padding after the last real base (32)
    rc_ids = ids.clone()
    rc_ids[0, :33] = reverse_complement(ids[0, :33])
    rc_mask = mask.clone()
    rc_mask[0, :33] = mask[0, :33].flip(0)
    index = strand_flip_index(mask)
    assert torch.equal(index.gather(1, index), torch.arange(40)[None])  # its own inverse
    assert torch.equal(index[0, 33:], torch.arange(33, 40))  # padding stays
    small = dict(dim=32, depth=1, heads=2, window=8, rc_average=True)
    clf = DNAClassifier(2, kmer_kernel=5, **small).eval()
    seg = DNAClassifier(3, pool="none", **small).eval()
    with torch.no_grad():
        torch.testing.assert_close(clf(ids, mask), clf(rc_ids, rc_mask), atol=1e-4, rtol=1e-4)
        per_base, rc_per_base = seg(ids, mask)[0, :33], seg(rc_ids, rc_mask)[0, :33].flip(0)
        keep = mask[0, :33]
        torch.testing.assert_close(per_base[keep], rc_per_base[keep], atol=1e-4, rtol=1e-4)


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
