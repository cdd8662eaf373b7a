"""A ``longseq-train-dna`` run stopped by SIGTERM (what a batch scheduler sends before it kills
a job) saves last.ckpt, says so and how to resume on one stderr line, exits with status 143,
and resumed with ``--ckpt-path last`` ends where the uninterrupted run ends; the resumed
run's summary tells the steps of the whole run from this process's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from genomics.cli import train_dna
from genomics.tasks.callbacks import SignalSafeCheckpoint

from .test_resume import STEPS, _close, _command, _env, _rows, _write_inputs


def _terminate_at_first_checkpoint(cmd: list[str], env: dict[str, str], checkpoint: Path,
                                   timeout: float = 90) -> subprocess.CompletedProcess:
    """Start ``cmd`` and send it SIGTERM as soon as ``checkpoint`` exists (its first cadence
    save), as :func:`tests.kill.kill_at_first_checkpoint` sends SIGKILL; then wait for it."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while not checkpoint.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _same_weights(a: Path, b: Path) -> None:
    x, y = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    assert x["global_step"] == y["global_step"] == STEPS
    for name, tensor in x["state_dict"].items():
        assert torch.allclose(tensor, y["state_dict"][name], atol=1e-6, rtol=0), name
    assert x["lr_schedulers"][0]["_last_lr"] == pytest.approx(y["lr_schedulers"][0]["_last_lr"], abs=1e-12)


def _same_rows(a: Path, b: Path) -> None:
    rows_a, rows_b = _rows(a), _rows(b)
    assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b]
    for ra, rb in zip(rows_a, rows_b):
        for key in ("epoch", "seq_len", "train/loss", "val/loss"):
            assert _close(ra.get(key, ""), rb.get(key, "")), (ra["step"], key, ra.get(key), rb.get(key))


def test_sigterm_saves_exits_143_and_resumes_exactly(tmp_path):
    """SIGTERM saves last.ckpt, says how to resume, exits 143; the resumed run ends where an uninterrupted one does."""
    fasta, config = _write_inputs(tmp_path)
    env = _env(tmp_path)
    subprocess.run(_command(fasta, config, tmp_path / "whole"), env=env, check=True, capture_output=True, timeout=300)

    cut = tmp_path / "cut"
    run = cut / "lm" / "version_0"
    last = run / "checkpoints" / "last.ckpt"
    stopped = _terminate_at_first_checkpoint(_command(fasta, config, cut), env, last)
    assert stopped.returncode == train_dna.EXIT_SIGTERM == 143, stopped.stderr[-3000:]
    lines = [line for line in stopped.stderr.splitlines() if line.startswith("longseq-train-dna: stopped")]
    step = torch.load(last, weights_only=True)["global_step"]
    assert lines == [f"longseq-train-dna: stopped by SIGTERM at step {step} of {STEPS}; last.ckpt saved at step "
                     f"{step} ({last}); resume with the same command and --ckpt-path last"]
    assert 0 < step < STEPS and not (run / "summary.json").exists()

    resumed = subprocess.run(_command(fasta, config, cut, "--ckpt-path", "last"), env=env, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"task lm: {STEPS} steps in all, {STEPS - step} in this process (resumed): " in resumed.stdout
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["steps"], summary["steps_this_process"]) == (STEPS, STEPS - step)
    _same_weights(tmp_path / "whole" / "lm" / "version_0" / "checkpoints" / "last.ckpt", last)
    _same_rows(tmp_path / "whole" / "lm" / "version_0", run)


@pytest.mark.parametrize("at, stops", [(3, 3), (6, 7)], ids=["mid-epoch", "epoch-end"])
def test_sigterm_stops_where_the_run_resumes_exactly(at, stops, tmp_path, monkeypatch, capsys):
    """SIGTERM during step 3 stops after it; during step 6, the last of an epoch (a validation
    follows), the stop waits one step: a state saved at an epoch's end resumes an epoch late."""
    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(tmp_path / "cache"))
    fasta, config = _write_inputs(tmp_path)
    argv = [*_command(fasta, config, tmp_path / "x")[3:-2]]  # the flags, without the interpreter and --out-dir
    train_dna.run([*argv, "--out-dir", str(tmp_path / "whole")])

    original = SignalSafeCheckpoint.on_train_batch_end

    def signal_at_step(self, trainer, *args, **kwargs):
        if trainer.global_step == at and not self.signalled:
            os.kill(os.getpid(), signal.SIGTERM)  # handled before the next line runs: the run's own handler
        original(self, trainer, *args, **kwargs)

    monkeypatch.setattr(SignalSafeCheckpoint, "on_train_batch_end", signal_at_step)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stop:
        train_dna.run([*argv, "--out-dir", str(tmp_path / "cut")])
    assert stop.value.code == 143
    assert f"stopped by SIGTERM at step {stops} of {STEPS}; last.ckpt saved at step {stops}" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) == before  # the handler of before the run is back
    monkeypatch.setattr(SignalSafeCheckpoint, "on_train_batch_end", original)

    run = tmp_path / "cut" / "lm" / "version_0"
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == stops
    s = train_dna.run([*argv, "--out-dir", str(tmp_path / "cut"), "--ckpt-path", "last"])
    assert (s["steps"], s["steps_this_process"]) == (STEPS, STEPS - stops)
    _same_weights(tmp_path / "whole" / "lm" / "version_0" / "checkpoints" / "last.ckpt", Path(s["last_checkpoint"]))
    _same_rows(tmp_path / "whole" / "lm" / "version_0", run)


def test_summary_of_a_fresh_run_has_no_resume_split():
    from genomics.cli.train_summary import _steps_text

    s = {"steps": 80, "steps_this_process": 80, "train_tokens": 161544, "wall_s": 94.2}
    assert _steps_text(s) == "80 steps, 161,544 training bases in 94 s"
    assert _steps_text({**s, "steps_this_process": 40, "resumed_from": "last.ckpt"}) == \
        "80 steps in all, 40 in this process (resumed): 161,544 training bases in 94 s"


@pytest.mark.parametrize("fn, saves", [("fit", True), ("validate", False), ("test", False)])
def test_sigterm_saves_only_inside_fit(fn, saves, tmp_path, monkeypatch):
    """After fit, validate and test may load the best checkpoint's weights into the module:
    a SIGTERM there must not write them over the final weights in last.ckpt."""
    from types import SimpleNamespace

    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from longseq.training.checkpointing import CheckpointCadence

    callback = SignalSafeCheckpoint(tmp_path, CheckpointCadence())
    saved = []
    monkeypatch.setattr(callback, "_save_now", lambda trainer: saved.append(trainer.global_step))
    monkeypatch.setattr(callback, "_publish", lambda trainer: None)
    trainer = SimpleNamespace(global_step=7, state=SimpleNamespace(fn=fn))
    callback.on_exception(trainer, None, SIGTERMException())
    assert saved == ([7] if saves else []) and callback.stopped_at == (7 if saves else None)
