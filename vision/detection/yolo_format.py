"""YOLO-format detection data sets: writing, scanning and bad-label reporting.

Layout (the one ultralytics reads)::

    root/
      data.yaml                 # path, train, val, nc, names
      images/<split>/<stem>.png
      labels/<split>/<stem>.txt # one row per box: "class cx cy w h", coordinates normalised to [0, 1]

A row may also be a polygon, ``class x1 y1 x2 y2 x3 y3 ...`` (a segmentation label); it is
read as its bounding box, as ultralytics reads it for detection (:func:`parse_label_row`).
Boxes inside this package are ``xyxy`` pixel coordinates (float, shape (N, 4)), the
convention torchvision detectors use; conversion to the normalised YOLO rows happens
only here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: What a ``--data`` value may name, for error messages.
DATA_FORMS = "a YOLO data.yaml, a folder holding one, or a Pascal VOC folder (Annotations/, JPEGImages/)"
#: Why a COCO json is refused, and what to do instead.
COCO_REFUSED = (f"COCO json annotations are not supported; give {DATA_FORMS} (ultralytics.data.converter.convert_coco "
                "converts COCO json to YOLO labels)")
# Normalised coordinates may overshoot [0, 1] by float rounding when written by other tools.
_COORD_TOLERANCE = 1e-3


def xyxy_to_yolo(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel ``xyxy`` boxes (N, 4) -> normalised ``cx, cy, w, h`` (N, 4)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    out = np.empty_like(boxes)
    out[:, 0] = (boxes[:, 0] + boxes[:, 2]) / 2 / width
    out[:, 1] = (boxes[:, 1] + boxes[:, 3]) / 2 / height
    out[:, 2] = (boxes[:, 2] - boxes[:, 0]) / width
    out[:, 3] = (boxes[:, 3] - boxes[:, 1]) / height
    return out


def yolo_to_xyxy(rows: np.ndarray, width: int, height: int) -> np.ndarray:
    """Normalised ``cx, cy, w, h`` (N, 4) -> pixel ``xyxy`` boxes (N, 4)."""
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    cx, cy, w, h = rows[:, 0] * width, rows[:, 1] * height, rows[:, 2] * width, rows[:, 3] * height
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def format_label_rows(labels: Sequence[int], yolo_boxes: np.ndarray) -> str:
    """One ``"class cx cy w h"`` line per box (6 decimals, enough for 1e6-pixel sides)."""
    rows = np.asarray(yolo_boxes).reshape(-1, 4)
    lines = [f"{int(c)} {b[0]:.6f} {b[1]:.6f} {b[2]:.6f} {b[3]:.6f}" for c, b in zip(labels, rows)]
    return "\n".join(lines) + ("\n" if lines else "")


def write_sample(
    root: str | Path,
    split: str,
    stem: str,
    image: np.ndarray,
    boxes: np.ndarray,
    labels: Sequence[int],
) -> Path:
    """Write one image (H, W) or (H, W, 3) uint8 and its ``xyxy`` pixel boxes (N, 4) as a YOLO pair.

    Returns the image path. Boxes are clipped to the image first, so a writer never
    produces the out-of-image rows that :func:`scan_split` reports.
    """
    from PIL import Image

    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"image must be a uint8 (H, W) or (H, W, C) array, got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    if len(boxes) != len(labels):
        raise ValueError(f"boxes ({len(boxes)}) and labels ({len(labels)}) differ in length")
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    img_dir, lbl_dir = Path(root) / "images" / split, Path(root) / "labels" / split
    img_dir.mkdir(parents=True, exist_ok=True)
    lbl_dir.mkdir(parents=True, exist_ok=True)
    img_path = img_dir / f"{stem}.png"
    Image.fromarray(image).save(img_path)
    (lbl_dir / f"{stem}.txt").write_text(format_label_rows(labels, xyxy_to_yolo(boxes, width, height)))
    return img_path


def write_data_yaml(root: str | Path, names: Sequence[str], splits: Sequence[str] = ("train", "val")) -> Path:
    """Write ``root/data.yaml`` (absolute ``path``, one entry per split, ``nc`` and ``names``).

    Splits already present under ``root/images/`` are kept, so converting train and val in
    two calls gives one data.yaml naming both.
    """
    root = Path(root).resolve()
    existing = sorted(p.name for p in (root / "images").iterdir() if p.is_dir()) if (root / "images").is_dir() else []
    all_splits = list(dict.fromkeys([*splits, *existing]))
    data = {"path": str(root), **{s: f"images/{s}" for s in all_splits}}
    data.update(nc=len(names), names=dict(enumerate(names)))
    out = root / "data.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def load_data_yaml(path: str | Path) -> dict:
    """Read a YOLO ``data.yaml``; ``names`` comes back as a list and ``path`` absolute.
    A ``.json`` file (COCO annotations) is refused by name, unread."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        raise ValueError(f"{path}: {COCO_REFUSED}")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or "names" not in data:
        raise ValueError(f"data yaml {path} has no 'names' entry (expected {DATA_FORMS})")
    names = data["names"]
    data["names"] = [names[k] for k in sorted(names)] if isinstance(names, dict) else list(names)
    root = Path(data.get("path") or path.parent).expanduser()
    data["path"] = str(root if root.is_absolute() else (path.parent / root).resolve())
    return data


