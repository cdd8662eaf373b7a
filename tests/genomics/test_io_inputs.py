"""Sequence and annotation files as NCBI and common tools write them: CONTIG-only GenBank
records, origin-crossing and malformed GFF features, zip members for every reader, file
suffixes and content sniffing, 1-based error positions, bare FASTA headers, and
``FILE:RECORD`` prompts whose record names hold colons."""

from __future__ import annotations

import argparse
import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest
from longseq.training.errors import UserError

from genomics.cli import generate_dna
from genomics.cli.preflight import check_genome_files
from genomics.data.tokenizers import NucleotideTokenizer
from genomics.io import GENE_TYPES, LABELS_VERSION, build_genome_cache, labels_from_gff
from genomics.io.annotation import CDS, GENE, INTERGENIC
from genomics.io.labelled import read_table
from genomics.io.readers import DataInputError, GenomeFormatError, detect_format, iter_records

from .dna_data import random_dna, write_fasta

TOK = NucleotideTokenizer()
NO_ORIGIN = """\
LOCUS       NZ_CP009072           300000 bp    DNA     circular UNK 01-JAN-1980
DEFINITION  NZ_CP009072.1 Escherichia coli ATCC 25922, complete genome.
ACCESSION   NZ_CP009072
VERSION     NZ_CP009072.1
KEYWORDS    .
SOURCE      .
  ORGANISM  .
            .
FEATURES             Location/Qualifiers
     source          1..300000
                     /organism="Escherichia coli"
     gene            join(299501..300000,1..300)
                     /locus_tag="A3"
CONTIG      join(CP009072.1:1..300000)
//
"""
CONTIG_MESSAGE = (r"record 'NZ_CP009072.1' has no sequence \(a CONTIG-only GenBank record\); download "
                  r"'GenBank \(full\)' or the FASTA")


def _gff(path: Path, lines: list[str], region: str | None = None) -> Path:
    """A GFF3 file; ``region`` is column 9 of a region line for c1 (none when None)."""
    head = ["##gff-version 3"] + ([f"c1\tRefSeq\tregion\t1\t1000\t.\t+\t.\t{region}"] if region is not None else [])
    path.write_text("\n".join(head + lines) + "\n")
    return path


def _prompt(spec: str) -> tuple[np.ndarray, str]:
    args = argparse.Namespace(prompt=None, prompt_fasta=spec, prompt_strand="+")
    return generate_dna._prompt_ids(args, TOK)


# ---------------------------------------------------------------- 1. GenBank records without sequence
def test_contig_only_genbank_is_one_line_in_every_reader(tmp_path, cache_dir):
    path = tmp_path / "no_origin.gbk"
    path.write_text(NO_ORIGIN)
    with pytest.raises(GenomeFormatError, match=rf"^'{path}': {CONTIG_MESSAGE}$"):
        list(iter_records(path))
    with pytest.raises(GenomeFormatError, match=CONTIG_MESSAGE):
        build_genome_cache(path, cache_dir, labels=True)  # score_dna and training read through the cache
    with pytest.raises(GenomeFormatError, match=rf"^--fasta '{path}': {CONTIG_MESSAGE}$"):
        check_genome_files([str(path)], "--fasta")
    with pytest.raises(SystemExit, match=rf"--prompt-fasta '{path}': {CONTIG_MESSAGE}$"):
        _prompt(str(path))


# ---------------------------------------------------------------- 2. GFF features placed on their records
def test_origin_crossing_feature_wraps_on_a_circular_record(tmp_path, caplog):
    path = _gff(tmp_path / "a.gff", ["c1\tx\tgene\t901\t1100\t.\t+\t.\tID=g", "c1\tx\tCDS\t951\t1050\t.\t+\t0\t."],
                region="ID=c1;Is_circular=true")
    with caplog.at_level(logging.WARNING):
        lab = labels_from_gff(path, {"c1": 1000})["c1"]
    assert (lab[900:950] == GENE).all() and (lab[950:] == CDS).all()  # 951..1000
    assert (lab[:50] == CDS).all() and (lab[50:100] == GENE).all() and (lab[100:900] == INTERGENIC).all()
    assert not caplog.records  # the GFF says circular: nothing changed behind the user's back


