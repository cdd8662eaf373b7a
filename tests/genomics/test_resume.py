"""A ``longseq-train-dna`` run killed with SIGKILL and resumed with ``--ckpt-path last`` ends
where the uninterrupted run ends: same steps, weights, learning rate and metrics rows; and the
documented resume commands run."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from genomics.cli import train_dna

from ..kill import kill_at_first_checkpoint
from .dna_data import random_dna, write_fasta
from .labelled_data import documented_commands

STEPS = 16
#: A tiny causal LM on windows of 32 then 64 bases, deterministic, validating every 6 steps.
TINY = {
    "model": {"vocab_size": 9, "dim": 16, "depth": 1, "heads": 2, "window": 16, "objective": "causal",
              "dropout": 0.1},
    "data": {"val_fraction": 0.2, "on_short": "clip", "rc_prob": 0.5},
    "task": {"lr": 0.01, "warmup_steps": 2},
    "schedule": {"seq_len": 64, "batch_size": 2, "start_len": 32, "factor": 2, "warmup_tokens_per_step": 128,
                 "val_every": 6},
    "trainer": {"deterministic": True, "log_every_n_steps": 1, "enable_progress_bar": False,
                "enable_model_summary": False},
}


def _write_inputs(root: Path, config: dict | None = None) -> tuple[Path, Path]:
    fasta = write_fasta(root / "genome.fa", {"chr": random_dna(600, 11)})
    path = root / "tiny_resume.yaml"
    path.write_text(yaml.safe_dump(config or TINY))
    return fasta, path


def _command(fasta: Path, config: Path, out_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "genomics.cli.train_dna", "--fasta", str(fasta), "--config", str(config),
            "--max-steps", str(STEPS), "--no-markov", "--ckpt-every-steps", "4", "--out-dir", str(out_dir), *extra]


def _env(root: Path) -> dict[str, str]:
    return {**os.environ, "LONGSEQ_CACHE_DIR": str(root / "cache"), "PYTHONHASHSEED": "0"}


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _close(a: str, b: str) -> bool:
    return a == b or (bool(a) and bool(b) and math.isclose(float(a), float(b), rel_tol=0, abs_tol=1e-6))


@pytest.mark.parametrize("ema_decay", [None, 0.9], ids=["plain", "ema"])
def test_killed_run_resumes_exactly(tmp_path, ema_decay):
    """With an EMA of the weights, both the average and the raw weights resume."""
    fasta, config = _write_inputs(tmp_path, {**TINY, "averaging": {"ema_decay": ema_decay}})
    env = _env(tmp_path)
    subprocess.run(_command(fasta, config, tmp_path / "whole"), env=env, check=True, capture_output=True, timeout=120)

    cut = tmp_path / "cut"
    last = cut / "lm" / "version_0" / "checkpoints" / "last.ckpt"
    kill_at_first_checkpoint(_command(fasta, config, cut), env, last)
    killed = torch.load(last, weights_only=True)
    killed_at = killed["global_step"]
    if ema_decay:  # the resume starts from two different sets of weights (at the end, fit leaves the average in both)
        assert any(not torch.equal(t, killed["current_model_state"][k]) for k, t in killed["state_dict"].items())
    assert 0 < killed_at < STEPS and not (cut / "lm" / "version_0" / "summary.json").exists()

    resumed = subprocess.run(_command(fasta, config, cut, "--ckpt-path", "last"), env=env, capture_output=True,
                             text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {last}" in resumed.stdout or "resuming" in resumed.stdout
    whole_run, cut_run = tmp_path / "whole" / "lm" / "version_0", cut / "lm" / "version_0"
    summary = json.loads((cut_run / "summary.json").read_text())
    assert summary["steps"] == STEPS and summary["resumed_from"].endswith("last.ckpt")
    assert not (cut / "lm" / "version_1").exists()  # logged on into the run's own folder

    a = torch.load(whole_run / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(last, weights_only=True)
    assert a["global_step"] == b["global_step"] == STEPS
    weights = ["state_dict", "current_model_state"] if ema_decay else ["state_dict"]
    assert all(("current_model_state" in c) == bool(ema_decay) for c in (a, b))
    for key in weights:
        assert a[key].keys() == b[key].keys()
        for name, tensor in a[key].items():
            assert torch.allclose(tensor, b[key][name], atol=1e-6, rtol=0), (key, name)
    assert a["lr_schedulers"][0]["_last_lr"] == pytest.approx(b["lr_schedulers"][0]["_last_lr"], abs=1e-12)

    rows_a, rows_b = _rows(whole_run), _rows(cut_run)
    assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b]  # every step logged once, none shifted
    for ra, rb in zip(rows_a, rows_b):
        for key in ("epoch", "seq_len", "train/loss", "val/loss"):  # same length stage, losses, validations
            assert _close(ra.get(key, ""), rb.get(key, "")), (ra["step"], key, ra.get(key), rb.get(key))
    assert sum(1 for r in rows_b if r.get("val/loss")) >= 2


def test_resume_needs_the_schedule_of_the_run(tmp_path, monkeypatch):
    from longseq.training.errors import UserError

    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(tmp_path / "cache"))
    fasta, config = _write_inputs(tmp_path)
    argv = ["--fasta", str(fasta), "--config", str(config), "--no-markov", "--out-dir", str(tmp_path / "runs")]
    train_dna.run([*argv, "--max-steps", "3"])
    with pytest.raises(UserError, match=r"--ckpt-path .*last\.ckpt: its run plans 3 optimizer steps, this command 16"):
        train_dna.run([*argv, "--max-steps", "16", "--ckpt-path", "last"])


@pytest.mark.parametrize("first, then", [(None, 0.9), (0.9, None)], ids=["off-then-on", "on-then-off"])
def test_resume_needs_the_averaging_of_the_run(tmp_path, monkeypatch, first, then):
    """A resume that would drop the raw weights, or start an average from nothing, is refused."""
    from longseq.training.errors import UserError

    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(tmp_path / "cache"))
    fasta, config = _write_inputs(tmp_path, {**TINY, "averaging": {"ema_decay": first}})
    argv = ["--fasta", str(fasta), "--config", str(config), "--no-markov", "--out-dir", str(tmp_path / "runs"),
            "--max-steps", "3"]
    train_dna.run(argv)
    config.write_text(yaml.safe_dump({**TINY, "averaging": {"ema_decay": then}}))
    word = "averaged" if first else "did not average"
    with pytest.raises(UserError, match=rf"--ckpt-path .*last\.ckpt: its run {word} the weights \(averaging"):
        train_dna.run([*argv, "--ckpt-path", "last"])


def test_documented_resume_commands_run(tmp_path, monkeypatch):
    """The commands of the docs section, on a small genome of the name they use, with a tiny
    config and step budget added: a run, the same run resumed from its last.ckpt, a path."""
    commands = documented_commands("## Resuming a run")
    assert len(commands) >= 3 and any("last" in argv for argv in commands)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(tmp_path / "cache"))
    write_fasta(tmp_path / "genome.fa.gz", {"chr": random_dna(600, 12)}, gz=True)
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    for argv in commands:
        s = train_dna.run([*argv, "--config", "tiny.yaml", "--max-steps", "6", "--no-markov"])
        assert s["steps"] == 6 and Path(s["last_checkpoint"]).is_file(), argv
        assert ("resumed_from" in s) == ("--ckpt-path" in argv), argv
        assert s["checkpoint_every_steps"] == (200 if "--ckpt-every-steps" in argv else 1), argv
