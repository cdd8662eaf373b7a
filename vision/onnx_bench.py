"""onnxruntime against PyTorch on one exported backbone: time per image and peak memory.

:func:`bench_onnx` runs three fresh processes, so each peak RSS belongs to one job: the
export (``torch.export`` tracing and the ONNX translation), a PyTorch run (no grad, batch
1) and an onnxruntime run of the exported file on the same input. The onnxruntime
process imports neither torch nor the model code, so its peak is the graph's own. Each
run does one warm-up call, then reports the median of ``repeats`` timed calls. Both use
``threads`` CPU threads. The two outputs are compared (max absolute difference).

The export and PyTorch workers run as ``python -m vision.onnx_bench --worker '<json>'``;
the onnxruntime worker runs :mod:`vision.onnx_ort_worker` by its path, so that it never
imports the ``vision`` package (which imports torch).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from vision import onnx_ort_worker
from vision.onnx_ort_worker import median_seconds, peak_rss_gb, rss_gb

__all__ = ["bench_onnx", "format_bench"]

log = logging.getLogger(__name__)


def _build(spec: dict[str, Any]):
    """The benchmarked model, with the same weights in every process (seeded init)."""
    import timm
    import torch

    import vision  # noqa: F401  (registers the longseq_* names)

    torch.manual_seed(spec["seed"])
    kwargs = {"num_classes": spec["num_classes"], **spec["model_kwargs"]}
    return timm.create_model(spec["model"], **kwargs).eval()


def _export_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Export the model to ``spec["onnx"]``; seconds and peak RSS of this process."""
    import torch

    from vision.export import export_onnx, min_export_side

    torch.set_num_threads(spec["threads"])
    model = _build(spec)
    side = max(min_export_side(model), spec["sample_side"])
    t0 = time.perf_counter()
    export_onnx(model, spec["onnx"], sample_size=(side, side))
    return {"export_seconds": time.perf_counter() - t0, "export_peak_rss_gb": peak_rss_gb()}


def _torch_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """PyTorch inference at ``spec["size"]``; writes the input and output as .npy files."""
    import numpy as np
    import torch

    torch.set_num_threads(spec["threads"])
    model = _build(spec)
    gen = torch.Generator().manual_seed(spec["seed"])
    x = torch.randn(1, 3, spec["size"], spec["size"], generator=gen)
    out: list[Any] = []
    loaded = rss_gb()

    def call() -> None:
        with torch.no_grad():
            out[:] = [model(x)]

    seconds = median_seconds(call, spec["repeats"])
    work = Path(spec["work"])
    np.save(work / "input.npy", x.numpy())
    y = out[0]
    np.save(work / "torch_output.npy", (y if isinstance(y, torch.Tensor) else y[-1]).numpy())
    return {"torch_seconds": seconds, "torch_loaded_rss_gb": loaded, "torch_peak_rss_gb": peak_rss_gb()}


_WORKERS = {"export": _export_worker, "torch": _torch_worker}


def _load_average() -> float:
    """The 1-minute load average (NaN where ``/proc/loadavg`` is missing): other work on
    the machine while a job runs shows as a load above the job's own threads."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


def _run_worker(job: str, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One worker in a fresh interpreter; its JSON result plus ``<job>_load`` (the 1-minute
    load average before and after), or ``{"<job>_status": why}``."""
    if job == "ort":  # by path: no vision package, no torch in this process
        cmd = [sys.executable, str(Path(onnx_ort_worker.__file__).resolve()), json.dumps(spec)]
    else:
        cmd = [sys.executable, "-m", "vision.onnx_bench", "--worker", json.dumps({**spec, "job": job})]
    before = _load_average()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {f"{job}_status": f"timeout>{timeout:.0f}s"}
    load = {f"{job}_load": [before, _load_average()]}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1][:200]
        return {f"{job}_status": "killed (memory)" if proc.returncode in (-9, 137) else f"error: {tail}", **load}
    return {**json.loads(lines[-1]), **load}


