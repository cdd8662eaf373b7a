"""Pascal VOC XML annotations -> YOLO format.

A VOC annotation names its image (``<filename>``), its size and one ``<object>`` per box
(``<name>``, ``<bndbox>`` with 1-based inclusive ``xmin ymin xmax ymax`` pixels).
Objects marked difficult are left out (as VOC's evaluation and ultralytics' VOC conversion
leave them). Boxes outside the image (beyond one pixel of overshoot, which is clamped),
unknown class names and missing or undecodable images are reported per XML file through a
:class:`LabelReport`; the other files still convert.
"""

from __future__ import annotations

import logging
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from vision.data.image_folder import UNREADABLE
from vision.detection.yolo_format import LabelReport, format_label_rows, write_data_yaml, xyxy_to_yolo

log = logging.getLogger(__name__)


def _find_image(xml_path: Path, filename: str, image_dirs: Sequence[Path]) -> Path | None:
    for d in (*image_dirs, xml_path.parent):
        cand = d / filename
        if cand.exists():
            return cand
    return None


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.size  # (W, H)


def _decoded_size(path: Path) -> tuple[int, int]:
    """(W, H) of an image decoded in full: a truncated download fails here, not in training."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        return im.size


def convert_voc_file(
    xml_path: Path,
    class_names: Sequence[str],
    image_dirs: Sequence[Path],
    report: LabelReport,
    keep_difficult: bool = False,
) -> tuple[Path, np.ndarray, np.ndarray] | None:
    """Parse one VOC XML. Returns (image path, labels (N,), pixel xyxy boxes (N, 4)) or None
    when the file is unusable (unparsable XML, a missing or undecodable image), which is
    reported. Objects marked ``<difficult>1</difficult>`` are left out unless
    ``keep_difficult``."""
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as e:
        report.add(xml_path, f"unparsable XML ({e})")
        return None
    filename = root.findtext("filename") or f"{xml_path.stem}.jpg"
    image = _find_image(xml_path, filename, image_dirs)
    if image is None:
        report.add(xml_path, f"missing image {filename}")
        return None
    try:
        width, height = _decoded_size(image)
    except UNREADABLE as err:
        report.add(xml_path, f"unreadable image {image.name} ({type(err).__name__}: {err})")
        return None
    labels, boxes = [], []
    for k, obj in enumerate(root.iter("object")):
        name = (obj.findtext("name") or "").strip()
        if name not in class_names:
            report.add(xml_path, f"object {k}: unknown class {name!r}")
            continue
        if not keep_difficult and (obj.findtext("difficult") or "0").strip() == "1":
            continue  # left out, as VOC's evaluation and ultralytics' VOC conversion leave them
        bb = obj.find("bndbox")
        try:
            # VOC pixels are 1-based and inclusive: xmin=1 is the first pixel column.
            x0, y0, x1, y1 = (float(bb.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax"))
        except (AttributeError, TypeError, ValueError):
            report.add(xml_path, f"object {k}: missing or non-numeric bndbox")
            continue
        x0, y0 = x0 - 1, y0 - 1
        # Exporters that write 0-based pixels put a box touching the left or top edge at -1,
        # and some write xmax = width + 1: a pixel of overshoot is clamped, more is an error.
        x0, y0 = (0.0 if -1 <= x0 < 0 else x0), (0.0 if -1 <= y0 < 0 else y0)
        x1, y1 = (width if width < x1 <= width + 1 else x1), (height if height < y1 <= height + 1 else y1)
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height or x1 <= x0 or y1 <= y0:
            report.add(xml_path, f"object {k}: box {x0 + 1:g},{y0 + 1:g},{x1:g},{y1:g} outside {width}x{height} image")
            continue
        labels.append(class_names.index(name))
        boxes.append((x0, y0, x1, y1))
    return image, np.asarray(labels, dtype=np.int64), np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def voc_to_yolo(
    xml_files: Iterable[str | Path],
    out_root: str | Path,
    class_names: Sequence[str],
    split: str = "train",
    image_dirs: Sequence[str | Path] = (),
) -> LabelReport:
    """Convert VOC XML files into ``out_root/{images,labels}/<split>`` and write ``data.yaml``.

    Images are copied next to their new label files. ``image_dirs`` are searched for each
    ``<filename>`` (then the XML's own folder; a VOC tree keeps them in ``JPEGImages/``).
    Returns the report of bad files and rows (also logged); the good rest is converted.
    """
    if not class_names:
        raise ValueError("class_names must name at least one class")
    out_root = Path(out_root)
    dirs = [Path(d) for d in image_dirs]
    img_out, lbl_out = out_root / "images" / split, out_root / "labels" / split
    img_out.mkdir(parents=True, exist_ok=True)
    lbl_out.mkdir(parents=True, exist_ok=True)
    report = LabelReport()
    converted = 0
    for xml in sorted(Path(p) for p in xml_files):
        parsed = convert_voc_file(xml, list(class_names), dirs, report)
        if parsed is None:
            continue
        image, labels, boxes = parsed
        width, height = _image_size(image)
        shutil.copy2(image, img_out / image.name)
        (lbl_out / f"{image.stem}.txt").write_text(format_label_rows(labels, xyxy_to_yolo(boxes, width, height)))
        converted += 1
    write_data_yaml(out_root, class_names, splits=[split])
    log.info("converted %d VOC file(s) into %s", converted, out_root)
    report.log()
    return report
