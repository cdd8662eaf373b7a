import math

import numpy as np
import pytest

from genomics.baselines.markov import MarkovModel, select_order
from genomics.data.length_warmup import Stage, warmup_schedule
from genomics.data.tokenizers import N


def _order2_chain(n: int, seed: int) -> np.ndarray:
    """A sequence where x_i is a deterministic function of (x_{i-2}, x_{i-1}) 90% of the time."""
    rng = np.random.default_rng(seed)
    table = np.random.default_rng(99).integers(0, 4, size=(4, 4))
    x = np.zeros(n, dtype=np.uint8)
    x[:2] = rng.integers(0, 4, 2)
    noise = rng.random(n) < 0.1
    rand = rng.integers(0, 4, n)
    for i in range(2, n):
        x[i] = rand[i] if noise[i] else table[x[i - 2], x[i - 1]]
    return x


def test_markov_uniform_and_order_selection():
    rng = np.random.default_rng(0)
    iid = rng.integers(0, 4, 20000).astype(np.uint8)
    assert abs(MarkovModel(0).fit([iid]).bits_per_base([iid]) - 2.0) < 0.01
    train, val = _order2_chain(30000, 1), _order2_chain(5000, 2)
    best, scores, model = select_order([train], [val], range(0, 5))
    assert best == 2
    assert scores[2] < scores[1] < scores[0]
    # Entropy of "right 90% + uniform 10%": p(correct) = 0.925, others 0.025 each.
    expected = -(0.925 * math.log2(0.925) + 0.075 * math.log2(0.025))
    assert abs(scores[2] - expected) < 0.05


def test_markov_probabilities_normalise_and_skip_n():
    rng = np.random.default_rng(3)
    seq = rng.integers(0, 4, 5000).astype(np.uint8)
    model = MarkovModel(3).fit([seq])
    ctx = np.array([0, 1, 2], dtype=np.uint8)
    total = sum(2 ** model.log2_probs(np.append(ctx, b).astype(np.uint8))[0][-1] for b in range(4))
    assert abs(total - 1.0) < 1e-9
    with_n = np.array([0, 1, N, 2, 3], dtype=np.uint8)
    lp, ok = model.log2_probs(with_n)
    assert ok.tolist() == [True, True, False, True, True] and lp[2] == 0.0
    with pytest.raises(ValueError, match="order"):
        MarkovModel(13)


def test_warmup_schedule():
    stages = warmup_schedule(1_000_000, 1, max_steps=3)
    assert [s.seq_len for s in stages] == [65536, 262144, 1_000_000] and sum(s.steps for s in stages) == 3
    stages = warmup_schedule(65536, 2, train_tokens=1_000_000, warmup_tokens_per_step=32768)
    assert [s.seq_len for s in stages] == [4096, 16384, 65536]
    assert stages[0].batch_size == 8 and stages[-1].batch_size == 2
    assert abs(sum(s.tokens for s in stages) - 1_000_000) < 200_000
    assert warmup_schedule(512, 1, max_steps=5, start_len=4096) == [Stage(512, 1, 5)]
    with pytest.raises(ValueError, match="max_steps"):
        warmup_schedule(512, 1, max_steps=0)
