"""Lightning data module of labelled sequences (CSV or one FASTA per class) for classification.

Files are read in ``setup``, never in ``__init__``; bad input fails there with a clear
error naming the file and row.
"""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import numpy as np

from genomics.data.datasets import SequenceDataset
from genomics.data.loaders import PaddedSplitLoaders
from genomics.data.tokenizers import NucleotideTokenizer, SoftMask
from genomics.io.readers import iter_records

__all__ = ["SequenceClassificationDataModule"]


class SequenceClassificationDataModule(PaddedSplitLoaders, L.LightningDataModule):
    """Labelled sequences from a CSV (``sequence,label`` and optional ``split``) or a folder
    holding one FASTA file per class (class name = file stem).

    Without a ``split`` column, a seeded random ``val_fraction`` of sequences is held out.
    Sequences longer than ``max_len`` are cut to their first ``max_len`` bases; batches are
    padded with a mask.
    """

    def __init__(
        self,
        data: str,
        *,
        max_len: int | None = None,
        batch_size: int = 16,
        num_workers: int = 0,
        val_fraction: float = 0.2,
        seed: int = 0,
        rc_prob: float = 0.5,
        soft_mask: SoftMask = "upper",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.tokenizer = NucleotideTokenizer(soft_mask)
        self.class_names: list[str] = []
        self.datasets: dict[str, SequenceDataset] = {}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _read(self) -> list[tuple[np.ndarray, str, str]]:
        """(ids, class name, split or '') per sequence."""
        path = Path(self.hparams.data)
        rows: list[tuple[np.ndarray, str, str]] = []
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            if not files:
                raise ValueError(f"data folder {str(path)!r} holds no FASTA file (one per class expected)")
            for file in files:
                cls = file.name.split(".")[0]
                for rec in iter_records(file, "fasta"):
                    rows.append((self.tokenizer.encode(bytes(rec.seq), record=f"{file.name}:{rec.id}"), cls, ""))
        elif path.is_file():
            with open(path, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                if not reader.fieldnames or not {"sequence", "label"} <= set(reader.fieldnames):
                    raise ValueError(
                        f"{str(path)!r} needs a header with 'sequence' and 'label' columns, got {reader.fieldnames}"
                    )
                for i, row in enumerate(reader, 2):
                    ids = self.tokenizer.encode(row["sequence"].strip(), record=f"{path.name} line {i}")
                    rows.append((ids, row["label"].strip(), (row.get("split") or "").strip().lower()))
        else:
            raise FileNotFoundError(f"data must be a CSV file or a folder of FASTA files, got {str(path)!r}")
        empty = [i for i, (ids, _, _) in enumerate(rows) if ids.size == 0]
        if empty:
            raise ValueError(f"{str(path)!r}: {len(empty)} empty sequence(s), first at row {empty[0]}")
        if not rows:
            raise ValueError(f"{str(path)!r} holds no sequence")
        return rows

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        rows = self._read()
        names = sorted({cls for _, cls, _ in rows})
        if all(n.lstrip("-").isdigit() for n in names):
            names = sorted(names, key=int)
        if len(names) < 2:
            raise ValueError(f"classification needs at least 2 classes, found {names}")
        self.class_names = names
        index = {n: i for i, n in enumerate(names)}
        if h.max_len:
            rows = [(ids[: h.max_len], cls, split) for ids, cls, split in rows]
        if any(split for _, _, split in rows):
            split_of = [("val" if s in ("val", "valid", "validation") else s or "train") for _, _, s in rows]
        else:
            perm = np.random.default_rng(h.seed).permutation(len(rows))
            n_val = max(1, round(h.val_fraction * len(rows)))
            val = set(perm[:n_val].tolist())
            split_of = ["val" if i in val else "train" for i in range(len(rows))]
        for split in ("train", "val", "test"):
            chosen = [r for r, s in zip(rows, split_of) if s == split]
            if chosen:
                self.datasets[split] = SequenceDataset(
                    [ids for ids, _, _ in chosen], [index[cls] for _, cls, _ in chosen],
                    rc_prob=h.rc_prob if split == "train" else 0.0,
                )
