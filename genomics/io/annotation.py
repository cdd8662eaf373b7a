"""Per-base labels from GenBank or GFF3 features: intergenic, gene (non-coding part), CDS."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
from Bio.SeqRecord import SeqRecord

__all__ = ["INTERGENIC", "GENE", "CDS", "LABEL_NAMES", "GENE_TYPES", "labels_from_record", "labels_from_gff"]

INTERGENIC, GENE, CDS = 0, 1, 2
LABEL_NAMES = ("intergenic", "gene", "CDS")
#: Feature types painted as GENE (CDS is painted last, so it wins where both apply).
GENE_TYPES = frozenset({"gene", "mRNA", "tRNA", "rRNA", "ncRNA", "snRNA", "snoRNA", "misc_RNA", "exon", "intron",
                        "five_prime_UTR", "three_prime_UTR", "5'UTR", "3'UTR", "transcript"})


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


def labels_from_gff(path: str | Path, lengths: dict[str, int]) -> dict[str, np.ndarray]:
    """Labels per record from a GFF3 file (1-based inclusive coordinates); ``lengths`` gives record sizes."""
    spans: dict[str, list[tuple[str, int, int]]] = {name: [] for name in lengths}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.startswith("##FASTA"):
                break
            if not line.strip() or line.startswith("#"):
                continue
            cols = line.rstrip("\n").split("\t")
            if len(cols) < 5:
                raise ValueError(f"{path}:{lineno}: GFF needs 9 tab-separated columns, got {len(cols)}")
            if cols[0] in spans:
                spans[cols[0]].append((cols[2], int(cols[3]) - 1, int(cols[4])))
    return {name: _paint(np.zeros(n, dtype=np.uint8), spans[name]) for name, n in lengths.items()}
