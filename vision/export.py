"""ONNX export of the backbones with dynamic height and width, checked with onnxruntime.

While ``torch.export`` traces, :func:`longseq.attend` routes
:class:`~longseq.patterns.Window2D` blocks through window partition and one SDPA call
over the windows (the ``traced_window2d`` route of :mod:`longseq.routes`): the exported
graph holds per-window masks ``(nW, n, n)``, never an ``L x L`` one, so its memory grows
with the windows, not with the square of the image. Global blocks are dense, as in
PyTorch up to ``AUTO_DENSE_MAX_TOKENS`` patches (:mod:`vision.models.vit`).

The graph checks live in :mod:`vision.onnx_graph`, the speed and memory comparison in
:mod:`vision.onnx_bench`, the command in :mod:`vision.cli.export_onnx`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["ONE_FILE_MAX_BYTES", "OnnxCheckError", "check_onnx", "export_onnx", "min_export_side", "output_names_for",
           "weight_bytes"]

log = logging.getLogger(__name__)

#: Weights up to this size go inside the ``.onnx`` file; larger ones to ``<file>.onnx.data``
#: beside it (protobuf caps one file at 2 GiB; the margin leaves room for the graph).
ONE_FILE_MAX_BYTES = 1_800_000_000


class OnnxCheckError(AssertionError):
    """onnxruntime's outputs differ from eager PyTorch's (:func:`check_onnx`).

    An ``AssertionError`` for callers that catch one, but raised explicitly: ``python -O``,
    which strips ``assert`` statements, keeps the check."""


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters and buffers (what the ONNX file stores)."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def min_export_side(model: nn.Module, default: int = 64) -> int:
    """The smallest side the exported graph serves: the model's ``min_export_side``, or
    that of the model a timm ``features_only`` wrapper holds (``model.model``)."""
    for m in (model, getattr(model, "model", None)):
        side = getattr(m, "min_export_side", None)
        if side is not None:
            return int(side)
    return default


def output_names_for(output: Any) -> list[str]:
    """ONNX output names for a model output: ``["output"]`` for one tensor, ``features_0``,
    ``features_1``, ... for a list or tuple of tensors (a ``features_only`` backbone,
    ``forward_intermediates(..., intermediates_only=True)``), the keys of a dict."""
    if isinstance(output, Tensor):
        return ["output"]
    if isinstance(output, dict):
        return [str(k) for k in output]
    if isinstance(output, (list, tuple)) and all(isinstance(t, Tensor) for t in output):
        return [f"features_{i}" for i in range(len(output))]
    raise TypeError(f"cannot name ONNX outputs for a model output of type {type(output).__name__}")


def _flat(output: Any) -> list[Tensor]:
    """The output tensors in ONNX output order."""
    if isinstance(output, Tensor):
        return [output]
    return list(output.values() if isinstance(output, dict) else output)


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    sample_size: tuple[int, int] = (256, 320),
    in_chans: int = 3,
    dynamic_batch: bool = True,
    min_side: int | None = None,
    max_side: int = 16384,
    output_names: Sequence[str] | None = None,
    external_data: bool | None = None,
) -> Path:
    """Export ``model`` (``(B, C, H, W) -> output``) to ONNX with symbolic ``H`` and ``W``.

    Uses the ``torch.export``-based exporter (``dynamo=True``); the input is named
    ``image``. Outputs are named by :func:`output_names_for` (``output``, or
    ``features_0``... for a list of maps) unless ``output_names`` is given.
    ``sample_size`` only traces; any ``min_side <= H, W <= max_side`` is accepted at run
    time. ``min_side`` defaults to :func:`min_export_side` (64 when the model has none):
    torch.export needs every grid side >= 2, and Swin's "no shift when the grid fits one
    window" rule must be decided the same way for every exported size.

    ``external_data``: None (default) writes one self-contained file while the weights
    are at most :data:`ONE_FILE_MAX_BYTES`, else the graph in ``path`` and the weights
    in ``<path>.data`` beside it (keep the two together; onnxruntime finds the data file
    by its name, stored in the graph). True or False forces either layout.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    if min_side is None:
        min_side = min_export_side(model)
    if min(sample_size) < min_side:
        raise ValueError(f"sample_size {sample_size} is below min_side={min_side}")
    x = torch.randn(2 if dynamic_batch else 1, in_chans, *sample_size)
    if output_names is None:
        with torch.no_grad():
            output_names = output_names_for(model(x[:1]))
    if external_data is None:
        external_data = weight_bytes(model) > ONE_FILE_MAX_BYTES
    dims = {
        2: torch.export.Dim("height", min=min_side, max=max_side),
        3: torch.export.Dim("width", min=min_side, max=max_side),
    }
    if dynamic_batch:
        dims[0] = torch.export.Dim("batch", min=1, max=1024)
    with torch.no_grad():
        torch.onnx.export(
            model, (x,), str(path), dynamo=True, input_names=["image"], output_names=list(output_names),
            dynamic_shapes={"x": dims}, optimize=True, external_data=external_data,
        )
    log.info("exported %s to %s%s", type(model).__name__, path, f" (weights in {path}.data)" if external_data else "")
    return path


def check_onnx(
    model: nn.Module,
    path: str | Path,
    sizes: Sequence[tuple[int, int]] = ((224, 288), (320, 256)),
    *,
    in_chans: int = 3,
    atol: float = 1e-4,
    seed: int = 0,
) -> list[float]:
    """Run the ONNX file with onnxruntime at each ``(H, W)`` and compare with eager PyTorch.

    Every output is compared. Returns the max absolute difference per size (over all
    outputs); raises :class:`OnnxCheckError` when one exceeds ``atol``, a shape differs or
    the output count does. Check only sizes of at least :func:`min_export_side`: below it
    the graph's shape rules (Swin's shift, torch.export's grid sides) do not hold.
    """
    import onnxruntime as ort

    ort_session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = ort_session.get_inputs()[0].name
    gen = torch.Generator().manual_seed(seed)
    diffs = []
    model = model.eval()
    for h, w in sizes:
        x = torch.randn(1, in_chans, h, w, generator=gen)
        with torch.no_grad():
            refs = [t.numpy() for t in _flat(model(x))]
        got = ort_session.run(None, {name: x.numpy()})
        if len(got) != len(refs):
            raise OnnxCheckError(f"ONNX has {len(got)} outputs, eager {len(refs)}")
        diff = 0.0
        for i, (g, r) in enumerate(zip(got, refs)):
            if g.shape != r.shape:
                raise OnnxCheckError(f"ONNX output {i} shape {g.shape} != eager {r.shape} at {h}x{w}")
            diff = max(diff, float(np.abs(g - r).max()))
        diffs.append(diff)
        if diff > atol:
            raise OnnxCheckError(f"ONNX differs from eager by {diff:.2e} > {atol:.0e} at {h}x{w}")
    return diffs
