"""ONNX export with symbolic height and width, checked with onnxruntime at two resolutions."""

from __future__ import annotations

import pytest
import timm
import torch

from vision.export import check_onnx, export_onnx

from .helpers import TINY_KWARGS

@pytest.mark.parametrize("name", ["longseq_vit_tiny", "longseq_swin_tiny"])
def test_onnx_dynamic_hw_matches_eager(name, tmp_path):
    kwargs = dict(TINY_KWARGS[name])
    model = timm.create_model(name, num_classes=5, **kwargs).eval()
    side = model.min_export_side
    path = export_onnx(model, tmp_path / f"{name}.onnx", sample_size=(side + 13, side + 40))
    diffs = check_onnx(model, path, sizes=((side + 5, side + 70), (side + 60, side + 2)), atol=1e-4)
    assert len(diffs) == 2 and max(diffs) <= 1e-4


def test_export_rejects_sample_below_min_side(tmp_path):
    model = timm.create_model("longseq_swin_tiny", num_classes=5, **TINY_KWARGS["longseq_swin_tiny"])
    with pytest.raises(ValueError, match="min_side"):
        export_onnx(model, tmp_path / "m.onnx", sample_size=(32, 300))
