"""Hardware helpers: the bf16 speed warning and the huge-page allocator switch."""

import logging
import os
import subprocess
import sys

import torch

from longseq import hardware


def test_warns_only_for_bf16_on_cpu_without_bf16_units(monkeypatch, caplog):
    monkeypatch.setattr(hardware, "cpu_has_fast_bf16", lambda: False)
    with caplog.at_level(logging.WARNING, logger="longseq.hardware"):
        assert hardware.warn_if_slow_bf16("bf16-mixed", on_cpu=True)
    assert "32-true" in caplog.text
    assert not hardware.warn_if_slow_bf16("32-true", on_cpu=True)
    assert not hardware.warn_if_slow_bf16("bf16-mixed", on_cpu=False)
    monkeypatch.setattr(hardware, "cpu_has_fast_bf16", lambda: True)
    assert not hardware.warn_if_slow_bf16("bf16-mixed", on_cpu=True)


def test_cpu_has_fast_bf16_matches_torch_flags():
    expected = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert hardware.cpu_has_fast_bf16() == expected


_ALIGNMENT_PROBE = """
import os, sys, torch
from longseq.hardware import enable_huge_pages
print(enable_huge_pages(), os.environ["THP_MEM_ALLOC_ENABLE"])
xs = [torch.empty(3 * 2**20 + 4160 * i, dtype=torch.uint8) for i in range(6)]
print(sum(x.data_ptr() % 4096 == 0 for x in xs))
"""


def _probe(env_value):
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if env_value is not None:
        env["THP_MEM_ALLOC_ENABLE"] = env_value
    out = subprocess.run([sys.executable, "-c", _ALIGNMENT_PROBE], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    return out[0] == "True", out[1], int(out[2])


def test_enable_huge_pages_reaches_the_torch_allocator():
    """Called before the first tensor, the setting reaches PyTorch's allocator, which then
    page-aligns large tensors (to advise huge pages on them); an explicit 0 is left alone
    and the allocator keeps its ordinary 64-byte alignment."""
    enabled, value, aligned = _probe(None)
    assert enabled and value == "1" and aligned == 6
    enabled, value, aligned = _probe("0")
    assert not enabled and value == "0" and aligned < 6
