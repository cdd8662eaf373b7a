"""A Pascal VOC folder as ``--data``: split, converted once, and trained on by both commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from vision.detection.voc_folder import STAMP, import_voc_folder, is_voc_folder, resolve_data, voc_split
from vision.detection.yolo_format import check_dataset, load_data_yaml

from .voc_data import write_tiny_detector_config, write_voc_folder

REPO = Path(__file__).resolve().parents[2]


def test_seeded_split_and_image_sets(tmp_path: Path) -> None:
    voc = write_voc_folder(tmp_path / "voc", n=10)
    split = voc_split(voc, val_fraction=0.2, seed=3)
    assert len(split["val"]) == 2 and len(split["train"]) == 8
    assert set(split["train"]).isdisjoint(split["val"])
    assert voc_split(voc, val_fraction=0.2, seed=3) == split  # seeded: the same split again
    assert voc_split(voc, val_fraction=0.01, seed=0)["val"] != []  # at least one validation image
    listed = write_voc_folder(tmp_path / "listed", n=4, image_sets={"train": ["img0", "img2"], "val": ["img3", "x"]})
    split = voc_split(listed, val_fraction=0.5)
    assert [p.stem for p in split["train"]] == ["img0", "img2"] and [p.stem for p in split["val"]] == ["img3"]
    with pytest.raises(ValueError, match="val_fraction"):
        voc_split(voc, val_fraction=1.5)


def test_import_converts_once(tmp_path: Path) -> None:
    voc = write_voc_folder(tmp_path / "voc", n=5)
    out = tmp_path / "run" / "data"
    data_yaml = import_voc_folder(voc, out, val_fraction=0.4, seed=0)
    data = load_data_yaml(data_yaml)
    assert data["names"] == ["cat", "dog"] and data["train"] == "images/train" and data["val"] == "images/val"
    assert len(list((out / "images/train").iterdir())) == 3 and len(list((out / "images/val").iterdir())) == 2
    assert check_dataset(data_yaml).count == 0
    rows = np.loadtxt(next((out / "labels/train").iterdir())).reshape(-1, 5)
    np.testing.assert_allclose(rows[0], [0, 16 / 64, 12 / 48, 20 / 64, 16 / 48], atol=1e-6)  # the cat, 1-based VOC
    stamp = (out / STAMP).stat().st_mtime_ns
    assert import_voc_folder(voc, out, val_fraction=0.4, seed=0) == data_yaml
    assert (out / STAMP).stat().st_mtime_ns == stamp  # reused, not converted again
    import_voc_folder(voc, out, val_fraction=0.2, seed=0)  # other settings: converted afresh
    assert len(list((out / "images/val").iterdir())) == 1


def test_import_never_clears_a_folder_it_did_not_write(tmp_path: Path) -> None:
    voc = write_voc_folder(tmp_path / "voc", n=3)
    out = tmp_path / "project" / "data"
    (out / "mine").mkdir(parents=True)
    (out / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match=r"holds files that no VOC import wrote"):
        import_voc_folder(voc, out)
    assert (out / "mine" / "notes.txt").read_text() == "keep me"
    # an import stopped part-way (its claim written, the copies unfinished) is cleared and redone
    stopped = tmp_path / "run" / "data"
    calls = []

    def stop_after_one(*args, **kwargs):
        calls.append(1)
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("vision.detection.voc_folder.voc_to_yolo", stop_after_one)
        with pytest.raises(KeyboardInterrupt):
            import_voc_folder(voc, stopped, val_fraction=0.4)
    assert calls and (stopped / STAMP).is_file()
    data_yaml = import_voc_folder(voc, stopped, val_fraction=0.4)
    assert check_dataset(data_yaml).count == 0 and len(list((stopped / "images/val").iterdir())) == 1


def test_detection_dataset_skips_an_image_broken_after_the_scan(tmp_path: Path, caplog) -> None:
    from vision.detection.dataset import YoloDetectionDataset

    data_yaml = import_voc_folder(write_voc_folder(tmp_path / "voc", n=4), tmp_path / "data", val_fraction=0.25)
    ds = YoloDetectionDataset(data_yaml.parent, "train", 2)
    first = ds.samples[0].image
    first.write_bytes(first.read_bytes()[:150])  # truncated on disk
    with caplog.at_level("WARNING", logger="vision.detection.dataset"):
        image, target = ds[0]
    assert "using the next image instead" in caplog.text and image.shape == (3, 48, 64)
    assert target["labels"].tolist() == ds.samples[1].labels.tolist()


def test_resolve_data(tmp_path: Path) -> None:
    voc = write_voc_folder(tmp_path / "voc", n=3)
    assert is_voc_folder(voc) and not is_voc_folder(tmp_path)
    converted = resolve_data(voc, tmp_path / "run")
    assert converted == tmp_path / "run" / "data" / "data.yaml"
    assert resolve_data(converted.parent, tmp_path / "other") == converted  # a folder holding data.yaml
    assert resolve_data(converted, tmp_path / "other") == converted
    with pytest.raises(ValueError, match="neither a VOC folder"):
        resolve_data(tmp_path / "run", tmp_path / "other")


def test_detector_trains_on_a_voc_folder(tmp_path: Path) -> None:
    """One step on a VOC folder (4 train images, batch 2: half an epoch): the data is
    converted into the run folder, the final weights validated once, and the summary says
    so."""
    from vision.cli import train_detector

    voc = write_voc_folder(tmp_path / "voc", n=6, image_sets={"train": ["img0", "img1", "img2", "img3"],
                                                               "val": ["img4", "img5"]})
    config = write_tiny_detector_config(tmp_path / "run.yaml")
    run = tmp_path / "run"
    args = train_detector.parser().parse_args(["--config", str(config), "--data", str(voc), "--img-size", "64",
                                               "--max-steps", "1", "--batch-size", "2", "--workers", "0",
                                               "--time-minutes", "5", "--out", str(run)])
    s = train_detector.run(train_detector.build_config_from_args(args))
    assert s["data"] == str(run / "data" / "data.yaml") and s["num_classes"] == 2
    assert (s["steps"], s["batches"], s["batches_per_epoch"]) == (1, 1, 2) and s["epochs_done"] == 0.5
    assert s["validations"] == 1 and s["last_epoch"] == 0.5 and s["best_epoch"] == 0.5
    assert 0 <= s["best_map"] <= 1 and s["best_map50"] == s["last_map50"]
    assert 0 < s["train_minutes"] and 0 < s["validation_minutes"] and s["time_minutes"] == 5
    assert Path(s["checkpoint"]).is_file() and Path(s["best_checkpoint"]).is_file()
    assert 0 < s["params_m"] < 10
    text = train_detector.format_summary(s)
    assert "0.50 epochs (1 of 2 batches per epoch, 1 steps)" in text and "(limit 5 min)" in text
    assert "best  epoch 0.50" in text and "last  epoch 0.50" in text


def test_yolo_baseline_trains_on_a_voc_folder(tmp_path: Path, yolo_env: dict[str, str]) -> None:
    """One epoch of stock yolo11n on a VOC folder (in a fresh interpreter: ultralytics sets
    process-wide state): converted into the run folder, one validation, the trained
    two-class model's parameter count, and the epoch/time fields of the summary."""
    voc = write_voc_folder(tmp_path / "voc", n=6)
    out = tmp_path / "summary.json"
    cmd = [sys.executable, "-m", "vision.cli.train_yolo_baseline", "--data", str(voc), "--val-fraction", "0.34",
           "--img-size", "64", "--epochs", "1", "--time-minutes", "0", "--batch", "2", "--workers", "0",
           "--project", str(tmp_path / "runs"), "--name", "voc", "--summary-json", str(out)]
    proc = subprocess.run(cmd, env=yolo_env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    s = json.loads(out.read_text())
    assert s["data"] == str(tmp_path / "runs" / "voc" / "data" / "data.yaml") and s["num_classes"] == 2
    assert (s["batches"], s["batches_per_epoch"], s["epochs_done"]) == (2, 2, 1.0)
    assert s["validations"] == 1 and s["best_epoch"] == s["last_epoch"] == 1.0
    assert s["map50"] == s["last_map50"] and s["map50_95"] == s["last_map50_95"]
    assert 0 < s["train_seconds"] and 0 < s["validation_seconds"]
    from ultralytics.nn.tasks import DetectionModel

    def params(nc: int) -> int:
        return sum(p.numel() for p in DetectionModel("yolo11n.yaml", nc=nc, verbose=False).parameters())

    assert s["params"] == params(2) < params(10)  # the trained model's head, not the YAML's 80 or 10 classes
    assert "1.00 epochs (2 batches, 2 per epoch)" in proc.stdout


def test_comparison_runs_on_a_voc_folder(tmp_path: Path, yolo_env: dict[str, str], capsys) -> None:
    """The comparison converts the VOC folder once into its --out folder and passes the
    training flags on: one epoch of stock yolo11n, its row in the table and the CSV."""
    from vision.cli import compare_detection

    voc = write_voc_folder(tmp_path / "voc", n=6)
    out = tmp_path / "compare"
    compare_detection.main(["--models", "yolo11n.yaml", "--data", str(voc), "--img-size", "64", "--epochs", "1",
                            "--time-minutes", "0", "--batch", "2", "--workers", "0", "--out", str(out)])
    printed = capsys.readouterr().out
    assert f"Detection on {out / 'data' / 'data.yaml'} at 64²" in printed
    row = json.loads((out / "yolo11n.json").read_text())
    assert row["data"] == str(out / "data" / "data.yaml") and row["epochs_done"] == 1.0 and row["validations"] == 1
    assert (out / "comparison.csv").is_file() and (out / "predictions.png").is_file()
    assert "best epoch" in printed and "last mAP50-95" in printed
