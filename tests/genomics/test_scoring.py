import numpy as np
import pytest
import torch

from genomics.data.tokenizers import N
from genomics.models import DNALanguageModel
from genomics.models.scoring import score_sequence, window_starts


def test_window_starts_cover_every_position_once():
    for length, window, stride in [(1000, 100, 60), (100, 100, 50), (50, 100, 75), (1001, 64, 64)]:
        covered = np.zeros(length, dtype=int)
        for start, end, first in window_starts(length, window, stride):
            assert end - start <= window and start <= first
            covered[first:end] += 1
        assert covered[0] == 0 and (covered[1:] == 1).all()
    with pytest.raises(ValueError, match="stride"):
        list(window_starts(10, 5, 6))


def test_stitched_scores_equal_one_pass():
    torch.manual_seed(0)
    model = DNALanguageModel(dim=32, depth=2, heads=2, window=8).eval()  # receptive field 16 bases
    ids = np.random.default_rng(0).integers(0, 4, 300).astype(np.uint8)
    ids[100] = N
    full = score_sequence(model, ids, window=300, stride=300)
    stitched = score_sequence(model, ids, window=64, stride=40)  # overlap 24 >= 16
    assert np.isnan(full[0]) and np.isnan(full[100]) and np.isnan(stitched[100])
    np.testing.assert_allclose(stitched, full, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        logits = model(torch.from_numpy(ids.astype(np.int64))[None])[0]
    direct = torch.log_softmax(logits[:-1], -1).gather(-1, torch.from_numpy(ids[1:].astype(np.int64)).clamp_max(8)[:, None])[:, 0]
    np.testing.assert_allclose(full[1:50], direct[:49].numpy() / np.log(2), rtol=1e-4, atol=1e-5)
    short_overlap = score_sequence(model, ids, window=64, stride=60)  # overlap 4 < 16: differs
    assert not np.allclose(short_overlap[150:], full[150:], equal_nan=True)


def test_kept_soft_masked_targets_are_not_scored_as_in_training():
    """With ``soft_mask="keep"`` training leaves lowercase targets out of the loss, so their
    logits are never trained: scoring and per-base bits leave them out too (NaN)."""
    from genomics.data.tokenizers import NucleotideTokenizer
    from genomics.models.inference import base_bits

    tokenizer = NucleotideTokenizer("keep")
    model = DNALanguageModel(vocab_size=tokenizer.vocab_size, dim=16, depth=1, heads=2, window=8).eval()
    ids = tokenizer.encode("ACGTacgtNACGTnACGT")
    lower = (ids >= 9) & (ids != N + 9)
    assert lower.sum() == 4
    ll = score_sequence(model, ids, window=16, stride=12)
    bits = base_bits(model, torch.from_numpy(ids.astype(np.int64))[None])[0].numpy()
    for scores in (ll, bits):
        assert np.isnan(scores[lower]).all() and np.isnan(scores[ids == N]).all() and np.isnan(scores[0])
        upper = ids < 4
        upper[0] = False
        assert np.isfinite(scores[upper]).all()
