"""Lightning data module of labelled sequences for classification, from a user's files.

``data`` (and ``test_data``) is a CSV/TSV table with an optional ``split`` column, a folder
of ``train``/``dev``/``test`` tables, or a folder of one FASTA per class
(:mod:`genomics.io.labelled` reads them). Without a validation split, a seeded stratified
``val_fraction`` of the training rows is held out. Files are read in ``setup`` (once),
never in ``__init__``; bad input raises :class:`~genomics.io.labelled.DataInputError` (a
``ValueError``) naming the file and line.

Label checks: every label occurs at least twice, and, with ``min_class_share_rows`` rows or
more, in at least ``min_class_share`` of the rows (a typo'd label is otherwise a class of
its own); a label of the validation or test rows occurs in training. When every label is a
whole number, ``1.0`` is read as ``1`` (a table column that held an empty cell is written
with ``.0`` by pandas), with a warning; other labels equal as numbers (``0.5``, ``0.50``)
stay apart, with a warning.

A folder whose subfolders hold split tables (a benchmark's task folders, such as GUE's
``prom/prom_300_all/train.csv``) is not a class folder: it is an error naming the task
folders, one of which is the ``--data`` to give.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np

from genomics.data.datasets import SequenceDataset
from genomics.data.loaders import PaddedSplitLoaders
from genomics.data.tokenizers import NucleotideTokenizer, SoftMask
from genomics.io.labelled import SPLIT_NAMES, DataInputError, LabelledRows, is_table, read_labelled

__all__ = ["SequenceClassificationDataModule", "find_task_folders", "normalise_labels", "stratified_holdout"]

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def stratified_holdout(labels: list[str], fraction: float, seed: int) -> np.ndarray:
    """Indices (into ``labels``) of a seeded stratified holdout of about ``fraction`` of the
    rows: each class gives its share (largest remainders fill the total), at least one row
    per class of 2 or more, and always keeps one row for training."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {fraction}")
    by_class: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    names = sorted(by_class)
    exact = np.array([fraction * len(by_class[n]) for n in names])
    take = np.floor(exact).astype(int)
    short = max(0, round(fraction * len(labels)) - int(take.sum()))
    for k in np.argsort(-(exact - take), kind="stable")[:short]:
        take[k] += 1
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for n, t in zip(names, take):
        rows = by_class[n]
        t = min(max(int(t), 1 if len(rows) >= 2 else 0), len(rows) - 1)
        chosen += [rows[j] for j in rng.permutation(len(rows))[:t]]
    return np.sort(np.array(chosen, dtype=np.int64))



def _is_split_table(path: Path) -> bool:
    """``train.csv``, ``dev.tsv.gz``, ...: a table named by a split."""
    return path.name.lower().partition(".")[0] in SPLIT_NAMES and is_table(path) and path.is_file()


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def find_task_folders(folder: str | Path, depth: int = 2) -> list[str]:
    """The subfolders of ``folder``, up to ``depth`` levels down, that hold split tables
    (``train.csv``, ``dev.csv``, ...), as paths relative to it; empty when ``folder`` holds
    split files or split folders itself (then it is one task's folder, not a parent of several).

    A benchmark such as GUE keeps one task per folder (``prom/prom_300_all/train.csv``): its
    parent folder would otherwise read as a folder of one subfolder per class."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    entries = [p for p in folder.iterdir() if not p.name.startswith((".", "_"))]
    if any(_is_split_table(p) or p.is_dir() and p.name.lower() in SPLIT_NAMES for p in entries):
        return []
    found: list[str] = []
    level = [folder]
    for _ in range(depth):
        level = [sub for parent in level for sub in _subfolders(parent)]
        found += [str(sub.relative_to(folder)) for sub in level if any(_is_split_table(p) for p in sub.iterdir())]
    return sorted(found)


def _as_number(label: str) -> float | None:
    try:
        value = float(label)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def normalise_labels(labels: list[str], where: str = "--data") -> list[str]:
    """``labels`` with whole-number labels written one way: when every label is a finite
    whole number (``1``, ``1.0``, ``01``), each becomes its integer (``1``), logged when any
    changes. Otherwise labels are kept as read, with a warning when two of them are equal
    as numbers (``0.5`` and ``0.50`` are then two classes). Both are logged as warnings: the
    class names of the run differ from the file's."""
    values = {label: _as_number(label) for label in set(labels)}
    if values and all(v is not None and v == int(v) for v in values.values()):
        renamed = {label: str(int(v)) for label, v in values.items() if str(int(v)) != label}
        if renamed:
            log.warning("%s: labels %s read as %s (every label is a whole number)", where,
                     ", ".join(sorted(renamed)), ", ".join(renamed[k] for k in sorted(renamed)))
            return [renamed.get(label, label) for label in labels]
        return labels
    by_value: dict[float, list[str]] = {}
    for label, v in values.items():
        if v is not None:
            by_value.setdefault(v, []).append(label)
    same = [sorted(group) for group in by_value.values() if len(group) > 1]
    for group in sorted(same):
        log.warning("%s: labels %s are equal as numbers but are kept as %d classes (not every label is a whole "
                    "number); write them one way if they are one class", where, " and ".join(map(repr, group)),
                    len(group))
    return labels


