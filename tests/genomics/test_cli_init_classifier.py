"""``--init-from`` a classifier onto other data: a head that does not fit (another number of
classes, another ``model.positions`` of a flatten readout) starts fresh over the
checkpoint's encoder, with a warning; a ``model.positions`` taken from the checkpoint that
is too short for the data is an error that says where it came from and what to give."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import yaml

from genomics.cli import train_dna
from genomics.models.loading import read_checkpoint
from genomics.models.transfer import ENCODER_PREFIX

from .dna_data import random_dna
from .test_cli_errors import _error
from .test_init_from import _frozen_config
from .tiny_runs import small_config


def _csv(path: Path, n_classes: int, length: int, n: int = 24) -> Path:
    rows = ["sequence,label"] + [f"{random_dna(length, 300 + i)},c{i % n_classes}" for i in range(n)]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Path:
    """A 2-class flatten classifier of 60-base sequences (small model, 2 steps)."""
    root = tmp_path_factory.mktemp("classifier")
    config = small_config("classification", root / "classification.yaml")
    cfg = yaml.safe_load(config.read_text())
    cfg["model"]["pool"] = "flatten"
    config.write_text(yaml.safe_dump(cfg))
    s = train_dna.run(["--task", "classification", "--data", str(_csv(root / "two.csv", 2, 60)), "--max-steps", "2",
                       "--config", str(config), "--out-dir", str(root / "runs")])
    assert read_checkpoint(s["last_checkpoint"])["hyper_parameters"]["model_config"]["positions"] == 60
    return Path(s["last_checkpoint"])


def _encoder(path: str | Path) -> dict:
    return {k: v for k, v in read_checkpoint(path)["state_dict"].items() if k.startswith(ENCODER_PREFIX)}


def test_positions_from_the_checkpoint_too_short_for_the_data(classifier, tmp_path, capsys):
    """The message says model.positions came from the checkpoint and what to do about it."""
    data = _csv(tmp_path / "long.csv", 2, 80)
    err = _error(["--task", "classification", "--data", str(data), "--init-from", str(classifier)], capsys,
                 tmp_path / "out")
    assert err == ("model.positions=60: taken from the --init-from checkpoint, whose flatten readout reads 60 "
                   "positions, but the data holds sequences of up to 80 bases; give --set model.positions=80 (the "
                   "checkpoint's encoder is loaded and the classifier head starts fresh), or start from a language "
                   "model checkpoint")


def test_the_suggested_positions_reuse_the_encoder_with_a_fresh_head(classifier, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(tmp_path / "cache"))
    data = _csv(tmp_path / "long.csv", 2, 80)
    with caplog.at_level(logging.WARNING):
        s = train_dna.run(["--task", "classification", "--data", str(data), "--init-from", str(classifier),
                           "--set", "model.positions=80", "--config", str(_frozen_config(tmp_path, "classification",
                                                                                         "flatten")),
                           "--max-steps", "1", "--out-dir", str(tmp_path / "runs")])
    assert "the classification checkpoint's head does not fit this run's model (shape mismatch: " \
           "backbone.position_mix.0.weight" in caplog.text
    assert "classification encoder loaded" in caplog.text and "the classification head starts fresh" in caplog.text
    before, after = _encoder(classifier), _encoder(s["last_checkpoint"])
    assert before.keys() == after.keys() and all(torch.equal(after[k], v) for k, v in before.items())  # lr 0


def test_another_number_of_classes_starts_a_fresh_head(classifier, tmp_path, monkeypatch, caplog):
    """A head for another number of classes starts fresh over the loaded encoder, with a warning."""
    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(tmp_path / "cache"))
    data = _csv(tmp_path / "three.csv", 3, 60)
    with caplog.at_level(logging.WARNING):
        s = train_dna.run(["--task", "classification", "--data", str(data), "--init-from", str(classifier),
                           "--config", str(_frozen_config(tmp_path, "classification", "flatten")), "--max-steps", "1",
                           "--out-dir", str(tmp_path / "runs")])
    assert s["classes"] == ["c0", "c1", "c2"]
    assert "head does not fit this run's model (shape mismatch: backbone.head.weight: checkpoint (2, " in caplog.text
    tuned = read_checkpoint(s["last_checkpoint"])["state_dict"]
    assert tuned["backbone.head.weight"].shape[0] == 3
    before = _encoder(classifier)
    assert all(torch.equal(tuned[k], v) for k, v in before.items())


def test_an_encoder_that_does_not_fit_is_still_an_error(classifier, tmp_path, capsys):
    data = _csv(tmp_path / "two.csv", 2, 60)
    err = _error(["--task", "classification", "--data", str(data), "--init-from", str(classifier), "--set",
                  "model.dim=48"], capsys, tmp_path / "out")
    assert err.startswith(f"--init-from {classifier}: the weights do not fit the model of this run; shape mismatch: "
                          f"backbone.backbone."), err
