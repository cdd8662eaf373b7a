"""Fine-tuning from the pretrained language model: ``--init-from LM.ckpt`` with ``--task
classification`` or ``annotation`` loads the LM's encoder, starts a fresh head, and takes the
model's shape from the checkpoint unless the user's config or ``--set`` sets it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import yaml

from genomics.cli import train_dna
from genomics.models.loading import CheckpointError, checkpoint_info, read_checkpoint
from genomics.models.transfer import ENCODER_PREFIX, adopt_model_config, init_from_checkpoint

from .dna_data import random_dna, write_fasta
from .labelled_data import documented_commands
from .test_resume import TINY
from .tiny_runs import SMALL_MODEL, train_tiny, write_annotated_genbank, write_labelled_csv


@pytest.fixture(scope="module")
def lm_checkpoint(tmp_path_factory) -> Path:
    """A tiny LM (dim 32, depth 1: tests.genomics.tiny_runs) trained 2 steps."""
    root = tmp_path_factory.mktemp("lm")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LONGSEQ_CACHE_DIR", str(root / "cache"))
        return Path(train_tiny("lm", root)["last_checkpoint"])


def _encoder(state: dict) -> dict:
    return {k: v for k, v in state.items() if k.startswith(ENCODER_PREFIX)}


def _frozen_config(tmp_path: Path, task: str, pool: str | None = None) -> Path:
    """The task's settings with lr 0 (the weights saved are the ones loaded) and no model shape."""
    model = {"pool": pool or ("mean" if task == "classification" else "none"), "dropout": 0.0}
    cfg = {"model": model, "task": {"lr": 0.0, "warmup_steps": 1}, "trainer": {"enable_progress_bar": False}}
    if task == "annotation":
        cfg["schedule"] = {"start_len": 128, "warmup_tokens_per_step": 512}
    path = tmp_path / f"{task}_lr0.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("task, pool", [("classification", "mean"), ("classification", "flatten"),
                                        ("annotation", "none")])
def test_encoder_starts_as_the_lm_and_the_head_fresh(task, pool, lm_checkpoint, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(tmp_path / "cache"))
    data = (["--data", str(write_labelled_csv(tmp_path / "seqs.csv")), "--seq-len", "50"] if task == "classification"
            else ["--fasta", str(write_annotated_genbank(tmp_path / "genome.gb")), "--seq-len", "256"])
    with caplog.at_level(logging.WARNING):
        s = train_dna.run(["--task", task, *data, "--max-steps", "2", "--config", str(_frozen_config(tmp_path, task, pool)),
                           "--init-from", str(lm_checkpoint), "--out-dir", str(tmp_path / "runs")])
    assert s["steps"] == 2 and s["initialised_from"] == str(lm_checkpoint)
    assert s["checkpoint_every_steps"] == 1  # the default cadence: 5% of 2 planned steps, rounded up
    lm, tuned = read_checkpoint(lm_checkpoint), read_checkpoint(s["last_checkpoint"])
    encoder = _encoder(lm["state_dict"])
    assert encoder and _encoder(tuned["state_dict"]).keys() == encoder.keys()
    assert all(torch.equal(tuned["state_dict"][k], v) for k, v in encoder.items())  # lr 0: the step-0 weights
    first_fresh = "backbone.position_proj.weight" if pool == "flatten" else "backbone.head.weight"
    fresh = f"lm encoder loaded ({len(encoder)} tensors); the {task} head starts fresh: {first_fresh}"
    assert fresh in caplog.text
    config = tuned["hyper_parameters"]["model_config"]
    assert {k: config[k] for k in SMALL_MODEL if k in ("dim", "depth", "heads", "window")} == \
        {"dim": 32, "depth": 1, "heads": 2, "window": 32}  # from the checkpoint, not the task's 128-wide default
    assert config["pool"] == pool and config.get("positions") == (50 if pool == "flatten" else None)


