"""``chunk_above``: the memory levers (head groups, feed-forward slices, k-mer convolution
slices) apply only to inputs longer than it, and change nothing but memory and time:
outputs and gradients equal the unchunked model's."""

from __future__ import annotations

import pytest
import torch

from genomics.models import DNALanguageModel
from longseq.layers.attention import MultiheadAttention
from longseq.layers.feedforward import ChunkedFeedForward
from longseq.patterns import SlidingWindow


def test_levers_switch_on_above_the_threshold():
    ff = ChunkedFeedForward(8, 32, chunks=4, chunk_above=100)
    assert ff.n_chunks(100) == 1 and ff.n_chunks(101) == 4
    attn = MultiheadAttention(16, 4, SlidingWindow(3), head_chunks=2, chunk_above=100)
    assert attn.n_head_chunks(100) == 1 and attn.n_head_chunks(101) == 2
    with pytest.raises(ValueError, match="chunk_above must be >= 0"):
        ChunkedFeedForward(8, 32, chunk_above=-1)


@pytest.mark.parametrize("length", [37, 64])  # above the threshold; 37 does not divide into slices of 16
def test_chunked_model_equals_the_plain_one(length):
    kw = dict(dim=16, depth=2, heads=2, window=5, kmer_kernel=5, objective="causal")
    plain = DNALanguageModel(**kw).double()
    chunked = DNALanguageModel(**kw, ff_chunks=4, head_chunks=2, chunk_above=16).double()
    chunked.load_state_dict(plain.state_dict())
    ids = torch.randint(0, 4, (2, length), generator=torch.Generator().manual_seed(length))
    mask = torch.ones(2, length, dtype=torch.bool)
    mask[1, length - 7:] = False  # padding at the end of the second window
    outs = []
    for model in (plain, chunked):
        out = model(ids, mask)
        (out.masked_fill(~mask[..., None], 0) ** 2).sum().backward()
        outs.append((out, {n: p.grad.clone() for n, p in model.named_parameters()}))
    torch.testing.assert_close(outs[0][0], outs[1][0])
    for name, grad in outs[0][1].items():
        torch.testing.assert_close(grad, outs[1][1][name], msg=name)
