"""Hardware helpers: the bf16 speed warning and the allocator switches (huge pages, reuse)."""

import logging
import os
import platform
import subprocess
import sys

import pytest
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


@pytest.mark.parametrize("amx, avx512_bf16, units", [
    (True, True, "bf16 units: AMX"),
    (False, True, "bf16 units: AVX512-BF16, no AMX"),
    (False, False, "bf16 units: none (emulated)"),
])
def test_cpu_description_names_the_bf16_units(monkeypatch, amx, avx512_bf16, units):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    text = hardware.cpu_description()
    assert text.endswith(units)
    assert f"{os.cpu_count()} logical CPUs" in text
    assert f"ATen {torch.backends.cpu.get_cpu_capability()}" in text
    assert hardware.cpu_has_fast_bf16() == (amx or avx512_bf16)


def test_cpu_model_name_reads_cpuinfo_and_falls_back(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
                    "flags\t\t: fpu amx_tile\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n")
    assert hardware.cpu_model_name(str(info)) == "Intel(R) Xeon(R) Platinum 8480+"
    info.write_text("processor\t: 0\nmodel name\t: \n")  # blank name: fall back
    fallback = platform.processor() or platform.machine() or "unknown CPU"
    assert hardware.cpu_model_name(str(info)) == fallback
    assert hardware.cpu_model_name(str(tmp_path / "missing")) == fallback


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


_REUSE_PROBE = """
import ctypes, resource, sys, torch
import longseq.attention, longseq.layers  # the heap a script has when it calls this: which chunks
from longseq.hardware import reuse_freed_memory  # glibc hands back depends on what came before
# 4 KiB pages for this process even where the system's THP mode is "always", so that the
# fault count measures pages touched (PR_SET_THP_DISABLE = 41)
if sys.platform.startswith("linux"):
    ctypes.CDLL(None).prctl(41, 1, 0, 0, 0)
took = reuse_freed_memory() if sys.argv[1] == "call" else False
faults = []
for _ in range(12):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.empty(64 * 2**20, dtype=torch.uint8).fill_(1)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    del x
print(took, sum(faults[2:]))  # the first two take fresh heap memory
"""


def _reuse_probe(call: bool, **env_extra: str) -> tuple[bool, int]:
    drop = {"THP_MEM_ALLOC_ENABLE", "LONGSEQ_REUSE_FREED_MEMORY", "GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_",
            "MALLOC_TRIM_THRESHOLD_"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(THP_MEM_ALLOC_ENABLE="0", **env_extra)  # no huge-page advice from PyTorch either
    out = subprocess.run([sys.executable, "-c", _REUSE_PROBE, "call" if call else "no"], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0] == "True", int(out[1])


def test_reuse_freed_memory_stops_refaulting_freed_tensors():
    """A freed 64 MiB tensor's pages are handed out again instead of faulted in anew:
    without the call each new 64 MiB tensor faults ~16,384 pages; with it, of the ten
    tensors after the first two, most fault nothing. A few may land on fresh heap memory
    (when a small allocation took the freed spot) or find their retained pages reclaimed
    by the OS while idle: on the reference VM, whose kernel runs a DAMON ``pageout``
    scheme, 0-3 of the ten faulted in eight probes on the reference EPYC, 0-2 on an earlier machine. The bound,
    half the ten, still fails if freed memory goes back to the OS. The opt-out variable
    and a user's own malloc settings are respected."""
    pages = 64 * 2**20 // 4096
    _, faults_default = _reuse_probe(call=False)
    assert faults_default >= 10 * pages * 0.9  # glibc's default: mmap per tensor, unmapped on free
    if platform.libc_ver()[0] != "glibc":
        assert _reuse_probe(call=True) == (False, pytest.approx(faults_default, rel=0.2))
        return
    # The best of three probes: pages the OS reclaims while the process idles (or while other
    # processes compete for memory) vary run to run; with reuse broken, every probe faults all ten.
    probes = [_reuse_probe(call=True) for _ in range(3)]
    assert all(took for took, _ in probes) and min(faults for _, faults in probes) <= 5 * pages, probes
    for opt_out in ({"LONGSEQ_REUSE_FREED_MEMORY": "0"}, {"MALLOC_TRIM_THRESHOLD_": "131072"},
                    {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=131072"}):
        took, faults = _reuse_probe(call=True, **opt_out)
        assert not took and faults >= 10 * pages * 0.9


def test_reuse_freed_memory_rejects_sizes_mallopt_cannot_take():
    for bad in (0, -1, 2**31):
        with pytest.raises(ValueError, match="largest"):
            hardware.reuse_freed_memory(bad)


def test_command_threads_take_the_share_they_are_given(monkeypatch):
    from longseq.hardware import command_threads

    monkeypatch.delenv("LONGSEQ_NUM_THREADS", raising=False)
    assert command_threads() == (os.cpu_count() or 1)
    monkeypatch.setenv("LONGSEQ_NUM_THREADS", "3")
    assert command_threads() == 3
    monkeypatch.setenv("LONGSEQ_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="LONGSEQ_NUM_THREADS must be a whole number, got 'many'"):
        command_threads()
