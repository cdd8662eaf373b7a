"""Split settings of ``longseq-train-dna``: checked before any training, one line and exit 2
when unusable (a fraction out of range, an unknown record, a BED that is missing, names
another genome or holds no validation line); records a split BED leaves out are named in a
warning; the summary says how many validation bases the whole windows scored."""

from __future__ import annotations

import logging

import pytest
import yaml

from genomics.cli.train_summary import coverage_text, format_evaluation
from genomics.data import GenomeWindowDataModule

from .dna_data import random_dna, write_fasta
from .test_cli_errors import _error, no_model  # noqa: F401 (fixture)
from .test_resume import TINY
from .tiny_runs import train_tiny, write_labelled_csv


@pytest.fixture
def genome(tmp_path, monkeypatch):
    """Three records (chr1 600 bases, plasmidA 300, plasmidB 200) and the tiny LM config."""
    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    return write_fasta(tmp_path / "genome.fa", {"chr1": random_dna(600, 3), "plasmidA": random_dna(300, 4),
                                                 "plasmidB": random_dna(200, 5)})


def _lm(genome, tmp_path, *extra: str) -> list[str]:
    return ["--fasta", str(genome), "--config", str(tmp_path / "tiny.yaml"), "--max-steps", "2", "--no-markov",
            *extra]


@pytest.mark.parametrize("value, message", [
    ("0", "--set data.val_fraction=0: must be > 0 and < 1 (the share of each record held out for validation; "
          "validation picks the best checkpoint); for a small validation split give e.g. --set "
          "data.val_fraction=0.01"),
    ("1.5", "--set data.val_fraction=1.5: must be > 0 and < 1"),
    ("-0.1", "--set data.val_fraction=-0.1: must be > 0 and < 1"),
])
def test_val_fraction_out_of_range_is_refused_before_training(value, message, genome, tmp_path, capsys, no_model):
    """Refused before any training: a run without validation would lose its work at the end."""
    err = _error(_lm(genome, tmp_path, "--set", f"data.val_fraction={value}"), capsys, tmp_path / "out")
    assert err.startswith(message), err


def test_fractions_must_leave_training_bases(genome, tmp_path, capsys, no_model):
    err = _error(_lm(genome, tmp_path, "--set", "data.val_fraction=0.5", "--set", "data.test_fraction=0.5"), capsys,
                 tmp_path / "out")
    assert err.startswith("--set data.val_fraction=0.5, data.test_fraction=0.5: their sum must be below 1"), err


@pytest.mark.parametrize("value", ["0", "1.5"])
def test_classification_val_fraction_out_of_range(value, tmp_path, capsys, no_model):
    """Data without a validation split: one line naming the fraction, before any model is built."""
    data = write_labelled_csv(tmp_path / "seqs.csv")
    err = _error(["--task", "classification", "--data", str(data), "--set", f"data.val_fraction={value}"], capsys,
                 tmp_path / "out")
    assert err.startswith(f"data.val_fraction={value}: --data {data} has no validation split"), err
    assert "must be > 0 and < 1" in err


def test_classification_val_fraction_is_not_read_beside_a_validation_split(tmp_path):
    """With a dev.csv the fraction is unused, so 0 is no error."""
    from genomics.data import SequenceClassificationDataModule
    from genomics.cli.train_config import check_split_values

    folder = tmp_path / "task"
    folder.mkdir()
    write_labelled_csv(folder / "train.csv")
    write_labelled_csv(folder / "dev.csv")
    check_split_values({"data": {"val_fraction": 0}}, "classification", "cfg.yaml")
    dm = SequenceClassificationDataModule(str(folder), val_fraction=0.0)
    dm.setup("fit")
    assert len(dm.val_dataloader().dataset) > 0


def test_classification_data_module_names_the_fraction(tmp_path):
    """The data module on its own (no CLI check in front) says what the fraction is for."""
    from genomics.data import SequenceClassificationDataModule
    from genomics.io.readers import DataInputError

    dm = SequenceClassificationDataModule(str(write_labelled_csv(tmp_path / "seqs.csv")), val_fraction=0.0)
    with pytest.raises(DataInputError, match=r"data.val_fraction=0.0: --data .*seqs.csv has no validation split"):
        dm.setup("fit")


def test_unknown_val_record(genome, tmp_path, capsys, no_model):
    err = _error(_lm(genome, tmp_path, "--set", "data.val_records=[plasmid1]"), capsys, tmp_path / "out")
    assert err == ("val_records/test_records name 'plasmid1', which is not a record; known: ['chr1', 'plasmidA', "
                   "'plasmidB']")


def test_test_records_without_val_records(genome, tmp_path, capsys, no_model):
    err = _error(_lm(genome, tmp_path, "--set", "data.test_records=[plasmidA]"), capsys, tmp_path / "out")
    assert err.startswith("data.val_records is empty (data.test_records=['plasmidA']): no record validates; "
                          "validation picks the best checkpoint"), err


def test_split_bed_on_another_genome_lists_the_records(genome, tmp_path, capsys, no_model):
    bed = tmp_path / "hg.bed"
    bed.write_text("chrX\t0\t100\ttrain\nchrX\t100\t200\tval\n")
    err = _error(_lm(genome, tmp_path, "--set", f"data.split_bed={bed}"), capsys, tmp_path / "out")
    assert err == ("BED interval chrX:0-100 on unknown record 'chrX'; the genome's records: chr1, plasmidA, "
                   "plasmidB")


