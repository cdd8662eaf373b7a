"""Labelled sequences from a user's files: a CSV/TSV table, a folder of split files, or a
folder of one FASTA per class.

Every row keeps where it came from (file and line, or file and record), so an error about
a row names it. The three layouts:

* a table (``.csv``, ``.tsv``, ``.txt``, optionally ``.gz`` or ``.bgz``): the delimiter is
  sniffed from the first lines (comma, tab or semicolon; comma or tab when sniffing fails), a UTF-8 BOM
  is dropped, and header names are matched without regard to case: the sequence column is
  one of :data:`SEQUENCE_COLUMNS`, the label column one of :data:`LABEL_COLUMNS` (other
  names: ``sequence_column=`` / ``label_column=``). An optional ``split`` column holds one
  of :data:`SPLIT_NAMES` per row. A table without a header is read when each row has two
  fields, one of them a DNA sequence.
* a folder of split files ``train.*``, ``dev.*`` / ``val.*`` / ``valid.*`` /
  ``validation.*`` and ``test.*`` (tables as above), or of split folders ``train/``,
  ``test/``, ... each laid out as a class folder (below).
* a class folder: one FASTA file per class (class = file name without its suffixes), or one
  subfolder per class holding FASTA or one-sequence text files. A file whose name carries a
  split word as a separate part (``pos_test.fa``, ``test_pos.fa``, ``neg.train.fa``) belongs
  to that split of the class without it (``pos``, ``neg``); it never becomes a class.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from genomics.data.tokenizers import NucleotideTokenizer
from genomics.io.readers import (
    FASTA_SUFFIXES, DataInputError, GenomeFormatError, iter_records, open_binary, strip_compression,
)

__all__ = [
    "DataInputError", "FASTA_SUFFIXES", "LABEL_COLUMNS", "LabelledRows", "SEQUENCE_COLUMNS", "SPLIT_NAMES",
    "TABLE_SUFFIXES", "find_column", "is_dna", "is_table", "open_table", "read_class_folder", "read_labelled",
    "read_table", "split_of_name",
]

log = logging.getLogger(__name__)

#: Split names accepted in a ``split`` column, in split file names and in FASTA file names
#: (case-insensitive), and the split each one means.
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val", "test": "test"}
#: Header names taken as the sequence column, then the label column (first match wins).
SEQUENCE_COLUMNS = ("sequence", "seq", "sequences", "dna", "dna_sequence", "nucleotide_sequence")
LABEL_COLUMNS = ("label", "labels", "class", "y", "target", "class_label", "category")
SPLIT_COLUMN = "split"
TABLE_SUFFIXES = (".csv", ".tsv", ".txt")
_SNIFF_LINES = 20
_SNIFF_CHARS = 1 << 16
_BASES = re.compile(r"^[ACGTUNacgtun]+$")


@dataclass
class LabelledRows:
    """Sequences (uint8 token ids), their labels and splits (``train``/``val``/``test``, or
    ``""`` where the input does not say), each with its origin: ``files[file_index[i]]`` and
    ``line[i]`` (the line of a table row or FASTA header; 0 = unknown)."""

    ids: list[np.ndarray] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    file_index: list[int] = field(default_factory=list)
    line: list[int] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    #: The layout read: "table", "split files" or "class folder".
    layout: str = ""

    def __len__(self) -> int:
        return len(self.ids)

    def where(self, i: int) -> str:
        """``file:line`` (or the file) of row ``i``."""
        f = self.files[self.file_index[i]]
        return f"{f}:{self.line[i]}" if self.line[i] else f

    def extend(self, other: "LabelledRows") -> None:
        base = len(self.files)
        self.files += other.files
        self.ids += other.ids
        self.labels += other.labels
        self.splits += other.splits
        self.file_index += [base + k for k in other.file_index]
        self.line += other.line

    def add(self, ids: np.ndarray, label: str, split: str, file: int, line: int) -> None:
        self.ids.append(ids)
        self.labels.append(label)
        self.splits.append(split)
        self.file_index.append(file)
        self.line.append(line)


def is_dna(value: str) -> bool:
    """Whether a field with no header name to go by reads as a DNA sequence: at least 8 of
    A, C, G, T, U and N in any case (a header word such as ``data`` or ``start`` is not)."""
    return len(value) >= 8 and _BASES.match(value) is not None


def _suffix(path: Path) -> str:
    return Path(strip_compression(path.name)).suffix.lower()


def is_table(path: str | Path) -> bool:
    """Whether ``path`` is named as a table (:data:`TABLE_SUFFIXES`, optionally ``.gz``)."""
    return _suffix(Path(path)) in TABLE_SUFFIXES


def split_of_name(stem: str) -> tuple[str, str | None]:
    """``(class, split)`` of a file stem: ``"pos_test"`` -> ``("pos", "test")``,
    ``"dev"`` -> ``("", "val")``, ``"neg"`` -> ``("neg", None)``. Parts are separated by
    ``_``, ``-`` or ``.``; a split word must be a whole part."""
    parts = re.split(r"([_.-])", stem)
    words = parts[::2]
    hits = [i for i, w in enumerate(words) if w.lower() in SPLIT_NAMES]
    if not hits:
        return stem, None
    i = hits[-1]
    kept = parts[: 2 * i - 1] + parts[2 * i + 1 :] if i > 0 else parts[2:]  # the word and one separator
    return "".join(kept).strip("_.-"), SPLIT_NAMES[words[i].lower()]


def _text_lines(path: Path) -> io.TextIOWrapper:
    try:
        binary = open_binary(path)
    except FileNotFoundError:
        raise DataInputError(f"{path}: no such file") from None
    return io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")


def open_table(path: str | Path) -> tuple[io.TextIOWrapper, str]:
    """``(text, delimiter)``: the table at ``path`` (plain or gzip) opened as UTF-8 text with
    any BOM dropped, positioned at its start, and the delimiter sniffed from its first lines.
    Raises :class:`DataInputError` naming the file when it is missing, empty or not UTF-8."""
    path = Path(path)
    # Whole chromosomes fit in one field; csv's default cap is 128 KiB.
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
    fh = _text_lines(path)
    try:
        sample = "".join(line for _, line in zip(range(_SNIFF_LINES), fh))[:_SNIFF_CHARS]
        fh.seek(0)
    except UnicodeDecodeError as exc:
        fh.close()
        raise DataInputError(f"{path}: not a UTF-8 text table ({exc.reason} at byte {exc.start})") from None
    if not sample.strip():
        fh.close()
        raise DataInputError(f"{path}: empty file (a table with a sequence column expected)")
    return fh, _delimiter(path, sample)


def _delimiter(path: Path, sample: str) -> str:
    lines = sample.splitlines()
    first = lines[0] if lines else ""
    candidates = ",\t;" if any(c in first for c in ",\t;") else ",\t; "
    try:
        found = csv.Sniffer().sniff("\n".join(lines[:_SNIFF_LINES]), delimiters=candidates).delimiter
        if found in first:
            return found
    except csv.Error:
        pass
    if "\t" in first:
        return "\t"
    if "," in first or _suffix(path) == ".csv":
        return ","
    return "\t" if _suffix(path) == ".tsv" else (" " if " " in first.strip() else ",")


def find_column(header: list[str], wanted: str | None, names: tuple[str, ...], flag: str, path: Path) -> int | None:
    """Index of the column named ``wanted`` (an error naming ``flag`` when absent), else of
    the first of ``names`` in ``header``, else None; names match in any case, BOM dropped."""
    lowered = [h.strip().lstrip("\ufeff").lower() for h in header]
    if wanted is not None:
        if wanted.strip().lower() not in lowered:
            raise DataInputError(f"{path}: no column {wanted!r} ({flag}); the header is {header}")
        return lowered.index(wanted.strip().lower())
    for name in names:
        if name in lowered:
            return lowered.index(name)
    return None


def read_table(path: str | Path, tokenizer: NucleotideTokenizer, *, sequence_column: str | None = None,
               label_column: str | None = None, split: str = "") -> LabelledRows:
    """Rows of a CSV/TSV table (see the module docstring). ``split`` is the split of every
    row of a split file (``train.csv``...); a ``split`` column then must agree with it."""
    path = Path(path)
    rows = LabelledRows(files=[str(path)], layout="table")
    fh, delimiter = open_table(path)
    with fh:
        reader = csv.reader(fh, delimiter=delimiter, skipinitialspace=delimiter == " ")
        try:
            header = next(reader)
        except UnicodeDecodeError as exc:
            raise DataInputError(f"{path}: not a UTF-8 text table ({exc.reason})") from None
        seq_col = find_column(header, sequence_column, SEQUENCE_COLUMNS, "--sequence-column", path)
        label_col = find_column(header, label_column, LABEL_COLUMNS, "--label-column", path)
        split_col = find_column(header, None, (SPLIT_COLUMN,), "", path)
        pending: list[tuple[int, list[str]]] = []
        if seq_col is None and label_col is None and sequence_column is None and label_column is None:
            # No header: two fields per row, one of them DNA
            dna = [i for i, v in enumerate(header) if is_dna(v.strip())]
            if len(header) == 2 and len(dna) == 1:
                seq_col, label_col = dna[0], 1 - dna[0]
                pending = [(reader.line_num, header)]
        if seq_col is None or label_col is None:
            missing = "sequence" if seq_col is None else "label"
            names = SEQUENCE_COLUMNS if seq_col is None else LABEL_COLUMNS
            flag = "--sequence-column" if seq_col is None else "--label-column"
            raise DataInputError(
                f"{path}: no {missing} column in the header {header} (delimiter {delimiter!r}); looked for "
                f"{', '.join(names)} in any case; name it with {flag} (data.{flag[2:].replace('-', '_')})"
            )
        need = max(seq_col, label_col, split_col if split_col is not None else 0) + 1

        def records() -> Iterator[tuple[int, list[str]]]:
            yield from pending
            for fields in reader:
                yield reader.line_num, fields

        try:
            for line, fields in records():
                if not fields or not any(f.strip() for f in fields):
                    continue
                if len(fields) < need:
                    raise DataInputError(f"{path}:{line}: {len(fields)} field(s), the header has {len(header)} "
                                         f"(delimiter {delimiter!r})")
                seq, label = fields[seq_col].strip(), fields[label_col].strip()
                if not seq:
                    raise DataInputError(f"{path}:{line}: empty sequence")
                if not label:
                    raise DataInputError(f"{path}:{line}: empty label")
                row_split = split
                if split_col is not None:
                    value = fields[split_col].strip()
                    if value.lower() not in SPLIT_NAMES:
                        raise DataInputError(
                            f"{path}:{line}: split value {value!r} is not one of "
                            f"{', '.join(SPLIT_NAMES)} (any case)"
                        )
                    row_split = SPLIT_NAMES[value.lower()]
                    if split and row_split != split:
                        raise DataInputError(f"{path}:{line}: split value {value!r} in a {split} file")
                rows.add(_encode(tokenizer, seq, f"{path}:{line}"), label, row_split, 0, line)
        except UnicodeDecodeError as exc:
            raise DataInputError(f"{path}: not a UTF-8 text table ({exc.reason})") from None
        except csv.Error as exc:
            raise DataInputError(f"{path}:{reader.line_num}: {exc}") from None
    if not rows.ids:
        raise DataInputError(f"{path}: no sequence rows after the header")
    return rows


def _encode(tokenizer: NucleotideTokenizer, seq: str | bytes, where: str) -> np.ndarray:
    try:
        return tokenizer.encode(seq, record=where)
    except DataInputError:
        raise
    except ValueError as exc:  # an invalid character: the message names the row and position
        raise DataInputError(str(exc)) from None


def _read_fasta(path: Path, tokenizer: NucleotideTokenizer, label: str, split: str) -> LabelledRows:
    rows = LabelledRows(files=[str(path)])
    header_lines = _fasta_header_lines(path)
    try:
        for k, rec in enumerate(iter_records(path, "fasta")):
            line = header_lines[k] if k < len(header_lines) else 0
            ids = _encode(tokenizer, bytes(rec.seq), f"{path}:{line} ({rec.id})")
            if ids.size == 0:
                raise DataInputError(f"{path}:{line}: record {rec.id!r} has no sequence")
            rows.add(ids, label, split, 0, line)
    except GenomeFormatError as exc:
        raise DataInputError(str(exc)) from None
    return rows


def _fasta_header_lines(path: Path) -> list[int]:
    with open_binary(path) as fh:
        return [n for n, line in enumerate(fh, 1) if line.startswith(b">")]


def _read_sequence_file(path: Path, tokenizer: NucleotideTokenizer, label: str, split: str) -> LabelledRows:
    """A FASTA file, or a text file holding one bare sequence (genomic-benchmarks style)."""
    with open_binary(path) as fh:
        head = fh.read(1)
    if head == b">":
        return _read_fasta(path, tokenizer, label, split)
    with open_binary(path) as fh:
        text = b"".join(fh.read().split())
    if not text:
        raise DataInputError(f"{path}: empty sequence file")
    rows = LabelledRows(files=[str(path)])
    rows.add(_encode(tokenizer, text, str(path)), label, split, 0, 1)
    return rows


def _is_fasta(path: Path) -> bool:
    return path.is_file() and _suffix(path) in FASTA_SUFFIXES


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith((".", "_")))


def read_class_folder(folder: str | Path, tokenizer: NucleotideTokenizer, split: str = "") -> LabelledRows:
    """One FASTA per class, or one subfolder per class (see the module docstring)."""
    folder = Path(folder)
    rows = LabelledRows(layout="class folder")
    entries = _visible(folder)
    fastas = [p for p in entries if _is_fasta(p)]
    subdirs = [p for p in entries if p.is_dir()]
    if not fastas and not subdirs:
        raise DataInputError(
            f"{folder}: no FASTA file ({', '.join(FASTA_SUFFIXES)}, optionally .gz), no class subfolder and no "
            f"train/dev/val/test table; found {[p.name for p in entries][:10]}"
        )
    for path in fastas:
        stem = strip_compression(path.name)[: -len(_suffix(path))]
        label, file_split = split_of_name(stem)
        if file_split is not None and split and file_split != split:
            raise DataInputError(f"{path}: a {file_split} file inside the {split} folder {folder}")
        if not label:
            raise DataInputError(
                f"{path}: the file name is a split name only; in a folder of one FASTA per class the file name "
                f"is the class (e.g. pos_{stem}.fa)"
            )
        rows.extend(_read_fasta(path, tokenizer, label, file_split or split))
    for sub in subdirs:
        files = [p for p in _visible(sub) if p.is_file()]
        if not files:
            raise DataInputError(f"{sub}: empty class folder")
        for path in files:
            rows.extend(_read_sequence_file(path, tokenizer, sub.name, split))
    return rows


def _split_entries(folder: Path) -> dict[str, list[Path]]:
    """Split name -> the ``train.csv``-like files or ``train/``-like folders directly in ``folder``."""
    found: dict[str, list[Path]] = {}
    for p in _visible(folder):
        name = strip_compression(p.name).lower()
        stem, dot, _ = name.partition(".")
        if stem not in SPLIT_NAMES:
            continue
        if p.is_dir() and not dot or p.is_file() and _suffix(p) in TABLE_SUFFIXES and name.count(".") == 1:
            found.setdefault(SPLIT_NAMES[stem], []).append(p)
    return found


def read_labelled(path: str | Path, tokenizer: NucleotideTokenizer, *, sequence_column: str | None = None,
                  label_column: str | None = None, what: str = "--data") -> LabelledRows:
    """Read any of the three layouts at ``path`` (``what`` names the flag in errors)."""
    path = Path(path)
    if path.is_file():
        if _suffix(path) in FASTA_SUFFIXES:
            raise DataInputError(
                f"{what} {path}: a single FASTA file has no labels; give a folder holding one FASTA per class"
            )
        return read_table(path, tokenizer, sequence_column=sequence_column, label_column=label_column)
    if not path.is_dir():
        raise DataInputError(f"{what} {path}: no such file or folder")
    entries = _split_entries(path)
    if entries:
        for split, found in entries.items():
            if len(found) > 1:
                raise DataInputError(
                    f"{what} {path}: {len(found)} entries for the {split} split: {[p.name for p in found]}; keep one"
                )
        if "train" not in entries:
            raise DataInputError(f"{what} {path}: split files {sorted(p.name for v in entries.values() for p in v)} "
                                 "but no train file (train.csv, train.tsv, train.txt or train/)")
        used = {p for found in entries.values() for p in found}
        ignored = [p.name for p in _visible(path) if p not in used]
        if ignored:
            log.warning("%s %s: reading the split files %s; ignoring %s", what, path,
                        sorted(p.name for p in used), ignored[:10])
        rows = LabelledRows(layout="split files")
        for split in ("train", "val", "test"):
            for entry in entries.get(split, []):
                if entry.is_dir():
                    rows.extend(read_class_folder(entry, tokenizer, split))
                else:
                    rows.extend(read_table(entry, tokenizer, sequence_column=sequence_column,
                                           label_column=label_column, split=split))
        return rows
    return read_class_folder(path, tokenizer)
