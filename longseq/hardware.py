"""What the CPU can do fast, for choosing defaults and warning about slow settings."""

from __future__ import annotations

import logging

import torch

__all__ = ["cpu_has_fast_bf16", "warn_if_slow_bf16"]

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
