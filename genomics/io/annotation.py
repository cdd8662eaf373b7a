"""Per-base labels from GenBank or GFF3 (plain or gzip) features: intergenic, gene (non-coding part), CDS.

GFF3 coordinates are 1-based and inclusive. Features are placed on their record as follows
(each case that skips or changes a feature is one warning with a count and first examples):

* a feature crossing the origin of a circular record is written, as GFF3 and NCBI do, with
  its end past the record length (``299501..300300`` on a 300,000-base record): the part
  past the end is wrapped to the start of the record (``1..300``), as GenBank's
  ``join(299501..300000,1..300)`` is. A record is circular when its ``region`` line says
  ``Is_circular=true``. When the GFF has no ``region`` line for the record, nothing says
  otherwise and that notation only means origin-crossing, so such a feature is wrapped too,
  with a warning; when the ``region`` line does not say circular, the record is linear and
  the feature is cut at the record end, with a warning;
* a feature that starts past the record end, or whose end is before its start, is skipped,
  with a warning; a start before base 1 is cut there, with a warning;
* features on sequence ids that are not records of the genome are skipped, with one warning
  naming those ids and their feature counts (when no id matches any record, that is an error).
"""

from __future__ import annotations

import gzip
import io
import logging
import zlib
from collections import Counter
from pathlib import Path
from typing import Iterable

import numpy as np
from Bio.SeqRecord import SeqRecord

from genomics.io.readers import DataInputError, missing_input, open_binary

__all__ = ["INTERGENIC", "GENE", "CDS", "LABEL_NAMES", "GENE_TYPES", "LABELS_VERSION", "labels_from_record",
           "labels_from_gff"]

log = logging.getLogger(__name__)

INTERGENIC, GENE, CDS = 0, 1, 2
LABEL_NAMES = ("intergenic", "gene", "CDS")
#: Feature types painted as GENE over their whole span, introns included (CDS is painted
#: last, so it wins where both apply). Besides GenBank's, the RefSeq GFF3 types
#: (pseudogene, lnc_RNA, tmRNA, ...) and Ensembl's ``ncRNA_gene`` are genes too.
GENE_TYPES = frozenset({"gene", "mRNA", "tRNA", "rRNA", "ncRNA", "snRNA", "snoRNA", "misc_RNA", "exon", "intron",
                        "five_prime_UTR", "three_prime_UTR", "5'UTR", "3'UTR", "transcript",
                        "pseudogene", "lnc_RNA", "tmRNA", "antisense_RNA", "SRP_RNA", "RNase_P_RNA", "RNase_MRP_RNA",
                        "miRNA", "primary_transcript", "scRNA", "telomerase_RNA", "Y_RNA", "vault_RNA", "guide_RNA",
                        "C_gene_segment", "V_gene_segment", "D_gene_segment", "J_gene_segment", "ncRNA_gene"})
#: Bumped when the labels painted from the same features change (part of the cache key).
LABELS_VERSION = 3
_EXAMPLES = 3  # features quoted in a warning


def _paint(labels: np.ndarray, spans: Iterable[tuple[str, int, int]]) -> np.ndarray:
    """Paint 0-based half-open ``(type, start, end)`` spans; the GFF reader has placed them
    inside the record already, the clip here only guards GenBank locations."""
    spans = list(spans)
    for wanted, value in ((GENE_TYPES, GENE), ({"CDS"}, CDS)):
        for ftype, start, end in spans:
            if ftype in wanted:
                labels[max(start, 0) : min(end, labels.shape[0])] = value
    return labels


def labels_from_record(record: SeqRecord) -> np.ndarray:
    """``(len(record),)`` uint8 labels from a biopython record's features (joins give one span per part)."""
    spans = []
    for feature in record.features:
        for part in feature.location.parts if feature.location is not None else ():
            spans.append((feature.type, int(part.start), int(part.end)))
    return _paint(np.zeros(len(record), dtype=np.uint8), spans)


class _Placement:
    """GFF features placed on records: spans per record, and what was skipped or changed (for the warnings)."""

    def __init__(self, lengths: dict[str, int]) -> None:
        self.spans: dict[str, list[tuple[str, int, int]]] = {name: [] for name in lengths}
        self.cases: dict[str, list[str]] = {"reversed": [], "past_end": [], "before_start": [], "cut": [],
                                            "wrapped_unknown": []}

    def add(self, lineno: int, ftype: str, seqid: str, start: int, end: int, length: int,
            circular: bool | None) -> None:
        """Place one feature (1-based inclusive ``start..end``); ``circular`` None = not said."""
        shown = f"line {lineno} {ftype} {seqid}:{start}..{end}"
        if end < start:
            self.cases["reversed"].append(shown)
            return
        if start > length:
            self.cases["past_end"].append(f"{shown} (record {length:,} bases)")
            return
        if start < 1:  # GFF3 counts from 1: a start of 0 or below lies before the record
            self.cases["before_start"].append(shown)
            start = 1
        spans = self.spans[seqid]
        if end <= length:
            spans.append((ftype, start - 1, end))
            return
        if circular is False:
            self.cases["cut"].append(f"{shown} (record {length:,} bases)")
            spans.append((ftype, start - 1, length))
            return
        if circular is None:
            self.cases["wrapped_unknown"].append(f"{shown} (record {length:,} bases)")
        spans.append((ftype, start - 1, length))
        spans.append((ftype, 0, min(end - length, length)))  # the part past the origin

    def warn(self, path: str | Path) -> None:
        reasons = {
            "reversed": "have their end before their start and are skipped (GFF3 writes a feature crossing the "
                        "origin of a circular record with its end past the record length)",
            "past_end": "start past the end of their record and are skipped",
            "before_start": "start before base 1 (GFF3 counts from 1) and are cut at the record start",
            "cut": "run past the end of a record whose region line does not say Is_circular=true, and are cut at "
                   "the record end",
            "wrapped_unknown": "run past the end of a record that no region line marks circular or linear; read as "
                               "crossing the origin (GFF3's notation for it), the part past the end is wrapped to "
                               "the record start",
        }
        for case, found in self.cases.items():
            if found:
                log.warning("%s: %d feature(s) %s: %s", path, len(found), reasons[case], _examples(found))


