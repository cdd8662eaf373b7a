"""A sequence-classification task from annotated genomes: the bases upstream of each annotated
protein-coding start against windows drawn from elsewhere.

For every ``CDS`` feature, the ``length`` bases that end just before its first base, read on
the gene's strand (reverse-complemented for a minus-strand gene), are a ``gene_start`` row;
as many ``background`` rows per record are drawn at seeded random positions and strands,
overlapping no ``gene_start`` window of either strand. Windows that would leave the record or
hold an N are skipped, as are partial CDS features (a start outside the record) and ones that
wrap around a circular origin; a window shared by two annotated starts is kept once. Every row
carries the split of its source (by file), so records never straddle splits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np
from Bio.SeqFeature import ExactPosition
from Bio.SeqRecord import SeqRecord

__all__ = ["BACKGROUND", "GENE_START", "GeneStartRow", "gene_start_rows"]

log = logging.getLogger(__name__)

GENE_START, BACKGROUND = "gene_start", "background"
_COMPLEMENT = str.maketrans("ACGTacgtNn", "TGCAtgcaNn")
_TRIES = 50  # background draws per wanted row before giving up on a crowded record


@dataclass(frozen=True)
class GeneStartRow:
    """One labelled window: ``id`` is ``record:start-end(strand)`` (1-based, inclusive)."""

    id: str
    sequence: str
    label: str
    split: str


def _window(seq: str, start: int, end: int, strand: int) -> str:
    piece = seq[start:end]
    return piece.translate(_COMPLEMENT)[::-1] if strand < 0 else piece


def _row_id(record: str, start: int, end: int, strand: int) -> str:
    return f"{record}:{start + 1}-{end}({'+' if strand > 0 else '-'})"


def _clean(piece: str) -> bool:
    return set(piece.upper()) <= set("ACGT")


def _exact_start(loc: Any) -> bool:
    """Whether the location's first base (5' end on its strand) is a known position, and its
    parts run in reading order (a CDS that wraps around a circular origin does not)."""
    first = loc.start if loc.strand > 0 else loc.end
    if not isinstance(first, ExactPosition):
        return False  # a partial CDS ('<' or '>'): its start lies outside the record
    parts = [(int(p.start), int(p.end)) for p in loc.parts]
    ordered = parts if loc.strand > 0 else parts[::-1]
    return all(a[1] <= b[0] for a, b in zip(ordered, ordered[1:]))


def _starts(record: SeqRecord, length: int) -> list[tuple[int, int, int]]:
    """(start, end, strand) of the window before each CDS's first base, deduplicated, in order."""
    seen: set[tuple[int, int, int]] = set()
    for feature in record.features:
        if feature.type != "CDS" or feature.location is None or feature.location.strand not in (1, -1):
            continue
        loc = feature.location
        if not _exact_start(loc):
            continue
        if loc.strand > 0:
            span = (int(loc.start) - length, int(loc.start), 1)
        else:
            span = (int(loc.end), int(loc.end) + length, -1)
        if span[0] >= 0 and span[1] <= len(record):
            seen.add(span)
    return sorted(seen)


def gene_start_rows(records: Iterable[tuple[SeqRecord, str]], length: int = 200, seed: int = 0) -> Iterator[GeneStartRow]:
    """Rows from ``(record, split)`` pairs: a ``gene_start`` row per annotated CDS start (see the
    module), then as many ``background`` rows drawn from the rest of the record."""
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    rng = np.random.default_rng(seed)
    for record, split in records:
        seq = str(record.seq)
        name = record.id or record.name
        used = np.zeros(len(seq), dtype=bool)  # bases inside a window already written
        positives = 0
        for start, end, strand in _starts(record, length):
            piece = _window(seq, start, end, strand)
            if not _clean(piece):
                continue
            used[start:end] = True
            positives += 1
            yield GeneStartRow(_row_id(name, start, end, strand), piece, GENE_START, split)
        if positives == 0:
            log.warning("record %s has no usable CDS start: no rows from it", name)
            continue
        drawn = 0
        for _ in range(_TRIES * positives):
            if drawn == positives or len(seq) <= length:
                break
            start = int(rng.integers(0, len(seq) - length + 1))
            end, strand = start + length, int(rng.choice((-1, 1)))
            if used[start:end].any():
                continue  # overlaps a gene_start window (or an earlier background one)
            piece = _window(seq, start, end, strand)
            if not _clean(piece):
                continue
            used[start:end] = True
            drawn += 1
            yield GeneStartRow(_row_id(name, start, end, strand), piece, BACKGROUND, split)
        if drawn < positives:
            log.warning("record %s: %d background windows for %d gene starts (the rest is covered)", name, drawn,
                        positives)
