"""LightningModules that train the DNA models (named ``*Task``; the models are in :mod:`genomics.models`).

* :class:`LanguageModelTask`: causal or masked LM; loss, bits per base, perplexity, accuracy.
* :class:`ClassificationTask`: one label per sequence (also the needle check, ``pool="query"``).
* :class:`AnnotationTask`: one label per base.
* :class:`DNATask`: their shared optimiser (AdamW, warm-up, cosine decay).

:mod:`genomics.tasks.callbacks` holds the training-loop callbacks ``longseq-train-dna`` adds
(the save on SIGTERM, the progress bar of a run ended by the clock).
"""

from genomics.tasks.base import DNATask
from genomics.tasks.classification import AnnotationTask, ClassificationTask
from genomics.tasks.language_model import LanguageModelTask

__all__ = ["DNATask", "LanguageModelTask", "ClassificationTask", "AnnotationTask"]
