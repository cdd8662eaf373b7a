"""``conv_layers``: residual convolution blocks after the k-mer convolution. They keep the
encoder's contracts: decoding step by step equals the whole pass (that causal models never
read later bases is tested in test_models.py), padding never leaks into real rows, both
strands average to one answer, and the long-window slicing (``chunk_above``) changes neither
outputs nor gradients."""

from __future__ import annotations

import pytest
import torch

from genomics.data.tokenizers import PAD, reverse_complement
from genomics.models import DNAClassifier, DNALanguageModel
from genomics.models.sequence_parallel import check_shardable, encoder_of

SMALL = dict(dim=32, heads=2, window=8, kmer_kernel=5, conv_layers=2, conv_kernel=4)


def test_stepwise_decoding_through_the_tower_equals_the_full_pass():
    torch.manual_seed(1)
    encoder = DNALanguageModel(depth=2, **SMALL).double().eval().backbone
    ids = torch.randint(0, 4, (2, 37))
    with torch.no_grad():
        full, _ = encoder(ids)
        cache = encoder.new_cache(2, dtype=torch.float64)
        steps, start = [], 0
        for n in (1, 6, 1, 13, 16):  # single bases and chunks, 37 in all
            steps.append(encoder.step(ids[:, start:start + n], cache))
            start += n
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-10, rtol=0)


@pytest.mark.parametrize("pool", ["flatten", "mean", "none"])
def test_padded_rows_equal_each_row_alone_on_both_strands(pool):
    torch.manual_seed(2)
    lengths = [37, 50, 23]  # none divides the window or the kernel
    rows = [torch.randint(0, 4, (n,)) for n in lengths]
    ids = torch.full((3, 50), PAD)
    mask = torch.zeros(3, 50, dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = r, True
    extra = {"positions": 50} if pool == "flatten" else {}
    model = DNAClassifier(3, depth=1, pool=pool, rc_average=True, **SMALL, **extra).eval()
    close = dict(atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        batch = model(ids, mask)
        for i, r in enumerate(rows):
            one, rc = model(r[None])[0], model(reverse_complement(r[None]))[0]
            if pool == "none":
                torch.testing.assert_close(batch[i, : len(r)], one, **close)
                torch.testing.assert_close(batch[i, : len(r)], rc.flip(0), **close)
            else:
                torch.testing.assert_close(batch[i], one, **close)
                torch.testing.assert_close(batch[i], rc, **close)


@pytest.mark.parametrize("length", [37, 64])  # above the threshold; 37 leaves a short last slice
def test_sliced_tower_equals_the_whole_one(length):
    kw = dict(depth=1, objective="causal", **SMALL)
    plain = DNALanguageModel(**kw).double()
    sliced = DNALanguageModel(**kw, chunk_above=16).double()
    sliced.load_state_dict(plain.state_dict())
    ids = torch.randint(0, 4, (2, length), generator=torch.Generator().manual_seed(length))
    mask = torch.ones(2, length, dtype=torch.bool)
    mask[1, length - 7:] = False
    grads = []
    for model in (plain, sliced):
        out = model(ids, mask)
        (out.masked_fill(~mask[..., None], 0) ** 2).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert any(n.startswith("backbone.convs.1.") for n in grads[0])
    for name, grad in grads[0].items():
        torch.testing.assert_close(grad, grads[1][name], msg=name)


def test_the_tower_learns_and_adds_weights_only_when_asked():
    """conv_layers=0 adds no tensors (checkpoints without a tower load as before); each block
    adds a norm and a convolution of ``conv_kernel`` bases, with or without the k-mer one."""
    plain = DNAClassifier(2, depth=1, dim=32, heads=2, window=8, kmer_kernel=5)
    tower = DNAClassifier(2, depth=1, **SMALL)
    extra = set(tower.state_dict()) - set(plain.state_dict())
    assert not any("convs" in name for name in plain.state_dict())
    assert extra == {f"backbone.convs.{i}.{part}" for i in range(2)
                     for part in ("pre.0.weight", "pre.0.bias", "conv.weight", "conv.bias")}
    assert tower.backbone.convs[0].conv.kernel_size == (4,)
    alone = DNAClassifier(2, depth=1, **{**SMALL, "kmer_kernel": 1})
    assert alone.backbone.kmer is None and len(alone.backbone.convs) == 2
    ids = torch.randint(0, 4, (4, 30), generator=torch.Generator().manual_seed(3))
    loss = tower(ids).logsumexp(-1).sum()
    loss.backward()
    assert tower.backbone.convs[1].conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kw", [{"conv_layers": 1, "conv_kernel": 0}, {"conv_layers": -1}])
def test_bad_tower_settings_are_named(kw):
    with pytest.raises(ValueError, match="conv_layers must be >= 0 and conv_kernel >= 1"):
        DNAClassifier(2, dim=32, heads=2, **kw)


def test_sequence_parallelism_refuses_the_tower():
    with pytest.raises(ValueError, match="conv_layers"):
        check_shardable(encoder_of(DNALanguageModel(depth=1, **SMALL)))
