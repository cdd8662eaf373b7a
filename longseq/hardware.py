"""What the CPU can do fast, for choosing defaults and warning about slow settings."""

from __future__ import annotations

import logging
import os
import statistics
import time

import torch

__all__ = ["cpu_has_fast_bf16", "enable_huge_pages", "matmul_gflops", "warn_if_slow_bf16"]

log = logging.getLogger(__name__)


def cpu_has_fast_bf16() -> bool:
    """True when this CPU has native bf16 matmul units (AVX512-BF16 or AMX tiles).

    Without them (AVX2-only x86, for instance) PyTorch emulates bf16 matmuls and
    convolutions, which are then several times slower than fp32.
    """
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


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
    2-core EPYC (docs/genomics.md, "Huge pages"): one training step of ``tiny.yaml`` at
    1,048,576 bases took 62 s with huge pages against 95 s without, at the same peak RSS
    (7.2 and 7.1 GB).

    Returns True when the variable is ``"1"`` after the call.
    """
    os.environ.setdefault(THP_ENV, "1")
    return os.environ[THP_ENV] == "1"


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
