"""Classification on a user's own files: the accepted layouts, splits, label checks and input
errors, through the command (``train_dna.run``) with the default config and flags only."""

from __future__ import annotations

import gzip
import logging

import numpy as np
import pytest

from longseq.training.config import ConfigError

from genomics.cli import train_dna
from genomics.data import SequenceClassificationDataModule
from genomics.data.sequence_classification import stratified_holdout
from genomics.io.labelled import DataInputError, split_of_name

from .labelled_data import (
    QUICK, binary_labels, motif_dna, table_rows, write_class_fastas, write_split_folder, write_table,
)


def _run(tmp_path, *argv: str) -> dict:
    return train_dna.run(["--task", "classification", *argv, *QUICK, "--out-dir", str(tmp_path / "runs")])


@pytest.fixture
def no_model(monkeypatch):
    """Input errors must come before any model or Trainer is built."""
    import lightning
    from genomics.models.classifier import DNAClassifier

    def refuse(*args, **kwargs):
        raise AssertionError("a model or Trainer was built before the input was checked")

    monkeypatch.setattr(DNAClassifier, "__init__", refuse)
    monkeypatch.setattr(lightning.Trainer, "__init__", refuse)


# ---------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------

def test_csv_with_bom_and_capitalised_headers(tmp_path):
    path = write_table(tmp_path / "seqs.csv", ["Sequence", "Label"], table_rows(binary_labels(30)), bom=True)
    s = _run(tmp_path, "--data", str(path))
    assert s["classes"] == ["neg", "pos"] and s["data"]["layout"] == "table"
    assert s["train_class_counts"] == {"neg": 13, "pos": 14}  # 30 rows, 10% (3 rows, stratified) held out
    assert s["val"]["class_counts"] == {"neg": 2, "pos": 1} and s["val"]["n"] == 3
    assert "stratified holdout of 10%" in s["data"]["validation"] and "test" not in s


def test_tsv_is_sniffed_and_seq_class_headers_match(tmp_path):
    rows = [(seq, {"pos": "promoter", "neg": "other"}[label]) for seq, label in table_rows(binary_labels(24))]
    path = write_table(tmp_path / "seqs.tsv", ["SEQ", "Class"], rows, delimiter="\t")
    s = _run(tmp_path, "--data", str(path))
    assert s["classes"] == ["other", "promoter"] and s["val"]["n"] >= 2


@pytest.mark.parametrize("delimiter", [",", "\t", ";"])
def test_delimiters_and_header_aliases(tmp_path, delimiter):
    for header in (["sequence", "label"], ["seq", "y"], ["Sequence", "Labels"], ["DNA", "target"]):
        path = write_table(tmp_path / "t.txt", header, table_rows(binary_labels(10)), delimiter=delimiter)
        dm = SequenceClassificationDataModule(str(path), val_fraction=0.2)  # reading only
        dm.setup("fit")
        assert dm.class_names == ["neg", "pos"] and len(dm.datasets["val"]) == 2, header


def test_gzip_table_and_headerless_table(tmp_path):
    rows = table_rows(binary_labels(10))
    with gzip.open(tmp_path / "seqs.csv.gz", "wt") as fh:
        fh.write("sequence,label\n" + "".join(f"{a},{b}\n" for a, b in rows))
    dm = SequenceClassificationDataModule(str(tmp_path / "seqs.csv.gz"))
    dm.setup("fit")
    assert dm.class_names == ["neg", "pos"]
    (tmp_path / "bare.tsv").write_text("".join(f"{a}\t{b}\n" for a, b in rows))  # no header
    dm = SequenceClassificationDataModule(str(tmp_path / "bare.tsv"))
    dm.setup("fit")
    assert dm.class_names == ["neg", "pos"] and sum(len(d) for d in dm.datasets.values()) == 10


