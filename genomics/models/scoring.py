"""Per-base log-likelihoods of whole records with a causal DNA LM, by overlapping windows.

Windows of ``window`` bases start every ``stride`` bases; each position is scored by the
window that gives it the most left context (every window but the first scores only its
last ``stride`` positions). When ``window - stride`` is at least the model's receptive
field (depth x attention window for sliding-window layers) the stitched scores equal a
single pass over the whole record.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch import nn

from genomics.data.tokenizers import NUM_BASES

__all__ = ["window_starts", "score_sequence"]


def window_starts(length: int, window: int, stride: int) -> Iterator[tuple[int, int, int]]:
    """Yield (start, end, first scored position) covering ``[1, length)`` exactly once."""
    if not 0 < stride <= window:
        raise ValueError(f"need 0 < stride <= window, got stride={stride}, window={window}")
    start = 0
    while True:
        end = min(start + window, length)
        yield start, end, (1 if start == 0 else start + window - stride)
        if end >= length:
            return
        start += stride


@torch.no_grad()
def score_sequence(
    model: nn.Module, ids: np.ndarray, window: int, stride: int, device: torch.device | str = "cpu"
) -> np.ndarray:
    """log2 p(x_i | x_<i within its window) for every position (L,) float32; NaN where not
    scored (position 0, and N, special or kept soft-masked targets).
    ``model(ids (1, L)) -> logits (1, L, V)`` is causal."""
    out = np.full(ids.shape[0], np.nan, dtype=np.float32)
    for start, end, first in window_starts(ids.shape[0], window, stride):
        if end - start < 2:
            continue
        x = torch.from_numpy(ids[start:end].astype(np.int64))[None].to(device)
        logp = torch.log_softmax(model(x)[0, :-1].float(), dim=-1)  # predicts positions start+1 .. end-1
        targets = x[0, 1:]
        ll = logp.gather(-1, targets.clamp_max(logp.shape[-1] - 1)[:, None])[:, 0] / np.log(2.0)
        ll = ll.cpu().numpy()
        keep = slice(first - start - 1, None)
        out[first:end] = ll[keep]
    bad = ids >= NUM_BASES  # as in training: N, specials and kept lowercase bases are no targets
    out[bad] = np.nan
    return out
