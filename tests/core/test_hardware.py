"""bf16 speed check: warns exactly when bf16 runs on a CPU without bf16 units."""

import logging

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