def test_column_flags_for_other_header_names(tmp_path, no_model):
    path = write_table(tmp_path / "reads.tsv", ["id", "dna_seq", "celltype"],
                       [(f"r{i}", seq, label) for i, (seq, label) in enumerate(table_rows(binary_labels(20)))],
                       delimiter="\t")
    with pytest.raises(ValueError, match=r"reads\.tsv: no sequence column in the header \['id', 'dna_seq', "
                                         r"'celltype'\].*--sequence-column"):
        _run(tmp_path, "--data", str(path))
    with pytest.raises(ValueError, match=r"reads\.tsv: no column 'kind' \(--label-column\)"):
        _run(tmp_path, "--data", str(path), "--sequence-column", "dna_seq", "--label-column", "kind")
    dm = SequenceClassificationDataModule(str(path), sequence_column="DNA_SEQ", label_column="celltype")
    dm.setup("fit")
    assert dm.class_names == ["neg", "pos"]


def test_column_flags_train(tmp_path):
    path = write_table(tmp_path / "reads.csv", ["dna_seq", "celltype"], table_rows(binary_labels(20)))
    s = _run(tmp_path, "--data", str(path), "--sequence-column", "dna_seq", "--label-column", "celltype")
    assert s["classes"] == ["neg", "pos"]
    with pytest.raises(ConfigError, match=r"--label-column: not used by --task lm"):
        train_dna.run(["--label-column", "x", "--print-config"])


# ---------------------------------------------------------------------------------------
# splits
# ---------------------------------------------------------------------------------------

def test_split_column_with_dev_and_mixed_case(tmp_path):
    splits = ["train"] * 20 + ["dev"] * 6 + ["TEST"] * 8
    rows = [(seq, label, split) for (seq, label), split in zip(table_rows(binary_labels(34)), splits)]
    path = write_table(tmp_path / "seqs.csv", ["sequence", "label", "Split"], rows)
    s = _run(tmp_path, "--data", str(path))
    assert s["val"]["n"] == 6 and s["test"]["n"] == 8 and sum(s["train_class_counts"].values()) == 20
    assert s["data"]["validation"] == "validation split from --data"


@pytest.mark.parametrize("value", ["tset", "", "training"])
def test_unknown_split_value_names_value_and_line(tmp_path, value, no_model):
    rows = [(seq, label, "train") for seq, label in table_rows(binary_labels(10))]
    rows[4] = (rows[4][0], rows[4][1], value)
    path = write_table(tmp_path / "seqs.csv", ["sequence", "label", "split"], rows)
    with pytest.raises(ValueError, match=rf"seqs\.csv:6: split value '{value}' is not one of train, val, valid, "
                                         r"validation, dev, test"):
        _run(tmp_path, "--data", str(path))


def test_train_dev_test_folder_ends_with_test_of_best_checkpoint(tmp_path):
    folder = write_split_folder(tmp_path / "promoters")
    (folder / "README.md").write_text("about the benchmark\n")  # ignored, with a warning
    s = train_dna.run(["--task", "classification", "--data", str(folder), "--max-steps", "4", "--batch-size", "8",
                       "--seq-len", "32", "--out-dir", str(tmp_path / "runs")])
    assert s["data"]["layout"] == "split files" and s["data"]["validation"] == "validation split from --data"
    assert s["data"]["files"] == {split: [str(folder / f"{name}.csv")]
                                  for split, name in (("train", "train"), ("val", "dev"), ("test", "test"))}
    assert s["val"]["n"] == 8 and s["test"]["n"] == 10
    assert "best-" in s["evaluated_checkpoint"] and s["evaluated_checkpoint"] == s["checkpoint"]


@pytest.mark.parametrize("names", [{"dev": "val.tsv"}, {"dev": "valid.csv"}, {"dev": "validation.txt"}])
def test_other_validation_file_names(tmp_path, names):
    folder = write_split_folder(tmp_path / "b", {"train": 12, "dev": 4}, names)
    dm = SequenceClassificationDataModule(str(folder))
    dm.setup("fit")
    assert len(dm.datasets["val"]) == 4 and "test" not in dm.datasets


