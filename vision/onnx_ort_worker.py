"""The onnxruntime side of :mod:`vision.onnx_bench`, and the process-memory readings both sides use.

Run by its path (``python vision/onnx_ort_worker.py '<json>'``), this file imports only
the standard library, numpy and onnxruntime: importing the ``vision`` package would
import torch, whose memory the onnxruntime measurement must not hold.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

__all__ = ["median_seconds", "ort_worker", "peak_rss_gb", "rss_gb"]


def _proc_status_gb(key: str) -> float | None:
    """A ``/proc/self/status`` memory entry (``VmHWM``, ``VmRSS``) in GiB; None off Linux."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024 / 2**30
    return None


def rss_gb() -> float:
    """Current RSS of this process in GiB (NaN where ``/proc`` is missing)."""
    now = _proc_status_gb("VmRSS")
    return float("nan") if now is None else now


def peak_rss_gb() -> float:
    """Peak RSS of this process in GiB: Linux's ``VmHWM``, which starts afresh at ``exec``
    (``ru_maxrss`` keeps the peak of the parent it was forked from), else ``ru_maxrss``."""
    peak = _proc_status_gb("VmHWM")
    if peak is not None:
        return peak
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (peak if sys.platform == "darwin" else peak * 1024) / 2**30


def median_seconds(call: Callable[[], None], repeats: int) -> float:
    """Median wall time of ``call()`` over ``repeats`` runs after one warm-up run."""
    call()
    times = []
    for _ in range(max(repeats, 1)):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def ort_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """onnxruntime inference of ``spec["onnx"]`` on the PyTorch run's ``input.npy`` (in
    ``spec["work"]``), compared with its ``torch_output.npy``; seconds and memory."""
    import numpy as np
    import onnxruntime as ort

    work = Path(spec["work"])
    x = np.load(work / "input.npy")
    options = ort.SessionOptions()
    options.intra_op_num_threads = spec["threads"]
    ort_session = ort.InferenceSession(spec["onnx"], options, providers=["CPUExecutionProvider"])
    name = ort_session.get_inputs()[0].name
    out: list[Any] = []
    loaded = rss_gb()

    def call() -> None:
        out[:] = ort_session.run(None, {name: x})

    seconds = median_seconds(call, spec["repeats"])
    diff = float(np.abs(out[-1] - np.load(work / "torch_output.npy")).max())
    return {"ort_seconds": seconds, "ort_loaded_rss_gb": loaded, "ort_peak_rss_gb": peak_rss_gb(),
            "max_abs_diff": diff}


if __name__ == "__main__":
    print(json.dumps(ort_worker(json.loads(sys.argv[1]))))
