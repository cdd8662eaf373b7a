"""Whether a call is being traced into a graph rather than run.

The custom :class:`torch.autograd.Function` s of longseq (the feed-forward that recomputes
its activation, the blocked and top-k attention kernels, the reversible stack) exist to
save memory in backward. A graph exporter cannot use them: the TorchScript tracer behind
``torch.jit.trace`` and ``torch.onnx.export(..., dynamo=False)`` (the exporter
ultralytics calls) fails on their non-tensor arguments (``RuntimeError:
unordered_map::at``), and an exported graph has no backward anyway. Each such place asks
:func:`is_tracing` and takes its plain PyTorch path instead. LSH has no such path: its
buckets depend on the data, so a trace would fix one input's layout, and it stays
untraceable.
"""

from __future__ import annotations

import torch

__all__ = ["is_tracing"]


def is_tracing() -> bool:
    """True while ``torch.jit.trace``, ``torch.export`` or ``torch.onnx.export`` (either
    exporter) traces the current call.

    ``torch.compile`` is not counted: it compiles autograd Functions with their backward,
    so training under it keeps the memory-saving paths (ask ``torch.compiler.is_compiling()``
    for that)."""
    if torch.jit.is_tracing() or torch.compiler.is_exporting():
        return True
    in_onnx_export = getattr(torch.onnx, "is_in_onnx_export", None)  # absent in some torch builds
    return bool(in_onnx_export is not None and in_onnx_export())