def test_split_folder_errors(tmp_path, no_model):
    folder = write_split_folder(tmp_path / "two", {"train": 12, "dev": 4, "val": 4})
    with pytest.raises(ValueError, match=r"2 entries for the val split: \['dev\.csv', 'val\.csv'\]"):
        _run(tmp_path, "--data", str(folder))
    folder = write_split_folder(tmp_path / "notrain", {"dev": 4, "test": 4})
    with pytest.raises(ValueError, match=r"no train file"):
        _run(tmp_path, "--data", str(folder))


def test_class_fasta_folder_with_test_named_files(tmp_path):
    folder = write_class_fastas(tmp_path / "peaks", {"pos.fa": ("pos", 12), "neg.fa": ("neg", 12),
                                                     "pos_test.fa": ("pos", 5), "test_neg.fa": ("neg", 4)})
    s = _run(tmp_path, "--data", str(folder))
    assert s["classes"] == ["neg", "pos"]  # the test files are no classes of their own
    assert s["test"]["class_counts"] == {"neg": 4, "pos": 5}
    assert s["data"]["files"]["test"] == [str(folder / "pos_test.fa"), str(folder / "test_neg.fa")]
    assert "stratified holdout" in s["data"]["validation"]


def test_class_fasta_folder_with_test_data_folder(tmp_path):
    train = write_class_fastas(tmp_path / "peaks", {"CTCF_pos.fa": ("CTCF_pos", 12), "CTCF_neg.fa": ("CTCF_neg", 12)})
    test = write_class_fastas(tmp_path / "peaks_test", {"CTCF_pos_test.fa": ("CTCF_pos", 6),
                                                        "CTCF_neg_test.fa.gz": ("CTCF_neg", 0)}, seed=7)
    (test / "CTCF_neg_test.fa.gz").unlink()
    with gzip.open(test / "CTCF_neg_test.fa.gz", "wt") as fh:
        fh.write("".join(f">n{i}\n{motif_dna('neg', 500 + i)}\n" for i in range(5)))
    s = _run(tmp_path, "--data", str(train), "--test-data", str(test))
    assert s["classes"] == ["CTCF_neg", "CTCF_pos"] and s["test"]["class_counts"] == {"CTCF_neg": 5, "CTCF_pos": 6}
    assert s["data"]["test_data"] == str(test)


def test_test_data_table_and_conflicts(tmp_path, no_model):
    data = write_table(tmp_path / "train.csv", ["sequence", "label"], table_rows(binary_labels(20)))
    test = write_table(tmp_path / "held_out.csv", ["sequence", "label"], table_rows(binary_labels(6), 100))
    dm = SequenceClassificationDataModule(str(data), test_data=str(test))
    dm.setup("fit")
    assert len(dm.datasets["test"]) == 6
    folder = write_class_fastas(tmp_path / "peaks", {"pos.fa": ("pos", 6), "neg.fa": ("neg", 6),
                                                     "pos_test.fa": ("pos", 2), "neg_test.fa": ("neg", 2)})
    with pytest.raises(ValueError, match=r"--test-data .*held_out\.csv given, but --data .*peaks holds test rows "
                                         r"already \(first at .*_test\.fa:1\)"):
        _run(tmp_path, "--data", str(folder), "--test-data", str(test))
    other = write_table(tmp_path / "other.csv", ["sequence", "label"], table_rows(["pos", "neg", "other", "other"]))
    with pytest.raises(ValueError, match=r"label 'other' of the test rows \(.*other\.csv:4\) never occurs in the "
                                         r"training rows"):
        _run(tmp_path, "--data", str(data), "--test-data", str(other))
    with pytest.raises(ValueError, match=r"--test-data .*missing\.csv: no such file or folder"):
        _run(tmp_path, "--data", str(data), "--test-data", str(tmp_path / "missing.csv"))


