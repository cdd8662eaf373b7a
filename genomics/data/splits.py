"""Train/val/test splits of genomes into disjoint regions.

A split is a list of :class:`Region` (a genome index and an :class:`Interval`). Three ways to
state it, checked by :func:`check_disjoint` so no base is in two splits:

* by fraction of every record (default: first 90% train, last 10% val),
* by record (chromosome) names,
* by a BED file whose 4th column names the split (``train``, ``val``/``valid``, ``test``);
  records the BED does not name are in no split (a warning names them with their lengths).

A split that cannot be made (a fraction out of range, a record or BED line naming no
record, overlapping regions) raises :class:`~genomics.io.readers.DataInputError` (a
``ValueError``) naming the setting at fault.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

from genomics.io.bed import Interval
from genomics.io.cache import GenomeArray
from genomics.io.readers import DataInputError

__all__ = ["Region", "SPLITS", "fraction_splits", "record_splits", "bed_splits", "check_disjoint"]

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
_BED_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
#: Record names listed in a message before "... (n in all)".
_NAMES_SHOWN = 5


def _some(names: Sequence[str], lengths: dict[str, int] | None = None) -> str:
    """The first few of ``names`` (with their lengths when given) and how many there are in all."""
    shown = [f"{n} ({lengths[n]:,} bases)" if lengths else n for n in names[:_NAMES_SHOWN]]
    more = f", ... ({len(names)} in all)" if len(names) > _NAMES_SHOWN else ""
    return ", ".join(shown) + more


@dataclass(frozen=True)
class Region:
    genome: int
    interval: Interval


def fraction_splits(
    genomes: Sequence[GenomeArray], val_fraction: float = 0.1, test_fraction: float = 0.0
) -> dict[str, list[Region]]:
    """Each record: first ``1 - val - test`` train, then val, then test (contiguous, disjoint)."""
    if not (0.0 <= val_fraction < 1 and 0.0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataInputError(
            f"data.val_fraction={val_fraction}, data.test_fraction={test_fraction}: each must be in [0, 1) and "
            f"their sum below 1"
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
            raise DataInputError(
                f"val_records/test_records name {name!r}, which is not a record; known: {sorted(known)[:10]}"
            )
    if set(val_records) & set(test_records):
        both = sorted(set(val_records) & set(test_records))
        raise DataInputError(f"records in both val_records and test_records: {both}")
    out: dict[str, list[Region]] = {s: [] for s in SPLITS}
    for g, genome in enumerate(genomes):
        for rec in genome.records:
            split = "val" if rec.name in val_records else "test" if rec.name in test_records else "train"
            out[split].append(Region(g, Interval(rec.name, 0, rec.length, split)))
    return out


def bed_splits(genomes: Sequence[GenomeArray], intervals: Sequence[Interval]) -> dict[str, list[Region]]:
    """Regions from BED intervals whose name column is the split; each record must be in one genome.

    A record no interval names is in no split: it is left out of training and evaluation, with
    a warning naming such records (the first few, with their lengths, and how many)."""
    where = {rec.name: (g, rec.length) for g, genome in enumerate(genomes) for rec in genome.records}
    out: dict[str, list[Region]] = {s: [] for s in SPLITS}
    for iv in intervals:
        split = _BED_NAMES.get(iv.name.lower())
        if split is None:
            raise DataInputError(f"BED split name must be one of {sorted(_BED_NAMES)}, got {iv.name!r} for "
                                 f"{iv.record}:{iv.start}-{iv.end}")
        if iv.record not in where:
            raise DataInputError(f"BED interval {iv.record}:{iv.start}-{iv.end} on unknown record {iv.record!r}; "
                                 f"the genome's records: {_some(list(where))}")
        g, length = where[iv.record]
        if iv.end > length:
            raise DataInputError(f"BED interval {iv.record}:{iv.start}-{iv.end} runs past the record end {length}")
        out[split].append(Region(g, iv))
    named = {iv.record for iv in intervals}
    unnamed = [name for name in where if name not in named]
    if unnamed:
        left_out = sum(where[n][1] for n in unnamed)
        log.warning("the split BED names no interval on %d of the %d records, which are in no split (%s bases left "
                    "out of training and validation): %s", len(unnamed), len(where), f"{left_out:,}",
                    _some(unnamed, {n: where[n][1] for n in unnamed}))
    return out


def check_disjoint(splits: dict[str, list[Region]]) -> None:
    """Raise :class:`DataInputError` (a ``ValueError``) if any two regions of different splits (or the same) overlap."""
    flat = sorted(
        ((r.genome, r.interval.record, r.interval.start, r.interval.end, s) for s, rs in splits.items() for r in rs)
    )
    for a, b in zip(flat, flat[1:]):
        if a[:2] == b[:2] and b[2] < a[3]:
            raise DataInputError(f"split regions overlap: {a[4]} {a[1]}:{a[2]}-{a[3]} and {b[4]} {b[1]}:{b[2]}-{b[3]}")
