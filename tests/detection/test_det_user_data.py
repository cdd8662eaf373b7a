"""Data sets as users bring them: polygon label rows, VOC folders whose images do not match
their ``<filename>``, inverted boxes, class names that differ in case, COCO json and a
``VOCdevkit/`` folder as ``--data``; the bad-label counts the summaries carry, the flip
default per data set, and a timed detector run that the clock ends, not an epoch cap."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vision.detection.voc import voc_to_yolo
from vision.detection.voc_folder import STAMP, import_report, import_voc_folder, resolve_data, voc_class_names
from vision.detection.yolo_format import (
    LabelReport, check_dataset, parse_label_row, scan_split, write_data_yaml, yolo_to_xyxy,
)

from .voc_data import write_tiny_detector_config, write_voc_folder


# ---------------------------------------------------------------------------------- YOLO rows
def test_polygon_rows_are_read_as_their_bounding_box(tmp_path: Path) -> None:
    assert parse_label_row("0 0.5 0.5 0.3 0.3 0.2 0.2 0.8 0.8".split()) == (0, pytest.approx([0.5, 0.5, 0.6, 0.6]))
    assert parse_label_row("1 0.5 0.5 0.2 0.4".split(), 2) == (1, [0.5, 0.5, 0.2, 0.4])
    for row, reason in (("0 0.1 0.1 0.2 0.2 0.9", "got 6"),  # a box with a sixth column
                        ("0 0.1 0.1 0.2 0.2 0.3 0.3 0.4", "got 8"),  # half a point
                        ("0 0.1 0.1 0.2 0.2 0.3 1.5", "polygon's box outside the image"),
                        ("0 nan 0.5 0.1 0.1", "non-finite"),  # nan passes every range comparison
                        ("inf 0.5 0.5 0.1 0.1", "non-finite")):  # int(inf) would raise OverflowError
        with pytest.raises(ValueError, match=reason):
            parse_label_row(row.split())

    # the same rows through the scan every reader uses: the polygon loads, the others are reported
    Image.new("RGB", (40, 20)).save(_mkdir(tmp_path / "images/train") / "a.png")
    (_mkdir(tmp_path / "labels/train") / "a.txt").write_text(
        "0 0.5 0.5 0.3 0.3 0.2 0.2 0.8 0.8\n"  # polygon (Roboflow segmentation export)
        "1 0.25 0.25 0.1 0.1\n"
        "1 0.5 0.5 0.2 0.2 0.9\n"
    )
    write_data_yaml(tmp_path, ["a", "b"], splits=["train"])
    (sample,), report = scan_split(tmp_path, "train", 2)
    assert sample.labels.tolist() == [0, 1]
    np.testing.assert_allclose(yolo_to_xyxy(sample.boxes[:1], 40, 20), [[8, 4, 32, 16]], atol=1e-6)
    assert report.count == 1 and "line 3: expected 5 columns (class cx cy w h) or a polygon" in report.lines()[0]
    assert check_dataset(tmp_path / "data.yaml", splits=["train"]).counts() == {
        "bad_labels": 1, "files_dropped": 0, "boxes_rejected": 1}


def test_label_report_counts_dropped_files_apart_and_logs_the_first_few(caplog) -> None:
    report = LabelReport()
    for i in range(13):
        report.add(f"f{i:02d}.xml", "missing image", drop_file=True)
    report.add("f00.xml", "object 1: unknown class 'x'")  # no double count of the dropped file
    report.add("g.txt", "line 1: class 9 not in [0, 2)")
    assert report.counts() == {"bad_labels": 15, "files_dropped": 13, "boxes_rejected": 2}
    assert LabelReport.from_dict(json.loads(json.dumps(report.to_dict()))).counts() == report.counts()
    with caplog.at_level(logging.WARNING, logger="vision.detection.yolo_format"):
        report.log()
    assert "15 bad label(s) in 14 file(s): 13 file(s) left out, 2 box(es) rejected" in caplog.text
    assert "... and 4 more file(s)" in caplog.text and "f13.xml" not in caplog.text


# ---------------------------------------------------------------------------------- VOC
def _voc_case_folder(root: Path) -> Path:
    """A VOC folder whose images a ``<filename>`` lookup alone misses: ``img1.JPG`` and
    ``img2.png`` for ``img1.jpg``/``img2.jpg``, ``<filename>IMG3.jpg</filename>`` for
    ``img3.jpg``; ``img4`` has no image, ``img5``'s is truncated, ``img0`` has an inverted
    box, and its names are ``Dog``, `` dog `` and ``dog``."""
    write_voc_folder(root, n=7, image_sets={"train": ["img0", "img1", "img2", "img3", "img4", "img5"],
                                            "val": ["img6"]})
    jpg = root / "JPEGImages"
    (jpg / "img1.jpg").rename(jpg / "img1.JPG")
    Image.open(jpg / "img2.jpg").save(jpg / "img2.png")
    (jpg / "img2.jpg").unlink()
    (jpg / "img4.jpg").unlink()
    (jpg / "img5.jpg").write_bytes((jpg / "img5.jpg").read_bytes()[:300])
    ann = root / "Annotations"
    xml = (ann / "img3.xml").read_text()
    (ann / "img3.xml").write_text(xml.replace("<filename>img3.jpg", "<filename>IMG3.jpg"))
    xml = (ann / "img0.xml").read_text()
    (ann / "img0.xml").write_text(xml.replace("<xmin>31</xmin>", "<xmin>61</xmin>").replace(
        "<name>cat</name>", "<name>Dog</name>"))
    xml = (ann / "img1.xml").read_text()
    (ann / "img1.xml").write_text(xml.replace("<name>cat</name>", "<name> dog </name>"))
    return root


def test_voc_images_found_by_id_and_case_and_true_counts(tmp_path: Path, caplog) -> None:
    voc = _voc_case_folder(tmp_path / "voc")
    out = tmp_path / "data"
    report = LabelReport()
    with caplog.at_level(logging.INFO, logger="vision.detection"):
        data_yaml = import_voc_folder(voc, out, report=report)
    assert sorted(p.name for p in (out / "images/train").iterdir()) == ["img0.jpg", "img1.JPG", "img2.png",
                                                                        "img3.jpg"]
    assert sorted(p.name for p in (out / "labels/train").iterdir()) == [f"img{i}.txt" for i in range(4)]
    assert "(4 of 6 train, 1 of 1 val annotations)" in caplog.text  # not "6 train"
    assert "converted 4 of 6 VOC annotation(s)" in caplog.text
    assert report.counts() == {"bad_labels": 3, "files_dropped": 2, "boxes_rejected": 1}
    problems = {Path(k).stem: v for k, v in report.problems.items()}
    assert problems["img4"] == ["missing image img4.jpg (nor any img4.* image in " f"{voc / 'JPEGImages'})"]
    assert problems["img5"][0].startswith("unreadable image img5.jpg")
    assert problems["img0"] == ["object 1: box 61,25,60,44 is inverted (xmax < xmin)"]
    assert "3 bad label(s) in 3 file(s): 2 file(s) left out, 1 box(es) rejected" in caplog.text
    assert load_names(data_yaml) == ["Dog", "cat", "dog"]  # stripped, not merged
    assert "differ only in letter case are separate classes: 'Dog' and 'dog'" in caplog.text

    # the outcome is recorded: a reuse and a run given the converted data.yaml count the same
    stamp = json.loads((out / STAMP).read_text())
    assert stamp["converted"] == {"train": 4, "val": 1} and stamp["listed"] == {"train": 6, "val": 1}
    again = LabelReport()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vision.detection"):
        assert import_voc_folder(voc, out, report=again) == data_yaml
    assert "reusing" in caplog.text and again.counts() == report.counts()
    assert import_report(data_yaml).counts() == report.counts()
    assert import_report(tmp_path / "elsewhere" / "data.yaml").count == 0


def test_voc_inverted_box_in_y_and_class_case_warning_once(tmp_path: Path, caplog) -> None:
    voc = tmp_path / "voc"
    Image.new("RGB", (64, 48)).save(_mkdir(voc) / "a.jpg")
    (voc / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><object><name>car</name><bndbox><xmin>5</xmin><ymin>30</ymin>"
        "<xmax>20</xmax><ymax>10</ymax></bndbox></object></annotation>")
    report = voc_to_yolo([voc / "a.xml"], tmp_path / "out", ["car"])
    assert report.problems[str(voc / "a.xml")] == ["object 0: box 5,30,20,10 is inverted (ymax < ymin)"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vision.detection.voc_folder"):
        assert voc_class_names([voc / "a.xml"]) == ["car"]
    assert not caplog.text  # one spelling: no warning


def test_data_paths_that_are_not_a_data_set_say_what_would_be(tmp_path: Path) -> None:
    devkit = tmp_path / "VOCdevkit"
    for year in ("VOC2007", "VOC2012"):
        write_voc_folder(devkit / year, n=2)
    with pytest.raises(ValueError, match=rf"holds 2: {devkit / 'VOC2007'}, {devkit / 'VOC2012'}; pass one of them"):
        resolve_data(devkit, tmp_path / "run")
    coco = tmp_path / "coco"
    _mkdir(coco / "annotations")
    (coco / "annotations" / "instances_train2017.json").write_text('{"images": [], "annotations": []}')
    with pytest.raises(ValueError, match="COCO json annotations are not supported; give a YOLO data.yaml"):
        resolve_data(coco / "annotations" / "instances_train2017.json", tmp_path / "run")
    with pytest.raises(ValueError, match=r"holds \.json annotations: COCO json annotations are not supported"):
        resolve_data(coco, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_commands_name_the_coco_refusal_in_one_line(tmp_path: Path, capsys) -> None:
    from vision.cli import train_detector

    coco = tmp_path / "instances.json"
    coco.write_text('{"images": [], "annotations": []}')
    with pytest.raises(SystemExit) as info:
        train_detector.main(["--data", str(coco), "--out", str(tmp_path / "out"), "--img-size", "64"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert info.value.code == 2 and "--data" in err and "COCO json annotations are not supported" in err, err


# ---------------------------------------------------------------------------------- recipes
def test_flips_default_to_ultralytics_on_user_data_and_off_on_digits(tmp_path: Path, tiny_digits_yaml: Path,
                                                                    yolo_env: dict[str, str]) -> None:
    from vision.cli import train_yolo_baseline as tyb

    voc_yaml = import_voc_folder(write_voc_folder(tmp_path / "voc", n=3), tmp_path / "data")
    assert tyb.flip_probability(None, tiny_digits_yaml) == 0.0
    assert tyb.flip_probability(None, voc_yaml) == 0.5
    assert tyb.flip_probability(0.25, tiny_digits_yaml) == 0.25 and tyb.flip_probability(0.0, voc_yaml) == 0.0
    cfg = tyb.build_config_from_args(tyb.parser().parse_args([]))
    assert cfg["trainer"]["fliplr"] is None  # decided per data set in run()
    cfg = tyb.build_config_from_args(tyb.parser().parse_args(["--fliplr", "0.3"]))
    assert cfg["trainer"]["fliplr"] == 0.3


def test_detector_epoch_limit_leaves_a_timed_run_to_the_clock() -> None:
    from vision.cli import train_detector

    assert train_detector.epoch_limit(None, None) == 1  # the documented default run: one epoch
    assert train_detector.epoch_limit(None, 60.0) == -1
    assert train_detector.epoch_limit(3, 60.0) == 3
    args = train_detector.parser().parse_args(["--time-minutes", "60"])
    assert train_detector.build_config_from_args(args)["trainer"]["max_epochs"] is None


def test_timed_detector_run_trains_past_one_epoch_and_counts_bad_labels(tmp_path: Path) -> None:
    """``--time-minutes`` without ``--epochs`` on a VOC folder with a missing image and an
    inverted box: the run goes on past the first epoch until the clock stops it, the cosine
    follows the clock (no finite step estimate), and the summary counts what the import left
    out."""
    from vision.cli import train_detector

    voc = write_voc_folder(tmp_path / "voc", n=4, image_sets={"train": ["img0", "img1", "gone"],
                                                               "val": ["img2", "img3"]})
    (voc / "Annotations" / "gone.xml").write_text((voc / "Annotations" / "img3.xml").read_text().replace(
        "img3.jpg", "gone.jpg"))
    xml = (voc / "Annotations" / "img0.xml").read_text()
    (voc / "Annotations" / "img0.xml").write_text(xml.replace("<ymin>25</ymin>", "<ymin>45</ymin>").replace(
        "<ymax>44</ymax>", "<ymax>30</ymax>"))
    config = write_tiny_detector_config(tmp_path / "run.yaml")
    args = train_detector.parser().parse_args(["--config", str(config), "--data", str(voc), "--img-size", "64",
                                               "--batch-size", "2", "--workers", "0", "--time-minutes", "0.15",
                                               "--out", str(tmp_path / "run")])
    s = train_detector.run(train_detector.build_config_from_args(args))
    assert s["batches_per_epoch"] == 1 and s["epochs_done"] > 1, s  # an epoch cap of 1 would stop at 1.00
    import torch

    lr = torch.load(s["checkpoint"], weights_only=False)["lr_schedulers"][0]["_last_lr"][0]
    assert 0 <= lr < 0.5 * 1e-4  # annealed by the clock: most of the budget was spent
    assert (s["bad_labels"], s["files_dropped"], s["boxes_rejected"]) == (2, 1, 1)
    assert "(2 bad label(s): 1 file(s) left out, 1 box(es) rejected)" in train_detector.format_summary(s)


def test_yolo_summary_counts_what_the_voc_import_left_out(tmp_path: Path, yolo_env: dict[str, str]) -> None:
    """One epoch of yolo11n on a VOC folder with an annotation whose image is missing and an
    inverted box: summary.json counts both, as the console reported them, and records the
    flip probability used on photos (ultralytics' 0.5)."""
    voc = write_voc_folder(tmp_path / "voc", n=6, image_sets={"train": ["img0", "img1", "img2", "img3", "gone"],
                                                               "val": ["img4", "img5"]})
    (voc / "Annotations" / "gone.xml").write_text((voc / "Annotations" / "img5.xml").read_text().replace(
        "img5.jpg", "gone.jpg"))
    xml = (voc / "Annotations" / "img0.xml").read_text()
    (voc / "Annotations" / "img0.xml").write_text(xml.replace("<xmin>31</xmin>", "<xmin>61</xmin>"))
    out = tmp_path / "summary.json"
    cmd = [sys.executable, "-m", "vision.cli.train_yolo_baseline", "--data", str(voc), "--img-size", "64",
           "--epochs", "1", "--time-minutes", "0", "--batch", "2", "--workers", "0",
           "--project", str(tmp_path / "runs"), "--name", "voc", "--summary-json", str(out)]
    proc = subprocess.run(cmd, env=yolo_env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "2 bad label(s) in 2 file(s): 1 file(s) left out, 1 box(es) rejected" in proc.stderr
    s = json.loads(out.read_text())
    assert (s["bad_labels"], s["files_dropped"], s["boxes_rejected"]) == (2, 1, 1)
    assert s["recipe"]["fliplr"] == 0.5
    assert "(2 bad label(s): 1 file(s) left out, 1 box(es) rejected)" in proc.stdout


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_names(data_yaml: Path) -> list[str]:
    from vision.detection.yolo_format import load_data_yaml

    return load_data_yaml(data_yaml)["names"]