def test_gff_wrap_matches_the_genbank_join(tmp_path):
    from Bio import SeqIO
    from Bio.Seq import Seq
    from Bio.SeqFeature import CompoundLocation, FeatureLocation, SeqFeature
    from Bio.SeqRecord import SeqRecord

    from genomics.io import labels_from_record

    rec = SeqRecord(Seq(random_dna(1000, 1)), id="c1", annotations={"molecule_type": "DNA", "topology": "circular"})
    rec.features = [SeqFeature(CompoundLocation([FeatureLocation(900, 1000, 1), FeatureLocation(0, 100, 1)]),
                               type="CDS")]
    SeqIO.write([rec], tmp_path / "c.gb", "genbank")
    from_genbank = labels_from_record(next(iter_records(tmp_path / "c.gb")))
    gff = _gff(tmp_path / "c.gff", ["c1\tx\tCDS\t901\t1100\t.\t+\t0\t."], region="Is_circular=true;ID=c1")
    assert np.array_equal(labels_from_gff(gff, {"c1": 1000})["c1"], from_genbank)


def test_overlong_feature_is_cut_on_a_linear_record_with_a_warning(tmp_path, caplog):
    path = _gff(tmp_path / "a.gff", ["c1\tx\tgene\t901\t1100\t.\t+\t.\tID=g"], region="ID=c1;mol_type=genomic DNA")
    with caplog.at_level(logging.WARNING):
        lab = labels_from_gff(path, {"c1": 1000})["c1"]
    assert (lab[900:] == GENE).all() and (lab[:900] == INTERGENIC).all()
    assert "1 feature(s) run past the end of a record whose region line does not say Is_circular=true" in caplog.text
    assert "line 3 gene c1:901..1100 (record 1,000 bases)" in caplog.text


def test_overlong_feature_without_a_region_line_wraps_with_a_warning(tmp_path, caplog):
    path = _gff(tmp_path / "a.gff", ["c1\tx\tgene\t951\t1020\t.\t+\t.\tID=g"])
    with caplog.at_level(logging.WARNING):
        lab = labels_from_gff(path, {"c1": 1000})["c1"]
    assert (lab[950:] == GENE).all() and (lab[:20] == GENE).all() and (lab[20:950] == INTERGENIC).all()
    assert "no region line marks circular or linear" in caplog.text and "line 2 gene c1:951..1020" in caplog.text


def test_reversed_and_out_of_record_features_are_skipped_with_counts(tmp_path, caplog):
    lines = ["c1\tx\tgene\t500\t400\t.\t+\t.\tID=a", "c1\tx\tgene\t700\t600\t.\t+\t.\tID=b",
             "c1\tx\tgene\t1200\t1300\t.\t+\t.\tID=c", "c1\tx\tCDS\t11\t20\t.\t+\t0\t.",
             "c1\tx\tgene\t0\t3\t.\t+\t.\tID=d"]
    path = _gff(tmp_path / "a.gff", lines, region="ID=c1;Is_circular=true")
    with caplog.at_level(logging.WARNING):
        lab = labels_from_gff(path, {"c1": 1000})["c1"]
    assert (lab[10:20] == CDS).all() and (lab[:3] == GENE).all() and (lab != INTERGENIC).sum() == 13
    assert "2 feature(s) have their end before their start and are skipped" in caplog.text
    assert "line 3 gene c1:500..400; line 4 gene c1:700..600" in caplog.text
    assert "1 feature(s) start past the end of their record and are skipped: line 5 gene c1:1200..1300" in caplog.text
    assert "1 feature(s) start before base 1 (GFF3 counts from 1) and are cut at the record start: line 7" in caplog.text


def test_unknown_seqids_are_one_warning_with_their_counts(tmp_path, caplog):
    lines = ["c1\tx\tgene\t1\t10\t.\t+\t.\tID=a", "plasmid9\tx\tgene\t1\t10\t.\t+\t.\tID=b",
             "plasmid9\tx\tCDS\t1\t10\t.\t+\t0\tID=c", "chrUn\tx\tgene\t1\t10\t.\t+\t.\tID=d"]
    path = _gff(tmp_path / "a.gff", lines)
    with caplog.at_level(logging.WARNING):
        labels_from_gff(path, {"c1": 100}, genome="g.fa")
    found = [r.getMessage() for r in caplog.records if "name no record" in r.getMessage()]
    assert found == [f"{path}: 2 GFF sequence id(s) name no record of g.fa, their features are skipped: "
                     "'plasmid9' (2 features), 'chrUn' (1 feature)"]
    with pytest.raises(DataInputError, match="no GFF sequence id"):  # none matching stays an error
        labels_from_gff(path, {"other": 100})


def test_ensembl_ncrna_gene_is_a_gene_over_its_introns(tmp_path):
    assert "ncRNA_gene" in GENE_TYPES and LABELS_VERSION >= 3
    path = _gff(tmp_path / "a.gff", ["c1\tEnsembl\tncRNA_gene\t101\t400\t.\t+\t.\tID=gene:X",
                                     "c1\tEnsembl\texon\t101\t150\t.\t+\t.\tParent=transcript:X",
                                     "c1\tEnsembl\texon\t351\t400\t.\t+\t.\tParent=transcript:X"])
    lab = labels_from_gff(path, {"c1": 1000})["c1"]
    assert (lab[100:400] == GENE).all() and lab[99] == lab[400] == INTERGENIC  # the intron 151..350 too


