"""The detection scripts' config, table, CSV and prediction figure (training itself is covered
by test_det_ultralytics.py; a full script run is too slow for the test budget)."""

from __future__ import annotations

import csv
import inspect
from pathlib import Path

import pytest
import yaml

from ..scripts import load_script

REPO = Path(__file__).resolve().parents[2]


def _load(name: str):
    return load_script(name, module_name=name)


def test_baseline_config_mirrors_train_yolo_signature() -> None:
    mod = _load("train_yolo_baseline")
    cfg_path = REPO / "configs/detection/train_yolo_baseline.yaml"
    cfg = mod.load_config(cfg_path)
    params = inspect.signature(mod.train_yolo).parameters
    for key, value in cfg.items():
        assert value == params[key].default, key  # the YAML documents the defaults
    args = mod.parse_args(["--config", str(cfg_path), "--img-size", "640", "--model", "yolo11s.yaml"])
    assert args["img_size"] == 640 and args["model"] == "yolo11s.yaml" and args["n_train"] == 512
    assert args["nbs"] is None and args["warmup_epochs"] == 0.25  # no accumulation by default
    args = mod.parse_args(["--nbs", "64", "--warmup-epochs", "3", "--optimizer", "SGD", "--lr0", "0.01"])
    assert (args["nbs"], args["warmup_epochs"], args["optimizer"], args["lr0"]) == (64, 3.0, "SGD", 0.01)


def test_baseline_config_rejects_unknown_keys(tmp_path: Path) -> None:
    mod = _load("train_yolo_baseline")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"img_size": 64, "imgsz": 64}))
    with pytest.raises(ValueError, match="imgsz"):
        mod.load_config(bad)


def test_default_comparison_models_are_shipped_configs_or_stock_names() -> None:
    mod = _load("compare_detection")
    ours = [m for m in mod.DEFAULT_MODELS if m.startswith("configs/")]
    assert ours and all((REPO / m).is_file() for m in ours)
    assert "yolo11n.yaml" in mod.DEFAULT_MODELS  # the stock model of similar size


def test_comparison_table_csv_and_png(tmp_path: Path, tiny_digits_yaml: Path) -> None:
    mod = _load("compare_detection")
    image = sorted((tiny_digits_yaml.parent / "images/val").glob("*.png"))[0]
    pred = {"image": str(image), "boxes": [[5.0, 6.0, 20.0, 30.0]], "classes": [3], "scores": [0.9],
            "names": [str(i) for i in range(10)]}
    rows = [
        {"model": "configs/detection/longseq_vit_tiny_yolo.yaml", "map50": 0.91234, "map50_95": 0.5, "params": 7_640_000,
         "infer_images_per_s": 3.5, "train_seconds": 1800.0, "epochs_done": 4, "peak_rss_gb": 3.2, "img_size": 64,
         "weights": "a.pt", "prediction": pred},
        {"model": "yolo11s.yaml", "map50": 0.8, "map50_95": 0.4, "params": 9_400_000, "infer_images_per_s": 5.0,
         "train_seconds": 1790.0, "epochs_done": 6, "peak_rss_gb": 2.1, "img_size": 64, "weights": "b.pt",
         "prediction": {**pred, "boxes": [], "classes": [], "scores": []}},
    ]
    table = mod.format_table(rows).splitlines()
    assert table[0].split()[:3] == ["model", "mAP50", "mAP50-95"]
    assert table[2].split()[:3] == ["longseq_vit_tiny_yolo", "0.9123", "0.5000"]
    assert "30.0" in table[2] and "7.64" in table[2] and "9.40" in table[3]

    mod.write_csv(rows, tmp_path / "c.csv")
    with (tmp_path / "c.csv").open() as fh:
        got = list(csv.DictReader(fh))
    assert [r["model"] for r in got] == [rows[0]["model"], "yolo11s.yaml"] and float(got[1]["map50"]) == 0.8

    png = tmp_path / "p.png"
    mod.plot_predictions(rows, tiny_digits_yaml, png)
    from PIL import Image

    assert png.stat().st_size > 1000 and Image.open(png).size[0] > Image.open(png).size[1]  # three panels side by side
