"""What a trained DNA model says about a batch: class probabilities, per-base labels, per-base
bits, mean-pooled embeddings. The tasks' ``predict_step`` and ``longseq-predict-dna`` both
use these, so a Lightning ``Trainer.predict`` and the plain-module command agree.

Every function takes ids (B, L) int64 and an optional mask (B, L) bool (True = real base;
padding on the right) and runs without gradients.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from genomics.data.tokenizers import NUM_BASES

__all__ = ["base_bits", "base_labels", "class_probabilities", "mean_embedding"]

_LN2 = math.log(2.0)
#: Label of padding, as ``genomics.data.datasets.IGNORE_INDEX`` (not imported: it pulls in genome I/O).
IGNORE_INDEX = -100


@torch.no_grad()
def class_probabilities(model: nn.Module, input_ids: Tensor, mask: Tensor | None = None,
                        query_index: Tensor | None = None) -> Tensor:
    """Softmax of a pooled :class:`~genomics.models.DNAClassifier`: (B, C) float32, rows sum to 1."""
    return model(input_ids, mask, query_index).float().softmax(-1)


@torch.no_grad()
def base_labels(model: nn.Module, input_ids: Tensor, mask: Tensor | None = None) -> Tensor:
    """Arg-max class per base of a ``pool="none"`` classifier: (B, L) int64, ``IGNORE_INDEX``
    (-100) at padding."""
    labels = model(input_ids, mask).argmax(-1)
    return labels if mask is None else labels.masked_fill(~mask, IGNORE_INDEX)


@torch.no_grad()
def base_bits(model: nn.Module, input_ids: Tensor, mask: Tensor | None = None) -> Tensor:
    """``-log2 p(x_i | x_<i)`` per base from a causal :class:`~genomics.models.DNALanguageModel`:
    (B, L) float32, NaN where not scored (position 0, N, special and kept soft-masked targets,
    padding). The
    same numbers as :func:`~genomics.models.score_sequence` over one window, negated."""
    if getattr(model, "objective", "causal") != "causal":
        raise ValueError("per-base bits need a causal language model (objective='causal')")
    logp = torch.log_softmax(model(input_ids, mask)[:, :-1].float(), dim=-1)  # predicts positions 1 .. L-1
    targets = input_ids[:, 1:]
    bits = -logp.gather(-1, targets.clamp_max(logp.shape[-1] - 1).unsqueeze(-1)).squeeze(-1) / _LN2
    out = torch.full(input_ids.shape, float("nan"), dtype=torch.float32, device=input_ids.device)
    out[:, 1:] = bits
    bad = input_ids >= NUM_BASES  # as in training: N, specials and kept lowercase bases are no targets
    if mask is not None:
        bad |= ~mask
    return out.masked_fill(bad, float("nan"))


@torch.no_grad()
def mean_embedding(model: nn.Module, input_ids: Tensor, mask: Tensor | None = None) -> Tensor:
    """Encoder features averaged over the real bases (global tokens left out): (B, dim) float32.
    ``model`` is any DNA model with a :class:`~genomics.models.DNAEncoder` as ``model.backbone``."""
    encoder = model.backbone
    feats, fmask = encoder(input_ids, mask)
    g = encoder.num_global
    body = feats[:, g:].float()
    if fmask is None:
        return body.mean(1)
    w = fmask[:, g:].unsqueeze(-1).float()
    return (body * w).sum(1) / w.sum(1).clamp_min(1)
