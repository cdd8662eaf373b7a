"""ONNX export with symbolic height and width: onnxruntime against PyTorch up to 640 x 640,
windowed blocks exported as windows (no L x L tensor in the graph), named outputs, the
weights' file layout, and the documented export commands."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from longseq import attend, explain
from longseq.patterns import SlidingWindow, Window2D
from longseq.positions import RelativeBias2D
from vision.export import check_onnx, export_onnx
from vision.onnx_graph import is_pairwise, runtime_pairwise_shapes, static_pairwise_shapes

from .helpers import TINY_KWARGS

REPO = Path(__file__).resolve().parents[2]
BIG = (640, 640)  # above 512 x 512: where a dense L x L mask used to dominate


def test_window2d_routes_to_windows_while_exporting(monkeypatch) -> None:
    """Under torch.export, Window2D (Swin's shifted windows and relative table included)
    takes the traced window route, which computes what the eager route computes."""
    torch.manual_seed(0)
    pattern, bias = Window2D(4, (9, 11), shift=2), RelativeBias2D(2, 4)
    q, k, v = (torch.randn(2, 2, 99, 8) for _ in range(3))
    key_mask = torch.rand(2, 99) > 0.3
    eager = attend(q, k, v, pattern, bias=bias, key_mask=key_mask)
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    assert explain(q, k, v, pattern, bias=bias).route == "traced_window2d"
    assert explain(q, k, v, SlidingWindow(3)).route == "traced_dense"  # other patterns keep the dense mask
    torch.testing.assert_close(attend(q, k, v, pattern, bias=bias, key_mask=key_mask), eager, atol=1e-6, rtol=1e-5)


def test_pairwise_checks_find_a_dense_mask(tmp_path: Path) -> None:
    """The graph checks see an L x L constant, an L x L ConstantOfShape and an L x L
    intermediate, and nothing in a graph without one."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    L = 64
    shape = numpy_helper.from_array(np.array([L, L], dtype=np.int64), "shape")
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["mask"]),
        helper.make_node("Constant", [], ["table"], value=numpy_helper.from_array(np.zeros((L, L), np.float32))),
        helper.make_node("Add", ["mask", "table"], ["both"]),
        helper.make_node("ReduceSum", ["both"], ["y"], keepdims=0),
        helper.make_node("Add", ["x", "y"], ["out"]),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [])], [shape])
    path = tmp_path / "dense.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    static = static_pairwise_shapes(path, L)
    assert any(s.startswith("Constant table") for s in static) and any("ConstantOfShape" in s for s in static)
    assert runtime_pairwise_shapes(path, np.array(1.0, np.float32), L) == ["mask: [64, 64]", "table: [64, 64]", "both: [64, 64]"]
    assert static_pairwise_shapes(path, L + 1) == [] and runtime_pairwise_shapes(path, np.array(1.0, np.float32), L + 1) == []
    assert is_pairwise((1, 3, 64, 64), 64) and not is_pairwise((4096, 49, 49), 64)


