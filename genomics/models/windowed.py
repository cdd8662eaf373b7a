"""Sequences of any length through a trained DNA model: short ones in padded batches, long
ones in windows.

A sequence longer than ``window`` is cut into windows of exactly ``window`` bases starting
every ``stride`` bases, the last one ending at the sequence end (:func:`tiles`). Then:

* ``"probabilities"`` (pooled classifier) and ``"embedding"``: the windows' class
  probabilities / mean-pooled features are averaged (every window has the same length).
* ``"labels"`` (per-base classifier): each base takes the label from the window in which it
  is farthest from an edge (overlaps are split at their middle).
* ``"bits"`` (causal LM): :func:`~genomics.models.score_sequence`, each base scored by the
  window that gives it the most left context.
"""

from __future__ import annotations

from typing import Callable, Iterator, Literal, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from genomics.data.tokenizers import PAD
from genomics.models.inference import base_bits, base_labels, class_probabilities, mean_embedding
from genomics.models.scoring import score_sequence

__all__ = ["Output", "pad_batch", "predict_sequences", "tiles"]

Output = Literal["probabilities", "labels", "bits", "embedding"]
_BATCH_FN: dict[str, Callable[..., Tensor]] = {
    "probabilities": class_probabilities, "labels": base_labels, "bits": base_bits, "embedding": mean_embedding,
}
_PER_BASE = ("labels", "bits")


def tiles(length: int, window: int, stride: int) -> list[tuple[int, int, int, int]]:
    """``(start, end, keep_start, keep_end)`` windows over ``[0, length)``: ``end - start ==
    window`` (one shorter window when ``length <= window``), the kept parts partition the
    sequence, each overlap split at its middle."""
    if not 0 < stride <= window:
        raise ValueError(f"need 0 < stride <= window, got stride={stride}, window={window}")
    if length <= window:
        return [(0, length, 0, length)]
    starts = list(range(0, length - window, stride)) + [length - window]
    cuts = [0] + [(s + prev + window) // 2 for prev, s in zip(starts, starts[1:])] + [length]
    return [(s, s + window, cuts[k], cuts[k + 1]) for k, s in enumerate(starts)]


def pad_batch(seqs: Sequence[np.ndarray], device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """Token id arrays -> (ids (B, L) int64 padded with PAD on the right, mask (B, L) bool)."""
    length = max(s.shape[0] for s in seqs)
    ids = torch.full((len(seqs), length), PAD, dtype=torch.int64)
    mask = torch.zeros((len(seqs), length), dtype=torch.bool)
    for i, s in enumerate(seqs):
        ids[i, : s.shape[0]] = torch.from_numpy(s.astype(np.int64))
        mask[i, : s.shape[0]] = True
    return ids.to(device), mask.to(device)


def _run(output: Output, model: nn.Module, pieces: Sequence[np.ndarray], device: torch.device | str,
         batch_size: int) -> list[np.ndarray]:
    """``output`` of ``pieces`` in padded batches; one numpy result per piece (per-base
    results cut back to the piece's length)."""
    fn, per_base = _BATCH_FN[output], output in _PER_BASE
    out: list[np.ndarray] = []
    for i in range(0, len(pieces), batch_size):
        chunk = pieces[i : i + batch_size]
        ids, mask = pad_batch(chunk, device)
        result = fn(model, ids, None if bool(mask.all()) else mask).cpu().numpy()
        out += [r[: p.shape[0]] if per_base else r for r, p in zip(result, chunk)]
    return out


def _one_long(output: Output, model: nn.Module, ids: np.ndarray, window: int, stride: int,
              device: torch.device | str, batch_size: int) -> np.ndarray:
    if output == "bits":
        return -score_sequence(model, ids, window, stride, device)
    parts = tiles(ids.shape[0], window, stride)
    results = _run(output, model, [ids[s:e] for s, e, _, _ in parts], device, batch_size)
    if output == "labels":
        return np.concatenate([r[ks - s : ke - s] for (s, _, ks, ke), r in zip(parts, results)])
    return np.mean(results, axis=0, dtype=np.float64).astype(np.float32)


def _short_batches(lengths: Sequence[int], indices: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """``indices`` by decreasing length (little padding) in batches of at most ``batch_size``."""
    order = sorted(indices, key=lambda j: -lengths[j])
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def predict_sequences(model: nn.Module, seqs: Sequence[np.ndarray], output: Output, *, window: int, stride: int,
                      device: torch.device | str = "cpu", batch_size: int = 16) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index into seqs, result)`` for every sequence, in the order computed.

    Results: ``"probabilities"`` (C,) float32 summing to 1; ``"labels"`` (L,) int64;
    ``"bits"`` (L,) float32 ``-log2 p(x_i | x_<i)``, NaN where unscored; ``"embedding"``
    (dim,) float32. Sequences up to ``window`` bases share padded batches; longer ones go by
    windows.
    """
    if output not in _BATCH_FN:
        raise ValueError(f"output must be one of {sorted(_BATCH_FN)}, got {output!r}")
    positions = getattr(model, "positions", None)
    if output == "probabilities" and positions and window > positions:
        raise ValueError(f"window={window}: a pool='flatten' classifier reads at most {positions} bases "
                         f"(model.positions); give window={positions}")
    lengths = [int(s.shape[0]) for s in seqs]
    short = [i for i, n in enumerate(lengths) if n <= window]
    for batch in _short_batches(lengths, short, batch_size):
        yield from zip(batch, _run(output, model, [seqs[i] for i in batch], device, batch_size))
    for i, n in enumerate(lengths):
        if n > window:
            yield i, _one_long(output, model, seqs[i], window, stride, device, batch_size)
