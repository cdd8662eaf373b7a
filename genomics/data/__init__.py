"""DNA data: tokenizers, genome splits, window datasets, the sequence-length warm-up, and the
Lightning data modules (imported on first use, as they need Lightning).

* ``tokenizers``: single-nucleotide and k-mer tokenizers, reverse complement.
* ``splits``: disjoint train/val/test regions (by fraction, record or BED).
* ``datasets``, ``joined``: windows over regions (one record at a time, or records joined).
* ``length_warmup``: :func:`warmup_schedule`, the stages of growing window length.
* ``datamodules``: :class:`GenomeWindowDataModule` (LM), :class:`AnnotationDataModule`.
* ``sequence_classification``: :class:`SequenceClassificationDataModule` (a table, train/dev/test
  files or a FASTA per class; :func:`stratified_holdout`, :func:`find_task_folders`,
  :func:`normalise_labels`).
* ``needle``: the long-range check's examples and :class:`NeedleDataModule`.
* ``loaders``: :class:`PaddedSplitLoaders`, train/val/test loaders with padding masks;
  :class:`ResumableTrainOrder`, training loaders in an order a resumed run reproduces.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from genomics._lazy import lazy_exports

EXPORTS = {
    "tokenizers": ("A", "C", "G", "T", "N", "PAD", "MASK", "SEP", "CLS", "NUM_BASES", "SoftMask",
                   "NucleotideTokenizer", "KmerTokenizer", "reverse_complement", "reverse_complement_rows",
                   "strand_flip_index", "is_unknown"),
    "splits": ("Region", "SPLITS", "fraction_splits", "record_splits", "bed_splits", "check_disjoint"),
    "datasets": ("OnShort", "Cell", "IGNORE_INDEX", "plan_cells", "WindowDataset", "SequenceDataset", "pad_collate"),
    "joined": ("JoinedWindowDataset",),
    "length_warmup": ("OPEN_ENDED_STEPS", "Stage", "split_into_epochs", "warmup_schedule"),
    "loaders": ("PaddedSplitLoaders", "ResumableTrainOrder"),
    "datamodules": ("GenomeWindowDataModule", "AnnotationDataModule"),
    "sequence_classification": ("SequenceClassificationDataModule", "find_task_folders", "normalise_labels",
                                "stratified_holdout"),
    "needle": ("MARKER_ZONE", "NeedleSpec", "NeedleDataset", "NeedleDataModule"),
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, EXPORTS)

if TYPE_CHECKING:  # the same names, for type checkers and editors
    from genomics.data.datamodules import AnnotationDataModule, GenomeWindowDataModule
    from genomics.data.datasets import (
        IGNORE_INDEX, Cell, OnShort, SequenceDataset, WindowDataset, pad_collate, plan_cells,
    )
    from genomics.data.joined import JoinedWindowDataset
    from genomics.data.length_warmup import OPEN_ENDED_STEPS, Stage, split_into_epochs, warmup_schedule
    from genomics.data.loaders import PaddedSplitLoaders, ResumableTrainOrder
    from genomics.data.needle import MARKER_ZONE, NeedleDataModule, NeedleDataset, NeedleSpec
    from genomics.data.sequence_classification import (
        SequenceClassificationDataModule, find_task_folders, normalise_labels, stratified_holdout,
    )
    from genomics.data.splits import SPLITS, Region, bed_splits, check_disjoint, fraction_splits, record_splits
    from genomics.data.tokenizers import (
        CLS, MASK, NUM_BASES, PAD, SEP, A, C, G, KmerTokenizer, N, NucleotideTokenizer, SoftMask, T,
        is_unknown, reverse_complement, reverse_complement_rows, strand_flip_index,
    )
