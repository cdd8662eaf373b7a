"""Baselines that need no GPU: the interpolated order-k Markov chain (:class:`MarkovModel`)."""

from genomics.baselines.markov import MarkovModel, markov_baseline, select_order

__all__ = ["MarkovModel", "markov_baseline", "select_order"]
