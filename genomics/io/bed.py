"""BED intervals (0-based, half-open), e.g. train/valid/test splits in HyenaDNA's style."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["Interval", "read_bed"]


@dataclass(frozen=True, order=True)
class Interval:
    """Half-open interval ``[start, end)`` on a record (chromosome/contig); ``name`` is BED column 4."""

    record: str
    start: int
    end: int
    name: str = ""

    def __post_init__(self) -> None:
        if self.start < 0 or self.end <= self.start:
            raise ValueError(f"interval needs 0 <= start < end, got {self.record}:{self.start}-{self.end}")

    def __len__(self) -> int:
        return self.end - self.start

    def overlaps(self, other: "Interval") -> bool:
        return self.record == other.record and self.start < other.end and other.start < self.end


def read_bed(path: str | Path) -> list[Interval]:
    """Read BED3+ lines; ``track``/``browser``/``#`` lines are skipped. Errors name the line."""
    intervals = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            cols = line.rstrip("\n").split("\t") if "\t" in line else line.split()
            if len(cols) < 3:
                raise ValueError(f"{path}:{lineno}: BED needs at least 3 columns, got {len(cols)}")
            try:
                start, end = int(cols[1]), int(cols[2])
            except ValueError:
                raise ValueError(f"{path}:{lineno}: start/end must be integers, got {cols[1]!r}, {cols[2]!r}") from None
            try:
                intervals.append(Interval(cols[0], start, end, cols[3] if len(cols) > 3 else ""))
            except ValueError as exc:
                raise ValueError(f"{path}:{lineno}: {exc}") from None
    return intervals
