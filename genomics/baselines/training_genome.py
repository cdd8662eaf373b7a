"""The order-k Markov baseline of a trained language model: fitted on the model's own training
region, so that model and baseline can be scored side by side on any other genome.

The data module is rebuilt from the checkpoint's data arguments (the genome files and the
split), exactly as ``longseq-train-dna`` built it; the counts come from the training regions
and the order is chosen on the validation windows, as the training summary's baseline is
(:func:`~genomics.baselines.markov.markov_baseline`). Without validation windows the order is
:data:`FIXED_ORDER`.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from genomics.baselines.markov import MarkovModel, markov_baseline

__all__ = ["FIXED_ORDER", "MARKOV_BETA", "TrainingGenomeMarkov", "fit_training_genome_markov", "training_data_module"]

log = logging.getLogger(__name__)

#: Interpolation prior of the baseline, as in the training summary.
MARKOV_BETA = 16.0
#: Order used when the split has no validation windows to choose one on.
FIXED_ORDER = 6


@dataclass(frozen=True)
class TrainingGenomeMarkov:
    """A fitted baseline and where it came from.

    Attributes:
        model: the fitted chain (``model.log2_probs(ids)`` scores any sequence).
        order: its order k.
        genome: the training genome files.
        train_bases: bases in the training regions it was counted on.
        order_source: ``"validation"`` (chosen as in training), ``"fixed"`` (given) or
            ``"default"`` (:data:`FIXED_ORDER`, no validation windows).
    """

    model: MarkovModel
    order: int
    genome: tuple[str, ...]
    train_bases: int
    order_source: str


def training_data_module(data_config: Mapping[str, Any], fasta: str | Sequence[str] | None = None) -> Any:
    """The set-up :class:`~genomics.data.GenomeWindowDataModule` that ``data_config`` (the data
    module's arguments saved in a checkpoint; ``fasta`` None = the default genome) describes:
    its ``genomes`` and ``splits`` are the model's training and validation regions.
    ``fasta`` replaces the recorded genome files (same split settings). Raises what the data
    module raises for a missing or unreadable genome (``FileNotFoundError``, ``ValueError``)."""
    from genomics.data import GenomeWindowDataModule

    accepted = inspect.signature(GenomeWindowDataModule).parameters
    kw = {k: v for k, v in data_config.items() if k in accepted}
    if fasta is not None:
        kw["fasta"] = fasta
    kw["num_workers"] = 0
    dm = GenomeWindowDataModule(**kw)
    dm.setup("fit")
    return dm


def fit_training_genome_markov(data_config: Mapping[str, Any], *, fasta: str | Sequence[str] | None = None,
                               order: int | None = None, max_order: int = 12,
                               datamodule: Any = None) -> TrainingGenomeMarkov:
    """Fit the baseline on the training region of :func:`training_data_module`
    (``datamodule``: one already built from the same arguments).

    ``order`` fixes k instead of choosing it on validation."""
    dm = datamodule if datamodule is not None else training_data_module(data_config, fasta)
    train = [dm.genomes[r.genome].window(r.interval.record, r.interval.start, r.interval.end)
             for r in dm.splits["train"]]
    source = "fixed"
    if order is None and "val" in dm.datasets:
        order, val_bpb = markov_baseline(dm, max_order, beta=MARKOV_BETA)
        source = "validation"
        log.info("Markov baseline: order %d chosen on validation (%.4f bits/base)", order, val_bpb)
    elif order is None:
        order, source = FIXED_ORDER, "default"
    model = MarkovModel(order, MARKOV_BETA).fit(train)
    return TrainingGenomeMarkov(model, order, tuple(dm.paths), sum(int(t.size) for t in train), source)
