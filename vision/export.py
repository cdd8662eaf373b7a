"""ONNX export of the backbones with dynamic height and width, checked with onnxruntime."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["export_onnx", "check_onnx"]

log = logging.getLogger(__name__)


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    sample_size: tuple[int, int] = (256, 320),
    in_chans: int = 3,
    dynamic_batch: bool = True,
    min_side: int | None = None,
    max_side: int = 16384,
) -> Path:
    """Export ``model`` (``(B, C, H, W) -> output``) to ONNX with symbolic ``H`` and ``W``.

    Uses the ``torch.export``-based exporter (``dynamo=True``); the input is named
    ``image`` and the output ``output``. ``sample_size`` only traces; any
    ``min_side <= H, W <= max_side`` is accepted at run time. ``min_side`` defaults to the
    model's ``min_export_side`` (64 when it has none): torch.export needs every grid side
    >= 2, and Swin's "no shift when the grid fits one window" rule must be decided the
    same way for every exported size.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    if min_side is None:
        min_side = int(getattr(model, "min_export_side", 64))
    if min(sample_size) < min_side:
        raise ValueError(f"sample_size {sample_size} is below min_side={min_side}")
    x = torch.randn(2 if dynamic_batch else 1, in_chans, *sample_size)
    dims = {
        2: torch.export.Dim("height", min=min_side, max=max_side),
        3: torch.export.Dim("width", min=min_side, max=max_side),
    }
    if dynamic_batch:
        dims[0] = torch.export.Dim("batch", min=1, max=1024)
    with torch.no_grad():
        torch.onnx.export(
            model, (x,), str(path), dynamo=True, input_names=["image"], output_names=["output"],
            dynamic_shapes={"x": dims}, optimize=True,
        )
    log.info("exported %s to %s", type(model).__name__, path)
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

    Returns the max absolute difference per size; raises ``AssertionError`` when one
    exceeds ``atol``.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    gen = torch.Generator().manual_seed(seed)
    diffs = []
    model = model.eval()
    for h, w in sizes:
        x = torch.randn(1, in_chans, h, w, generator=gen)
        with torch.no_grad():
            ref = model(x).numpy()
        got = session.run(None, {name: x.numpy()})[0]
        if got.shape != ref.shape:
            raise AssertionError(f"ONNX output shape {got.shape} != eager {ref.shape} at {h}x{w}")
        diff = float(np.abs(got - ref).max())
        diffs.append(diff)
        if diff > atol:
            raise AssertionError(f"ONNX differs from eager by {diff:.2e} > {atol:.0e} at {h}x{w}")
    return diffs