def test_init_at_step_zero_with_a_learning_rate(lm_checkpoint, tmp_path):
    """Before the first step (here with the task's own learning rate) the encoder is the LM's."""
    from genomics.models import DNAClassifier
    from genomics.tasks import ClassificationTask

    ckpt = read_checkpoint(lm_checkpoint)
    info = checkpoint_info(ckpt, lm_checkpoint)
    model, taken = adopt_model_config({"dim": 128, "depth": 2, "pool": "mean"}, info, user_keys=(),
                                      task="classification")
    assert taken["dim"] == 32 and taken["depth"] == 1 and model["pool"] == "mean" and "objective" not in model
    module = ClassificationTask(DNAClassifier(3, **model), lr=1e-3)
    head = module.backbone.head.weight.detach().clone()
    report = init_from_checkpoint(module, ckpt, lm_checkpoint, "classification")
    state = module.state_dict()
    assert all(torch.equal(state[k], v) for k, v in _encoder(ckpt["state_dict"]).items())
    assert torch.equal(module.backbone.head.weight, head)  # fresh, as initialised
    assert report.fresh == ["backbone.head.weight", "backbone.head.bias"] and "backbone.head.weight" in report.unused


@pytest.mark.parametrize("how", ["config", "set"])
def test_a_config_that_sets_the_shape_must_match(lm_checkpoint, tmp_path, monkeypatch, how):
    """A shape the user sets, in their --config or with --set, is theirs: it is not replaced by
    the checkpoint's, so a mismatch is an error."""
    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "wide.yaml").write_text(yaml.safe_dump({"model": {"dim": 64, "heads": 2}}))
    wide = ["--config", str(tmp_path / "wide.yaml")] if how == "config" else ["--set", "model.dim=64"]
    with pytest.raises(CheckpointError) as error:
        train_dna.run(["--task", "classification", "--data", str(write_labelled_csv(tmp_path / "seqs.csv")), *wide,
                       "--init-from", str(lm_checkpoint), "--max-steps", "1", "--out-dir", str(tmp_path / "runs")])
    message = str(error.value)
    assert message.startswith(f"--init-from {lm_checkpoint}: the lm checkpoint's encoder does not fit this run's "
                              f"model; shape mismatch: backbone.backbone.embed.weight: checkpoint (9, 32), "
                              f"model (9, 64)")
    assert "\n" not in message and not (tmp_path / "runs").exists()


def test_documented_fine_tuning_commands_run(tmp_path, monkeypatch):
    """The commands of the docs section, on small files of the names they use, with a tiny
    config and step budget added: pretrain an LM, then classification and annotation from it."""
    commands = documented_commands("## Fine-tuning a pretrained language model")
    assert len(commands) == 3 and all("--init-from" in argv for argv in commands[1:])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(tmp_path / "cache"))
    write_fasta(tmp_path / "genome.fa.gz", {"chr": random_dna(600, 12)}, gz=True)
    write_labelled_csv(tmp_path / "seqs.csv")
    write_annotated_genbank(tmp_path / "genome.gb")
    (tmp_path / "lm.yaml").write_text(yaml.safe_dump(TINY))
    pretrained = train_dna.run([*commands[0], "--config", "lm.yaml", "--max-steps", "2", "--no-markov"])
    assert Path(pretrained["last_checkpoint"]).resolve() == Path(commands[1][-1]).resolve()
    for argv, extra in zip(commands[1:], (["--seq-len", "50"], ["--seq-len", "128"])):
        task = argv[argv.index("--task") + 1]
        s = train_dna.run([*argv, *extra, "--max-steps", "2", "--config", str(_frozen_config(tmp_path, task))])
        assert s["steps"] == 2 and s["initialised_from"] == argv[-1]
        assert read_checkpoint(s["last_checkpoint"])["hyper_parameters"]["model_config"]["dim"] == TINY["model"]["dim"]


def test_a_checkpoint_without_a_tower_key_starts_a_model_without_a_tower(lm_checkpoint):
    """A checkpoint whose model config does not record ``conv_layers`` was built without the
    convolution tower: a config asking for one (the classification default) takes 0 from it,
    unless the user's own config sets it."""
    ckpt = read_checkpoint(lm_checkpoint)
    info = checkpoint_info(ckpt, lm_checkpoint)
    info.model_config.pop("conv_layers", None)
    model, taken = adopt_model_config({"dim": 128, "conv_layers": 2}, info, user_keys=(), task="classification")
    assert model["conv_layers"] == 0 and taken["conv_layers"] == 0
    model, taken = adopt_model_config({"dim": 128, "conv_layers": 2}, info, user_keys=("conv_layers",),
                                      task="classification")
    assert model["conv_layers"] == 2 and "conv_layers" not in taken
