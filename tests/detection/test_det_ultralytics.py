"""longseq backbones inside ultralytics YOLO: register(), the shipped YAMLs, train, reload, predict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[2]

CONFIGS = sorted((REPO / "configs" / "detection").glob("*_yolo.yaml"))


def _run(code: str, env: dict[str, str], timeout: int = 240) -> str:
    """Run ``code`` in a fresh interpreter (cwd outside the repo); return its last stdout line."""
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd="/", capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout.strip().splitlines()[-1]


def test_integrations_package_does_not_import_ultralytics(yolo_env: dict[str, str]) -> None:
    out = _run(
        "import sys, vision.integrations, vision.integrations.ultralytics as u, vision.detection.pyramid;"
        "print('ultralytics' in sys.modules, callable(u.register))",
        yolo_env,
    )
    assert out == "False True"


def test_yolo_builds_a_longseq_yaml_without_register(yolo_env: dict[str, str]) -> None:
    """``vision.integrations.ultralytics.YOLO`` registers the longseq modules itself and returns
    ultralytics' own ``YOLO``; the shipped config path resolves from any folder. Ultralytics'
    ``YOLO`` on the same YAML without ``register()`` stops at a bare KeyError."""
    cfg = REPO / "configs/detection/longseq_vit_tiny_yolo.yaml"
    out = _run(
        "import ultralytics, ultralytics.nn.tasks as tasks\n"
        "try:\n"
        f"    ultralytics.YOLO({str(cfg)!r}); bare = 'built'\n"
        "except KeyError as e:\n"
        "    bare = f'KeyError {e}'\n"
        "from vision.integrations.ultralytics import YOLO\n"
        "m = YOLO('configs/detection/longseq_vit_tiny_yolo.yaml')\n"
        "print(bare, '|', type(m) is ultralytics.YOLO, type(m.model.model[0]).__name__)",
        yolo_env,
    )
    assert out == "KeyError 'MultiScaleBackbone' | True MultiScaleBackbone"


def test_shipped_configs_exist() -> None:
    assert {p.name for p in CONFIGS} >= {
        "longseq_vit_digits_yolo.yaml",
        "longseq_vit_hybrid_yolo.yaml",
        "longseq_vit_tiny_yolo.yaml",
        "longseq_vit_small_yolo.yaml",
        "longseq_swin_tiny_yolo.yaml",
    }


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda p: p.stem)
def test_yaml_builds_and_runs_at_640_and_non_square(cfg: Path, yolo_env: dict[str, str]) -> None:
    from vision.integrations.ultralytics import register

    register()
    register()  # idempotent
    from ultralytics import YOLO

    from vision.detection.pyramid import MultiScaleBackbone

    d = yaml.safe_load(cfg.read_text())
    assert d["backbone"][0][2] == "MultiScaleBackbone" and d["backbone"][0][3][0].startswith("longseq_")
    model = YOLO(str(cfg)).model.eval()
    body = model.model[0]
    assert isinstance(body, MultiScaleBackbone)
    # The Index rows' declared channels are the pyramid's real channels.
    assert [row[3][0] for row in d["backbone"][1:4]] == body.channels
    assert model.stride.tolist() == [8.0, 16.0, 32.0]
    nc = d["nc"]
    # 640 (ultralytics' default size) for the tiny model; smaller sizes keep the bigger ones fast.
    sizes = [(640, 640), (352, 480)] if "vit_tiny" in cfg.name else [(256, 256), (192, 320)]
    for h, w in sizes:
        with torch.no_grad():
            out = model(torch.rand(1, 3, h, w))
        pred = out[0] if isinstance(out, (list, tuple)) else out
        cells = sum((h // s) * (w // s) for s in (8, 16, 32))
        assert tuple(pred.shape) == (1, 4 + nc, cells)
        assert torch.isfinite(pred).all()


def test_register_refuses_to_shadow(yolo_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    import ultralytics.nn.tasks as tasks

    from vision.integrations.ultralytics import register

    monkeypatch.setattr(tasks, "MultiScaleBackbone", object(), raising=False)
    with pytest.raises(RuntimeError, match="refusing"):
        register()


def test_train_one_epoch_reload_in_fresh_process_and_predict(
    tmp_path: Path, yolo_env: dict[str, str], tiny_digits_yaml: Path
) -> None:
    """Train 1 epoch on 4 tiny canvases with the shipped ViT-tiny YAML (in a subprocess,
    as ultralytics changes process-wide settings), then load the checkpoint in another fresh
    interpreter that never calls register(), and predict on an image file."""
    cfg = REPO / "configs/detection/longseq_vit_tiny_yolo.yaml"
    train = f"""
import torch
from vision.integrations.ultralytics import register
register()
from ultralytics import YOLO
m = YOLO({str(cfg)!r})
m.train(data={str(tiny_digits_yaml)!r}, epochs=1, imgsz=64, batch=2, workers=0, plots=False, device="cpu",
        amp=False, project={str(tmp_path)!r}, name="run", exist_ok=True, verbose=False, seed=0)
print(m.trainer.last)
"""
    last = Path(_run(train, yolo_env))
    assert last.is_file() and last.name == "last.pt"

    image = next((tiny_digits_yaml.parent / "images" / "val").glob("*.png"))
    probe = tmp_path / "probe.pt"
    reload = f"""
import json, sys, torch
from ultralytics import YOLO
assert "vision" not in sys.modules  # the checkpoint itself imports it
m = YOLO({str(last)!r})
assert "vision.integrations.ultralytics" not in sys.modules  # register() was never called
r = m.predict({str(image)!r}, imgsz=64, conf=0.0, device="cpu", verbose=False)[0]
net = m.model.float().eval()
torch.manual_seed(0)
x = torch.rand(1, 3, 64, 96)
with torch.no_grad():
    y = net(x)
y = y[0] if isinstance(y, (list, tuple)) else y
torch.save({{"x": x, "y": y}}, {str(probe)!r})
print(json.dumps({{"body": type(net.model[0]).__name__, "boxes": list(r.boxes.xyxy.shape),
                  "cls_max": float(r.boxes.cls.max()) if len(r.boxes) else -1.0, "shape": list(r.orig_shape),
                  "names": len(r.names)}}))
"""
    res = json.loads(_run(reload, yolo_env))
    assert res["body"] == "MultiScaleBackbone"
    assert res["shape"] == [64, 64] and res["names"] == 10
    assert res["boxes"][1] == 4 and res["boxes"][0] >= 1  # conf=0 keeps the top detections
    assert 0 <= res["cls_max"] < 10

    # The same checkpoint loaded here gives the same outputs: the weights survived saving and loading.
    from ultralytics import YOLO

    saved = torch.load(probe)
    net = YOLO(str(last)).model.float().eval()
    with torch.no_grad():
        y = net(saved["x"])
    y = y[0] if isinstance(y, (list, tuple)) else y
    torch.testing.assert_close(y, saved["y"], rtol=1e-4, atol=1e-4)
