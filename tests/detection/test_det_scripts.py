"""The detection commands: configs, flags, documented examples, the comparison's table, CSV and
figure, and a two-step detector run (YOLO training itself is covered by test_det_ultralytics.py;
a full YOLO run is too slow for the test budget)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml
import torch

from longseq.training.config import ConfigError, read_yaml
from vision.cli import compare_detection, train_detector, train_yolo_baseline

from ..vision.helpers import example_commands

REPO = Path(__file__).resolve().parents[2]
YOLO_YAML = REPO / "configs/detection/train_yolo_baseline.yaml"
DETECTOR_YAML = REPO / "configs/detection/train_detector.yaml"


def _yolo_config(argv: list[str]) -> dict:
    return train_yolo_baseline.build_config_from_args(train_yolo_baseline.parser().parse_args(argv))


def _detector_config(argv: list[str]) -> dict:
    return train_detector.build_config_from_args(train_detector.parser().parse_args(argv))


@pytest.mark.parametrize(("module", "path"), [(train_yolo_baseline, YOLO_YAML), (train_detector, DETECTOR_YAML)],
                         ids=["yolo", "detector"])
def test_default_config_restates_the_defaults(module, path) -> None:
    raw, _ = read_yaml(path)
    assert raw == module.DEFAULTS
    assert Path(module.parser().get_default("config")).resolve() == path.resolve()


def test_yolo_flags_override_config() -> None:
    cfg = _yolo_config(["--config", str(YOLO_YAML), "--img-size", "640", "--model", "yolo11s.yaml"])
    assert cfg["data"]["img_size"] == 640 and cfg["trainer"]["imgsz"] == 640
    assert cfg["model"] == {"name": "yolo11s.yaml"} and cfg["data"]["n_train"] == 512
    assert cfg["trainer"]["nbs"] is None and cfg["trainer"]["warmup_epochs"] == 0.25  # no accumulation by default
    cfg = _yolo_config(["--nbs", "64", "--warmup-epochs", "3", "--optimizer", "SGD", "--lr0", "0.01", "--seed", "4",
                        "--time-minutes", "0", "--amp"])
    t = cfg["trainer"]
    assert (t["nbs"], t["warmup_epochs"], t["optimizer"], t["lr0"], t["seed"], t["amp"]) == (64, 3.0, "SGD", 0.01, 4, True)
    assert t["time_minutes"] == 0 and cfg["data"]["seed"] == 4


def test_yolo_trainer_accepts_ultralytics_arguments(tmp_path: Path) -> None:
    import os

    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics.cfg import DEFAULT_CFG_DICT

    assert set(train_yolo_baseline.ultralytics_train_keys()) == set(DEFAULT_CFG_DICT)
    good = tmp_path / "good.yaml"
    good.write_text("trainer:\n  mosaic: 0.0\n  close_mosaic: 0\n  cos_lr: true\n")
    assert _yolo_config(["--config", str(good)])["trainer"]["cos_lr"] is True


@pytest.mark.parametrize(("text", "line", "match"), [
    ("trainer:\n  batch: 2\n  imgsiz: 64\n", 3, "trainer.imgsiz: unknown key.*did you mean 'imgsz'"),
    ("trainer:\n  time: 0.5\n", 2, "trainer.time: unknown key"),  # the budget is time_minutes
    ("data:\n  imgsz: 64\n", 2, "data.imgsz: unknown key"),
    ("img_size: 64\n", 1, "unknown section 'img_size'"),
    ("task:\n  lr: 1\n", 1, "unknown section 'task'"),
])
def test_yolo_config_errors_name_file_and_line(tmp_path: Path, text: str, line: int, match: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        _yolo_config(["--config", str(bad)])
    assert str(info.value).startswith(f"{bad}:{line}:")


def test_detector_flags_override_config() -> None:
    cfg = _detector_config(["--backbone", "longseq_swin_tiny", "--detector", "retinanet", "--epochs", "5",
                            "--channels", "64", "64", "64", "--seed", "3", "--workers", "0", "--devices", "1"])
    assert cfg["model"] == {"name": "longseq_swin_tiny", "channels": [64, 64, 64]}
    assert cfg["task"]["detector"] == "retinanet" and cfg["trainer"]["max_epochs"] == 5
    assert cfg["data"]["seed"] == 3 and cfg["trainer"]["seed"] == 3 and cfg["data"]["num_workers"] == 0
    assert cfg["trainer"]["devices"] == 1


@pytest.mark.parametrize(("text", "line", "match"), [
    ("model:\n  name: longseq_vit_tiny\n  chanels: [8, 8, 8]\n", 3, "model.chanels: unknown key.*'channels'"),
    ("model:\n  name: longseq_vit_tinny\n", 2, "unknown timm model"),
    ("task:\n  image_size: 64\n", 2, "task.image_size: unknown key"),  # it is data.img_size
    ("trainer:\n  max_epoch: 1\n", 2, "trainer.max_epoch: unknown key"),
])
def test_detector_config_errors_name_file_and_line(tmp_path: Path, text: str, line: int, match: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        _detector_config(["--config", str(bad)])
    assert str(info.value).startswith(f"{bad}:{line}:")


@pytest.mark.parametrize(("module", "script"), [(train_yolo_baseline, "train_yolo_baseline"),
                                                (train_detector, "train_detector")])
def test_documented_examples_print_their_config(module, script, monkeypatch, capsys) -> None:
    examples = example_commands(module.__doc__, script)
    assert len(examples) >= 6
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(module, "run", lambda cfg: pytest.fail("--print-config went on to train"))
    for argv in examples:
        module.main([*argv, "--print-config"])
        printed = yaml.safe_load(capsys.readouterr().out)
        assert {"model", "data", "trainer"} <= set(printed), argv


def test_documented_comparisons_forward_what_train_yolo_accepts(monkeypatch, capsys) -> None:
    """Each documented comparison parses, and what it passes on to every run is a valid run config."""
    examples = example_commands(compare_detection.__doc__, "compare_detection")
    assert len(examples) == 3
    monkeypatch.chdir(REPO)
    for argv in examples:
        args = compare_detection.parser().parse_args(argv)
        forward = compare_detection.passed_on(args)
        for model in args.models:
            train_yolo_baseline.main(["--model", model, *forward, "--print-config"])
            assert yaml.safe_load(capsys.readouterr().out)["model"]["name"] == model


def test_comparison_help_lists_every_flag_it_passes_on() -> None:
    """Every train_yolo_baseline flag that the comparison does not set itself is in its
    --help and reaches each run; unknown flags are errors, not silently forwarded."""
    help_text = compare_detection.parser().format_help()
    own = {"--val-fraction", "--n-train", "--n-val", "-h", "--help", "--debug", "--set",  # --set/--debug: per run
           "--ckpt-path"}  # a resume names one run
    run_flags = {s for a in train_yolo_baseline.parser()._actions for s in a.option_strings}
    passed = run_flags - set(compare_detection.SET_HERE) - own
    assert passed >= {"--time-minutes", "--batch", "--epochs", "--config", "--lr0", "--amp", "--threads"}
    missing = [f for f in sorted(passed) if f not in help_text]
    assert not missing, missing
    args = compare_detection.parser().parse_args(["--img-size", "64", "--time-minutes", "0", "--batch", "2", "--amp",
                                                  "--lr0", "0.01", "--config", "x.yaml"])
    assert compare_detection.passed_on(args) == ["--img-size", "64", "--seed", "0", "--config", "x.yaml",
                                                 "--time-minutes", "0.0", "--batch", "2", "--amp", "--lr0", "0.01"]
    with pytest.raises(SystemExit):
        compare_detection.parser().parse_args(["--bogus", "1"])


def test_default_comparison_models_are_shipped_configs_or_stock_names() -> None:
    shipped = [m for m in compare_detection.DEFAULT_MODELS if m.startswith("configs/")]
    assert shipped and all((REPO / m).is_file() for m in shipped)
    assert "yolo11n.yaml" in compare_detection.DEFAULT_MODELS  # the stock model of similar size


def test_comparison_table_csv_and_png(tmp_path: Path, tiny_digits_yaml: Path) -> None:
    mod = compare_detection
    image = sorted((tiny_digits_yaml.parent / "images/val").glob("*.png"))[0]
    pred = {"image": str(image), "boxes": [[5.0, 6.0, 20.0, 30.0]], "classes": [3], "scores": [0.9],
            "names": [str(i) for i in range(10)]}
    rows = [
        {"model": "configs/detection/longseq_vit_tiny_yolo.yaml", "map50": 0.91234, "map50_95": 0.5, "params": 7_640_000,
         "best_epoch": 3.0, "last_map50_95": 0.45, "infer_images_per_s": 3.5, "train_seconds": 1800.0,
         "epochs_done": 4.25, "peak_rss_gb": 3.2, "img_size": 64, "weights": "a.pt", "prediction": pred},
        {"model": "yolo11s.yaml", "map50": 0.8, "map50_95": 0.4, "params": 9_400_000, "best_epoch": 6.0,
         "last_map50_95": 0.4, "infer_images_per_s": 5.0, "train_seconds": 1790.0, "epochs_done": 6.0,
         "peak_rss_gb": 2.1, "img_size": 64, "weights": "b.pt", "prediction": {**pred, "boxes": [], "classes": [], "scores": []}},
    ]
    table = mod.format_table(rows).splitlines()
    assert table[0].split()[:3] == ["model", "mAP50", "mAP50-95"]
    assert table[2].split()[:3] == ["longseq_vit_tiny_yolo", "0.9123", "0.5000"]
    assert "30.0" in table[2] and "7.64" in table[2] and "9.40" in table[3]
    assert "4.25" in table[2] and "0.4500" in table[2]  # epochs as a fraction; the last epoch's mAP50-95

    mod.write_csv(rows, tmp_path / "c.csv")
    with (tmp_path / "c.csv").open() as fh:
        got = list(csv.DictReader(fh))
    assert [r["model"] for r in got] == [rows[0]["model"], "yolo11s.yaml"] and float(got[1]["map50"]) == 0.8

    png = tmp_path / "p.png"
    mod.plot_predictions(rows, tiny_digits_yaml, png)
    from PIL import Image

    assert png.stat().st_size > 1000 and Image.open(png).size[0] > Image.open(png).size[1]  # three panels side by side


def test_detector_command_two_steps(tmp_path: Path, tiny_digits_yaml: Path, capsys) -> None:
    """The command end to end on 64 x 64 canvases: YAML trainer keys pass through to Lightning."""
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({
        "model": {"name": "test_vit", "channels": [16, 16, 16]},
        "task": {"detector": "fcos", "fpn_channels": 32},
        "trainer": {"logger": False, "enable_progress_bar": False, "enable_model_summary": False,
                    "limit_val_batches": 1, "num_sanity_val_steps": 0, "accelerator": "cpu", "devices": 1},
    }))
    train_detector.main(["--config", str(cfg), "--data", str(tiny_digits_yaml), "--img-size", "64", "--max-steps", "2",
                         "--workers", "0", "--out", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert "test_vit + fcos" in out and "1.00 epochs (2 of 2 batches per epoch, 2 steps)" in out
    assert "1 validation(s)" in out  # the epoch's end validated the final weights: not again
    assert "best  epoch 1.00: val mAP50" in out and "last  epoch 1.00: val mAP50" in out
    assert (tmp_path / "run" / "last.ckpt").is_file() and (tmp_path / "run" / "best.ckpt").is_file()
    # The checkpoint names its backbone and classes, so it reloads without them and predicts as trained.
    from vision.detection.lightning import DetectionTask

    trained = torch.load(tmp_path / "run" / "best.ckpt", map_location="cpu", weights_only=False)
    task = DetectionTask.load_from_checkpoint(tmp_path / "run" / "best.ckpt", map_location="cpu").eval()
    assert task.hparams.backbone_spec == {"model": "test_vit", "channels": [16, 16, 16]}
    assert task.hparams.class_names == [str(i) for i in range(10)]
    assert all(torch.equal(v, trained["state_dict"][k]) for k, v in task.state_dict().items())


def test_compare_detection_names_an_unusable_data_folder(tmp_path: Path, capsys) -> None:
    from vision.cli import compare_detection

    (tmp_path / "photos").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        compare_detection.main(["--data", str(tmp_path / "photos"), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error: --data " in err, err
    assert str(tmp_path / "photos") in err
