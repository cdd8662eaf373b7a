"""The files ``longseq-predict-dna`` writes.

* classification: CSV ``id,length,p_<class>...,predicted`` (one row per sequence).
* annotation: BED4 ``id  start  end  label`` (0-based, end exclusive), one line per run of
  the same label other than the background class (class 0), in input order.
* language model: per-base bits ``-log2 p(x_i | x_<i)`` of every scored base (unscored: the
  first base of a sequence and N), as TSV ``id  position  bits`` (0-based position; CSV when
  the name ends in ``.csv``) or as bedGraph (``.bedgraph``/``.bg``: ``id  start  start+1
  bits`` under a ``track type=bedGraph`` line); beside it ``<out stem>.per_sequence.csv``:
  ``id,length,bases_scored,bits_per_base``.
* ``--embed``: ``.npy`` float32 (N, dim), row i the sequence on row i of
  ``<out stem>.ids.csv`` (``row,id,length``).

A text output whose name ends in ``.gz`` (``bits.tsv.gz``, ``preds.bed.gz``) is written
gzip-compressed, its format read from the suffix before ``.gz``; companions are plain CSV
named after the stem without either suffix (``bits.tsv.gz`` -> ``bits.per_sequence.csv``).
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path
from typing import IO, Sequence

import numpy as np

__all__ = ["BEDGRAPH_SUFFIXES", "OUTPUT_SUFFIXES", "companion", "format_suffix", "label_runs", "write_bed",
           "write_bits", "write_embeddings", "write_probabilities", "write_sequence_means"]

BEDGRAPH_SUFFIXES = (".bedgraph", ".bg")
#: The names ``--out`` may end in, per output kind (each also with ``.gz`` after it, except .npy).
OUTPUT_SUFFIXES = {
    "probabilities": (".csv", ".tsv"),
    "labels": (".bed",),
    "bits": (".tsv", ".csv", ".txt", *BEDGRAPH_SUFFIXES),
    "embedding": (".npy",),
}


def format_suffix(path: Path) -> str:
    """The suffix that names the format, lower case: ``bits.TSV.gz`` -> ``.tsv``."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def _open_text(path: Path) -> IO[str]:
    """``path`` for writing text, gzip-compressed when its name ends in ``.gz``."""
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "wt", newline="")
    return open(path, "w", newline="")


def companion(out: Path, tag: str) -> Path:
    """``preds.tsv`` (or ``preds.tsv.gz``) -> ``preds.<tag>.csv``: a file written beside ``out``."""
    name = out.name[:-3] if out.name.lower().endswith(".gz") else out.name
    stem = name[: -len(format_suffix(out))] if format_suffix(out) else name
    return out.with_name(f"{stem}.{tag}.csv")


def label_runs(labels: np.ndarray, background: int = 0) -> list[tuple[int, int, int]]:
    """``(start, end, label)`` of each maximal run of equal labels (L,), background runs left out."""
    labels = np.asarray(labels)
    if labels.size == 0:
        return []
    edges = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [labels.size]])
    return [(int(s), int(e), int(labels[s])) for s, e in zip(starts, ends) if labels[s] != background]


def write_probabilities(path: Path, ids: Sequence[str], lengths: Sequence[int], probs: np.ndarray,
                        class_names: Sequence[str]) -> None:
    """CSV (TSV for a ``.tsv`` name) of class probabilities ``probs`` (N, C) and the arg-max
    class per sequence."""
    with _open_text(path) as fh:
        w = csv.writer(fh, delimiter="\t" if format_suffix(path) == ".tsv" else ",")
        w.writerow(["id", "length", *(f"p_{c}" for c in class_names), "predicted"])
        for name, n, p in zip(ids, lengths, probs):
            w.writerow([name, n, *(f"{x:.6f}" for x in p), class_names[int(np.argmax(p))]])


def write_bed(path: Path, ids: Sequence[str], labels: Sequence[np.ndarray], class_names: Sequence[str]) -> int:
    """BED4 of the non-background label runs of every sequence; returns the number of intervals."""
    count = 0
    with _open_text(path) as fh:
        for name, lab in zip(ids, labels):
            runs = label_runs(lab)
            fh.writelines(f"{name}\t{s}\t{e}\t{class_names[k]}\n" for s, e, k in runs)
            count += len(runs)
    return count


def write_bits(path: Path, ids: Sequence[str], bits: Sequence[np.ndarray]) -> str:
    """Per-base bits of every scored base; returns the format written (``bedGraph``, ``CSV``, ``TSV``)."""
    suffix = format_suffix(path)
    graph = suffix in BEDGRAPH_SUFFIXES
    sep = "," if suffix == ".csv" else "\t"
    with _open_text(path) as fh:
        fh.write("track type=bedGraph name=bits_per_base\n" if graph else f"id{sep}position{sep}bits\n")
        for name, b in zip(ids, bits):
            pos = np.flatnonzero(np.isfinite(b))
            if graph:
                fh.writelines(f"{name}\t{p}\t{p + 1}\t{v:.4f}\n" for p, v in zip(pos.tolist(), b[pos].tolist()))
            else:
                fh.writelines(f"{name}{sep}{p}{sep}{v:.4f}\n" for p, v in zip(pos.tolist(), b[pos].tolist()))
    return "bedGraph" if graph else ("CSV" if sep == "," else "TSV")


def write_sequence_means(path: Path, ids: Sequence[str], bits: Sequence[np.ndarray]) -> list[tuple[int, float]]:
    """CSV ``id,length,bases_scored,bits_per_base``; returns (bases scored, mean bits) per sequence."""
    rows = []
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "length", "bases_scored", "bits_per_base"])
        for name, b in zip(ids, bits):
            finite = b[np.isfinite(b)]
            mean = float(finite.mean()) if finite.size else float("nan")
            rows.append((int(finite.size), mean))
            w.writerow([name, b.size, finite.size, f"{mean:.5f}"])
    return rows


def write_embeddings(path: Path, ids: Sequence[str], lengths: Sequence[int], matrix: np.ndarray) -> Path:
    """``matrix`` (N, dim) float32 to ``path`` (.npy) and the ids beside it; returns the ids file."""
    np.save(path, matrix.astype(np.float32))
    ids_path = companion(path, "ids")
    with open(ids_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["row", "id", "length"])
        w.writerows([i, name, n] for i, (name, n) in enumerate(zip(ids, lengths)))
    return ids_path
