"""DNA tokenizers: single-nucleotide and k-mer, encoded through one byte lookup table.

Token ids of :class:`NucleotideTokenizer` (the one table of this package)::

    0 A   1 C   2 G   3 T   4 N   5 [PAD]   6 [MASK]   7 [SEP]   8 [CLS]
    9 a  10 c  11 g  12 t  13 n            (only with ``soft_mask="keep"``)

Bases come first so that the complement of a base ``b < 4`` is ``3 - b`` and an order-k
Markov model can use the ids directly as base-4 digits. Encoding maps the raw bytes of a
sequence through a 256-entry table (``numpy`` fancy indexing), never a Python loop per base.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "A", "C", "G", "T", "N", "PAD", "MASK", "SEP", "CLS", "NUM_BASES",
    "SoftMask", "NucleotideTokenizer", "KmerTokenizer", "reverse_complement", "reverse_complement_rows",
    "strand_flip_index", "is_unknown",
]

A, C, G, T, N = 0, 1, 2, 3, 4
PAD, MASK, SEP, CLS = 5, 6, 7, 8
NUM_BASES = 4
_LOWER_OFFSET = 9  # id of 'a'; lowercase ids are upper id + 9 for A, C, G, T, N
_INVALID = 255
#: IUPAC ambiguity codes (and RNA's U, read as T) that are not A, C, G, T.
IUPAC_AMBIGUOUS = "RYSWKMBDHVN"

SoftMask = Literal["upper", "keep"]


def is_unknown(ids: np.ndarray) -> np.ndarray:
    """Boolean array: where ``ids`` is N or soft-masked n."""
    return (ids == N) | (ids == N + _LOWER_OFFSET)


def _build_tables(soft_mask: SoftMask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(byte -> id table (256,), id -> byte table (vocab,), id -> complement id (vocab,))."""
    lut = np.full(256, _INVALID, dtype=np.uint8)
    for i, base in enumerate("ACGT"):
        lut[ord(base)] = i
    lut[ord("U")] = T
    for code in IUPAC_AMBIGUOUS:
        lut[ord(code)] = N
    upper_ids = lut.copy()
    for byte in range(ord("a"), ord("z") + 1):
        up = upper_ids[byte - 32]
        if up == _INVALID:
            continue
        lut[byte] = up if soft_mask == "upper" else up + _LOWER_OFFSET
    vocab = 14 if soft_mask == "keep" else 9
    symbols = b"ACGTN" + b"-*|^" + (b"acgtn" if soft_mask == "keep" else b"")
    inverse = np.frombuffer(symbols, dtype=np.uint8).copy()
    comp = np.arange(vocab, dtype=np.int64)
    comp[:4] = [T, G, C, A]
    if soft_mask == "keep":
        comp[_LOWER_OFFSET : _LOWER_OFFSET + 4] = np.array([T, G, C, A]) + _LOWER_OFFSET
    return lut, inverse, comp


