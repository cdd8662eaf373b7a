"""A genome converted once to a flat uint8 token file, memory-mapped lazily in each process.

Layout of one cache entry (a folder named after the file's SHA-256 and the options)::

    tokens.u8     all kept records' token ids, concatenated (NucleotideTokenizer ids)
    labels.u8     optional per-base annotation labels, same layout (GenBank input, or a GFF3 file)
    index.json    record names, offsets, lengths, skipped records, source path

Building writes into a temporary folder and renames it into place, so concurrent builders
(DDP ranks, several scripts) never see a half-written entry, and a changed FASTA has a new
checksum and therefore a new entry. :class:`GenomeArray` pickles without its memmap, so each
DataLoader worker opens its own read-only map on first access.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genomics.data.tokenizers import NucleotideTokenizer, SoftMask, is_unknown
from genomics.io.annotation import LABELS_VERSION, labels_from_gff, labels_from_record
from genomics.io.readers import (
    DataInputError, GenomeFormatError, SeqFormat, describe_bad_sequence, detect_format, iter_records,
    missing_input, open_binary,
)

__all__ = ["RecordInfo", "GenomeArray", "build_genome_cache", "file_checksum", "default_cache_dir"]

log = logging.getLogger(__name__)
_CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """``$LONGSEQ_CACHE_DIR`` or ``~/.cache/longseq/genomes``."""
    env = os.environ.get("LONGSEQ_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "longseq" / "genomes"


def file_checksum(path: str | Path, chunk: int = 1 << 22) -> str:
    """SHA-256 of the raw bytes of a file (or ``zip::member``)."""
    problem = missing_input(path)
    if problem is not None:
        raise FileNotFoundError(f"{path}: {problem}")
    digest = hashlib.sha256()
    text = str(path)
    if "::" in text:
        digest.update(text.split("::", 1)[1].encode())
        with open_binary(path) as fh:  # decompressed member bytes
            for block in iter(lambda: fh.read(chunk), b""):
                digest.update(block)
        return digest.hexdigest()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class RecordInfo:
    name: str
    offset: int
    length: int


class GenomeArray:
    """Read-only random access to a cached genome: ``window(record, start, end)`` -> uint8 ids."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        meta = json.loads((self.directory / "index.json").read_text())
        self.source: str = meta["source"]
        self.soft_mask: SoftMask = meta["soft_mask"]
        self.skipped: list[str] = meta["skipped"]
        self.has_labels: bool = meta["has_labels"]
        self.records = [RecordInfo(r["name"], r["offset"], r["length"]) for r in meta["records"]]
        self._by_name = {r.name: i for i, r in enumerate(self.records)}
        self.total = sum(r.length for r in self.records)
        self._tokens: np.ndarray | None = None
        self._labels: np.ndarray | None = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_tokens"] = state["_labels"] = None  # each worker maps the file itself
        return state

    def _map(self, name: str) -> np.ndarray:
        return np.memmap(self.directory / name, dtype=np.uint8, mode="r", shape=(self.total,))

    @property
    def tokens(self) -> np.ndarray:
        """``(total,)`` uint8 memmap of every record, concatenated."""
        if self._tokens is None:
            self._tokens = self._map("tokens.u8")
        return self._tokens

    @property
    def labels(self) -> np.ndarray:
        if not self.has_labels:
            raise ValueError(f"genome {self.source!r} was cached without labels (GenBank or gff= needed)")
        if self._labels is None:
            self._labels = self._map("labels.u8")
        return self._labels

    def record(self, name_or_index: str | int) -> RecordInfo:
        if isinstance(name_or_index, str):
            if name_or_index not in self._by_name:
                raise KeyError(f"no record {name_or_index!r} in {self.source!r}; records: {list(self._by_name)[:10]}")
            return self.records[self._by_name[name_or_index]]
        return self.records[name_or_index]

    def _slice(self, array: np.ndarray, record: str | int, start: int, end: int) -> np.ndarray:
        info = self.record(record)
        if not 0 <= start <= end <= info.length:
            raise ValueError(f"window [{start}, {end}) is outside record {info.name!r} of length {info.length}")
        return np.array(array[info.offset + start : info.offset + end])  # copy out of the map

    def window(self, record: str | int, start: int, end: int) -> np.ndarray:
        """``(end - start,)`` uint8 token ids of ``record[start:end]``."""
        return self._slice(self.tokens, record, start, end)

    def label_window(self, record: str | int, start: int, end: int) -> np.ndarray:
        return self._slice(self.labels, record, start, end)


