"""Where a language model beats its Markov baseline: per-base classes, bins along the genome, a plot.

Both are scored on the same bases (``-log2 p`` per base). Each base gets classes:

* ``repeat``: covered by a 32-mer that occurs at least twice, on either strand, in the scored
  sequences together with the reference (the model's training region when given): rRNA
  operons, insertion sequences, REP elements and other copies. A copy in the training
  region is something a model can remember and a 6-base context cannot.
* ``unique``: every other scored base.
* ``CDS``, ``gene`` (its non-coding part) and ``intergenic``, when the genome is annotated
  (GenBank features; :mod:`genomics.io.annotation`).

:func:`class_margins` gives bits per base of model and baseline per class, and
:func:`bin_table` the same per bin of ``bin_size`` bases, which :func:`plot_bins` draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from genomics.data.tokenizers import NUM_BASES

__all__ = ["REPEAT_K", "ScoredRegion", "bin_table", "class_margins", "plot_bins", "repeat_masks"]

#: k-mer length of the repeat classes: 4**32 possible 32-mers, so a chance repeat in a few
#: megabases is practically impossible (and the codes fit in 64 bits).
REPEAT_K = 32


@dataclass
class ScoredRegion:
    """One scored stretch of a record.

    Attributes:
        record: record name.
        start: 0-based position of the first base in the record.
        model_bits: (L,) ``-log2 p`` of the model per base, NaN where unscored.
        markov_bits: (L,) the same for the baseline, NaN where unscored.
        classes: class name -> (L,) bool mask.
    """

    record: str
    start: int
    model_bits: np.ndarray
    markov_bits: np.ndarray
    classes: dict[str, np.ndarray]

    @property
    def scored(self) -> np.ndarray:
        """(L,) bool: bases that both scored."""
        return np.isfinite(self.model_bits) & np.isfinite(self.markov_bits)


def _kmer_codes(ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(canonical code of the k-mer starting at each position (L,) uint64, (L,) bool: all k
    positions are A/C/G/T). Canonical: the smaller of the k-mer's and its reverse complement's
    2-bit codes, so both strands of a copy give one code."""
    ids = np.asarray(ids).astype(np.int64)
    ids = np.where(ids >= 9, ids - 9, ids)  # soft-masked bases count as bases
    ok = ids < NUM_BASES
    bases = np.where(ok, ids, 0).astype(np.uint64)
    n = bases.size - k + 1
    if n <= 0:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=bool)
    fwd = np.zeros(n, dtype=np.uint64)
    rev = np.zeros(n, dtype=np.uint64)
    two = np.uint64(2)
    for j in range(k):
        part = bases[j : j + n]
        fwd = (fwd << two) | part
        rev = rev | ((np.uint64(3) - part) << np.uint64(2 * j))  # complement, read backwards
    bad = np.concatenate([[0], np.cumsum(~ok)])
    valid = (bad[k:] - bad[:n]) == 0
    return np.minimum(fwd, rev), valid


def repeat_masks(sequences: Sequence[np.ndarray], reference: Sequence[np.ndarray] = (),
                 k: int = REPEAT_K) -> list[np.ndarray]:
    """For each of ``sequences`` (token ids), an (L,) bool mask of the bases covered by a k-mer
    that occurs at least twice (either strand) in ``sequences`` and ``reference`` together."""
    if not 1 <= k <= 32:
        raise ValueError(f"k must be in [1, 32] (2-bit codes in 64 bits), got {k}")
    coded = [_kmer_codes(s, k) for s in (*sequences, *reference)]
    pool = np.concatenate([c[v] for c, v in coded]) if coded else np.zeros(0, dtype=np.uint64)
    kinds, counts = np.unique(pool, return_counts=True)
    repeated = kinds[counts >= 2]
    masks = []
    for seq, (code, valid) in zip(sequences, coded):
        starts = valid & np.isin(code, repeated)
        cover = np.zeros(len(seq) + 1, dtype=np.int64)  # +1 at a start, -1 k bases later
        idx = np.flatnonzero(starts)
        np.add.at(cover, idx, 1)
        np.add.at(cover, idx + k, -1)
        masks.append(np.cumsum(cover[:-1]) > 0)
    return masks