@dataclass
class LabelReport:
    """Bad label rows and files found by :func:`scan_split` or a VOC import, grouped per file.

    ``problems`` maps a file path to its list of messages (one per bad row or one for
    the whole file); ``count`` is the total number of problems. ``dropped`` lists the files
    left out whole (a label file without an image; a VOC annotation whose XML or image
    cannot be read), each with one message: ``files_dropped`` counts them and
    ``boxes_rejected`` the other problems, one per box (row or ``<object>``) left out.
    """

    problems: dict[str, list[str]] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)

    def add(self, path: Path | str, message: str, *, drop_file: bool = False) -> None:
        """Record ``message`` for ``path``; ``drop_file``: the whole file is left out."""
        self.problems.setdefault(str(path), []).append(message)
        if drop_file:  # once per file: a file left out is not read any further
            self.dropped.append(str(path))

    def update(self, other: "LabelReport") -> "LabelReport":
        """Add the problems of ``other`` to this report; returns this report."""
        for path, msgs in other.problems.items():
            self.problems.setdefault(path, []).extend(msgs)
        seen = set(self.dropped)
        self.dropped += [path for path in other.dropped if path not in seen]
        return self

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.problems.values())

    @property
    def files_dropped(self) -> int:
        return len(self.dropped)

    @property
    def boxes_rejected(self) -> int:
        return self.count - self.files_dropped

    def counts(self) -> dict[str, int]:
        """``{"bad_labels": count, "files_dropped": ..., "boxes_rejected": ...}`` (run summaries)."""
        return {"bad_labels": self.count, "files_dropped": self.files_dropped, "boxes_rejected": self.boxes_rejected}

    def headline(self) -> str:
        """``N bad label(s) in M file(s): F file(s) left out, B box(es) rejected``."""
        return (f"{self.count} bad label(s) in {len(self.problems)} file(s): {self.files_dropped} file(s) left out, "
                f"{self.boxes_rejected} box(es) rejected")

    def lines(self) -> list[str]:
        """One summary line per file: ``path: N problem(s): first message; ...``."""
        out = []
        for path, msgs in sorted(self.problems.items()):
            shown = "; ".join(msgs[:3]) + (f"; ... ({len(msgs) - 3} more)" if len(msgs) > 3 else "")
            out.append(f"{path}: {len(msgs)} problem(s): {shown}")
        return out

    def log(self, level: int = logging.WARNING, limit: int | None = 10) -> None:
        """Log :meth:`headline` and the first ``limit`` of :meth:`lines` (None: all), then how
        many more files there are."""
        if self.count:
            log.log(level, "%s", self.headline())
            lines = self.lines()
            for line in lines[:limit]:
                log.log(level, "  %s", line)
            if limit is not None and len(lines) > limit:
                log.log(level, "  ... and %d more file(s)", len(lines) - limit)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; :meth:`from_dict` reads it back."""
        return {"problems": self.problems, "dropped": self.dropped}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "LabelReport":
        data = data or {}
        return cls({str(k): list(v) for k, v in (data.get("problems") or {}).items()}, list(data.get("dropped") or []))


@dataclass(frozen=True)
class YoloSample:
    """One loadable image and its valid boxes: ``boxes`` normalised cx, cy, w, h (N, 4), ``labels`` (N,)."""

    image: Path
    labels: np.ndarray
    boxes: np.ndarray


def bad_labels_text(summary: dict[str, Any]) -> str:
    """A run summary's bad labels as printed after its data path: `` (N bad label(s): F
    file(s) left out, B box(es) rejected)``, or '' when there were none (or no count)."""
    if not summary.get("bad_labels"):
        return ""
    return (f" ({summary['bad_labels']} bad label(s): {summary.get('files_dropped', 0)} file(s) left out, "
            f"{summary.get('boxes_rejected', 0)} box(es) rejected)")


def parse_label_row(parts: Sequence[str], num_classes: int | None = None) -> tuple[int, list[float]]:
    """``(class, [cx, cy, w, h])`` of one split YOLO label row, normalised coordinates.

    A row is ``class cx cy w h`` (5 columns) or a polygon ``class x1 y1 x2 y2 x3 y3 ...``
    (an odd count of at least 7: a class and three or more points), which becomes its
    bounding box, as ultralytics turns a segmentation label into a detection box. Every
    reader and checker of YOLO labels here goes through this function.

    Raises:
        ValueError: the reason the row is unusable (column count, non-numbers, class
            outside ``[0, num_classes)``, box outside the image or empty).
    """
    n = len(parts)
    if n != 5 and (n < 7 or n % 2 == 0):
        raise ValueError(f"expected 5 columns (class cx cy w h) or a polygon (class x1 y1 x2 y2 x3 y3 ...), got {n}")
    try:
        cls_f, *values = (float(p) for p in parts)
    except ValueError:
        raise ValueError("non-numeric value") from None
    if not all(math.isfinite(v) for v in (cls_f, *values)):  # nan passes every comparison below
        raise ValueError("non-finite value (nan or inf)")
    if cls_f != int(cls_f) or cls_f < 0 or (num_classes is not None and cls_f >= num_classes):
        raise ValueError(f"class {parts[0]} not in [0, {num_classes})")
    if n == 5:
        cx, cy, w, h = values
    else:
        xs, ys = values[0::2], values[1::2]
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
    lo, hi = -_COORD_TOLERANCE, 1 + _COORD_TOLERANCE
    if w <= 0 or h <= 0 or cx - w / 2 < lo or cy - h / 2 < lo or cx + w / 2 > hi or cy + h / 2 > hi:
        what = "polygon's box" if n > 5 else "box"
        raise ValueError(f"{what} outside the image or empty ({cx:g} {cy:g} {w:g} {h:g})")
    return int(cls_f), [cx, cy, w, h]


def parse_label_file(path: Path, num_classes: int | None, report: LabelReport) -> tuple[np.ndarray, np.ndarray]:
    """Parse one label file (rows as :func:`parse_label_row` reads them), dropping and
    reporting the unusable rows. Returns (labels (N,), boxes (N, 4) normalised cx, cy, w, h)."""
    labels, boxes = [], []
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            cls, box = parse_label_row(parts, num_classes)
        except ValueError as err:
            report.add(path, f"line {lineno}: {err}")
            continue
        labels.append(cls)
        boxes.append(box)
    return np.asarray(labels, dtype=np.int64), np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def split_dirs(data: dict, split: str) -> tuple[Path, Path]:
    """``(image folder, label folder)`` of ``split`` in a :func:`load_data_yaml` dict, found
    as ultralytics finds them: the split's folder is absolute or relative to ``path`` (a
    leading ``../`` that leads nowhere is dropped, as for Roboflow's ``../valid/images``
    beside a ``data.yaml`` inside the root), and its labels sit where the last
    ``images`` part of that path reads ``labels``. Raises ``ValueError`` naming the entry."""
    value = data.get(split)
    if not isinstance(value, str) or not value.strip():
        what = "a list of folders" if isinstance(value, list) else repr(value)
        raise ValueError(f"data.yaml {split!r}: expected one image folder, got {what}")
    images = Path(value).expanduser()
    if not images.is_absolute():
        root = Path(data["path"])
        images = (root / images).resolve()
        if not images.exists() and value.startswith("../"):  # Roboflow's data.yaml sits inside the root
            images = (root / value[3:]).resolve()
    if images.suffix == ".txt":
        raise ValueError(f"data.yaml {split!r}: {value} is a list of images; give the folder holding them")
    parts = list(images.parts)
    if "images" not in parts:
        raise ValueError(f"data.yaml {split!r}: {images} has no 'images' folder in its path, so its labels "
                         f"cannot be found (YOLO layout: .../images/... beside .../labels/...)")
    at = len(parts) - 1 - parts[::-1].index("images")
    return images, Path(*parts[:at], "labels", *parts[at + 1:])


def scan_split(
    root: str | Path, split: str, num_classes: int | None = None, report: LabelReport | None = None
) -> tuple[list[YoloSample], LabelReport]:
    """List the loadable samples of ``root/images/<split>`` with their valid boxes (see
    :func:`scan_folders`)."""
    root = Path(root)
    return scan_folders(root / "images" / split, root / "labels" / split, num_classes, report, split=split)


def scan_data_split(data: dict, split: str, report: LabelReport | None = None) -> tuple[list[YoloSample], LabelReport]:
    """The samples of ``split`` of a :func:`load_data_yaml` dict, its folders found by
    :func:`split_dirs` (see :func:`scan_folders`)."""
    images, labels = split_dirs(data, split)
    return scan_folders(images, labels, len(data["names"]), report, split=split)


def scan_folders(
    img_dir: Path, lbl_dir: Path, num_classes: int | None = None, report: LabelReport | None = None,
    *, split: str = "",
) -> tuple[list[YoloSample], LabelReport]:
    """List the loadable samples of ``img_dir`` with their valid boxes from ``lbl_dir``.

    Bad rows are dropped, label files without an image are skipped, and every problem is
    recorded in the returned :class:`LabelReport` (and logged); the rest still loads.
    An image without a label file is a valid background image (no boxes).
    """
    owns_report = report is None  # a caller that passes its own report logs it once, at the end
    report = LabelReport() if report is None else report
    if not img_dir.is_dir():
        raise ValueError(f"split {split!r}: no image folder {img_dir}")
    images = {p.stem: p for p in sorted(img_dir.iterdir())
              if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")}  # not macOS's ._x.jpg
    if lbl_dir.is_dir():
        for lbl in sorted(lbl_dir.glob("*.txt")):
            if lbl.stem not in images:
                report.add(lbl, "missing image", drop_file=True)
    samples = []
    for stem, img in images.items():
        lbl = lbl_dir / f"{stem}.txt"
        if lbl.exists():
            labels, boxes = parse_label_file(lbl, num_classes, report)
        else:
            labels, boxes = np.zeros(0, dtype=np.int64), np.zeros((0, 4))
        samples.append(YoloSample(img, labels, boxes))
    if owns_report:
        report.log()
    return samples, report


def check_dataset(data_yaml: str | Path, splits: Sequence[str] = ("train", "val")) -> LabelReport:
    """Scan every split of a data set and return one report of its bad labels."""
    data = load_data_yaml(data_yaml)
    report = LabelReport()
    for split in splits:
        if split in data:
            scan_data_split(data, split, report)
    report.log()
    return report
