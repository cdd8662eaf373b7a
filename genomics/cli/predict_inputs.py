"""The sequences ``longseq-predict-dna`` reads: FASTA/FASTQ/GenBank (plain or gzip, through
:func:`genomics.io.iter_records`) or a CSV/TSV/TXT table (plain or gzip) read as training
reads one (delimiter sniffed, BOM dropped).

A table's sequence column is one of :data:`genomics.io.labelled.SEQUENCE_COLUMNS` (any case)
unless named; other columns (a label, say) are ignored; ids come from an ``id`` or ``name``
column, else the data row number (1 for the first sequence). A table without a header, one
sequence per line (and perhaps other fields), is read too. Every error names the file (and
the row or record).
"""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genomics.data.tokenizers import NucleotideTokenizer
from genomics.io.labelled import SEQUENCE_COLUMNS, find_column, is_dna, is_table, open_table
from genomics.io.readers import DataInputError, GenomeFormatError, detect_format, iter_records, sniff_format

__all__ = ["InputError", "NamedSequence", "read_sequences"]

_ID_COLUMNS = ("id", "name")


class InputError(ValueError):
    """A sequence file that cannot be read (the message names the file)."""


@dataclass(frozen=True)
class NamedSequence:
    """One input sequence: its id and token ids ``(L,)`` uint8."""

    id: str
    ids: np.ndarray


def _read_table(path: Path, tokenizer: NucleotideTokenizer, sequence_column: str | None) -> list[NamedSequence]:
    """The rows of a table read as training reads one (delimiter sniffed, BOM dropped,
    header names in any case), with or without a label column."""
    try:
        fh, delimiter = open_table(path)
    except DataInputError as exc:
        raise InputError(str(exc)) from None
    with fh:
        reader = csv.reader(fh, delimiter=delimiter, skipinitialspace=delimiter == " ")
        try:
            header = next(reader)
            seq_col = find_column(header, sequence_column, SEQUENCE_COLUMNS, "--sequence-column", path)
            pending: list[list[str]] = []
            if seq_col is None and sequence_column is None:
                # No header: the one field that is DNA is the sequence
                dna = [i for i, v in enumerate(header) if is_dna(v.strip())]
                if len(dna) == 1:
                    seq_col, pending = dna[0], [header]
            if seq_col is None:
                raise InputError(f"{path}: no sequence column in the header {header} (delimiter {delimiter!r}); "
                                 f"looked for {', '.join(SEQUENCE_COLUMNS)} in any case; name it with "
                                 f"--sequence-column")
            id_col = None if pending else find_column(header, None, _ID_COLUMNS, "", path)
            out = []
            for fields in itertools.chain(pending, reader):
                if not fields or not any(f.strip() for f in fields):
                    continue
                line = reader.line_num
                if len(fields) <= max(seq_col, id_col or 0):
                    raise InputError(f"{path}:{line}: {len(fields)} field(s), the header has {len(header)} "
                                     f"(delimiter {delimiter!r})")
                seq = fields[seq_col].strip()
                if not seq:
                    raise InputError(f"{path}:{line}: empty sequence")
                name = fields[id_col].strip() if id_col is not None else ""
                where = f"{path.name}:{line}"
                out.append(NamedSequence(name or str(len(out) + 1), tokenizer.encode(seq, record=where)))
        except DataInputError as exc:
            raise InputError(str(exc)) from None
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not a UTF-8 text table ({exc.reason})") from None
        except csv.Error as exc:
            raise InputError(f"{path}:{reader.line_num}: {exc}") from None
    return out


def _check_suffix(path: Path) -> None:
    try:
        detect_format(path)
    except GenomeFormatError:
        if sniff_format(path) == "gff":
            raise InputError(f"{path}: a GFF3 annotation file, not sequences; give the sequences as FASTA, "
                             f"FASTQ, GenBank or a table with a sequence column") from None
        raise InputError(f"{path}: unknown format (suffix {path.suffix!r}); give FASTA, FASTQ or GenBank "
                         f"(.fa, .fasta, .fna, .fq, .gb, ..., plain or .gz) or a table (.csv, .tsv, .txt, "
                         f"plain or .gz) with a sequence column") from None


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
    try:
        if is_table(path):
            seqs = _read_table(path, tokenizer, sequence_column)
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
