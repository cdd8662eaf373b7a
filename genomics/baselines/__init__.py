"""Baselines that need no GPU: the interpolated order-k Markov chain (:class:`MarkovModel`),
the same fitted on a trained model's own training region (:func:`fit_training_genome_markov`), and
where a model beats it (:mod:`genomics.baselines.compare`)."""

from genomics.baselines.markov import MarkovModel, markov_baseline, select_order
from genomics.baselines.training_genome import TrainingGenomeMarkov, fit_training_genome_markov, training_data_module

__all__ = ["MarkovModel", "TrainingGenomeMarkov", "fit_training_genome_markov", "markov_baseline", "select_order",
           "training_data_module"]
