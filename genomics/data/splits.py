"""Train/val/test splits of genomes into disjoint regions.

A split is a list of :class:`Region` (a genome index and an :class:`Interval`). Three ways to
state it, checked by :func:`check_disjoint` so no base is in two splits:

* by fraction of every record (default: first 90% train, last 10% val),
* by record (chromosome) names,
* by a BED file whose 4th column names the split (``train``, ``val``/``valid``, ``test``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from genomics.io.bed import Interval
from genomics.io.cache import GenomeArray

__all__ = ["Region", "SPLITS", "fraction_splits", "record_splits", "bed_splits", "check_disjoint"]

SPLITS = ("train", "val", "test")
_BED_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


@dataclass(frozen=True)
class Region:
    genome: int
    interval: Interval


def fraction_splits(
    genomes: Sequence[GenomeArray], val_fraction: float = 0.1, test_fraction: float = 0.0
) -> dict[str, list[Region]]:
    """Each record: first ``1 - val - test`` train, then val, then test (contiguous, disjoint)."""
    if not (0.0 <= val_fraction < 1 and 0.0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction and test_fraction must be in [0, 1) with sum < 1, got {val_fraction}, {test_fraction}"
        )
    out: dict[str, list[Region]] = {s: [] for s in SPLITS}
    for g, genome in enumerate(genomes):
        for rec in genome.records:
            cut1 = round(rec.length * (1 - val_fraction - test_fraction))
            cut2 = round(rec.length * (1 - test_fraction))
            for split, lo, hi in (("train", 0, cut1), ("val", cut1, cut2), ("test", cut2, rec.length)):
                if hi > lo:
                    out[split].append(Region(g, Interval(rec.name, lo, hi, split)))
    return out


def record_splits(
    genomes: Sequence[GenomeArray], val_records: Sequence[str] = (), test_records: Sequence[str] = ()
) -> dict[str, list[Region]]:
    """Whole records: named ones go to val/test, every other record to train."""
    known = {rec.name for genome in genomes for rec in genome.records}
    for name in (*val_records, *test_records):
        if name not in known:
            raise ValueError(
                f"val_records/test_records name {name!r}, which is not a record; known: {sorted(known)[:10]}"
            )
    if set(val_records) & set(test_records):
        both = sorted(set(val_records) & set(test_records))
        raise ValueError(f"records in both val_records and test_records: {both}")
    out: dict[str, list[Region]] = {s: [] for s in SPLITS}
    for g, genome in enumerate(genomes):
        for rec in genome.records:
            split = "val" if rec.name in val_records else "test" if rec.name in test_records else "train"
            out[split].append(Region(g, Interval(rec.name, 0, rec.length, split)))
    return out


def bed_splits(genomes: Sequence[GenomeArray], intervals: Sequence[Interval]) -> dict[str, list[Region]]:
    """Regions from BED intervals whose name column is the split; each record must be in one genome."""
    where = {rec.name: (g, rec.length) for g, genome in enumerate(genomes) for rec in genome.records}
    out: dict[str, list[Region]] = {s: [] for s in SPLITS}
    for iv in intervals:
        split = _BED_NAMES.get(iv.name.lower())
        if split is None:
            raise ValueError(f"BED split name must be one of {sorted(_BED_NAMES)}, got {iv.name!r} for {iv}")
        if iv.record not in where:
            raise ValueError(f"BED interval on unknown record {iv.record!r}")
        g, length = where[iv.record]
        if iv.end > length:
            raise ValueError(f"BED interval {iv.record}:{iv.start}-{iv.end} runs past the record end {length}")
        out[split].append(Region(g, iv))
    return out


def check_disjoint(splits: dict[str, list[Region]]) -> None:
    """Raise ``ValueError`` if any two regions of different splits (or the same) overlap."""
    flat = sorted(
        ((r.genome, r.interval.record, r.interval.start, r.interval.end, s) for s, rs in splits.items() for r in rs)
    )
    for a, b in zip(flat, flat[1:]):
        if a[:2] == b[:2] and b[2] < a[3]:
            raise ValueError(f"split regions overlap: {a[4]} {a[1]}:{a[2]}-{a[3]} and {b[4]} {b[1]}:{b[2]}-{b[3]}")
