"""Graph traces with gradients enabled: ``torch.jit.trace`` and the TorchScript ONNX exporter
(``torch.onnx.export(..., dynamo=False)``, what ultralytics' ``export(format="onnx")`` runs)
take the plain PyTorch paths, not longseq's custom autograd Functions, which those tracers
cannot record (``RuntimeError: unordered_map::at``); the traced graphs compute what eager
PyTorch computes. Ends with the shipped hybrid YOLO exported by ultralytics."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from torch import Tensor, nn

import vision  # noqa: F401  (registers the longseq_* names)
from longseq.kernels.tracing import is_tracing
from longseq.layers import Encoder, FeedForward
from longseq.patterns import Dense, SlidingWindow, TopK

from .helpers import TINY_KWARGS

REPO = Path(__file__).resolve().parents[2]


class _Spy(nn.Module):
    """Records :func:`is_tracing` as seen inside its forward, in a list outside the module
    (an exporter may run a copy of it)."""

    def __init__(self, seen: list[bool]) -> None:
        super().__init__()
        self.seen = seen

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append(is_tracing())
        return x * 2


def _ort_run(onnx_bytes: bytes, x: Tensor) -> Tensor:
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


def _torchscript_onnx(model: nn.Module, x: Tensor) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
        torch.onnx.export(model, (x,), buffer, dynamo=False)
    return buffer.getvalue()


@pytest.mark.parametrize("tracer", ["eager", "jit_trace", "onnx_torchscript", "onnx_dynamo"])
def test_is_tracing_sees_every_tracer(tracer: str) -> None:
    seen: list[bool] = []
    spy = _Spy(seen)
    x = torch.ones(2, 3)
    if tracer == "eager":
        spy(x)
    elif tracer == "jit_trace":
        torch.jit.trace(spy, x, check_trace=False)
    elif tracer == "onnx_torchscript":
        _torchscript_onnx(spy, x)
    else:
        torch.onnx.export(spy, (x,), dynamo=True, verbose=False)
    # the TorchScript exporter also runs the model once untraced, before its trace
    assert seen and any(seen) is (tracer != "eager"), seen
    assert is_tracing() is False  # and off again afterwards


MODULES = {
    "feedforward": lambda: FeedForward(16, 32),
    "sliding_window_blocked": lambda: Encoder(16, depth=2, heads=2, pattern=SlidingWindow(4)),
    "reversible": lambda: Encoder(16, depth=2, heads=2, pattern=Dense(), reversible=True),
    "topk": lambda: Encoder(16, depth=1, heads=2, pattern=TopK(k=4, block=8)),
}


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("tracer", ["jit_trace", "onnx_torchscript"])
def test_traced_with_grad_enabled_equals_eager(name: str, tracer: str) -> None:
    """Grad enabled, as in ultralytics' exporter: each module's eager path would call a custom
    autograd Function (recomputed activation, blocked or top-k kernel, reversible stack)."""
    torch.manual_seed(0)
    model = MODULES[name]().eval()
    x = torch.randn(2, 24, 16)
    assert torch.is_grad_enabled()
    with torch.no_grad():
        eager = model(x)
    if tracer == "jit_trace":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings: shapes read as Python numbers
            got = torch.jit.trace(model, x, check_trace=False)(x).detach()
    else:
        got = _ort_run(_torchscript_onnx(model, x), x)
    torch.testing.assert_close(got, eager, atol=1e-5, rtol=1e-5)


def test_eager_training_keeps_the_autograd_functions() -> None:
    """Outside a trace the memory-saving paths still run, with the gradients of the plain layers."""
    torch.manual_seed(0)
    ff = FeedForward(8, 16)
    x = torch.randn(2, 5, 8, requires_grad=True)
    y = ff(x)
    assert type(y.grad_fn).__name__.startswith("_ActivationLinear")
    fc1, act, _, fc2 = ff.net
    ref = fc2(act(fc1(x)))
    g, g_ref = torch.autograd.grad(y.square().sum(), x)[0], torch.autograd.grad(ref.square().sum(), x)[0]
    torch.testing.assert_close(g, g_ref)


def test_swin_torchscript_onnx_loads_in_onnxruntime() -> None:
    """Swin's relative-position table is moved head-first with non-negative dims: the
    TorchScript exporter writes a negative Transpose perm, which onnxruntime refuses."""
    torch.manual_seed(0)
    kwargs = dict(TINY_KWARGS["longseq_swin_tiny"], depths=(1, 1), num_heads=(1, 2))
    model = timm.create_model("longseq_swin_tiny", num_classes=3, **kwargs).eval()
    model.set_grad_checkpointing(True)  # a trace takes the plain path here too
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        eager = model(x)
    torch.testing.assert_close(_ort_run(_torchscript_onnx(model, x), x), eager, atol=1e-5, rtol=1e-5)


def test_ultralytics_exports_the_hybrid_yolo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``YOLO(longseq_vit_hybrid_yolo.yaml).export(format="onnx")``: the file onnxruntime runs
    gives the eager model's detections."""
    pytest.importorskip("ultralytics")
    import onnxruntime as ort

    from vision.integrations.ultralytics import YOLO

    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # ultralytics writes the .onnx beside the model it was built from
    torch.manual_seed(0)
    yolo = YOLO(REPO / "configs" / "detection" / "longseq_vit_hybrid_yolo.yaml")
    side = 64  # a 2 x 2 token grid at stride 32: small, yet more than one token per attention
    path = Path(yolo.export(format="onnx", imgsz=side))
    assert path.is_file()
    net = yolo.model.eval()
    x = torch.rand(1, 3, side, side)
    with torch.no_grad():
        eager = net(x)
    eager = (eager[0] if isinstance(eager, (list, tuple)) else eager).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert got.shape == eager.shape
    np.testing.assert_allclose(got, eager, atol=1e-3 * max(1.0, float(np.abs(eager).max())), rtol=0)