def _cache_key(checksum: str, soft_mask: SoftMask, labels: str) -> str:
    return f"{checksum[:32]}-{soft_mask}{labels}-v{_CACHE_VERSION}"


def build_genome_cache(
    path: str | Path,
    cache_dir: str | Path | None = None,
    *,
    fmt: SeqFormat | None = None,
    soft_mask: SoftMask = "upper",
    labels: bool = False,
    gff: str | Path | None = None,
    skip_all_n: bool = True,
) -> GenomeArray:
    """Convert ``path`` once into a cached token file and return its :class:`GenomeArray`.

    Records made only of N are skipped with a warning when ``skip_all_n`` (documented
    behaviour), otherwise they raise. With ``labels=True`` per-base annotation labels are
    cached too, from the features of GenBank input or from the GFF3 file ``gff``.
    """
    fmt = fmt or detect_format(path)
    if labels and fmt != "genbank" and gff is None:
        raise DataInputError(f"{path}: per-base labels need GenBank input or a GFF3 file (--gff, data.gff); "
                         f"got {fmt} without one")
    if labels and gff is not None and (problem := missing_input(gff, "annotation")) is not None:
        raise DataInputError(f"--gff {gff}: {problem}")
    label_key = "" if not labels else f"-gff{file_checksum(gff)[:16]}" if gff is not None else "-labels"
    label_key += f"v{LABELS_VERSION}" if labels else ""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / _cache_key(file_checksum(path), soft_mask, label_key)
    if (target / "index.json").is_file():
        return GenomeArray(target)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=root))
    try:
        _write_entry(path, tmp, fmt, NucleotideTokenizer(soft_mask), labels, gff, skip_all_n)
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first: use its (identical) entry
            if not (target / "index.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("cached %s -> %s", path, target)
    return GenomeArray(target)


def _not_dna(record: object, name: str, exc: ValueError) -> str:
    return describe_bad_sequence(str(record.seq[:10_000]), name, str(exc))  # type: ignore[attr-defined]


def _write_entry(
    path: str | Path, folder: Path, fmt: SeqFormat, tok: NucleotideTokenizer, labels: bool,
    gff: str | Path | None, skip_all_n: bool,
) -> None:
    records, skipped, offset, seen = [], [], 0, set()
    with open(folder / "tokens.u8", "wb") as out, open(folder / "labels.u8", "wb") as lab:
        for record in iter_records(path, fmt):
            name = record.id or record.name
            if name in seen:
                raise GenomeFormatError(f"{str(path)!r}: duplicate record name {name!r}")
            seen.add(name)
            try:
                ids = tok.encode(bytes(record.seq), record=name)
            except ValueError as exc:  # not DNA: name the file, and protein as protein
                raise GenomeFormatError(f"{str(path)!r}: {_not_dna(record, name, exc)}") from None
            if ids.size == 0 or bool(is_unknown(ids).all()):
                if not skip_all_n:
                    raise GenomeFormatError(f"{str(path)!r}: record {name!r} is empty or all N")
                log.warning("skipping record %r of %s: empty or all N", name, path)
                skipped.append(name)
                continue
            out.write(ids.tobytes())
            if labels and gff is None:
                lab.write(labels_from_record(record).tobytes())
            records.append({"name": name, "offset": offset, "length": int(ids.size)})
            offset += int(ids.size)
        if labels and gff is not None:
            lengths = {r["name"]: r["length"] for r in records}
            for lab_ids in labels_from_gff(gff, lengths, genome=str(path)).values():
                lab.write(lab_ids.tobytes())  # dicts keep insertion order = record order
    if not records:
        raise GenomeFormatError(f"{str(path)!r}: every record is empty or all N ({skipped})")
    if not labels:
        (folder / "labels.u8").unlink()
    meta = {"version": _CACHE_VERSION, "source": str(path), "soft_mask": tok.soft_mask,
            "has_labels": labels, "records": records, "skipped": skipped}
    (folder / "index.json").write_text(json.dumps(meta, indent=1))