#: Up to this many files a split's files are listed by name; beyond, by folder with counts
#: (a one-sequence-per-file benchmark holds tens of thousands).
_FILES_LISTED = 20


def _file_list(files: list[str]) -> list[str]:
    """``files`` as given, or ``"<folder>/ (<n> files)"`` per folder when there are many."""
    if len(files) <= _FILES_LISTED:
        return files
    folders = Counter(str(Path(f).parent) for f in files)
    return [f"{folder}/ ({n:,} files)" for folder, n in folders.items()]

class SequenceClassificationDataModule(PaddedSplitLoaders, L.LightningDataModule):
    """Labelled sequences for one label per sequence.

    Args:
        data: a table (``.csv``/``.tsv``/``.txt``, optionally ``.gz``), a folder of split
            tables (``train.csv``, ``dev.csv`` or ``val.csv``, ``test.csv``) or split
            folders, or a folder of one FASTA per class; see :mod:`genomics.io.labelled`.
        test_data: a held-out test set in any of those forms (all its rows are test rows).
        sequence_column, label_column: header names of a table's columns when they are not
            among the common ones (``sequence``/``seq``..., ``label``/``class``/``y``...).
        max_len: cut sequences to their first ``max_len`` bases.
        val_fraction: the stratified holdout (seed ``seed``) when the data has no
            validation split.
        min_class_share, min_class_share_rows: with at least ``min_class_share_rows`` rows,
            a label on fewer than ``min_class_share`` of them is an error (0 turns it off).
        rc_prob: reverse-complement training sequences with this probability.
    """

    def __init__(
        self,
        data: str,
        *,
        test_data: str | None = None,
        sequence_column: str | None = None,
        label_column: str | None = None,
        max_len: int | None = None,
        batch_size: int = 16,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        rc_prob: float = 0.5,
        soft_mask: SoftMask = "upper",
        min_class_share: float = 0.01,
        min_class_share_rows: int = 200,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.tokenizer = NucleotideTokenizer(soft_mask)
        self.class_names: list[str] = []
        self.datasets: dict[str, SequenceDataset] = {}
        #: Per split: class name -> number of sequences.
        self.class_counts: dict[str, dict[str, int]] = {}
        #: Where each split came from, in words, and the layout read (for the run summary).
        self.description: dict[str, Any] = {}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _read(self) -> tuple[LabelledRows, list[str], str]:
        """(rows, their splits with the holdout applied, how validation was chosen)."""
        h = self.hparams
        if not h.data:
            raise DataInputError("--data (data.data) is required for --task classification")
        kw = {"sequence_column": h.sequence_column, "label_column": h.label_column}
        for flag, path in (("--data", h.data), ("--test-data", h.test_data)):
            tasks = find_task_folders(path) if path else []
            if tasks:
                shown = ", ".join(tasks[:4]) + (", ..." if len(tasks) > 4 else "")
                raise DataInputError(f"{flag} {path}: holds task folders ({shown}), each with its own split "
                                     f"tables; pass one of them as {flag} (e.g. {Path(path) / tasks[0]})")
        rows = read_labelled(h.data, self.tokenizer, what="--data", **kw)
        self.description = {"layout": rows.layout, "data": str(h.data)}
        if h.test_data:
            if "test" in rows.splits:
                first = rows.splits.index("test")
                raise DataInputError(
                    f"--test-data {h.test_data} given, but --data {h.data} holds test rows already "
                    f"(first at {rows.where(first)}); give one test set"
                )
            test = read_labelled(h.test_data, self.tokenizer, what="--test-data", **kw)
            for i, split in enumerate(test.splits):
                if split not in ("", "test"):
                    raise DataInputError(f"--test-data {h.test_data}: {test.where(i)} is a {split!r} row; "
                                         "every --test-data row is a test row")
            test.splits = ["test"] * len(test)
            rows.extend(test)
            self.description["test_data"] = str(h.test_data)
        rows.labels = normalise_labels(rows.labels, f"--data {h.data}")
        splits = [s or "train" for s in rows.splits]
        if "train" not in splits:
            raise DataInputError(f"--data {h.data}: no training rows (every row is in the val or test split)")
        self._check_labels(rows, splits)
        if "val" in splits:
            how = "validation split from --data"
        else:
            if not 0.0 < h.val_fraction < 1.0:
                raise DataInputError(
                    f"data.val_fraction={h.val_fraction}: --data {h.data} has no validation split, so this share of "
                    f"the training rows is held out to validate (and pick the best checkpoint); it must be > 0 and "
                    f"< 1 (e.g. 0.1), or give a validation split (a split column, or a dev.csv)")
            train = [i for i, s in enumerate(splits) if s == "train"]
            held = stratified_holdout([rows.labels[i] for i in train], h.val_fraction, h.seed)
            for k in held:
                splits[train[k]] = "val"
            how = (f"stratified holdout of {h.val_fraction:.0%} of the training rows "
                   f"(data.val_fraction, seed {h.seed}); --data has no validation split")
        return rows, splits, how

    def _check_labels(self, rows: LabelledRows, splits: list[str]) -> None:
        h = self.hparams
        counts = Counter(rows.labels)
        first = {}
        for i, label in enumerate(rows.labels):
            first.setdefault(label, i)
        n = len(rows)
        for label, c in sorted(counts.items(), key=lambda kv: (kv[1], first[kv[0]])):
            if c < 2:
                raise DataInputError(
                    f"label {label!r} occurs once ({rows.where(first[label])}); every class needs at least 2 "
                    f"sequences: a typo, or a class to remove? Labels seen: {_most_common(counts)}"
                )
            if h.min_class_share and n >= h.min_class_share_rows and c < h.min_class_share * n:
                raise DataInputError(
                    f"label {label!r} is on {c} of {n} rows ({c / n:.2%}, first at {rows.where(first[label])}), "
                    f"below data.min_class_share={h.min_class_share:g}: a typo? Labels seen: "
                    f"{_most_common(counts)}. Set data.min_class_share: 0 to keep rare classes"
                )
        if len(counts) < 2:
            raise DataInputError(f"--data {h.data}: classification needs at least 2 classes, found {sorted(counts)}")
        in_train = {rows.labels[i] for i, s in enumerate(splits) if s == "train"}
        for i, (label, split) in enumerate(zip(rows.labels, splits)):
            if label not in in_train:
                raise DataInputError(
                    f"label {label!r} of the {split} rows ({rows.where(i)}) never occurs in the training rows"
                )

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:  # read once: a Trainer calls setup again for fit, validate and test
            return
        h = self.hparams
        rows, splits, how = self._read()
        names = sorted(set(rows.labels))
        if all(n.lstrip("-").isdigit() for n in names):
            names = sorted(names, key=int)
        self.class_names = names
        index = {n: i for i, n in enumerate(names)}
        ids = [x[: h.max_len] for x in rows.ids] if h.max_len else rows.ids
        self.class_counts = {}
        for split in SPLITS:
            chosen = [i for i, s in enumerate(splits) if s == split]
            if not chosen:
                continue
            counts = Counter(rows.labels[i] for i in chosen)
            self.class_counts[split] = {n: counts.get(n, 0) for n in names}
            self.datasets[split] = SequenceDataset(
                [ids[i] for i in chosen], [index[rows.labels[i]] for i in chosen],
                rc_prob=h.rc_prob if split == "train" else 0.0,
            )
        sources: dict[str, dict[int, None]] = {}  # split -> file indices in first-seen order
        for f, s in zip(rows.file_index, splits):
            sources.setdefault(s, {})[f] = None
        self.description.update(validation=how, files={s: _file_list([rows.files[f] for f in sources[s]])
                                                       for s in SPLITS if s in sources})

    def majority_class(self) -> str:
        """The most frequent class of the training rows (first in class order on a tie)."""
        counts = self.class_counts["train"]
        return max(self.class_names, key=lambda n: (counts[n], -self.class_names.index(n)))


def _most_common(counts: Counter, k: int = 8) -> str:
    items = counts.most_common()
    text = ", ".join(f"{label!r} x{c}" for label, c in items[:k])
    return text + (f", ... ({len(items)} labels)" if len(items) > k else "")

