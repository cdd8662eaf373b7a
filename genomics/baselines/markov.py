"""Order-k Markov baseline: bits per base with no GPU, on the same split as the LMs.

Counts are collected for every order 0..k over the training regions (k-mers touching N are
not counted). Probabilities are interpolated recursively with a Dirichlet prior centred on
the next-lower order::

    p_j(x | c_j) = (n(c_j, x) + beta * p_{j-1}(x | c_{j-1})) / (n(c_j) + beta),   p_{-1} = 1/4

so unseen long contexts fall back smoothly. At a position with fewer than k clean preceding
bases (window start, after an N) the longest available context is used, the same
information a causal LM sees in its window. Targets that are N are not scored.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Iterable, Sequence

import numpy as np

from genomics.data.tokenizers import NUM_BASES, is_unknown

__all__ = ["MarkovModel", "markov_baseline", "select_order"]

log = logging.getLogger(__name__)
_MAX_ORDER = 12  # 4**13 uint32 counts = 268 MB; beyond that counts are too sparse anyway


def _clean(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bases as int64 in [0, 4), bool 'is a base' mask); soft-masked ids folded to upper case."""
    ids = np.asarray(ids).astype(np.int64)
    ids = np.where(ids >= 9, ids - 9, ids)
    ok = (ids < NUM_BASES) & ~is_unknown(ids)
    return np.where(ok, ids, 0), ok


def _run_lengths(ok: np.ndarray) -> np.ndarray:
    """For each i: how many consecutive clean bases end just before i (capped by nothing)."""
    idx = np.arange(ok.size)
    last_bad = np.maximum.accumulate(np.where(~ok, idx, -1))
    # clean bases in [last_bad_before_i + 1, i): computed from the bad index strictly before i.
    prev_bad = np.concatenate([[-1], last_bad[:-1]])
    return idx - prev_bad - 1


def _codes(bases: np.ndarray, order: int) -> np.ndarray:
    """code[i] = base-4 number of bases[i-order .. i] (context then target); valid for i >= order."""
    code = np.zeros(bases.size, dtype=np.int64)
    for j in range(order, -1, -1):
        shifted = np.zeros(bases.size, dtype=np.int64)
        shifted[j:] = bases[: bases.size - j] if j else bases
        code = code * NUM_BASES + shifted
    return code


class MarkovModel:
    """Interpolated order-k Markov chain over A/C/G/T.

    Args:
        order: maximum context length k (0..12).
        beta: prior strength of the interpolation with the lower order.
    """

    def __init__(self, order: int, beta: float = 1.0) -> None:
        if isinstance(order, bool) or not isinstance(order, int) or not 0 <= order <= _MAX_ORDER:
            raise ValueError(f"order must be an integer in [0, {_MAX_ORDER}], got {order!r}")
        if beta <= 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        self.order, self.beta = order, beta
        self.counts = [np.zeros(NUM_BASES ** (j + 1), dtype=np.uint32) for j in range(order + 1)]

    def fit(self, sequences: Iterable[np.ndarray]) -> "MarkovModel":
        """Add the (j+1)-mer counts of each sequence of token ids (N-free k-mers only)."""
        for ids in sequences:
            bases, ok = _clean(ids)
            run = _run_lengths(ok)
            for j in range(self.order + 1):
                code = _codes(bases, j)
                valid = ok & (run >= j)
                self.counts[j] += np.bincount(code[valid], minlength=self.counts[j].size).astype(np.uint32)
        return self

    def truncated(self, order: int) -> "MarkovModel":
        """The same counts used as an order-``order`` model (no copy)."""
        if not 0 <= order <= self.order:
            raise ValueError(f"order must be in [0, {self.order}], got {order}")
        model = MarkovModel(0, self.beta)
        model.order, model.counts = order, self.counts[: order + 1]
        return model

    def log2_probs(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-position log2 p(x_i | up to k previous clean bases) (L,), and a bool mask of
        scored positions (targets that are bases)."""
        bases, ok = _clean(ids)
        ctx_len = np.minimum(_run_lengths(ok), self.order)
        prob = np.full(bases.size, 1.0 / NUM_BASES)
        out = np.zeros(bases.size)
        for j in range(self.order + 1):
            code = _codes(bases, j)
            ctx_code = code // NUM_BASES
            n_ctx = self.counts[j].reshape(-1, NUM_BASES).sum(1, dtype=np.int64)
            live = ctx_len >= j
            p = (self.counts[j][code[live]] + self.beta * prob[live]) / (n_ctx[ctx_code[live]] + self.beta)
            prob[live] = p
            out[ctx_len == j] = prob[ctx_len == j]
        return np.log2(np.where(ok, out, 1.0)), ok

    def bits_per_base(self, windows: Iterable[np.ndarray]) -> float:
        """Mean -log2 p over every scored base of every window (each window scored independently)."""
        total, count = 0.0, 0
        for ids in windows:
            lp, ok = self.log2_probs(ids)
            total -= float(lp[ok].sum())
            count += int(ok.sum())
        if count == 0:
            raise ValueError("no scorable base (A/C/G/T) in the given windows")
        return total / count


def select_order(
    train: Sequence[np.ndarray], val: Sequence[np.ndarray], orders: Sequence[int] = range(0, 13), beta: float = 1.0
) -> tuple[int, dict[int, float], MarkovModel]:
    """Fit counts up to ``max(orders)`` once and pick the order with the best validation
    bits per base. Returns (best order, {order: val bpb}, best model)."""
    if not orders:
        raise ValueError("orders must not be empty")
    full = MarkovModel(max(orders), beta).fit(train)  # counts of every lower order come with it
    scores: dict[int, float] = {}
    for k in sorted(orders):
        scores[k] = full.truncated(k).bits_per_base(val)
        log.info("Markov order %d: val %.4f bits/base", k, scores[k])
    best = min(scores, key=scores.__getitem__)
    return best, scores, full.truncated(best)


def markov_baseline(datamodule: Any, max_order: int = 12, beta: float = 16.0) -> tuple[int, float]:
    """(best order, its validation bits per base) on a set-up genome data module's split
    (``genomes``, ``splits["train"]`` and ``datasets["val"]``, as in
    :class:`~genomics.data.GenomeWindowDataModule`): counts over the training regions, scored
    on the validation windows the LM is scored on. Orders go up to log4(training bases),
    since longer contexts cannot be estimated from the data."""
    train = [datamodule.genomes[r.genome].window(r.interval.record, r.interval.start, r.interval.end)
             for r in datamodule.splits["train"]]
    max_order = max(0, min(max_order, int(math.log(max(sum(t.size for t in train), 4), 4))))
    val_ds = datamodule.datasets["val"]
    val = [val_ds[i]["input_ids"][val_ds[i]["mask"]].numpy() for i in range(len(val_ds))]
    order, scores, _ = select_order(train, val, range(0, max_order + 1), beta=beta)
    return order, scores[order]
