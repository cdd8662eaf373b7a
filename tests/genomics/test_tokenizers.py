import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genomics.data.tokenizers import A, C, G, N, T, KmerTokenizer, NucleotideTokenizer, reverse_complement

DNA = st.text(alphabet="ACGTN", min_size=0, max_size=300)
SOFT = st.text(alphabet="ACGTNacgtn", min_size=0, max_size=300)
ACGT = st.text(alphabet="ACGT", min_size=0, max_size=300)  # k-mers with N are lossy (one unk id)
_COMP = str.maketrans("ACGTNacgtn", "TGCANtgcan")


def rc_string(s: str) -> str:
    return s.translate(_COMP)[::-1]


@settings(max_examples=60, deadline=None)
@given(DNA)
def test_roundtrip_upper(seq):
    tok = NucleotideTokenizer()
    ids = tok.encode(seq)
    assert ids.dtype == np.uint8 and ids.shape == (len(seq),)
    assert tok.decode(ids) == seq


@settings(max_examples=60, deadline=None)
@given(SOFT)
def test_soft_mask_keep_and_upper(seq):
    keep, upper = NucleotideTokenizer("keep"), NucleotideTokenizer("upper")
    assert keep.decode(keep.encode(seq)) == seq
    assert upper.decode(upper.encode(seq)) == seq.upper()


@settings(max_examples=60, deadline=None)
@given(SOFT)
def test_reverse_complement_matches_string(seq):
    tok = NucleotideTokenizer("keep")
    ids = tok.encode(seq)
    assert tok.decode(tok.reverse_complement(ids)) == rc_string(seq)
    t = torch.from_numpy(ids.astype(np.int64))
    assert tok.decode(reverse_complement(reverse_complement(t))) == seq
    assert tok.decode(reverse_complement(t)) == rc_string(seq)


def test_reverse_complement_batched_dim():
    ids = torch.tensor([[A, C, G, T, N], [A, A, C, C, 5]])
    out = reverse_complement(ids, dim=1)
    assert out.tolist() == [[N, A, C, G, T], [5, G, G, T, T]]
    assert out.dtype == ids.dtype


def test_iupac_to_n_and_u_to_t():
    tok = NucleotideTokenizer()
    assert tok.decode(tok.encode("RYSWKMBDHVNu")) == "NNNNNNNNNNNT"


@pytest.mark.parametrize("bad, pos, char", [("ACGTX", 4, "X"), ("AC-GT", 2, "-"), ("ACG T", 3, " ")])
def test_invalid_character_names_record_and_position(bad, pos, char):
    # 0-based index pos of the piece that starts after 10 bases: base pos + 11 of the record, as people count
    with pytest.raises(ValueError, match=rf"record 'chr7'.*{char!r} at base {pos + 11} \(1-based\)"):
        NucleotideTokenizer().encode(bad, record="chr7", offset=10)


def test_non_ascii_is_clear_error():
    with pytest.raises(ValueError, match=r"non-ASCII.* at base 3 \(1-based\)"):
        NucleotideTokenizer().encode("ACé")


@settings(max_examples=50, deadline=None)
@given(ACGT, st.integers(1, 6))
def test_kmer_roundtrip_nonoverlapping(seq, k):
    kt = KmerTokenizer(k)
    ids = kt.encode(seq)
    n = len(seq) // k
    assert ids.shape == (n,)
    assert kt.decode(ids) == seq[: n * k]
    assert ids.max(initial=0) < kt.vocab_size


@settings(max_examples=50, deadline=None)
@given(ACGT, st.integers(1, 6))
def test_kmer_overlapping_roundtrip_and_rc(seq, k):
    kt = KmerTokenizer(k, stride=1)
    ids = kt.encode(seq)
    assert ids.shape == (max(len(seq) - k + 1, 0),)
    if len(seq) >= k:
        assert kt.decode(ids) == seq
        # RC of overlapping k-mers equals k-mers of the reverse-complemented string.
        assert np.array_equal(kt.reverse_complement(ids), kt.encode(rc_string(seq)))


def test_kmer_values_and_unknown():
    kt = KmerTokenizer(2)
    assert kt.encode("ACGTNA").tolist() == [0 * 4 + 1, 2 * 4 + 3, kt.unk_id]
    with pytest.raises(ValueError, match="k must be"):
        KmerTokenizer(0)
    with pytest.raises(ValueError, match="stride"):
        KmerTokenizer(3, stride=4)
