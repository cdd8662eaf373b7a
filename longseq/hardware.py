"""What the CPU can do fast, for choosing defaults and warning about slow settings."""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import statistics
import sys
import time

import torch

__all__ = [
    "cpu_description", "cpu_has_avx512_bf16", "cpu_has_fast_bf16", "cpu_model_name", "enable_huge_pages", "matmul_gflops",
    "peak_memory_gb", "peak_rss_bytes", "reuse_freed_memory", "warn_if_slow_bf16",
]

log = logging.getLogger(__name__)


def command_threads() -> int:
    """Torch threads for a command: ``LONGSEQ_NUM_THREADS`` when set (a share of the cores,
    as each parallel test worker gets), else every core. ``OMP_NUM_THREADS`` is not read:
    importing ultralytics sets it to 1 when unset."""
    value = os.environ.get("LONGSEQ_NUM_THREADS", "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            raise ValueError(f"LONGSEQ_NUM_THREADS must be a whole number, got {value!r}") from None
    return os.cpu_count() or 1


def cpu_has_fast_bf16() -> bool:
    """True when this CPU has native bf16 matmul units (AVX512-BF16 or AMX tiles).

    Without them (AVX2-only x86, for instance) PyTorch emulates bf16 matmuls and
    convolutions, which are then several times slower than fp32.
    """
    return cpu_has_avx512_bf16() or _cpu_supports("_is_amx_tile_supported")


def cpu_has_avx512_bf16() -> bool:
    """True when this CPU has the AVX512-BF16 instructions (``vdpbf16ps``), which the fused
    bf16 attention kernel (``longseq.kernels.fused_bf16``) is built on."""
    return _cpu_supports("_is_avx512_bf16_supported")


def _cpu_supports(check: str) -> bool:
    """``torch.cpu._is_<feature>_supported()``; False where this torch lacks the check."""
    return bool(getattr(getattr(torch, "cpu", None), check, lambda: False)())


def _bf16_units() -> str:
    if _cpu_supports("_is_amx_tile_supported"):
        return "AMX"
    if cpu_has_avx512_bf16():
        return "AVX512-BF16, no AMX"
    return "none (emulated)"


def cpu_model_name(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's marketing name (Linux ``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        with open(cpuinfo) as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_description() -> str:
    """One line naming the CPU and the units that decide its speed, for benchmark output.

    Ratios to a matmul measured in the same run survive a noisy machine but not a change
    of instruction set: the bf16 matmul measured ~3.7x fp32 on the AVX512-BF16 EPYC used
    here (600-860 GFLOP/s on 2 cores) and ~5.6x on an AMX Xeon (~1,840), while attention
    tiles, bound by their softmax passes, gain far less. Benchmarks print this line and
    write it in a ``cpu`` column so every figure says what it was measured on, e.g.
    ``"AMD EPYC; 2 logical CPUs; ATen AVX512; bf16 units: AVX512-BF16, no AMX"``.
    """
    capability = torch.backends.cpu.get_cpu_capability()
    return (f"{cpu_model_name()}; {os.cpu_count() or 1} logical CPUs; ATen {capability}; "
            f"bf16 units: {_bf16_units()}")


THP_ENV = "THP_MEM_ALLOC_ENABLE"


def enable_huge_pages() -> bool:
    """Ask PyTorch's CPU allocator to back large tensors with transparent huge pages.

    Sets ``THP_MEM_ALLOC_ENABLE=1`` unless the variable is already set (set it to ``0`` to
    opt out). PyTorch then page-aligns allocations of 2 MiB and more and marks them
    ``MADV_HUGEPAGE`` (Linux; elsewhere it has no effect). It reads the variable once, at
    the process's first tensor allocation, so call this before any tensor exists: the
    entry-point scripts call it in ``main`` right after parsing their arguments.

    Why: at long lengths every activation is a fresh allocation of tens to hundreds of MB,
    and with 4 KiB pages the kernel faults each page in on first touch. Measured on the
    2-core AVX2 EPYC (docs/results.md): one training step of ``tiny.yaml`` at
    1,048,576 bases took 62 s with huge pages against 95 s without, at the same peak RSS
    (7.2 and 7.1 GB).

    Returns True when the variable is ``"1"`` after the call.
    """
    os.environ.setdefault(THP_ENV, "1")
    return os.environ[THP_ENV] == "1"


REUSE_ENV = "LONGSEQ_REUSE_FREED_MEMORY"
# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_TRIM_THRESHOLD = 2**31 - 1  # the largest C int: keep up to 2 GiB free at the heap's top
_USER_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
_USER_TUNABLES = ("glibc.malloc.mmap_threshold", "glibc.malloc.trim_threshold")


def reuse_freed_memory(largest: int = 2**30) -> bool:
    """Let glibc keep freed memory in the process and hand it out again (Linux, glibc).

    By default glibc serves allocations above its mmap threshold (128 KiB at start,
    raised as large blocks are freed, at most 32 MiB) with a fresh ``mmap`` that is
    unmapped on free, and returns free memory at the top of its heap to the OS above a
    trim threshold (at most 64 MiB); the next tensor of that size is then faulted in page
    by page. The blocked kernel allocates tile buffers of that size for every chunk, and
    the OS kernel's work on those pages took 12-26% of the CPU time (``sys_share``) in the
    attention and DNA benchmarks at 65,536 tokens and more. After this call allocations
    below ``largest`` bytes come from glibc's heap and up to 2 GiB of free memory is kept
    at its top. This holds for the main thread's heap, where PyTorch allocates when it is
    driven from the main thread (the scripts here); other threads' heaps still map blocks
    above 64 MiB afresh. Needs a glibc that accepts a threshold above 32 MiB (2.36 does);
    one that caps it refuses, and this returns False with a warning.

    The price is memory: freed memory is not returned, and the heap fragments. Measured on
    the 2-core AVX512-BF16 EPYC (docs/results.md): window attention at 65,536 tokens ran in 1.09 s instead
    of 1.28 s (fp32) and its peak RSS at 1,048,576 tokens stayed 10.7 GB (its whole
    tensors are above ``largest``); a DNA training step of ``tiny.yaml`` at 1,048,576
    bases ran at 26,696 instead of 18,750 tokens/s but peaked at 13.4 instead of 7.2 GB,
    and at 15.3 GB after 8 timed steps. Scripts
    therefore call this only where it was measured to pay: ``bench_attention.py`` by
    default, the DNA scripts with ``--reuse-freed-memory``.

    Does nothing, and returns False, when ``LONGSEQ_REUSE_FREED_MEMORY=0``, when the
    environment sets either threshold already (``MALLOC_MMAP_THRESHOLD_``,
    ``MALLOC_TRIM_THRESHOLD_``, or ``glibc.malloc.mmap_threshold`` /
    ``glibc.malloc.trim_threshold`` in ``GLIBC_TUNABLES``), or when the C library is not
    glibc. Process-wide; may be called at any time. Returns True when both settings took.
    """
    if not 0 < largest < 2**31:
        raise ValueError(f"largest must be in (0, 2**31) bytes (a C int), got {largest}")
    if os.environ.get(REUSE_ENV, "1") == "0":
        return False
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if any(name in os.environ for name in _USER_MALLOC_ENV) or any(name in tunables for name in _USER_TUNABLES):
        log.info("malloc thresholds left as the environment sets them")
        return False
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    refused = [name for name, param, value in (("mmap threshold", _M_MMAP_THRESHOLD, largest),
                                               ("trim threshold", _M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
               if not mallopt(param, value)]
    if refused:
        log.warning("glibc refused the %s; freed memory is reused only partly", " and the ".join(refused))
    return not refused


def warn_if_slow_bf16(precision: str | int | None, on_cpu: bool) -> bool:
    """Log a warning when bf16 precision is asked for on a CPU without bf16 units.

    Returns True when it warned. Measured on an AVX2-only AMD EPYC: one batch-16 training
    step of ``longseq_vit_digits`` at 1024 x 1024 took ~30 s in bf16-mixed against 3.6 s
    in fp32 (how to compare: configs/vision/train_vit_1024.yaml).
    """
    if not on_cpu or "bf16" not in str(precision) or cpu_has_fast_bf16():
        return False
    log.warning("precision=%s on a CPU without AVX512-BF16/AMX: bf16 is emulated here and much slower "
                "than fp32; use --precision 32-true", precision)
    return True


def matmul_gflops(dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu", n: int = 2048,
                  repeats: int = 5) -> float:
    """Median GFLOP/s of an (n, n) @ (n, n) matmul: the machine's FLOP floor, measured in the
    same run as a benchmark so its figures can be read as ratios across machines."""
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if a.is_cuda else (lambda: None)
    a @ b  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        sync()
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def peak_rss_bytes() -> int:
    """Peak resident set size of this process, in bytes (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    import resource  # POSIX only: imported here so the module still imports elsewhere

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def peak_memory_gb(device: torch.device | str | None = None) -> dict[str, float]:
    """``{"peak_rss_gb": ...}`` for this process, plus ``peak_cuda_gb`` (peak allocated) when
    ``device`` is a CUDA device. GB here means GiB, as in every summary the scripts print."""
    out = {"peak_rss_gb": peak_rss_bytes() / 2**30}
    if device is not None and torch.device(device).type == "cuda" and torch.cuda.is_available():
        out["peak_cuda_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out