def class_margins(regions: Sequence[ScoredRegion]) -> list[dict[str, float | int | str]]:
    """Per class (``all`` first): bases, share of the scored bases, model and baseline bits per
    base, and the margin (model - baseline; negative: the model wins)."""
    names = ["all"] + sorted({c for r in regions for c in r.classes}, key=_class_order)
    total = sum(int(r.scored.sum()) for r in regions)
    rows = []
    for name in names:
        n, model, markov = 0, 0.0, 0.0
        for r in regions:
            if name != "all" and name not in r.classes:
                continue
            keep = r.scored & (r.classes[name] if name != "all" else True)
            n += int(keep.sum())
            model += float(r.model_bits[keep].sum())
            markov += float(r.markov_bits[keep].sum())
        if n == 0:
            continue
        rows.append({"class": name, "bases": n, "share": n / total, "bits_per_base": model / n,
                     "markov_bits_per_base": markov / n, "margin": (model - markov) / n})
    return rows


def _class_order(name: str) -> tuple[int, str]:
    order = ("repeat", "unique", "CDS", "gene", "intergenic")
    return (order.index(name) if name in order else len(order), name)


def bin_table(regions: Sequence[ScoredRegion], bin_size: int) -> list[dict[str, float | int | str]]:
    """One row per bin of ``bin_size`` bases of each region: record, start and end (0-based,
    end exclusive, in record coordinates), bases scored, both bits per base, the margin, and
    each class's share of the bin's scored bases."""
    if bin_size < 1:
        raise ValueError(f"bin_size must be >= 1, got {bin_size}")
    rows = []
    for r in regions:
        scored = r.scored
        for lo in range(0, scored.size, bin_size):
            hi = min(lo + bin_size, scored.size)
            keep = scored[lo:hi]
            n = int(keep.sum())
            row: dict[str, float | int | str] = {"record": r.record, "start": r.start + lo, "end": r.start + hi,
                                                 "bases_scored": n}
            model = float(r.model_bits[lo:hi][keep].sum()) / n if n else math.nan
            markov = float(r.markov_bits[lo:hi][keep].sum()) / n if n else math.nan
            row.update(bits_per_base=model, markov_bits_per_base=markov, margin=model - markov)
            for name in sorted(r.classes, key=_class_order):
                row[f"{name}_share"] = float(r.classes[name][lo:hi][keep].sum()) / n if n else math.nan
            rows.append(row)
    return rows


def plot_bins(rows: Sequence[Mapping[str, float | int | str]], margins: Sequence[Mapping[str, float | int | str]],
              path: str | Path, title: str) -> None:
    """Two panels: model and baseline bits per base along the scored bins (bins rich in
    repeats marked), and the margin per class as bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = np.array([int(r["end"]) - int(r["start"]) for r in rows])
    x = (np.cumsum(lengths) - lengths / 2) / 1e6  # bin centres, regions laid end to end
    model = np.array([float(r["bits_per_base"]) for r in rows])
    markov = np.array([float(r["markov_bits_per_base"]) for r in rows])
    fig, (ax, bars) = plt.subplots(2, 1, figsize=(11, 7), gridspec_kw={"height_ratios": [2, 1]})
    ax.plot(x, markov, lw=0.7, color="tab:gray", label="Markov baseline")
    ax.plot(x, model, lw=0.7, color="tab:blue", label="model")
    repeat = np.array([float(r.get("repeat_share", 0.0)) > 0.5 for r in rows])
    if repeat.any():
        ax.scatter(x[repeat], model[repeat], s=8, color="tab:red", zorder=3, label="bin mostly repeat (32-mer copies)")
    records = [str(r["record"]) for r in rows]
    for i in range(1, len(rows)):
        if records[i] != records[i - 1]:
            ax.axvline((x[i - 1] + x[i]) / 2, color="black", lw=0.5, ls=":")
    ax.set(xlabel=f"Mb scored ({int(lengths.max()):,}-base bins; dotted lines between records)",
           ylabel="bits per base", title=title)
    ax.legend(loc="lower left", fontsize=8)
    names = [str(m["class"]) for m in margins]
    values = [float(m["margin"]) for m in margins]
    bars.bar(names, values, color=["tab:green" if v < 0 else "tab:red" for v in values])
    for i, m in enumerate(margins):
        bars.annotate(f"{float(m['share']):.0%} of bases", (i, values[i]), ha="center", fontsize=8,
                      va="top" if values[i] < 0 else "bottom")
    bars.axhline(0, color="black", lw=0.5)
    bars.set(ylabel="model - baseline (bits/base)", title="margin by class (below 0: the model wins)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
