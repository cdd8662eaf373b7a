"""Annotation on a user's genome: ``--gff`` (plain or gzip), GFF ids that match no record,
classes absent from the labels, and input errors before any model is built."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import pytest

from longseq.training.config import ConfigError

from genomics.cli import train_dna
from genomics.data import AnnotationDataModule
from genomics.io import CDS, GENE, INTERGENIC, labels_from_gff

from .dna_data import random_dna, write_fasta

QUICK = ["--seq-len", "256", "--max-steps", "2"]


def write_gff(path: Path, features: list[tuple[str, str, int, int]], gz: bool = False) -> Path:
    """``(seqid, type, start, end)`` 1-based inclusive, as in GFF3."""
    lines = ["##gff-version 3"] + [f"{seqid}\tRefSeq\t{ftype}\t{start}\t{end}\t.\t+\t.\tID=f{i}"
                                   for i, (seqid, ftype, start, end) in enumerate(features)]
    text = "\n".join(lines) + "\n"
    if gz:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


FEATURES = [("NC_1.1", "region", 1, 6000), ("NC_1.1", "gene", 501, 800), ("NC_1.1", "CDS", 2001, 2300),
            ("NC_1.1", "pseudogene", 3001, 3200), ("NC_1.1", "CDS", 5501, 5800), ("NC_2.1", "CDS", 101, 400)]


@pytest.fixture
def genome(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(tmp_path / "cache"))
    return write_fasta(tmp_path / "genome.fna.gz", {"NC_1.1": random_dna(6000, 5), "NC_2.1": random_dna(3000, 6)},
                       gz=True)


@pytest.fixture
def no_model(monkeypatch):
    """Input errors must come before any model or Trainer is built."""
    import lightning
    from genomics.models.classifier import DNAClassifier

    def refuse(*args, **kwargs):
        raise AssertionError("a model or Trainer was built before the input was checked")

    monkeypatch.setattr(DNAClassifier, "__init__", refuse)
    monkeypatch.setattr(lightning.Trainer, "__init__", refuse)


def test_gzip_gff_from_the_command_line(tmp_path, genome):
    gff = write_gff(tmp_path / "genomic.gff.gz", FEATURES, gz=True)
    s = train_dna.run(["--task", "annotation", "--fasta", str(genome), "--gff", str(gff), *QUICK,
                       "--out-dir", str(tmp_path / "runs")])
    assert s["steps"] == 2 and s["classes"] == ["intergenic", "gene", "CDS"] and s["unit"] == "bases"
    assert s["data"]["gff"] == str(gff) and s["data"]["validation"] == "the last 10% of each record"
    val = s["val"]
    assert set(val["f1"]) == {"intergenic", "gene", "CDS"} and -1.0 <= val["mcc"] <= 1.0
    assert val["majority_baseline"]["class"] == "intergenic" and val["majority_baseline"]["mcc"] == 0.0
    assert s["train_class_counts"]["CDS"] > 0 and s["train_class_counts"]["gene"] > 0


def test_gff_labels_plain_and_gzip_agree(tmp_path):
    lengths = {"NC_1.1": 6000, "NC_2.1": 3000}
    plain = labels_from_gff(write_gff(tmp_path / "a.gff", FEATURES), lengths)
    packed = labels_from_gff(write_gff(tmp_path / "a.gff.gz", FEATURES, gz=True), lengths)
    assert all(np.array_equal(plain[k], packed[k]) for k in lengths)
    one = plain["NC_1.1"]
    assert (one[500:800] == GENE).all() and (one[2000:2300] == CDS).all() and (one[3000:3200] == GENE).all()
    assert one[0] == INTERGENIC and one[499] == INTERGENIC and one[800] == INTERGENIC  # region is no gene
    assert (plain["NC_2.1"][100:400] == CDS).all()


def test_gff_ids_matching_no_record_list_both(tmp_path, genome, no_model):
    gff = write_gff(tmp_path / "other.gff.gz", [(f"chr{i}", "gene", 10, 100) for i in range(1, 8)], gz=True)
    with pytest.raises(ValueError, match=r"--gff .*other\.gff\.gz: no GFF sequence id \(column 1\) matches a record "
                                         r"name of .*genome\.fna\.gz\. GFF ids: 'chr1', 'chr2', 'chr3', 'chr4', "
                                         r"'chr5', \.\.\. \(7 in all\); genome records: 'NC_1\.1', 'NC_2\.1'"):
        train_dna.run(["--task", "annotation", "--fasta", str(genome), "--gff", str(gff), *QUICK,
                       "--out-dir", str(tmp_path / "runs")])


def test_records_without_gff_lines_are_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        labels = labels_from_gff(write_gff(tmp_path / "a.gff", FEATURES[:2]), {"NC_1.1": 6000, "NC_2.1": 3000})
    assert "no GFF line for 1 of 2 records ('NC_2.1')" in caplog.text and not labels["NC_2.1"].any()


def test_class_that_never_occurs_is_a_warning(tmp_path, genome, caplog):
    gff = write_gff(tmp_path / "cds_only.gff", [f for f in FEATURES if f[1] == "CDS"])
    dm = AnnotationDataModule(str(genome), seq_len=256, gff=str(gff))
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    assert "annotation class 'gene' never occurs in the training labels" in caplog.text
    assert "'CDS' never" not in caplog.text and dm.class_counts["train"]["gene"] == 0


def test_gff_flag_errors(tmp_path, genome, no_model):
    gff = write_gff(tmp_path / "a.gff", FEATURES)
    with pytest.raises(ConfigError, match=r"--gff: not used by --task lm"):
        train_dna.run(["--gff", str(gff), "--print-config"])
    with pytest.raises(ValueError, match=r"--gff \(data\.gff\) needs --fasta"):
        train_dna.run(["--task", "annotation", "--gff", str(gff), *QUICK])
    with pytest.raises(ValueError, match=r"--gff .*missing\.gff\.gz: no such file"):
        train_dna.run(["--task", "annotation", "--fasta", str(genome), "--gff", str(tmp_path / "missing.gff.gz"),
                       *QUICK])
    with pytest.raises(ValueError, match=r"needs one file per genome file \(--fasta\): 2 GFF for 1 genome files"):
        train_dna.run(["--task", "annotation", "--fasta", str(genome), "--gff", str(gff), str(gff), *QUICK])
    with pytest.raises(ValueError, match=r"genome\.fna\.gz: per-base labels need GenBank input or a GFF3 file "
                                         r"\(--gff, data\.gff\)"):
        train_dna.run(["--task", "annotation", "--fasta", str(genome), *QUICK])
    (tmp_path / "short.gff").write_text("NC_1.1\tRefSeq\tgene\n")
    with pytest.raises(ValueError, match=r"short\.gff:1: GFF needs 9 tab-separated columns, got 3"):
        train_dna.run(["--task", "annotation", "--fasta", str(genome), "--gff", str(tmp_path / "short.gff"), *QUICK])


def test_print_config_shows_gff(tmp_path, capsys):
    import yaml

    assert train_dna.run(["--task", "annotation", "--fasta", "g.fna.gz", "--gff", "g.gff.gz", "--print-config"]) is None
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["data"]["gff"] == "g.gff.gz" and cfg["data"]["fasta"] == ["g.fna.gz"]


def test_documented_gff_command_runs(tmp_path, monkeypatch):
    from .labelled_data import documented_commands

    commands = [argv for argv in documented_commands("## Annotate genes (`--task annotation`)") if "--gff" in argv]
    assert commands
    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    write_fasta(tmp_path / "genome.fna.gz", {"NC_1.1": random_dna(6000, 5), "NC_2.1": random_dna(3000, 6)}, gz=True)
    write_gff(tmp_path / "genomic.gff.gz", FEATURES, gz=True)
    for argv in commands:
        s = train_dna.run([*argv, *QUICK, "--out-dir", str(tmp_path / "runs")])
        assert s["val"]["majority_baseline"]["mcc"] == 0.0 and set(s["val"]["f1"]) == {"intergenic", "gene", "CDS"}
