"""Killing a training run the way a crash or an out-of-memory kill does, for the resume tests."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def kill_at_first_checkpoint(cmd: list[str], env: dict[str, str], checkpoint: Path, timeout: float = 90) -> None:
    """Start ``cmd`` and SIGKILL it as soon as ``checkpoint`` exists (its first cadence save).
    Fails when the run ends, or ``timeout`` seconds pass, before that."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while not checkpoint.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
