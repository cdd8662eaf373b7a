"""DNA models built from ``longseq`` blocks (plain ``nn.Module`` s, torch only; the Lightning
tasks that train them live in :mod:`genomics.tasks`).

* :class:`DNAEncoder` (``encoder``): the shared backbone, ids (B, L) -> features (B, G + L', dim).
* :class:`DNALanguageModel` (``language_model``): single-nucleotide causal or masked LM.
* :class:`DNAClassifier` (``classifier``): sequence classification or per-base labelling.
* :func:`score_sequence` (``scoring``): per-base log-likelihoods of whole records with a causal LM.
* :func:`load_model` (``loading``): a ``longseq-train-dna`` checkpoint as a plain module, its
  tokenizer and what the checkpoint records (task, class names), without Lightning.
* ``inference``: class probabilities, per-base labels, per-base bits, mean embeddings of a batch.
* :func:`predict_sequences` (``windowed``): the same for sequences of any length (windows).
"""

from genomics.models.classifier import DNAClassifier, Pool
from genomics.models.encoder import DNAEncoder
from genomics.models.inference import base_bits, base_labels, class_probabilities, mean_embedding
from genomics.models.language_model import DNALanguageModel, Objective
from genomics.models.loading import CheckpointError, CheckpointInfo, LoadedModel, load_model
from genomics.models.scoring import score_sequence, window_starts
from genomics.models.windowed import predict_sequences, tiles

__all__ = [
    "DNAEncoder", "DNALanguageModel", "DNAClassifier", "Objective", "Pool", "score_sequence", "window_starts",
    "CheckpointError", "CheckpointInfo", "LoadedModel", "load_model",
    "base_bits", "base_labels", "class_probabilities", "mean_embedding", "predict_sequences", "tiles",
]