def bench_onnx(model: str, size: int, onnx_path: str | Path, *, repeats: int = 3, threads: int | None = None,
               num_classes: int = 0, model_kwargs: dict[str, Any] | None = None, sample_side: int = 256,
               seed: int = 0, timeout: float = 3600.0) -> dict[str, Any]:
    """Export ``model`` to ``onnx_path``, then time it at ``size x size`` in PyTorch and in
    onnxruntime (batch 1, ``threads`` threads, default all cores).

    ``sample_side`` is the traced sample's side (at least the model's ``min_export_side``);
    the exported graph takes any size. Returns one row: seconds per image, RSS (GiB) of
    each process once its model is loaded and at its peak, export time, the file sizes,
    the outputs' max absolute difference, ``ort_over_torch`` (time ratio) and each job's
    1-minute load average before and after (``<job>_load``: above the job's own threads,
    other work shared the CPU); a failed step leaves ``<job>_status`` instead.
    """
    from longseq.hardware import cpu_description

    onnx_path = Path(onnx_path).resolve()
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    spec = {"model": model, "size": int(size), "onnx": str(onnx_path), "work": str(onnx_path.parent),
            "repeats": int(repeats), "threads": int(threads or os.cpu_count() or 1), "num_classes": int(num_classes),
            "model_kwargs": dict(model_kwargs or {}), "sample_side": int(sample_side), "seed": int(seed)}
    row: dict[str, Any] = {"model": model, "size": int(size), "threads": spec["threads"], "repeats": spec["repeats"]}
    for job in ("export", "torch", "ort"):
        log.info("%s: %s at %d", job, model, size)
        row.update(_run_worker(job, spec, timeout))
        if f"{job}_status" in row:
            break
    if "ort_seconds" in row:
        row["ort_over_torch"] = row["ort_seconds"] / row["torch_seconds"]
        data = Path(f"{onnx_path}.data")
        row["onnx_mb"] = (onnx_path.stat().st_size + (data.stat().st_size if data.exists() else 0)) / 2**20
    row["cpu"] = cpu_description()
    return row


def format_bench(row: dict[str, Any]) -> str:
    """One readable block for a :func:`bench_onnx` row."""
    head = f"{row['model']} at {row['size']}x{row['size']}, batch 1, {row['threads']} threads"
    failed = [f"  {k}: {v}" for k, v in row.items() if k.endswith("_status")]
    loads = "  ".join(f"{k[:-5]} {v[0]:.2f}->{v[1]:.2f}" for k, v in row.items() if k.endswith("_load"))
    if failed:
        return "\n".join([head, *failed])
    return "\n".join([
        head,
        f"  PyTorch      {row['torch_seconds']:.3f} s/image  peak RSS {row['torch_peak_rss_gb']:.2f} GB"
        f" (model loaded: {row['torch_loaded_rss_gb']:.2f} GB)",
        f"  onnxruntime  {row['ort_seconds']:.3f} s/image  peak RSS {row['ort_peak_rss_gb']:.2f} GB"
        f" (model loaded: {row['ort_loaded_rss_gb']:.2f} GB)  {row['ort_over_torch']:.2f}x PyTorch's time",
        f"  export       {row['export_seconds']:.1f} s  peak RSS {row['export_peak_rss_gb']:.2f} GB"
        f"  file {row['onnx_mb']:.1f} MB  max |ORT - PyTorch| {row['max_abs_diff']:.2e}",
        f"  CPU {row['cpu']}",
        f"  1-minute load before->after: {loads}",
    ])


def _worker_main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="worker of vision.onnx_bench (one job per process)")
    p.add_argument("--worker", required=True, help="JSON spec with its 'job'")
    spec = json.loads(p.parse_args(argv).worker)
    print(json.dumps(_WORKERS[spec.pop("job")](spec)))


if __name__ == "__main__":
    _worker_main()