# ---------------------------------------------------------------- 3. zip members for every reader
def _dataset_zip(tmp_path: Path) -> tuple[Path, str, str]:
    """An NCBI Datasets-like zip: (archive, FASTA member, GFF member)."""
    fasta = write_fasta(tmp_path / "g.fna", {"NC_1.1": random_dna(600, 3)})
    gff = _gff(tmp_path / "genomic.gff", [])
    gff.write_text("##gff-version 3\nNC_1.1\tx\tCDS\t11\t20\t.\t+\t0\t.\n")
    archive = tmp_path / "ncbi_dataset.zip"
    fasta_member, gff_member = "ncbi_dataset/data/GCF_1.1/GCF_1.1_genomic.fna", "ncbi_dataset/data/GCF_1.1/genomic.gff"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ncbi_dataset/data/assembly_data_report.jsonl", "{}\n")
        zf.write(fasta, fasta_member)
        zf.write(gff, gff_member)
    return archive, fasta_member, gff_member


def test_gff_from_a_zip_member_like_the_fasta(tmp_path, cache_dir):
    archive, fasta_member, gff_member = _dataset_zip(tmp_path)
    g = build_genome_cache(f"{archive}::{fasta_member}", cache_dir, labels=True, gff=f"{archive}::{gff_member}")
    assert g.label_window("NC_1.1", 9, 21).tolist() == [0] + [CDS] * 10 + [0]


def test_a_wrong_member_lists_members_of_the_wanted_kind(tmp_path, cache_dir):
    archive, fasta_member, gff_member = _dataset_zip(tmp_path)
    with pytest.raises(DataInputError, match=rf"^--gff {archive}::genomic.gff: '{archive}' has no member "
                                             rf"'genomic.gff'; its GFF members: '{gff_member}'$"):
        build_genome_cache(f"{archive}::{fasta_member}", cache_dir, labels=True, gff=f"{archive}::genomic.gff")
    with pytest.raises(DataInputError, match=f"its GFF members: '{gff_member}'$"):
        labels_from_gff(f"{archive}::data/genomic.gff", {"NC_1.1": 600})
    with pytest.raises(UserError, match=f"has no member 'genome.fna'; its sequence members: '{fasta_member}'$"):
        check_genome_files([f"{archive}::genome.fna"], "--fasta")
    with pytest.raises(GenomeFormatError, match=f"is a zip archive: name the file inside it as {archive}::MEMBER"):
        list(iter_records(archive))


# ---------------------------------------------------------------- 4. suffixes and content
@pytest.mark.parametrize("suffix", [".fsa", ".fna", ".ffn", ".frn", ".fas", ".fa.bgz", ".fsa.gz"])
def test_nucleotide_fasta_suffixes_and_bgzip(tmp_path, suffix):
    path = write_fasta(tmp_path / f"g{suffix}", {"c": "ACGT" * 10}, gz=suffix.endswith("gz"))
    assert detect_format(path) == "fasta" and str(next(iter_records(path)).seq) == "ACGT" * 10


def test_protein_fasta_is_named_as_protein(tmp_path):
    path = tmp_path / "proteins.faa"
    path.write_text(">WP_1.1 thr operon leader\nMKRISTTITTTITITTGNGAG\n")
    with pytest.raises(GenomeFormatError, match=r"record 'WP_1.1' looks like protein, not DNA"):
        check_genome_files([str(path)], "--fasta")


@pytest.mark.parametrize("text, fmt", [(">c\nACGT\n", "fasta"), ("@r\nACGT\n+\nIIII\n", "fastq")])
def test_unknown_suffix_is_read_by_its_content(tmp_path, text, fmt):
    path = tmp_path / "genome.seq"
    path.write_text(text)
    assert detect_format(path) == fmt and str(next(iter_records(path)).seq) == "ACGT"


def test_genbank_under_an_unknown_suffix_after_blank_lines(tmp_path):
    (tmp_path / "record.txt").write_text("\n  \n" + NO_ORIGIN)
    assert detect_format(tmp_path / "record.txt") == "genbank"


