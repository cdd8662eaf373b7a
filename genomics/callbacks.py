"""Training callbacks for the DNA scripts: throughput and peak memory."""

from __future__ import annotations

import resource
import sys
import time

import lightning as L
import torch

__all__ = ["Throughput", "peak_rss_bytes"]


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


class Throughput(L.Callback):
    """Counts real (unpadded) training tokens and the time spent in training batches.

    Shows ``tok_s`` (tokens per second of the last ``window`` batches) on the progress
    bar; ``tokens``, ``seconds`` and ``tokens_per_second`` hold the totals for a summary.
    """

    def __init__(self, window: int = 10) -> None:
        self.window = window
        self.tokens = 0
        self.seconds = 0.0
        self._recent: list[tuple[int, float]] = []
        self._t0 = 0.0
        self.max_seq_len = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch["input_ids"].is_cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - self._t0
        n = int(batch["mask"].sum())
        self.tokens += n
        self.seconds += dt
        self.max_seq_len = max(self.max_seq_len, int(batch["input_ids"].shape[1]))
        self._recent = (self._recent + [(n, dt)])[-self.window :]
        rate = sum(t for t, _ in self._recent) / max(sum(s for _, s in self._recent), 1e-9)
        pl_module.log("tok_s", rate, prog_bar=True, on_step=True, on_epoch=False, batch_size=1)
        pl_module.log("seq_len", float(batch["input_ids"].shape[1]), prog_bar=True, on_step=True, on_epoch=False,
                      batch_size=1)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0