def test_missing_split_bed(genome, tmp_path, capsys, no_model):
    """One line naming the key and the file, no traceback."""
    err = _error(_lm(genome, tmp_path, "--set", f"data.split_bed={tmp_path / 'none.bed'}"), capsys, tmp_path / "out")
    assert err == f"data.split_bed {tmp_path / 'none.bed'}: no such file"


def test_malformed_split_bed(genome, tmp_path, capsys, no_model):
    bed = tmp_path / "bad.bed"
    bed.write_text("chr1\tzero\t100\ttrain\n")
    err = _error(_lm(genome, tmp_path, "--set", f"data.split_bed={bed}"), capsys, tmp_path / "out")
    assert err.startswith(f"data.split_bed {bed}:1: start/end must be integers"), err


def test_split_bed_without_validation_lines(genome, tmp_path, capsys, no_model):
    bed = tmp_path / "train_only.bed"
    bed.write_text("chr1\t0\t600\ttrain\nplasmidA\t0\t300\ttrain\nplasmidB\t0\t200\ttrain\n")
    err = _error(_lm(genome, tmp_path, "--set", f"data.split_bed={bed}"), capsys, tmp_path / "out")
    assert err == (f"data.split_bed {bed}: names no validation interval (column 4: val, valid or validation); "
                   f"validation picks the best checkpoint, so a run needs a validation split (add val lines to the "
                   f"BED)")


def test_records_the_bed_leaves_out_are_named(genome, tmp_path, caplog):
    bed = tmp_path / "chr1.bed"
    bed.write_text("chr1\t0\t400\ttrain\nchr1\t400\t600\tval\n")
    dm = GenomeWindowDataModule(str(genome), seq_len=100, split_bed=str(bed), cache_dir=str(tmp_path / "cache"))
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    assert ("the split BED names no interval on 2 of the 3 records, which are in no split (500 bases left out of "
            "training and validation): plasmidA (300 bases), plasmidB (200 bases)") in caplog.text
    assert {r.interval.record for split in dm.splits.values() for r in split} == {"chr1"}
    caplog.clear()
    bed.write_text(bed.read_text() + "plasmidA\t0\t300\ttrain\nplasmidB\t0\t200\tval\n")
    with caplog.at_level(logging.WARNING):
        GenomeWindowDataModule(str(genome), seq_len=100, split_bed=str(bed), cache_dir=str(tmp_path / "cache")).setup()
    assert "names no interval" not in caplog.text


def test_many_left_out_records_are_counted(tmp_path, caplog):
    records = {f"contig{i}": random_dna(100 + i, i) for i in range(8)}
    fasta = write_fasta(tmp_path / "contigs.fa", {"chr1": random_dna(600, 1), **records})
    bed = tmp_path / "chr1.bed"
    bed.write_text("chr1\t0\t400\ttrain\nchr1\t400\t600\tval\n")
    dm = GenomeWindowDataModule(str(fasta), seq_len=100, split_bed=str(bed), cache_dir=str(tmp_path / "cache"))
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    assert "contig0 (100 bases), contig1 (101 bases), contig2 (102 bases), contig3 (103 bases), contig4 (104 " \
           "bases), ... (8 in all)" in caplog.text


def test_coverage_counts_the_whole_windows(genome, tmp_path):
    """Validation tiles each region with whole windows from its start: the remainder is not scored."""
    dm = GenomeWindowDataModule(str(genome), seq_len=64, val_fraction=0.5, cache_dir=str(tmp_path / "cache"))
    dm.setup("fit")
    # val regions: 300 + 150 + 100 bases; whole 64-base windows: 4 + 2 + 1
    assert dm.coverage("val") == (7 * 64, 550)
    joined = GenomeWindowDataModule(str(genome), seq_len=64, val_fraction=0.5, join_records=True,
                                    cache_dir=str(tmp_path / "cache"))
    joined.setup("fit")
    # 550 bases and 2 separators joined: 8 windows of 64 positions, 2 of them separators
    assert joined.coverage("val") == (8 * 64 - 2, 550)


def test_summary_says_how_many_validation_bases_were_scored():
    s = {"val_bases_scored": 28672, "val_bases": 30000, "val_window": 4096}
    assert coverage_text(s, "val") == ("28,672 of its 30,000 bases scored (95.6%: whole 4,096-base windows only, "
                                       "each inside one region and with at most data.max_n_frac N)")
    assert coverage_text({**s, "val_bases_scored": 30000}, "val") == ""
    evaluation = {"classes": ["a", "b"], "unit": "bases", "evaluated_checkpoint": "best.ckpt",
                  "data": {"validation": "the last 10% of each record"},
                  "val": {"n": 28672, "class_counts": {"a": 1, "b": 2}, "acc": 0.5,
                          "majority_baseline": {"class": "b", "acc": 0.6}}, **s}
    assert ("validation: the last 10% of each record; 28,672 of its 30,000 bases scored (95.6%"
            in format_evaluation(evaluation))


def test_annotation_summary_counts_the_scored_bases(tmp_path, monkeypatch, capsys):
    """6,000 bases, the last 600 validate: two whole 256-base windows score 512 of them."""
    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(tmp_path / "cache"))
    s = train_tiny("annotation", tmp_path)
    assert (s["val_bases_scored"], s["val_bases"], s["val_window"]) == (512, 600, 256)
    assert s["val"]["n"] == 512
    assert "validation: the last 10% of each record; 512 of its 600 bases scored (85.3%" in capsys.readouterr().out
