"""The default detection data set: scattered-digits canvases written in YOLO format.

Canvases come from :mod:`vision.data.scattered_digits` (3-10 real MNIST digits per
canvas, 28-84 px, 8 clutter fragments, train digits from the training pool and val digits
from the validation pool), replicated to 3 channels and written as a YOLO folder with 10
classes ``"0".."9"``. A finished folder is reused: ``generator.json`` records the settings
and a folder is rebuilt only when they differ.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path

from vision.data.scattered_digits import CanvasSettings, default_cache_dir, render_canvas, to_rgb
from vision.detection.yolo_format import write_data_yaml, write_sample

log = logging.getLogger(__name__)

DIGIT_NAMES = [str(d) for d in range(10)]
#: Written last into a finished folder: the generator's settings.
META_NAME = "generator.json"


def is_scattered_digits(data_yaml: str | Path) -> bool:
    """Whether ``data_yaml`` is a scattered-digits set written by :func:`make_scattered_digits_yolo`
    (its folder holds ``generator.json``), wherever it is passed from: training recipes
    that suit digits only (no mirroring) follow this."""
    return (Path(data_yaml).parent / META_NAME).is_file()


def default_detection_root(img_size: int | tuple[int, int], n_train: int, n_val: int, seed: int) -> Path:
    """``<longseq cache>/scattered_digits_yolo/<H>x<W>-seed<seed>-<n_train>+<n_val>``."""
    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    return default_cache_dir().parent / "scattered_digits_yolo" / f"{h}x{w}-seed{seed}-{n_train}+{n_val}"


def make_scattered_digits_yolo(
    root: str | Path | None = None,
    *,
    img_size: int | tuple[int, int] = 1024,
    n_train: int = 512,
    n_val: int = 64,
    seed: int = 0,
    n_digits: tuple[int, int] = (3, 10),
    digit_size: tuple[int, int] = (28, 84),
) -> Path:
    """Generate (or reuse) a YOLO-format scattered-digits data set; returns its ``data.yaml``.

    Args:
        root: output folder; default :func:`default_detection_root`.
        img_size: canvas side, or ``(H, W)``.
        n_train, n_val: canvases per split.
        seed: generator seed; canvases are a pure function of (seed, split, index, settings).
        n_digits: ``(min, max)`` digits per canvas.
        digit_size: ``(min, max)`` digit side in pixels.
    """
    if n_train < 1 or n_val < 1:
        raise ValueError(f"n_train and n_val must be >= 1, got {n_train}, {n_val}")
    settings = CanvasSettings(canvas_size=img_size, n_digits=n_digits, digit_size=digit_size)
    root = Path(root) if root is not None else default_detection_root(settings.canvas_size, n_train, n_val, seed)
    meta = {"settings": asdict(settings), "seed": seed, "n_train": n_train, "n_val": n_val}
    meta = json.loads(json.dumps(meta))  # tuples -> lists, as they read back from disk
    meta_path = root / META_NAME
    if meta_path.is_file() and (root / "data.yaml").is_file() and json.loads(meta_path.read_text()) == meta:
        return root / "data.yaml"
    if root.exists():
        # Only ever delete a folder this function wrote (it holds the generator.json written here).
        if any(root.iterdir()) and not meta_path.is_file():
            raise ValueError(f"root {root} exists, is not empty and was not written by this generator")
        shutil.rmtree(root)
    log.info("writing %d + %d scattered-digits canvases (%s) to %s", n_train, n_val, settings.canvas_size, root)
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            c = render_canvas(seed, split, i, settings)
            write_sample(root, split, f"{split}_{i:06d}", to_rgb(c.image), c.boxes, c.labels)
    data_yaml = write_data_yaml(root, DIGIT_NAMES)
    meta_path.write_text(json.dumps(meta))  # last: marks the folder finished
    return data_yaml