def test_unknown_suffix_and_content_say_what_is_accepted(tmp_path):
    (tmp_path / "notes.dat").write_text("hello world\n")
    with pytest.raises(GenomeFormatError) as err:
        detect_format(tmp_path / "notes.dat")
    message = str(err.value)
    assert "first line 'hello world'" in message and "'>'" in message and "LOCUS" in message and ".fna" in message
    assert "fmt=" not in message and "\n" not in message
    (tmp_path / "genes.dat").write_text("##gff-version 3\n")
    with pytest.raises(GenomeFormatError, match="is a GFF3 annotation file, not a genome sequence"):
        detect_format(tmp_path / "genes.dat")


# ---------------------------------------------------------------- 5. 1-based positions
def test_error_positions_are_one_based(tmp_path, cache_dir):
    path = tmp_path / "bad.fa"
    path.write_text(">r1\nACGTAC*T\n")  # the 7th base
    with pytest.raises(ValueError, match=r"record 'r1': invalid nucleotide '\*' at base 7 \(1-based\)"):
        build_genome_cache(path, cache_dir)
    with pytest.raises(GenomeFormatError, match=r"'\*' at base 7 \(1-based\)"):
        check_genome_files([str(path)], "--fasta")
    (tmp_path / "t.csv").write_text("sequence,label\nACGTACGTAC,a\nACGTAC#TAC,b\n")
    with pytest.raises(DataInputError, match=r"t.csv:3': invalid nucleotide '#' at base 7 \(1-based\)"):
        read_table(tmp_path / "t.csv", TOK)
    with pytest.raises(SystemExit, match=r"--prompt: record '--prompt': invalid nucleotide 'X' at base 4 \(1-based\)"):
        generate_dna._prompt_ids(argparse.Namespace(prompt="ACGX", prompt_fasta=None, prompt_strand="+"), TOK)
    write_fasta(tmp_path / "p.fa", {"c": "ACGTACGTAC" * 3 + "ACGTXCGT"})
    with pytest.raises(SystemExit, match=r"invalid nucleotide 'X' at base 35 \(1-based\)"):  # the record's base 35
        _prompt(f"{tmp_path / 'p.fa'}:c:31-38")


# ---------------------------------------------------------------- 6. bare '>' headers
def test_a_bare_header_is_named_by_its_place_with_a_warning(tmp_path, cache_dir, caplog):
    path = tmp_path / "g.fa"
    path.write_text(f">a\n{random_dna(50, 1)}\n>\n{random_dna(40, 2)}\n> \n{random_dna(30, 3)}\n")
    with caplog.at_level(logging.WARNING):
        g = build_genome_cache(path, cache_dir)
    assert [r.name for r in g.records] == ["a", "record_2", "record_3"]
    assert "2 record(s) with an empty name (a bare '>' header) named by their place in the file: record_2, " \
           "record_3" in caplog.text


# ---------------------------------------------------------------- 7. FILE:RECORD with colons in record names
def test_prompt_record_names_holding_colons(tmp_path):
    seqs = {"chr1:0-101(+)": random_dna(101, 4), "chr1:200-260": random_dna(60, 5), "chr2": random_dna(80, 6)}
    fasta = write_fasta(tmp_path / "CTCF.fa", seqs)
    ids, where = _prompt(f"{fasta}:chr1:0-101(+)")
    assert TOK.decode(ids) == seqs["chr1:0-101(+)"] and where == "prompt=chr1:0-101(+):1-101(+)"
    ids, _ = _prompt(f"{fasta}:chr1:200-260")  # a whole record name wins over RECORD:START-END
    assert TOK.decode(ids) == seqs["chr1:200-260"]
    ids, where = _prompt(f"{fasta}:chr1:0-101(+):11-20")
    assert TOK.decode(ids) == seqs["chr1:0-101(+)"][10:20] and where == "prompt=chr1:0-101(+):11-20(+)"
    ids, _ = _prompt(f"{fasta}:chr2:5-9")
    assert TOK.decode(ids) == seqs["chr2"][4:9]
    with pytest.raises(SystemExit, match=r"no record named 'chrZ' in \S+CTCF.fa; its records: chr1:0-101\(\+\), "
                                         r"chr1:200-260, chr2$"):
        _prompt(f"{fasta}:chrZ")
    later = {"chr3": random_dna(40, 7), "chr3:1-10": random_dna(30, 8)}  # the whole name comes second
    other = write_fasta(tmp_path / "later.fa", later)
    ids, _ = _prompt(f"{other}:chr3:1-10")
    assert TOK.decode(ids) == later["chr3:1-10"]
    assert generate_dna.split_spec(f"{fasta}:chr1:0-101(+)") == (str(fasta), "chr1:0-101(+)")
    assert generate_dna.parse_region(f"{fasta}:chr2:1-5") == (str(fasta), "chr2", (1, 5))
