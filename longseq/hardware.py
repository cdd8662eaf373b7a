"""What the CPU can do fast, for choosing defaults and warning about slow settings."""

from __future__ import annotations

import logging
import statistics
import time

import torch

__all__ = ["cpu_has_fast_bf16", "matmul_gflops", "warn_if_slow_bf16"]

log = logging.getLogger(__name__)


def cpu_has_fast_bf16() -> bool:
    """True when this CPU has native bf16 matmul units (AVX512-BF16 or AMX tiles).

    Without them (AVX2-only x86, for instance) PyTorch emulates bf16 matmuls and
    convolutions, which are then several times slower than fp32.
    """
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


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
