"""The sequences ``longseq-predict-dna`` reads: FASTA/FASTQ/GenBank (plain or gzip, through
:func:`genomics.io.iter_records`) or a CSV/TSV table (plain or gzip) with a sequence column.

A table's sequence column is ``sequence`` or ``seq`` (any case) unless named; ids come from
an ``id`` or ``name`` column, else the data row number (1 for the first sequence). Every
error names the file (and the row or record).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genomics.data.tokenizers import NucleotideTokenizer
from genomics.io.readers import GenomeFormatError, detect_format, iter_records, open_binary

__all__ = ["InputError", "NamedSequence", "read_sequences"]

_TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t"}
_SEQUENCE_COLUMNS = ("sequence", "seq")
_ID_COLUMNS = ("id", "name")


class InputError(ValueError):
    """A sequence file that cannot be read (the message names the file)."""


@dataclass(frozen=True)
class NamedSequence:
    """One input sequence: its id and token ids ``(L,)`` uint8."""

    id: str
    ids: np.ndarray


def _table_delimiter(path: Path) -> str | None:
    name = path.name.lower().removesuffix(".gz")
    return _TABLE_SUFFIXES.get(Path(name).suffix)


def _pick(columns: list[str], wanted: tuple[str, ...]) -> str | None:
    lower = {c.strip().lower(): c for c in columns}
    return next((lower[w] for w in wanted if w in lower), None)


def _read_table(path: Path, delimiter: str, tokenizer: NucleotideTokenizer,
                sequence_column: str | None) -> list[NamedSequence]:
    with open_binary(path) as binary:
        try:
            text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
            reader = csv.DictReader(text, delimiter=delimiter)
            columns = list(reader.fieldnames or [])
            seq_col = sequence_column if sequence_column in columns else _pick(columns, _SEQUENCE_COLUMNS)
            if seq_col is None:
                wanted = repr(sequence_column) if sequence_column else "'sequence' or 'seq'"
                raise InputError(f"{path}: no {wanted} column in the header {columns}")
            id_col = _pick(columns, _ID_COLUMNS)
            out = []
            for row_number, row in enumerate(reader, 1):
                seq = (row.get(seq_col) or "").strip()
                name = (row.get(id_col) or "").strip() if id_col else ""
                where = f"{path.name} line {reader.line_num}"
                if not seq:
                    raise InputError(f"{path}: empty sequence at line {reader.line_num}")
                out.append(NamedSequence(name or str(row_number), tokenizer.encode(seq, record=where)))
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not a UTF-8 text table ({exc.reason})") from None
    return out


def _check_suffix(path: Path) -> None:
    try:
        detect_format(path)
    except GenomeFormatError:
        raise InputError(f"{path}: unknown format (suffix {path.suffix!r}); give FASTA, FASTQ or GenBank "
                         f"(.fa, .fasta, .fna, .fq, .gb, ..., plain or .gz) or a CSV/TSV table (.csv, .tsv, plain "
                         f"or .gz) with a 'sequence' column") from None


def read_sequences(path: str | Path, tokenizer: NucleotideTokenizer, *,
                   sequence_column: str | None = None) -> list[NamedSequence]:
    """Every sequence of ``path``, in file order, encoded with ``tokenizer``.

    Raises :class:`InputError` naming the file for a missing or unreadable file, an unknown
    format, a table without a sequence column, an empty sequence, no sequence at all, or a
    character that is not a base (with its record and position).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    delimiter = _table_delimiter(path)
    try:
        if delimiter is not None:
            seqs = _read_table(path, delimiter, tokenizer, sequence_column)
        else:
            _check_suffix(path)
            seqs = [NamedSequence(rec.id, tokenizer.encode(bytes(rec.seq), record=f"{path.name}:{rec.id}"))
                    for rec in iter_records(path)]
    except GenomeFormatError as exc:  # its message names the file
        raise InputError(str(exc)) from None
    except InputError:
        raise
    except ValueError as exc:  # the tokenizer's message names the record and position
        raise InputError(f"{path}: {exc}") from None
    if not seqs:
        raise InputError(f"{path}: holds no sequence")
    empty = next((s.id for s in seqs if s.ids.size == 0), None)
    if empty is not None:
        raise InputError(f"{path}: sequence {empty!r} is empty")
    return seqs
