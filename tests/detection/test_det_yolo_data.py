"""YOLO-format writing, bad-label reporting, VOC import and the scattered-digits writer."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vision.detection.generate import make_scattered_digits_yolo
from vision.detection.voc import voc_to_yolo
from vision.detection.yolo_format import (
    check_dataset,
    load_data_yaml,
    scan_split,
    write_data_yaml,
    write_sample,
    xyxy_to_yolo,
    yolo_to_xyxy,
)


def test_box_conversion_round_trips() -> None:
    rng = np.random.default_rng(0)
    xy0 = rng.uniform(0, 50, size=(7, 2))
    boxes = np.concatenate([xy0, xy0 + rng.uniform(1, 40, size=(7, 2))], axis=1)
    rows = xyxy_to_yolo(boxes, 97, 61)
    np.testing.assert_allclose(yolo_to_xyxy(rows, 97, 61), boxes, atol=1e-9)
    np.testing.assert_allclose(rows[:, 2], (boxes[:, 2] - boxes[:, 0]) / 97)


def test_write_sample_clips_and_scans_back(tmp_path: Path) -> None:
    img = np.zeros((40, 60, 3), np.uint8)
    boxes = np.array([[10, 5, 30, 25], [50, 30, 70, 45]], float)  # second box crosses the border
    write_sample(tmp_path, "train", "a", img, boxes, [3, 7])
    write_data_yaml(tmp_path, ["c%d" % i for i in range(10)])
    samples, report = scan_split(tmp_path, "train", num_classes=10)
    assert report.count == 0
    (s,) = samples
    assert s.labels.tolist() == [3, 7]
    np.testing.assert_allclose(yolo_to_xyxy(s.boxes, 60, 40), [[10, 5, 30, 25], [50, 30, 60, 40]], atol=1e-4)
    data = load_data_yaml(tmp_path / "data.yaml")
    assert data["nc"] == 10 and data["names"][3] == "c3" and data["train"] == "images/train"


def test_bad_labels_reported_per_file_and_rest_loads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    img = np.zeros((32, 32, 3), np.uint8)
    write_sample(tmp_path, "train", "good", img, np.array([[2, 2, 10, 10]]), [1])
    write_sample(tmp_path, "train", "mixed", img, np.zeros((0, 4)), [])
    (tmp_path / "labels/train/mixed.txt").write_text(
        "0 0.5 0.5 0.2 0.2\n"  # fine
        "1 0.5 0.5 0.2\n"  # wrong column count
        "2 0.95 0.5 0.2 0.2\n"  # right edge at 1.05: outside the image
        "12 0.5 0.5 0.1 0.1\n"  # class out of range
        "x 0.5 0.5 0.1 0.1\n"  # not a number
    )
    (tmp_path / "labels/train/orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")  # no image
    write_data_yaml(tmp_path, [str(i) for i in range(10)], splits=["train"])
    with caplog.at_level(logging.WARNING):
        report = check_dataset(tmp_path / "data.yaml", splits=["train"])
    assert report.count == 5
    mixed = report.problems[str(tmp_path / "labels/train/mixed.txt")]
    assert len(mixed) == 4
    assert any("5 columns" in m for m in mixed) and any("outside" in m for m in mixed)
    assert report.problems[str(tmp_path / "labels/train/orphan.txt")] == ["missing image"]
    assert "5 bad label(s) in 2 file(s)" in caplog.text
    assert any("mixed.txt: 4 problem(s)" in line for line in report.lines())

    samples, _ = scan_split(tmp_path, "train", num_classes=10)
    by_name = {s.image.stem: s for s in samples}
    assert set(by_name) == {"good", "mixed"}
    assert by_name["mixed"].labels.tolist() == [0]
    assert by_name["good"].labels.tolist() == [1]


VOC_XML = """<annotation>
  <filename>{name}</filename>
  <size><width>64</width><height>48</height><depth>3</depth></size>
  <object><name>cat</name><bndbox><xmin>11</xmin><ymin>1</ymin><xmax>30</xmax><ymax>24</ymax></bndbox></object>
  <object><name>dog</name><bndbox><xmin>40</xmin><ymin>20</ymin><xmax>70</xmax><ymax>40</ymax></bndbox></object>
  <object><name>zebra</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>
  <object><name>dog</name><bndbox><xmin>33</xmin><ymin>9</ymin><xmax>64</xmax><ymax>48</ymax></bndbox></object>
