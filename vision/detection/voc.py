"""Pascal VOC XML annotations -> YOLO format.

A VOC annotation names its image (``<filename>``), its size and one ``<object>`` per box
(``<name>``, ``<bndbox>`` with 1-based inclusive ``xmin ymin xmax ymax`` pixels).
Objects marked difficult are left out (as VOC's evaluation and ultralytics' VOC conversion
leave them). The image is ``<filename>`` in the image folders, else the same name in
another letter case, else the annotation's id (its XML file's stem) with any image suffix
(:class:`ImageFinder`). Inverted boxes (``xmax < xmin`` or ``ymax < ymin``), boxes outside
the image (beyond one pixel of overshoot, which is clamped), unknown class names and
missing or undecodable images are reported per XML file through a :class:`LabelReport`;
the other files still convert.
"""

from __future__ import annotations

import logging
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from vision.data.image_folder import UNREADABLE
from vision.detection.yolo_format import (
    IMAGE_SUFFIXES, LabelReport, format_label_rows, write_data_yaml, xyxy_to_yolo,
)

log = logging.getLogger(__name__)


class ImageFinder:
    """Finds the image a VOC annotation names, in ``image_dirs`` and then the XML's own folder.

    In order: ``<filename>`` as written; the same name in any letter case (``000017.JPG`` for
    ``000017.jpg``); the annotation id (the XML file's stem, which ImageSets lists) or the
    stem of ``<filename>`` with any suffix of :data:`IMAGE_SUFFIXES`, in any case (a
    ``.png`` in ``JPEGImages/``). Each folder is listed once. ``renamed`` records
    ``(xml, image)`` for every image found under another name than ``<filename>``.
    """

    def __init__(self, image_dirs: Sequence[str | Path] = ()) -> None:
        self.image_dirs = [Path(d) for d in image_dirs]
        self.renamed: list[tuple[Path, Path]] = []
        self._listings: dict[Path, dict[str, Path]] = {}

    def _listing(self, folder: Path) -> dict[str, Path]:
        """Lower-case file name -> path of the (non-hidden) files in ``folder``."""
        if folder not in self._listings:
            files = sorted(folder.iterdir()) if folder.is_dir() else []
            # sorted, and the first of two names equal but for case wins: the same file every run
            listing: dict[str, Path] = {}
            for f in files:
                if not f.name.startswith("."):  # not macOS's ._000017.jpg
                    listing.setdefault(f.name.lower(), f)
            self._listings[folder] = listing
        return self._listings[folder]

    def find(self, xml_path: Path, filename: str) -> Path | None:
        """The image of the annotation ``xml_path`` whose ``<filename>`` is ``filename``, or None."""
        folders = [*self.image_dirs, xml_path.parent]
        for folder in folders:
            if (folder / filename).is_file():
                return folder / filename
        stems = dict.fromkeys((xml_path.stem.lower(), Path(filename).stem.lower()))
        names = [Path(filename).name.lower(), *(f"{stem}{suffix}" for stem in stems for suffix in IMAGE_SUFFIXES)]
        for name in names:
            for folder in folders:
                found = self._listing(folder).get(name)
                if found is not None:
                    self.renamed.append((xml_path, found))
                    return found
        return None

    def where(self) -> str:
        """The folders searched, for a message."""
        return ", ".join(str(d) for d in self.image_dirs) or "the XML's folder"


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
    image_dirs: Sequence[Path] | ImageFinder,
    report: LabelReport,
    keep_difficult: bool = False,
) -> tuple[Path, np.ndarray, np.ndarray] | None:
    """Parse one VOC XML. Returns (image path, labels (N,), pixel xyxy boxes (N, 4)) or None
    when the file is unusable (unparsable XML, a missing or undecodable image), which is
    reported as a dropped file. The image is found by :class:`ImageFinder` (pass one to
    share its folder listings between files). Objects marked ``<difficult>1</difficult>``
    are left out unless ``keep_difficult``."""
    finder = image_dirs if isinstance(image_dirs, ImageFinder) else ImageFinder(image_dirs)
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as e:
        report.add(xml_path, f"unparsable XML ({e})", drop_file=True)
        return None
    filename = (root.findtext("filename") or "").strip() or f"{xml_path.stem}.jpg"
    image = finder.find(xml_path, filename)
    if image is None:
        report.add(xml_path, f"missing image {filename} (nor any {xml_path.stem}.* image in {finder.where()})",
                   drop_file=True)
        return None
    try:
        width, height = _decoded_size(image)
    except UNREADABLE as err:
        report.add(xml_path, f"unreadable image {image.name} ({type(err).__name__}: {err})", drop_file=True)
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
        inverted = [what for what, bad in (("xmax < xmin", x1 < x0), ("ymax < ymin", y1 < y0)) if bad]
        if inverted:
            report.add(xml_path, f"object {k}: box {x0:g},{y0:g},{x1:g},{y1:g} is inverted ({', '.join(inverted)})")
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
    report: LabelReport | None = None,
) -> LabelReport:
    """Convert VOC XML files into ``out_root/{images,labels}/<split>`` and write ``data.yaml``.

    Images are copied next to their new label files. ``image_dirs`` are searched for each
    annotation's image (then the XML's own folder; a VOC tree keeps them in ``JPEGImages/``),
    as :class:`ImageFinder` searches. Returns the report of bad files and rows; the good
    rest is converted. The report is logged here unless the caller passes its own
    ``report`` (which it then logs once, at the end).
    """
    if not class_names:
        raise ValueError("class_names must name at least one class")
    owns_report = report is None
    report = LabelReport() if report is None else report
    out_root = Path(out_root)
    finder = ImageFinder(image_dirs)
    img_out, lbl_out = out_root / "images" / split, out_root / "labels" / split
    img_out.mkdir(parents=True, exist_ok=True)
    lbl_out.mkdir(parents=True, exist_ok=True)
    files = sorted(Path(p) for p in xml_files)
    converted = 0
    for xml in files:
        parsed = convert_voc_file(xml, list(class_names), finder, report)
        if parsed is None:
            continue
        image, labels, boxes = parsed
        width, height = _image_size(image)
        shutil.copy2(image, img_out / image.name)
        (lbl_out / f"{image.stem}.txt").write_text(format_label_rows(labels, xyxy_to_yolo(boxes, width, height)))
        converted += 1
    write_data_yaml(out_root, class_names, splits=[split])
    log.info("converted %d of %d VOC annotation(s) into %s (%s)", converted, len(files), out_root, split)
    if finder.renamed:
        xml, image = finder.renamed[0]
        log.info("%d image(s) found under another name than their <filename>, e.g. %s for %s",
                 len(finder.renamed), image.name, xml.name)
    if owns_report:
        report.log()
    return report
