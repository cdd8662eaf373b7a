"""The attention benchmark (longseq.bench.attention, scripts/bench_attention.py) end to end
on tiny rows: table, CSV columns, plot and profile."""

from __future__ import annotations

import csv
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from longseq.bench import attention as bench_attention
from longseq.hardware import cpu_description

ROOT = Path(__file__).resolve().parents[2]


def _load():
    return bench_attention


def test_bench_attention_tiny_rows_with_profile(tmp_path: Path, capsys, monkeypatch) -> None:
    for name in ("LONGSEQ_REUSE_FREED_MEMORY", "GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)  # the rows' processes inherit the environment
    monkeypatch.setenv("LONGSEQ_BACKEND", "math")  # ...and a forced tile path with it
    bench = _load()
    out = tmp_path / "bench"
    bench.main(["--rows", "matmul,window,lsh", "--lengths", "300", "--repeats", "2", "--warmup", "0",
                "--threads", "1", "--profile", "--out", str(out)])
    rows = {r["row"]: r for r in csv.DictReader(open(out / "attention.csv"))}
    assert set(rows) == {"matmul", "window", "lsh"}
    for name, r in rows.items():
        assert not r["error"], (name, r["error"])
        times = [float(t) for t in r["times"].split(";")]
        assert len(times) == 2 and all(t > 0 for t in times)
        assert float(r["seconds"]) == pytest.approx(statistics.median(times), rel=1e-3)
        assert 0.0 <= float(r["sys_share"]) <= 1.0
        assert float(r["peak_rss_gb"]) > 0.1
        assert r["reuse_freed_memory"] == str(platform.libc_ver()[0] == "glibc")  # on by default
        assert r["cpu"] == cpu_description()  # each figure names the machine it was measured on
    assert (rows["window"]["path"], rows["lsh"]["path"], rows["matmul"]["path"]) == ("blocked/math", "pattern/math", "")
    assert "forced by LONGSEQ_BACKEND=math" in rows["window"]["path_reason"]
    assert float(rows["window"]["useful_gflops"]) > 0  # window pairs are counted; LSH's are data-dependent
    profile = (out / "profile_lsh_300.txt").read_text()
    assert "Self CPU" in profile and "aten::" in profile
    assert (out / "attention.png").stat().st_size > 5000
    printed = capsys.readouterr().out
    assert "matmul floor" in printed and "profile of one more lsh run" in printed
    assert "path blocked/math: the blocked kernel over the pattern's tiling; forced by LONGSEQ_BACKEND=math" in printed
    assert f"machine: {cpu_description()}" in printed


def test_bench_attention_rejects_bad_counts(tmp_path: Path) -> None:
    bench = _load()
    with pytest.raises(SystemExit):
        bench.main(["--rows", "window", "--repeats", "0", "--out", str(tmp_path)])


def test_bench_attention_can_measure_without_reusing_freed_memory(tmp_path: Path) -> None:
    bench = _load()
    bench.main(["--rows", "matmul", "--repeats", "1", "--warmup", "0", "--threads", "1", "--no-reuse-freed-memory",
                "--out", str(tmp_path)])
    (row,) = csv.DictReader(open(tmp_path / "attention.csv"))
    assert row["row"] == "matmul" and not row["error"] and row["reuse_freed_memory"] == "False"


def test_bench_attention_script_wrapper_runs() -> None:
    """The script is a thin wrapper: ``--help`` works from a fresh interpreter."""
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_attention.py"), "--help"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "--rows" in proc.stdout and "--reuse-freed-memory" in proc.stdout
    assert "LONGSEQ_FUSED_BF16=0" in proc.stdout  # the description is the module's docstring


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_bench_attention_device_cuda_without_a_gpu_is_refused(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        _load().main(["--device", "cuda", "--rows", "matmul", "--out", str(tmp_path / "none")])
    assert exc.value.code == 2 and "--device cuda: PyTorch sees no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


@pytest.mark.cuda
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_bench_attention_rows_on_cuda(tmp_path: Path) -> None:
    """window and dense SDPA on the GPU: the machine column names it, peak memory is the GPU's."""
    _load().main(["--device", "cuda", "--rows", "matmul,window,dense", "--lengths", "4096", "--repeats", "2",
                  "--out", str(tmp_path)])
    rows = {r["row"]: r for r in csv.DictReader(open(tmp_path / "attention.csv"))}
    assert all(not r["error"] for r in rows.values()) and "(CUDA)" in rows["window"]["cpu"]
    assert all(float(r["peak_rss_gb"]) > 0 and float(r["seconds"]) > 0 for r in rows.values())
