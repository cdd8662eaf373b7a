"""Baselines that need no GPU: the interpolated order-k Markov chain (:class:`MarkovModel`),
and the same fitted on a trained model's own training region (:func:`fit_training_genome_markov`)."""

from genomics.baselines.markov import MarkovModel, markov_baseline, select_order
from genomics.baselines.training_genome import TrainingGenomeMarkov, fit_training_genome_markov

__all__ = ["MarkovModel", "TrainingGenomeMarkov", "fit_training_genome_markov", "markov_baseline", "select_order"]
