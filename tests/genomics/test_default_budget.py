"""The default DNA run (``python scripts/train_dna.py``) is budgeted by the clock, not by a
step count tuned on one CPU, and its summary sets the model against the Markov baseline
with a signed margin; ``precision: auto`` measures fp32 against bf16-mixed once per CPU."""

from __future__ import annotations

import json

import pytest
import yaml

from genomics.cli import train_dna
from genomics.cli.train_config import default_config_path, load_task_config
from genomics.cli.train_summary import print_summary
from genomics.data.length_warmup import OPEN_ENDED_STEPS, warmup_schedule
from longseq.training.config import ConfigError

from .dna_data import random_dna, write_fasta


def _minutes(max_time: str) -> float:
    days, hours, minutes, seconds = (int(x) for x in max_time.split(":"))
    return days * 1440 + hours * 60 + minutes + seconds / 60


def test_default_lm_config_is_budgeted_by_the_clock():
    cfg = load_task_config(default_config_path("lm"), "lm")
    assert cfg["schedule"]["train_tokens"] is None and "max_steps" not in cfg["schedule"]
    assert 0 < _minutes(cfg["trainer"]["max_time"]) <= 15
    assert cfg["trainer"]["precision"] == "auto"
    stages = train_dna.length_stages(cfg["schedule"])
    assert stages[-1].steps == OPEN_ENDED_STEPS  # the clock, not a step count, ends the run


def test_open_ended_schedule_needs_a_clock(tmp_path):
    cfg = yaml.safe_load(default_config_path("lm").read_text())
    cfg["trainer"].pop("max_time")
    path = tmp_path / "no_clock.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match=r"schedule.train_tokens: null trains until trainer.max_time"):
        train_dna.run(["--config", str(path), "--out-dir", str(tmp_path / "runs")])


def test_warmup_without_a_token_budget():
    stages = warmup_schedule(65536, train_tokens=None, start_len=4096, warmup_tokens=1_000_000,
                             warmup_tokens_per_step=16384)
    assert [s.seq_len for s in stages] == [4096, 16384, 65536]
    assert sum(s.tokens for s in stages[:-1]) == pytest.approx(1_000_000, rel=0.05)
    assert stages[-1].steps == OPEN_ENDED_STEPS
    with pytest.raises(ValueError, match="needs warmup_tokens"):
        warmup_schedule(65536, train_tokens=None, start_len=4096)
    # a token budget keeps its meaning: the warm-up's share comes out of it
    assert sum(s.tokens for s in warmup_schedule(65536, train_tokens=4_000_000)) == pytest.approx(4e6, rel=0.05)


def test_default_run_stops_on_the_clock_and_prints_the_margin(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(tmp_path / "cache"))
    fasta = write_fasta(tmp_path / "g.fa", {"chr": random_dna(40000, 3)})
    summary = train_dna.run(["--fasta", str(fasta), "--max-time", "00:00:00:08", "--out-dir", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert 0 < summary["steps"] < OPEN_ENDED_STEPS  # stopped by the clock
    assert summary["markov_margin_bpb"] == pytest.approx(summary["best_val_bpb"] - summary["markov_val_bpb"])
    margin = f"margin: {summary['markov_margin_bpb']:+.4f} bits/base vs Markov-{summary['markov_order']}"
    assert margin in out
    assert json.loads((tmp_path / "cache" / "precision.json").read_text())  # auto measured, and cached


def test_summary_names_the_winner():
    base = {"task": "lm", "steps": 10, "train_tokens": 1000, "wall_s": 1.0, "tokens_per_s": 1000.0,
            "max_seq_len_trained": 4096, "peak_rss_gb": 1.0, "best_val_bpb": 1.90, "markov_order": 6,
            "markov_val_bpb": 1.9359, "checkpoint": "c", "config": "c", "metrics_csv": "m"}
    for margin, verdict in ((-0.0359, "better than the baseline"), (0.02, "not better than the baseline")):
        import contextlib
        import io

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            print_summary({**base, "markov_margin_bpb": margin}, None)
        assert f"margin: {margin:+.4f} bits/base vs Markov-6 ({verdict})" in buf.getvalue()


def test_auto_precision_is_measured_once_per_cpu(tmp_path, monkeypatch):
    from longseq.training import precision as prec

    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(tmp_path))
    assert prec.resolve_precision("32-true", None, key="k") == "32-true"  # an explicit choice is kept
    calls = []
    monkeypatch.setattr(prec, "cpu_has_fast_bf16", lambda: True)
    monkeypatch.setattr(prec, "measure_precisions", lambda step: calls.append(1) or {"32-true": 2.0, "bf16-mixed": 1.0})
    assert prec.resolve_precision("auto", lambda: None, key="k") == "bf16-mixed"
    assert prec.resolve_precision("auto", lambda: None, key="k") == "bf16-mixed" and len(calls) == 1  # cached
    monkeypatch.setattr(prec, "measure_precisions", lambda step: {"32-true": 1.0, "bf16-mixed": 0.99})
    assert prec.resolve_precision("auto", lambda: None, key="other") == "32-true"  # within the noise margin
    monkeypatch.setattr(prec, "cpu_has_fast_bf16", lambda: False)
    assert prec.resolve_precision("auto", lambda: None, key="new") == "32-true"  # emulated bf16: never


def test_measure_precisions_times_both():
    import torch

    from longseq.training.precision import measure_precisions

    layer = torch.nn.Linear(16, 16)
    x = torch.randn(8, 16)
    seconds = measure_precisions(lambda: layer(x).sum().backward(), repeats=1)
    assert set(seconds) == {"32-true", "bf16-mixed"} and all(0 < s < 10 for s in seconds.values())
