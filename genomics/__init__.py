"""longseq genomics: DNA tokenizers, genome I/O, Lightning data modules, DNA models and tasks.

Subpackages, mirroring :mod:`vision`:

* :mod:`genomics.io`: reading genomes, annotation labels, BED, the token cache, default genomes.
* :mod:`genomics.data`: tokenizers, splits, window datasets, length warm-up, data modules.
* :mod:`genomics.models`: the ``nn.Module`` s (:class:`DNALanguageModel`, :class:`DNAClassifier`)
  and :func:`load_model` (a checkpoint as a plain module and its tokenizer).
* :mod:`genomics.tasks`: the LightningModules (:class:`LanguageModelTask`, ...).
* :mod:`genomics.baselines`: the order-k Markov chain.
* :mod:`genomics.cli`: the console commands (``longseq-train-dna`` and others).

Everything imports lazily: ``import genomics`` does no work, and ``genomics.data.tokenizers``
needs numpy and torch only (the data modules need biopython and Lightning).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from genomics._lazy import lazy_exports

EXPORTS = {
    "data": ("NucleotideTokenizer", "KmerTokenizer", "GenomeWindowDataModule", "AnnotationDataModule",
             "SequenceClassificationDataModule", "NeedleDataModule", "warmup_schedule"),
    "io": ("build_genome_cache", "ecoli_k12_fasta", "yeast_genbank"),
    "models": ("DNALanguageModel", "DNAClassifier", "load_model"),
    "tasks": ("LanguageModelTask", "ClassificationTask", "AnnotationTask"),
    "baselines": ("MarkovModel",),
}
SUBPACKAGES = ("baselines", "cli", "data", "io", "models", "tasks")

__getattr__, __dir__, __all__ = lazy_exports(__name__, EXPORTS, SUBPACKAGES)

if TYPE_CHECKING:
    from genomics.baselines import MarkovModel
    from genomics.data import (
        AnnotationDataModule, GenomeWindowDataModule, KmerTokenizer, NeedleDataModule, NucleotideTokenizer,
        SequenceClassificationDataModule, warmup_schedule,
    )
    from genomics.io import build_genome_cache, ecoli_k12_fasta, yeast_genbank
    from genomics.models import DNAClassifier, DNALanguageModel, load_model
    from genomics.tasks import AnnotationTask, ClassificationTask, LanguageModelTask
