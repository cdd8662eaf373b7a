"""DNA models built from ``longseq`` blocks (plain ``nn.Module`` s, torch only; the Lightning
tasks that train them live in :mod:`genomics.tasks`).

* :class:`DNAEncoder` (``encoder``): the shared backbone, ids (B, L) -> features (B, G + L', dim).
* :class:`DNALanguageModel` (``language_model``): single-nucleotide causal or masked LM.
* :class:`DNAClassifier` (``classifier``): sequence classification or per-base labelling.
* :func:`score_sequence` (``scoring``): per-base log-likelihoods of whole records with a causal LM.
"""

from genomics.models.classifier import DNAClassifier, Pool
from genomics.models.encoder import DNAEncoder
from genomics.models.language_model import DNALanguageModel, Objective
from genomics.models.scoring import score_sequence, window_starts

__all__ = ["DNAEncoder", "DNALanguageModel", "DNAClassifier", "Objective", "Pool", "score_sequence", "window_starts"]