def test_vit_exports_windows_and_runs_at_640(tmp_path: Path) -> None:
    """Tiny ViT, one global block of three: onnxruntime within 1e-4 of PyTorch at two small
    sizes and at 640 x 640; the only L x L tensors at run time are the global block's dense
    scores (L = 1600 patches); the weights forced into ``<file>.data``."""
    torch.manual_seed(0)
    model = timm.create_model("longseq_vit_tiny", num_classes=5, **TINY_KWARGS["longseq_vit_tiny"]).eval()
    side = model.min_export_side
    path = export_onnx(model, tmp_path / "vit.onnx", sample_size=(side + 13, side + 40), external_data=True)
    assert Path(f"{path}.data").is_file()
    diffs = check_onnx(model, path, sizes=((side + 5, side + 70), (side + 60, side + 2), BIG), atol=1e-4)
    assert len(diffs) == 3 and max(diffs) <= 1e-4

    import onnx

    assert [o.name for o in onnx.load(str(path), load_external_data=False).graph.output] == ["output"]
    tokens = (BIG[0] // 16) * (BIG[1] // 16)
    assert static_pairwise_shapes(path, tokens) == []
    image = np.random.default_rng(0).standard_normal((1, 3, *BIG), dtype=np.float32)
    pairwise = runtime_pairwise_shapes(path, image, tokens)
    heads = TINY_KWARGS["longseq_vit_tiny"]["num_heads"]
    assert pairwise and all(s.endswith(f"[1, {heads}, {tokens}, {tokens}]") for s in pairwise), pairwise
    assert len(pairwise) <= 3 * len(model.global_blocks), pairwise  # scores, softmax: one global block


def test_swin_features_export_windows_and_run_at_640(tmp_path: Path) -> None:
    """Tiny two-stage Swin (shifted windows, region mask, relative table) as a feature
    backbone: outputs ``features_0``, ``features_1`` within 1e-4 of PyTorch up to
    640 x 640, one self-contained file, and no tensor with two dims >= the tokens of the
    coarser stage (80 x 80) anywhere in the graph or at run time."""
    torch.manual_seed(0)
    kwargs = dict(embed_dim=32, depths=(1, 1), num_heads=(1, 2), window_size=3)
    model = timm.create_model("longseq_swin_tiny", features_only=True, **kwargs).eval()
    side = model.model.min_export_side
    path = export_onnx(model, tmp_path / "swin.onnx", sample_size=(side + 13, side + 40))
    assert not Path(f"{path}.data").exists()
    diffs = check_onnx(model, path, sizes=((side + 5, side + 70), BIG), atol=1e-4)
    assert max(diffs) <= 1e-4

    import onnx

    assert [o.name for o in onnx.load(str(path)).graph.output] == ["features_0", "features_1"]
    tokens = (BIG[0] // 8) * (BIG[1] // 8)
    assert static_pairwise_shapes(path, tokens) == []
    image = np.random.default_rng(0).standard_normal((1, 3, *BIG), dtype=np.float32)
    assert runtime_pairwise_shapes(path, image, tokens) == []


def test_export_rejects_sample_below_min_side(tmp_path: Path) -> None:
    model = timm.create_model("longseq_swin_tiny", num_classes=5, **TINY_KWARGS["longseq_swin_tiny"])
    with pytest.raises(ValueError, match="min_side"):
        export_onnx(model, tmp_path / "m.onnx", sample_size=(32, 300))


def _documented_export_commands() -> list[list[str]]:
    """Arguments of every ``python scripts/export_onnx.py`` line of docs/vision.md."""
    lines = (REPO / "docs" / "vision.md").read_text().splitlines()
    prefix = "python scripts/export_onnx.py"
    return [shlex.split(ln.strip(), comments=True)[2:] for ln in lines if ln.strip().startswith(prefix)]


def test_the_export_commands_are_documented() -> None:
    commands = _documented_export_commands()
    assert len(commands) >= 3 and sum("--bench" in c for c in commands) >= 2


@pytest.mark.parametrize("argv", _documented_export_commands(), ids=" ".join)
def test_documented_export_commands_run(argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys) -> None:
    """Each documented command runs end to end, on the tiny model sizes and small images."""
    from vision.cli import export_onnx as cli

    monkeypatch.chdir(tmp_path)
    model = argv[argv.index("--model") + 1]
    # two Swin stages: torch.export's shape reasoning takes about a minute a command for four
    kwargs = dict(TINY_KWARGS[model], depths=(1, 1), num_heads=(1, 2)) if "swin" in model else TINY_KWARGS[model]
    tiny = ["--model-kwargs", json.dumps(kwargs), "--size", "128", "--repeats", "1",
            "--out", str(tmp_path / "model.onnx")]
    cli.main([*argv, *tiny])
    out = capsys.readouterr().out
    if "--bench" in argv:
        row = json.loads(out.strip().splitlines()[-1])
        assert row["max_abs_diff"] < 1e-4 and row["ort_seconds"] > 0 and row["ort_peak_rss_gb"] > 0, row
    else:
        assert "128x128: max |onnxruntime - PyTorch|" in out
