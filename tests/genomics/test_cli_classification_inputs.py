"""Classification inputs that are easy to get subtly wrong: a benchmark's parent folder of
task folders given as ``--data`` (not a folder of class subfolders), and whole-number labels
written two ways (``1`` and ``1.0``, as pandas writes a column that held an empty cell),
which are one class each."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from genomics.data import SequenceClassificationDataModule
from genomics.data.sequence_classification import find_task_folders, normalise_labels
from genomics.io.readers import DataInputError

from .dna_data import random_dna
from .test_cli_errors import _error, no_model  # noqa: F401 (fixture)


def _table(path: Path, labels: list[str], length: int = 40) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = ["sequence,label"] + [f"{random_dna(length, i)},{label}" for i, label in enumerate(labels)]
    path.write_text("\n".join(rows) + "\n")
    return path


def _benchmark(root: Path) -> Path:
    """GUE's layout: prom/prom_300_all/{train,dev,test}.csv and prom/prom_core_all/..."""
    for task in ("prom_300_all", "prom_core_all"):
        for split in ("train", "dev", "test"):
            _table(root / "prom" / task / f"{split}.csv", ["0", "1"] * 6)
    return root


def test_parent_of_task_folders_is_named_as_such(tmp_path, capsys, no_model):
    """Named as a folder of task folders, not read as class folders (where dev.csv would be a sequence file)."""
    gue = _benchmark(tmp_path / "GUE")
    err = _error(["--task", "classification", "--data", str(gue / "prom")], capsys, tmp_path / "out")
    assert err == (f"--data {gue / 'prom'}: holds task folders (prom_300_all, prom_core_all), each with its own split "
                   f"tables; pass one of them as --data (e.g. {gue / 'prom' / 'prom_300_all'})")
    err = _error(["--task", "classification", "--data", str(gue)], capsys, tmp_path / "out")  # was: empty class folder
    assert err.startswith(f"--data {gue}: holds task folders (prom/prom_300_all, prom/prom_core_all)"), err


def test_task_folder_itself_and_other_layouts_read_as_before(tmp_path):
    gue = _benchmark(tmp_path / "GUE")
    task = gue / "prom" / "prom_300_all"
    assert find_task_folders(task) == []
    dm = SequenceClassificationDataModule(str(task))
    dm.setup("fit")
    assert dm.class_names == ["0", "1"] and set(dm.datasets) == {"train", "val", "test"}
    # split folders of class subfolders (genomic-benchmarks) and class subfolders of text files
    for split in ("train", "test"):
        for label in ("negative", "positive"):
            folder = tmp_path / "gb" / split / label
            folder.mkdir(parents=True)
            for i in range(3):
                (folder / f"{i}.txt").write_text(random_dna(30, i) + "\n")
    assert find_task_folders(tmp_path / "gb") == []
    assert find_task_folders(tmp_path / "gb" / "train") == []  # its subfolders hold sequence files, not tables
    assert find_task_folders(tmp_path / "missing") == []


def test_test_data_parent_folder_is_named_too(tmp_path):
    gue = _benchmark(tmp_path / "GUE")
    dm = SequenceClassificationDataModule(str(gue / "prom" / "prom_300_all" / "train.csv"), test_data=str(gue))
    with pytest.raises(DataInputError, match=r"^--test-data .*GUE: holds task folders"):
        dm.setup("fit")


def test_whole_number_labels_written_two_ways_are_one_class(tmp_path, caplog):
    data = _table(tmp_path / "mixed.csv", ["1", "0", "1.0", "0.0"] * 4)
    dm = SequenceClassificationDataModule(str(data))
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    assert dm.class_names == ["0", "1"]  # was 0, 0.0, 1, 1.0
    assert sum(dm.class_counts["train"].values()) + sum(dm.class_counts["val"].values()) == 16
    assert f"--data {data}: labels 0.0, 1.0 read as 0, 1 (every label is a whole number)" in caplog.text


def test_labels_equal_as_numbers_but_not_whole_are_kept_with_a_warning(caplog):
    labels = ["0.5", "0.50", "1", "0.5"]
    with caplog.at_level(logging.WARNING):
        assert normalise_labels(labels, "--data t.csv") == labels
    assert "--data t.csv: labels '0.5' and '0.50' are equal as numbers but are kept as 2 classes" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert normalise_labels(["pos", "neg", "1", "1.0"]) == ["pos", "neg", "1", "1.0"]
        assert normalise_labels(["0", "1", "2"]) == ["0", "1", "2"]  # nothing to say
        assert normalise_labels(["nan", "1", "1.0"]) == ["nan", "1", "1.0"]  # nan is no whole number
    assert caplog.text.count("equal as numbers") == 2
