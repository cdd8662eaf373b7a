"""Per-base labels from GenBank or GFF3 (plain or gzip) features: intergenic, gene (non-coding part), CDS."""

from __future__ import annotations

import gzip
import io
import logging
import zlib
from pathlib import Path
from typing import Iterable

import numpy as np
from Bio.SeqRecord import SeqRecord

from genomics.io.readers import DataInputError, open_binary

__all__ = ["INTERGENIC", "GENE", "CDS", "LABEL_NAMES", "GENE_TYPES", "LABELS_VERSION", "labels_from_record",
           "labels_from_gff"]

log = logging.getLogger(__name__)

INTERGENIC, GENE, CDS = 0, 1, 2
LABEL_NAMES = ("intergenic", "gene", "CDS")
#: Feature types painted as GENE (CDS is painted last, so it wins where both apply).
#: Besides GenBank's, the RefSeq GFF3 types (pseudogene, lnc_RNA, tmRNA, ...) are genes too.
GENE_TYPES = frozenset({"gene", "mRNA", "tRNA", "rRNA", "ncRNA", "snRNA", "snoRNA", "misc_RNA", "exon", "intron",
                        "five_prime_UTR", "three_prime_UTR", "5'UTR", "3'UTR", "transcript",
                        "pseudogene", "lnc_RNA", "tmRNA", "antisense_RNA", "SRP_RNA", "RNase_P_RNA", "RNase_MRP_RNA",
                        "miRNA", "primary_transcript", "scRNA", "telomerase_RNA", "Y_RNA", "vault_RNA", "guide_RNA",
                        "C_gene_segment", "V_gene_segment", "D_gene_segment", "J_gene_segment"})
#: Bumped when the labels painted from the same features change (part of the cache key).
LABELS_VERSION = 2


def _paint(labels: np.ndarray, spans: Iterable[tuple[str, int, int]]) -> np.ndarray:
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


def labels_from_gff(path: str | Path, lengths: dict[str, int], *, genome: str = "") -> dict[str, np.ndarray]:
    """Labels per record from a GFF3 file, plain or gzip (1-based inclusive coordinates);
    ``lengths`` gives record sizes, ``genome`` names their file in messages.

    Column 1 (the sequence id) must match record names: when no id matches any record the
    error lists the first ids of both; records without any GFF line are logged as a warning.
    """
    spans: dict[str, list[tuple[str, int, int]]] = {name: [] for name in lengths}
    seen: dict[str, None] = {}  # GFF sequence ids in file order
    try:
        binary = open_binary(path)
    except FileNotFoundError:
        raise DataInputError(f"--gff {path}: no such file") from None
    with io.TextIOWrapper(binary, encoding="utf-8", errors="replace") as fh:
        try:
            for lineno, line in enumerate(fh, 1):
                if line.startswith("##FASTA"):
                    break
                if not line.strip() or line.startswith("#"):
                    continue
                cols = line.rstrip("\r\n").split("\t")
                if len(cols) < 5:
                    raise DataInputError(f"{path}:{lineno}: GFF needs 9 tab-separated columns, got {len(cols)}")
                seen.setdefault(cols[0], None)
                if cols[0] in spans:
                    try:
                        start, end = int(cols[3]) - 1, int(cols[4])
                    except ValueError:
                        raise DataInputError(f"{path}:{lineno}: GFF start/end must be integers, got "
                                         f"{cols[3]!r}, {cols[4]!r}") from None
                    spans[cols[0]].append((cols[2], start, end))
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise DataInputError(f"{path}: truncated or corrupt gzip stream ({exc})") from None
    matched = [name for name in lengths if name in seen]
    if lengths and not matched:
        where = f" of {genome}" if genome else ""
        raise DataInputError(
            f"--gff {path}: no GFF sequence id (column 1) matches a record name{where}. "
            f"GFF ids: {_first(list(seen))}; genome records: {_first(list(lengths))}"
        )
    missing = [name for name in lengths if name not in seen]
    if missing:
        log.warning("%s: no GFF line for %d of %d records (%s): they are labelled intergenic throughout",
                    path, len(missing), len(lengths), _first(missing))
    return {name: _paint(np.zeros(n, dtype=np.uint8), spans[name]) for name, n in lengths.items()}


def _first(names: list[str], k: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:k])
    return f"{shown}, ... ({len(names)} in all)" if len(names) > k else (shown or "none")