def test_genomic_benchmarks_folders(tmp_path):
    root = tmp_path / "human_nontata_promoters"
    for split, n in (("train", 15), ("test", 4)):
        for label in ("positive", "negative"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(n):
                (folder / f"{i}.txt").write_text(motif_dna("pos" if label == "positive" else "x", i) + "\n")
    dm = SequenceClassificationDataModule(str(root))
    dm.setup("fit")
    assert dm.class_names == ["negative", "positive"] and dm.class_counts["test"] == {"negative": 4, "positive": 4}
    # one file a sequence: the summary names the folders with their counts once there are many
    files = dm.description["files"]
    assert sorted(files["train"]) == [f"{root / 'train' / label}/ ({dm.class_counts['train'][label]} files)"
                                      for label in ("negative", "positive")]
    assert sorted(files["test"]) == sorted(str(root / "test" / label / f"{i}.txt")
                                           for label in ("negative", "positive") for i in range(4))


def test_split_words_in_file_names():
    assert split_of_name("pos_test") == ("pos", "test") and split_of_name("test_pos") == ("pos", "test")
    assert split_of_name("neg.train") == ("neg", "train") and split_of_name("CTCF-dev") == ("CTCF", "val")
    assert split_of_name("protest") == ("protest", None) and split_of_name("contest_winner") == ("contest_winner", None)


def test_stratified_holdout_keeps_class_shares():
    labels = ["a"] * 90 + ["b"] * 10
    held = stratified_holdout(labels, 0.1, seed=3)
    taken = [labels[i] for i in held]
    assert taken.count("a") == 9 and taken.count("b") == 1
    assert np.array_equal(held, stratified_holdout(labels, 0.1, seed=3))  # seeded
    assert not np.array_equal(held, stratified_holdout(labels, 0.1, seed=4))
    tiny = stratified_holdout(["a", "a", "b", "b", "b"], 0.1, seed=0)  # each class of >= 2 gives one
    assert sorted(["a", "a", "b", "b", "b"][i] for i in tiny) == ["a", "b"]


# ---------------------------------------------------------------------------------------
# label hygiene and other input errors
# ---------------------------------------------------------------------------------------

def test_typo_singleton_label_names_label_and_line(tmp_path, no_model):
    rows = table_rows(["promoter", "non_promoter"] * 10)
    rows[13] = (rows[13][0], "promotr")
    path = write_table(tmp_path / "seqs.csv", ["sequence", "label"], rows)
    with pytest.raises(DataInputError, match=r"label 'promotr' occurs once \(.*seqs\.csv:15\); every class needs at "
                                             r"least 2 sequences"):
        _run(tmp_path, "--data", str(path))


def test_rare_label_below_share_is_an_error_unless_allowed(tmp_path, no_model):
    rows = table_rows(binary_labels(298) + ["pos_", "pos_"])
    path = write_table(tmp_path / "seqs.csv", ["sequence", "label"], rows)
    with pytest.raises(ValueError, match=r"label 'pos_' is on 2 of 300 rows \(0\.67%, first at .*seqs\.csv:300\), "
                                         r"below data\.min_class_share=0\.01.*min_class_share: 0"):
        _run(tmp_path, "--data", str(path))
    dm = SequenceClassificationDataModule(str(path), min_class_share=0)
    dm.setup("fit")
    assert dm.class_names == ["neg", "pos", "pos_"]


def test_row_errors_name_file_and_line(tmp_path, no_model):
    cases = {
        "bad_base.csv": ("sequence,label\nACGT,a\nACXT,b\n", r"bad_base\.csv:3.*'X' at base 3 \(1-based\)"),
        "empty_seq.csv": ("sequence,label\nACGT,a\n,b\n", r"empty_seq\.csv:3: empty sequence"),
        "empty_label.csv": ("sequence,label\nACGT,a\nACGT,\n", r"empty_label\.csv:3: empty label"),
        "short_row.csv": ("sequence,label,split\nACGT,a,train\nACGT\n", r"short_row\.csv:3: 1 field"),
        "header_only.csv": ("sequence,label\n", r"header_only\.csv: no sequence rows"),
        "one_class.csv": ("sequence,label\nACGT,a\nACGA,a\n", r"at least 2 classes, found \['a'\]"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=message):
            _run(tmp_path, "--data", str(tmp_path / name))
    (tmp_path / "binary.csv").write_bytes(b"sequence,label\n\xff\xfe,a\n")
    with pytest.raises(ValueError, match=r"binary\.csv: not a UTF-8 text table"):
        _run(tmp_path, "--data", str(tmp_path / "binary.csv"))


def test_folder_errors(tmp_path, no_model):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.md").write_text("x")
    with pytest.raises(ValueError, match=r"empty: no FASTA file .* found \['notes\.md'\]"):
        _run(tmp_path, "--data", str(tmp_path / "empty"))
    folder = write_class_fastas(tmp_path / "only_test", {"test.fa": ("x", 3), "pos.fa": ("pos", 3)})
    with pytest.raises(ValueError, match=r"test\.fa: the file name is a split name only"):
        _run(tmp_path, "--data", str(folder))
    single = write_class_fastas(tmp_path / "one", {"pos.fa": ("pos", 3)}) / "pos.fa"
    with pytest.raises(ValueError, match=r"--data .*pos\.fa: a single FASTA file has no labels"):
        _run(tmp_path, "--data", str(single))
    with pytest.raises(ValueError, match=r"--data .*nowhere: no such file or folder"):
        _run(tmp_path, "--data", str(tmp_path / "nowhere"))


def test_main_prints_input_errors_without_traceback(tmp_path, no_model, capsys):
    (tmp_path / "one_class.csv").write_text("sequence,label\nACGT,a\nACGA,a\n")
    with pytest.raises(SystemExit) as exit_info:
        train_dna.main(["--task", "classification", "--data", str(tmp_path / "one_class.csv"),
                        "--out-dir", str(tmp_path / "runs")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("longseq-train-dna: error: ") and "at least 2 classes" in err and len(err.splitlines()) == 1


def test_ignored_files_in_split_folder_are_named(tmp_path, caplog):
    folder = write_split_folder(tmp_path / "gue", {"train": 10, "test": 4})
    (folder / "extra.csv").write_text("sequence,label\n")
    with caplog.at_level(logging.WARNING):
        SequenceClassificationDataModule(str(folder)).setup("fit")
    assert "ignoring ['extra.csv']" in caplog.text


def test_documented_classification_commands_run(tmp_path, monkeypatch):
    """Every command of the docs section, on small files of the names it uses, with the
    default config (2 steps on 32-base sequences added)."""
    from .labelled_data import documented_commands

    commands = documented_commands("### Classification on your own files")
    assert len(commands) >= 4
    monkeypatch.chdir(tmp_path)
    write_split_folder(tmp_path / "promoters")
    write_split_folder(tmp_path / "prom_core_all")
    for name in ("prom_5k", "prom_11k"):
        write_split_folder(tmp_path / name, {"train": 24, "dev": 8})
    splits = ["train"] * 20 + ["dev"] * 6 + ["test"] * 6
    write_table(tmp_path / "seqs.csv", ["sequence", "label", "split"],
                [(seq, label, split) for (seq, label), split in zip(table_rows(binary_labels(32)), splits)])
    write_class_fastas(tmp_path / "peaks", {"pos.fa": ("pos", 12), "neg.fa": ("neg", 12)})
    write_class_fastas(tmp_path / "peaks_test", {"pos_test.fa": ("pos", 4), "neg_test.fa": ("neg", 4)}, seed=9)
    write_table(tmp_path / "reads.tsv", ["dna_seq", "celltype"], table_rows(binary_labels(20)), delimiter="\t")
    for argv in commands:
        s = train_dna.run([*argv, *QUICK, "--out-dir", str(tmp_path / "runs")])
        assert s["classes"] == ["neg", "pos"] and 0.0 <= s["val"]["acc"] <= 1.0, argv
        assert ("test" in s) == any(a in argv for a in ("promoters/", "prom_core_all/", "seqs.csv", "--test-data")), argv