@dataclass(frozen=True)
class NucleotideTokenizer:
    """Single-nucleotide tokenizer.

    Args:
        soft_mask: ``"upper"`` folds lowercase (soft-masked repeats) into uppercase ids;
            ``"keep"`` gives lowercase bases their own ids (9-13) so the mask survives.
    """

    soft_mask: SoftMask = "upper"
    _lut: np.ndarray = field(init=False, repr=False, compare=False)
    _inverse: np.ndarray = field(init=False, repr=False, compare=False)
    _complement: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.soft_mask not in ("upper", "keep"):
            raise ValueError(f"soft_mask must be 'upper' or 'keep', got {self.soft_mask!r}")
        lut, inverse, comp = _build_tables(self.soft_mask)
        object.__setattr__(self, "_lut", lut)
        object.__setattr__(self, "_inverse", inverse)
        object.__setattr__(self, "_complement", comp)

    @property
    def vocab_size(self) -> int:
        return len(self._inverse)

    @property
    def complement_table(self) -> np.ndarray:
        """``(vocab_size,)`` int64: id -> id of the complementary base (specials map to themselves)."""
        return self._complement

    def encode(self, seq: str | bytes | np.ndarray, record: str = "<sequence>", offset: int = 0) -> np.ndarray:
        """Sequence -> ``(L,)`` uint8 ids. Raises ``ValueError`` naming the record and the
        1-based place (``offset`` + index + 1) of the first character that is not a base or
        IUPAC code."""
        if isinstance(seq, str):
            try:
                raw = np.frombuffer(seq.encode("ascii"), dtype=np.uint8)
            except UnicodeEncodeError as exc:
                raise ValueError(f"record {record!r}: non-ASCII character {seq[exc.start]!r} at base "
                                 f"{offset + exc.start + 1} (1-based)") from None
        elif isinstance(seq, (bytes, bytearray, memoryview)):
            raw = np.frombuffer(seq, dtype=np.uint8)
        else:
            raw = np.asarray(seq, dtype=np.uint8)
        ids = self._lut[raw]
        bad = np.flatnonzero(ids == _INVALID)
        if bad.size:
            pos = int(bad[0])
            raise ValueError(
                f"record {record!r}: invalid nucleotide {chr(raw[pos])!r} at base {offset + pos + 1} (1-based) "
                f"(allowed: ACGTU, IUPAC codes {IUPAC_AMBIGUOUS}, lowercase)"
            )
        return ids

    def decode(self, ids: np.ndarray | Tensor) -> str:
        """``(L,)`` ids -> string (specials as ``- * | ^`` for PAD, MASK, SEP, CLS)."""
        arr = ids.detach().cpu().numpy() if isinstance(ids, Tensor) else np.asarray(ids)
        if arr.size and (arr.min() < 0 or arr.max() >= self.vocab_size):
            raise ValueError(f"ids must lie in [0, {self.vocab_size}), got range [{arr.min()}, {arr.max()}]")
        return self._inverse[arr.astype(np.int64)].tobytes().decode("ascii")

    def reverse_complement(self, ids: Tensor | np.ndarray, dim: int = -1) -> Tensor | np.ndarray:
        """Reverse complement of token ids along ``dim`` (any shape, numpy or torch)."""
        return reverse_complement(ids, dim=dim, complement=self._complement)


_DEFAULT_COMPLEMENT = NucleotideTokenizer("keep").complement_table


def reverse_complement(
    ids: Tensor | np.ndarray, dim: int = -1, complement: np.ndarray | None = None
) -> Tensor | np.ndarray:
    """Reverse complement of nucleotide ids along ``dim``.

    Works on any shape (e.g. ``(B, L)``); specials and N map to themselves. ``complement``
    defaults to the table of :class:`NucleotideTokenizer` (either soft-mask mode).
    """
    table = _DEFAULT_COMPLEMENT if complement is None else complement
    if isinstance(ids, Tensor):
        lut = torch.as_tensor(table, device=ids.device)
        return lut[ids.long()].to(ids.dtype).flip(dim)
    arr = np.asarray(ids)
    return np.flip(table[arr.astype(np.int64)].astype(arr.dtype), axis=dim)


def strand_flip_index(mask: Tensor) -> Tensor:
    """mask (B, L) bool, True on real bases -> (B, L) int64 gather index that reverses each
    row up to its last real base and leaves the padding after it in place.

    The index is its own inverse: ``x.gather(1, idx)`` flips each row, and gathering again
    flips it back (per-base outputs of a reverse-complemented batch return to the forward
    strand this way). Holes in the mask (separators, left padding) move with their bases.
    """
    mask = mask.bool()
    pos = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    end = torch.where(mask, pos + 1, torch.zeros_like(pos)).amax(1, keepdim=True)  # one past the last real base
    return torch.where(pos < end, end - 1 - pos, pos)


def reverse_complement_rows(ids: Tensor, mask: Tensor | None, complement: Tensor) -> tuple[Tensor, Tensor | None, Tensor]:
    """ids (B, L), mask (B, L) bool or None (all real), complement (vocab,) id table ->
    ``(rc_ids, rc_mask, index)``: each row reverse-complemented up to its last real base
    (padding after it kept in place), the mask moved with its bases (None stays None), and
    the :func:`strand_flip_index` that did it."""
    if mask is None:
        index = torch.arange(ids.shape[1] - 1, -1, -1, device=ids.device).expand_as(ids)
    else:
        index = strand_flip_index(mask)
    rc_ids = complement.to(ids.device)[ids.gather(1, index).long()].to(ids.dtype)
    return rc_ids, None if mask is None else mask.bool().gather(1, index), index