def _examples(found: list[str]) -> str:
    return "; ".join(found[:_EXAMPLES]) + ("; ..." if len(found) > _EXAMPLES else "")


def _circular(attributes: str) -> bool:
    """Whether a ``region`` line's attributes (column 9) say ``Is_circular=true``."""
    for pair in attributes.split(";"):
        key, _, value = pair.strip().partition("=")
        if key == "Is_circular":
            return value.strip().lower() == "true"
    return False


def labels_from_gff(path: str | Path, lengths: dict[str, int], *, genome: str = "") -> dict[str, np.ndarray]:
    """Labels per record from a GFF3 file, plain or gzip, or a zip member (``archive.zip::member``);
    ``lengths`` gives record sizes, ``genome`` names their file in messages.

    Column 1 (the sequence id) must match record names: when no id matches any record the
    error lists the first ids of both; ids that match no record, and records without any GFF
    line, are warnings. Origin-crossing, overlong and reversed features: see the module docstring.
    """
    problem = missing_input(path, "annotation")
    if problem is not None:
        raise DataInputError(f"--gff {path}: {problem}")
    features: list[tuple[int, str, str, int, int]] = []  # (line, type, seqid, start, end) on known seqids
    per_seqid: Counter[str] = Counter()  # feature lines per GFF sequence id, in file order
    circular: dict[str, bool] = {}  # seqid -> what its region line says
    with io.TextIOWrapper(open_binary(path, kind="annotation"), encoding="utf-8", errors="replace") as fh:
        try:
            for lineno, line in enumerate(fh, 1):
                if line.startswith("##FASTA"):
                    break
                if not line.strip() or line.startswith("#"):
                    continue
                cols = line.rstrip("\r\n").split("\t")
                if len(cols) < 5:
                    hint = (" (this looks like a sequence file: FASTA or GenBank; the GFF3 annotation goes "
                            "with --gff)" if line.startswith((">", "LOCUS")) else "")
                    raise DataInputError(f"{path}:{lineno}: GFF needs 9 tab-separated columns, got {len(cols)}{hint}")
                seqid, ftype = cols[0], cols[2]
                per_seqid[seqid] += 1
                if seqid not in lengths:
                    continue
                try:
                    start, end = int(cols[3]), int(cols[4])
                except ValueError:
                    raise DataInputError(f"{path}:{lineno}: GFF start/end must be integers, got "
                                         f"{cols[3]!r}, {cols[4]!r}") from None
                if ftype == "region" and len(cols) >= 9:
                    circular[seqid] = circular.get(seqid, False) or _circular(cols[8])
                features.append((lineno, ftype, seqid, start, end))
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise DataInputError(f"{path}: truncated or corrupt gzip stream ({exc})") from None
    matched = [name for name in lengths if name in per_seqid]
    if lengths and not matched:
        where = f" of {genome}" if genome else ""
        raise DataInputError(
            f"--gff {path}: no GFF sequence id (column 1) matches a record name{where}. "
            f"GFF ids: {_first(list(per_seqid))}; genome records: {_first(list(lengths))}"
        )
    unknown = [seqid for seqid in per_seqid if seqid not in lengths]
    if unknown:
        where = f" of {genome}" if genome else ""
        shown = ", ".join(f"{s!r} ({per_seqid[s]:,} feature{'' if per_seqid[s] == 1 else 's'})" for s in unknown[:5])
        more = f", ... ({len(unknown)} ids in all)" if len(unknown) > 5 else ""
        log.warning("%s: %d GFF sequence id(s) name no record%s, their features are skipped: %s%s",
                    path, len(unknown), where, shown, more)
    missing = [name for name in lengths if name not in per_seqid]
    if missing:
        log.warning("%s: no GFF line for %d of %d records (%s): they are labelled intergenic throughout",
                    path, len(missing), len(lengths), _first(missing))
    placed = _Placement(lengths)
    for lineno, ftype, seqid, start, end in features:
        placed.add(lineno, ftype, seqid, start, end, lengths[seqid], circular.get(seqid))
    placed.warn(path)
    return {name: _paint(np.zeros(n, dtype=np.uint8), placed.spans[name]) for name, n in lengths.items()}


def _first(names: list[str], k: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:k])
    return f"{shown}, ... ({len(names)} in all)" if len(names) > k else (shown or "none")