</annotation>
"""


def test_voc_import(tmp_path: Path) -> None:
    voc = tmp_path / "voc"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "Annotations").mkdir()
    Image.new("RGB", (64, 48)).save(voc / "JPEGImages/img1.jpg")
    (voc / "Annotations/img1.xml").write_text(VOC_XML.format(name="img1.jpg"))
    (voc / "Annotations/img2.xml").write_text(VOC_XML.format(name="nowhere.jpg"))
    out = tmp_path / "yolo"
    report = voc_to_yolo(
        sorted((voc / "Annotations").glob("*.xml")), out, ["cat", "dog"], split="val", image_dirs=[voc / "JPEGImages"]
    )
    assert report.count == 3
    assert len(report.problems[str(voc / "Annotations/img1.xml")]) == 2  # box past the right edge, unknown class
    assert "missing image" in report.problems[str(voc / "Annotations/img2.xml")][0]
    assert (out / "images/val/img1.jpg").is_file()
    rows = np.loadtxt(out / "labels/val/img1.txt").reshape(-1, 5)
    assert rows[:, 0].tolist() == [0, 1]
    # VOC is 1-based inclusive: xmin=11..xmax=30 covers pixels 10..29, a 20-pixel wide box.
    np.testing.assert_allclose(rows[0, 1:], [20 / 64, 12 / 48, 20 / 64, 24 / 48], atol=1e-6)
    np.testing.assert_allclose(rows[1, 1:], [48 / 64, 28 / 48, 32 / 64, 40 / 48], atol=1e-6)
    data = load_data_yaml(out / "data.yaml")
    assert data["names"] == ["cat", "dog"] and data["val"] == "images/val"
    samples, rep = scan_split(out, "val", 2)
    assert rep.count == 0 and len(samples[0].labels) == 2


def test_voc_import_of_difficult_edge_and_broken_images(tmp_path: Path) -> None:
    """Difficult objects are left out; a 0-based exporter's box at the edge (xmin 0, xmax one
    past the width) is clamped, not dropped; a truncated JPEG is reported, not copied."""
    voc = tmp_path / "voc"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "Annotations").mkdir()
    Image.new("RGB", (64, 48)).save(voc / "JPEGImages/a.jpg")
    Image.new("RGB", (64, 48)).save(voc / "JPEGImages/broken.jpg")
    (voc / "JPEGImages/broken.jpg").write_bytes((voc / "JPEGImages/broken.jpg").read_bytes()[:200])
    box = "<object><name>{n}</name>{d}<bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>" \
          "<ymax>{b[3]}</ymax></bndbox></object>"
    objects = [box.format(n="cat", d="<difficult>1</difficult>", b=(5, 5, 20, 20)),
               box.format(n="dog", d="<difficult>0</difficult><truncated>1</truncated>", b=(0, 0, 65, 48)),
               box.format(n="cat", d="", b=(10.5, 8.25, 30.5, 20.75))]
    for name in ("a", "broken"):
        (voc / f"Annotations/{name}.xml").write_text(
            f"<annotation><filename>{name}.jpg</filename>{''.join(objects)}</annotation>")
    out = tmp_path / "yolo"
    report = voc_to_yolo(sorted((voc / "Annotations").glob("*.xml")), out, ["cat", "dog"], split="train",
                         image_dirs=[voc / "JPEGImages"])
    assert report.count == 1 and "unreadable image broken.jpg" in report.problems[str(voc / "Annotations/broken.xml")][0]
    assert not (out / "images/train/broken.jpg").exists()
    rows = np.loadtxt(out / "labels/train/a.txt").reshape(-1, 5)
    assert rows[:, 0].tolist() == [1, 0]  # the difficult cat is gone
    np.testing.assert_allclose(rows[0, 1:], [0.5, 0.5, 1.0, 1.0], atol=1e-6)  # the whole image
    np.testing.assert_allclose(rows[1, 1:], [20 / 64, 14 / 48, 21 / 64, 13.5 / 48], atol=1e-6)  # float pixels


def test_data_yaml_shapes_found_as_ultralytics_finds_them(tmp_path: Path) -> None:
    """Roboflow's export (``train: ../train/images`` beside ``data.yaml`` in the root), an
    absolute split folder, and a list of folders (refused by name, not a traceback)."""
    from vision.detection.dataset import YoloDetectionDataset
    from vision.detection.yolo_format import split_dirs

    root = tmp_path / "roboflow"
    for split, n in (("train", 3), ("valid", 2)):
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir()
        for i in range(n):
            Image.new("RGB", (32, 24)).save(root / split / "images" / f"{i}.jpg")
            (root / split / "labels" / f"{i}.txt").write_text("1 0.5 0.5 0.25 0.25\n")
    (root / "data.yaml").write_text("train: ../train/images\nval: " + str(root / "valid" / "images") +
                                    "\nnc: 2\nnames: ['a', 'b']\n")
    data = load_data_yaml(root / "data.yaml")
    assert split_dirs(data, "train") == (root / "train" / "images", root / "train" / "labels")
    assert split_dirs(data, "val") == (root / "valid" / "images", root / "valid" / "labels")
    assert check_dataset(root / "data.yaml").count == 0
    train = YoloDetectionDataset.from_data(data, "train")
    assert len(train) == 3 and train[0][1]["labels"].tolist() == [1]
    with pytest.raises(ValueError, match=r"'train': expected one image folder, got a list of folders"):
        split_dirs({**data, "train": ["a/images", "b/images"]}, "train")
    with pytest.raises(ValueError, match=r"'val': .*no 'images' folder in its path"):
        split_dirs({**data, "val": str(tmp_path / "pictures")}, "val")


def test_scattered_digits_yolo(tmp_path: Path) -> None:
    data_yaml = make_scattered_digits_yolo(tmp_path / "d", img_size=(96, 128), n_train=3, n_val=2, digit_size=(14, 28))
    data = load_data_yaml(data_yaml)
    assert data["names"] == [str(i) for i in range(10)]
    report = check_dataset(data_yaml)
    assert report.count == 0
    for split, n in (("train", 3), ("val", 2)):
        samples, _ = scan_split(data["path"], split, 10)
        assert len(samples) == n
        for s in samples:
            assert 3 <= len(s.labels) <= 10
            assert Image.open(s.image).size == (128, 96) and Image.open(s.image).mode == "RGB"
            px = yolo_to_xyxy(s.boxes, 128, 96)
            side = np.maximum(px[:, 2] - px[:, 0], px[:, 3] - px[:, 1])
            assert (side <= 28 + 1e-3).all() and (side >= 2).all()
    # Same settings: reused, not rewritten.
    label = Path(data["path"]) / "labels/train/train_000000.txt"
    mtime = label.stat().st_mtime_ns
    assert make_scattered_digits_yolo(tmp_path / "d", img_size=(96, 128), n_train=3, n_val=2, digit_size=(14, 28)) == data_yaml
    assert label.stat().st_mtime_ns == mtime
    # Canvases are deterministic: a second folder with the same seed holds the same labels.
    other = make_scattered_digits_yolo(tmp_path / "e", img_size=(96, 128), n_train=3, n_val=2, digit_size=(14, 28))
    assert (other.parent / "labels/train/train_000000.txt").read_text() == label.read_text()
