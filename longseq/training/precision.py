"""``precision: auto``: the faster of fp32 and bf16-mixed for one model on the machine at hand, measured.

Whether bf16 pays on a CPU depends on more than its instruction set: on an AVX2-only CPU
bf16 matmuls are emulated (much slower); with AVX512-BF16 the fused attention kernel and
bf16 matmuls usually win; on an AMX Xeon bf16 window attention measured slower than fp32.
So the choice is a measurement: a few forward+backward passes of the model itself on one
batch, in both precisions, timed after a warm-up pass. The result is cached per CPU, torch
version and model (``~/.cache/longseq/precision.json``, or ``$LONGSEQ_CACHE_DIR``), so it
is measured once per machine and model.

CUDA is ``bf16-mixed`` where the device supports it; a CPU without bf16 units is
``32-true`` without measuring.

    precision = resolve_precision("auto", step, key="dna-lm dim128 depth2 L16384")
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

import torch

from longseq.disk_cache import cache_dir, read_entries, write_entry
from longseq.hardware import cpu_description, cpu_has_fast_bf16

__all__ = ["AUTO", "cache_path", "measure_precisions", "resolve_precision"]

log = logging.getLogger(__name__)

#: The config value that asks for a measured choice.
AUTO = "auto"
#: bf16 must be at least this much faster to be chosen (timing noise on shared cores).
MARGIN = 0.95
_CACHE_FILE = "precision.json"


def cache_path() -> Path:
    """The cache file: ``$LONGSEQ_CACHE_DIR/precision.json``, else ``~/.cache/longseq/precision.json``."""
    return cache_dir() / _CACHE_FILE


def measure_precisions(step: Callable[[], None], repeats: int = 2) -> dict[str, float]:
    """Seconds of the fastest of ``repeats`` calls of ``step`` (a forward and backward pass) in
    fp32 and under CPU bf16 autocast, each after one untimed warm-up call."""
    seconds = {}
    for name, autocast in (("32-true", False), ("bf16-mixed", True)):
        best = float("inf")
        for i in range(repeats + 1):
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                step()
            if i:  # the first call builds kernels and allocates: not timed
                best = min(best, time.perf_counter() - start)
        seconds[name] = best
    return seconds


def resolve_precision(precision: str | int | None, step: Callable[[], None] | None, *, key: str,
                      on_cuda: bool = False) -> str:
    """``precision`` unchanged unless it is ``"auto"``; then ``bf16-mixed`` on CUDA (where
    supported), ``32-true`` on a CPU without bf16 units, else the faster of the two for
    ``step`` (see :func:`measure_precisions`), cached under ``key`` with the CPU and torch
    version. ``step=None`` skips the measurement (``32-true``)."""
    if str(precision) != AUTO:
        return str(precision)
    if on_cuda:
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    if not cpu_has_fast_bf16() or step is None:
        return "32-true"
    full_key = f"{cpu_description()} | torch {torch.__version__} | {key}"
    cached = read_entries(_CACHE_FILE).get(full_key)
    if cached and cached.get("choice") in ("32-true", "bf16-mixed"):
        log.info("precision auto: %s (measured before on this CPU: %s)", cached["choice"], cached.get("seconds"))
        return cached["choice"]
    seconds = measure_precisions(step)
    choice = "bf16-mixed" if seconds["bf16-mixed"] < MARGIN * seconds["32-true"] else "32-true"
    log.info("precision auto: %s (one step: fp32 %.3f s, bf16-mixed %.3f s)", choice, seconds["32-true"],
             seconds["bf16-mixed"])
    write_entry(_CACHE_FILE, full_key, {"choice": choice, "seconds": seconds})
    return choice
