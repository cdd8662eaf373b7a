"""A run ended by the clock alone (the default LM: ``schedule.train_tokens: null`` with
``trainer.max_time``) says so instead of printing its placeholder step count: the schedule
line names the time budget, the progress bar has no step total there and shows the time
left, and last.ckpt is saved by time (there is no step budget to take 5% of). The help
states each task's default window and what ``precision: auto`` picks."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from genomics.cli import train_dna
from genomics.cli.train_config import default_config_path
from genomics.data import warmup_schedule
from genomics.data.length_warmup import OPEN_ENDED_STEPS, Stage
from genomics.tasks.callbacks import TimeBudgetBar

from .dna_data import random_dna, write_fasta
from .tiny_runs import SMALL_MODEL


def test_schedule_line_names_the_time_budget():
    open_ended = warmup_schedule(4096, train_tokens=None, start_len=4096)
    assert train_dna.describe_stages(open_ended, "00:00:15:00") == (
        "training: 1 x 4,096 (batch x bases) per step until the time budget, trainer.max_time 00:00:15:00 "
        "(15 minutes)")
    warm = warmup_schedule(65536, train_tokens=None, start_len=4096, warmup_tokens=1_000_000,
                           warmup_tokens_per_step=16384)
    line = train_dna.describe_stages(warm, "01:02:00:05")
    assert line.startswith("length warm-up: 31 x 4 x 4,096, 31 x 1 x 16,384 (steps x batch x bases), then 1 x 65,536")
    assert line.endswith("trainer.max_time 01:02:00:05 (1 day, 2 hours, 5 seconds)")
    assert str(OPEN_ENDED_STEPS) not in line
    budgeted = [Stage(32, 4, 8), Stage(64, 2, 8)]
    assert train_dna.describe_stages(budgeted, None) == "length warm-up: 8 x 4 x 32, 8 x 2 x 64 (steps x batch x bases)"


class _Trainer:
    """What the progress bar reads of a Trainer."""

    def __init__(self, epoch: int) -> None:
        self.current_epoch, self.num_training_batches = epoch, OPEN_ENDED_STEPS
        self.max_epochs, self.max_steps, self.global_step = 2, -1, 0


def test_progress_bar_has_no_total_in_the_open_ended_stage():
    bar = TimeBudgetBar(first_open_epoch=1)
    bar._trainer = _Trainer(epoch=0)  # a warm-up stage: its steps are real
    assert bar.total_train_batches == OPEN_ENDED_STEPS
    bar._trainer = _Trainer(epoch=1)
    assert bar.total_train_batches == math.inf


def test_default_lm_run_is_budgeted_by_time(tmp_path, monkeypatch, capsys):
    """The default config, a small model, a 3-second budget: the schedule line names the time
    budget, not a step count, and last.ckpt is saved by the clock."""
    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(tmp_path / "cache"))
    fasta = write_fasta(tmp_path / "g.fa", {"chr": random_dna(20000, 3)})
    bars = []
    make_bar = train_dna._time_budget_bar
    monkeypatch.setattr(train_dna, "_time_budget_bar", lambda *a: bars.append(make_bar(*a)) or bars[-1])
    argv = ["--fasta", str(fasta), "--max-time", "00:00:00:03", "--no-markov", "--out-dir", str(tmp_path / "runs")]
    for key, value in SMALL_MODEL.items():
        argv += ["--set", f"model.{key}={value}"]
    s = train_dna.run(argv)
    out = capsys.readouterr().out
    assert ("training: 1 x 4,096 (batch x bases) per step until the time budget, trainer.max_time 00:00:00:03 "
            "(3 seconds)") in out
    assert str(OPEN_ENDED_STEPS) not in out and "length warm-up" not in out
    assert len(bars) == 1 and bars[0].first_open_epoch == 0
    assert s["checkpoint_every_steps"] is None  # no step budget: saved by the clock
    assert s["checkpoint_every_minutes"] == pytest.approx(0.05 * 3 / 60, rel=0.05)  # 5% of the budget
    saved = json.loads((tmp_path / "runs" / "lm" / "version_0" / "summary.json").read_text())
    assert saved["checkpoint_every_steps"] is None
    assert "last checkpoint (saved every 0.0025 minutes and at the end; resume with --ckpt-path last)" in out


def test_help_states_each_tasks_default_window_and_auto_precision(capsys):
    with pytest.raises(SystemExit):
        train_dna.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    defaults = {task: yaml.safe_load(default_config_path(task).read_text())["schedule"]["seq_len"]
                for task in ("lm", "annotation", "needle")}
    assert defaults["lm"] == 4096 and defaults["annotation"] == 65536
    expected = ", ".join(f"{task} {n:,}" for task, n in defaults.items())
    assert f"final training window in bases (schedule.seq_len; default from the task's config: {expected})" in text
    assert "default 65536" not in text and "default 32-true on CPU" not in text
    assert ("or auto (the lm config's setting): on CUDA bf16-mixed (16-mixed without bf16 support); on a CPU "
            "without bf16 units 32-true; else the faster of 32-true and bf16-mixed, measured") in text


def test_docs_state_the_per_task_default_window():
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / "docs" / "genomics.md").read_text()
    row = next(line for line in docs.splitlines() if line.startswith("| `--seq-len`"))
    assert "4,096" in row and "65,536" in row and "lm" in row and "annotation" in row