@dataclass(frozen=True)
class KmerTokenizer:
    """k-mer tokenizer over nucleotide ids.

    A k-mer of A/C/G/T has id ``sum(b_i * 4**(k-1-i))`` in ``[0, 4**k)``; any k-mer holding N
    (or a special) gets ``unk_id = 4**k``; then ``pad_id``, ``mask_id``. ``stride=k`` gives
    non-overlapping k-mers (a trailing partial k-mer is dropped), ``stride=1`` overlapping ones.
    """

    k: int
    stride: int | None = None
    base: NucleotideTokenizer = field(default_factory=NucleotideTokenizer)

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= 12:
            raise ValueError(f"k must be an integer in [1, 12], got {self.k!r}")
        stride = self.k if self.stride is None else self.stride
        if isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride <= self.k:
            raise ValueError(f"stride must be an integer in [1, k={self.k}], got {self.stride!r}")
        object.__setattr__(self, "stride", stride)

    @property
    def unk_id(self) -> int:
        return NUM_BASES**self.k

    @property
    def pad_id(self) -> int:
        return self.unk_id + 1

    @property
    def mask_id(self) -> int:
        return self.unk_id + 2

    @property
    def vocab_size(self) -> int:
        return self.unk_id + 3

    def encode_ids(self, nuc: np.ndarray) -> np.ndarray:
        """``(L,)`` nucleotide ids -> ``((L - k) // stride + 1,)`` int64 k-mer ids."""
        nuc = np.asarray(nuc)
        if nuc.ndim != 1:
            raise ValueError(f"nuc must be 1-D, got shape {nuc.shape}")
        if nuc.shape[0] < self.k:
            return np.zeros(0, dtype=np.int64)
        upper = nuc.astype(np.int64)
        upper = np.where((upper >= _LOWER_OFFSET) & (upper < _LOWER_OFFSET + 5), upper - _LOWER_OFFSET, upper)
        windows = np.lib.stride_tricks.sliding_window_view(upper, self.k)[:: self.stride]  # n, k
        powers = NUM_BASES ** np.arange(self.k - 1, -1, -1, dtype=np.int64)
        ids = windows @ powers
        ids[(windows >= NUM_BASES).any(axis=1)] = self.unk_id
        return ids

    def encode(self, seq: str | bytes, record: str = "<sequence>") -> np.ndarray:
        return self.encode_ids(self.base.encode(seq, record=record))

    def decode(self, ids: np.ndarray) -> str:
        """k-mer ids -> string; overlapping k-mers contribute their last ``stride`` bases."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size == 0:
            return ""
        digits = (ids[:, None] // NUM_BASES ** np.arange(self.k - 1, -1, -1)) % NUM_BASES  # n, k
        digits[ids >= self.unk_id] = N
        first = digits[0]
        rest = digits[1:, self.k - self.stride :].reshape(-1)
        return self.base.decode(np.concatenate([first, rest]).astype(np.uint8))

    def reverse_complement(self, ids: Tensor | np.ndarray, dim: int = -1) -> Tensor | np.ndarray:
        """Reverse complement of k-mer ids (each k-mer complemented and reversed, order flipped)."""
        table = self._rc_table()
        if isinstance(ids, Tensor):
            return torch.as_tensor(table, device=ids.device)[ids.long()].to(ids.dtype).flip(dim)
        arr = np.asarray(ids)
        return np.flip(table[arr.astype(np.int64)].astype(arr.dtype), axis=dim)

    def _rc_table(self) -> np.ndarray:
        codes = np.arange(self.unk_id, dtype=np.int64)
        digits = (codes[:, None] // NUM_BASES ** np.arange(self.k - 1, -1, -1)) % NUM_BASES
        rc_digits = (NUM_BASES - 1 - digits)[:, ::-1]
        rc = rc_digits @ NUM_BASES ** np.arange(self.k - 1, -1, -1)
        return np.concatenate([rc, np.arange(self.unk_id, self.vocab_size)])
