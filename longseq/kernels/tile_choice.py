"""``auto``'s tile backend on the CPU: measured once per CPU, dtype and head size, then cached.

Which tile path is fastest depends on the CPU more than on its instruction set: the
AVX512-BF16 C kernel won by about 3x where it was built (an EPYC without AMX), while on
an AMX Xeon PyTorch's bf16 kernels beat it (docs/results.md). So ``auto`` does not
assume: on the first call for a (CPU model, torch version and thread count, dtype, head size) it
times a forward and backward pass of each candidate path, in a thread of its own, on a
representative chunk (a 256-token
window over 4,096 tokens, 2 heads, block 128; well under a second in all) and keeps the
winner in ``$LONGSEQ_CACHE_DIR/tile_backends.json`` (default ``~/.cache/longseq``). The
default path stays unless another one measures at least 10% faster, so timing noise on
busy cores does not flip the choice.

``LONGSEQ_BACKEND=flash|math|fused`` (or :func:`longseq.kernels.blocked.use_backend`)
forces a path instead; :func:`longseq.explain` shows which path a call takes and why.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Sequence

import torch

from longseq.disk_cache import read_entries, write_entry
from longseq.hardware import cpu_description
from longseq.kernels.plan import DEFAULT_BLOCK

__all__ = ["CACHE_FILE", "MARGIN", "MEASURED_DTYPES", "forget", "measured_backend"]

log = logging.getLogger(__name__)

CACHE_FILE = "tile_backends.json"
#: Another path replaces the default only when it takes less than this share of its time.
MARGIN = 0.9
#: The dtypes whose tile path is measured (float64 has only the paths' references to offer).
MEASURED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

_memo: dict[tuple, tuple[str, str]] = {}
_lock = threading.Lock()


def _key(dtype: torch.dtype, head_dim: int, threads: int) -> str:
    return (f"{cpu_description()} | torch {torch.__version__} | {threads} threads | "
            f"{str(dtype).removeprefix('torch.')} | head dim {head_dim} | block {DEFAULT_BLOCK}")


def _ms(seconds: dict[str, float]) -> str:
    return ", ".join(f"{name} {1000 * s:.1f} ms" for name, s in sorted(seconds.items(), key=lambda kv: kv[1]))


def _valid(entry: object, candidates: Sequence[str]) -> bool:
    """A cache entry measured over exactly these candidates."""
    if not isinstance(entry, dict) or entry.get("choice") not in candidates:
        return False
    seconds = entry.get("seconds")
    return (isinstance(seconds, dict) and sorted(seconds) == sorted(candidates)
            and all(isinstance(t, (int, float)) for t in seconds.values()))


def _in_fresh_thread(measure: Callable[[str], float], candidates: Sequence[str]) -> dict[str, float]:
    """Seconds per candidate, measured in a new thread: it starts without the caller's
    autograd state, saved-tensor hooks (activation checkpointing), autocast, dispatch modes
    and context variables, so timing inside a user's forward pass cannot disturb it. A
    candidate that fails counts as infinitely slow (and is logged)."""
    seconds: dict[str, float] = {}

    def run() -> None:
        for name in candidates:
            try:
                seconds[name] = float(measure(name))
            except Exception as exc:  # noqa: BLE001 - any failure rules the path out
                log.warning("tile backend %s failed its timing run: %s", name, exc)
                seconds[name] = float("inf")

    worker = threading.Thread(target=run, name="longseq-tile-timing")
    worker.start()
    worker.join()
    return seconds


def measured_backend(dtype: torch.dtype, head_dim: int, candidates: Sequence[str], default: str,
                     measure: Callable[[str], float]) -> tuple[str, str]:
    """The tile path for CPU tensors of ``dtype`` and ``head_dim``, and why.

    ``candidates`` are the paths that can serve the call (``default`` among them);
    ``measure(name)`` returns the seconds of one representative forward and backward pass
    on that path. Measured once per key (CPU, torch version and threads, dtype, head size,
    block, candidates) and process, and read from the cache file when an earlier process
    measured the same; returns ``(path, reason)``.
    """
    if default not in candidates:
        raise ValueError(f"default {default!r} is not among the candidates {list(candidates)}")
    if len(candidates) == 1:
        return default, "the only path for these inputs"
    memo_key = (dtype, head_dim, tuple(sorted(candidates)), torch.get_num_threads())
    found = _memo.get(memo_key)
    if found is not None:
        return found
    with _lock:
        if memo_key in _memo:
            return _memo[memo_key]
        key = _key(dtype, head_dim, memo_key[3])
        cached = read_entries(CACHE_FILE).get(key)
        if _valid(cached, candidates):
            result = cached["choice"], f"fastest when measured before on this CPU ({_ms(cached['seconds'])})"
        else:
            seconds = _in_fresh_thread(measure, candidates)
            best = min(seconds, key=seconds.__getitem__)
            choice = best if seconds[best] < MARGIN * seconds[default] else default
            log.info("tile backend for %s, head dim %d: %s (%s)", dtype, head_dim, choice, _ms(seconds))
            write_entry(CACHE_FILE, key, {"choice": choice, "seconds": seconds})
            why = "fastest" if choice == best else f"the default, as no other path was {1 - MARGIN:.0%} faster"
            result = choice, f"{why} when measured on this CPU ({_ms(seconds)})"
        _memo[memo_key] = result
        return result


def forget() -> None:
    """Drop this process's remembered choices (the cache file stays): the next call reads
    or measures again."""
    with _lock:
        _memo.clear()
