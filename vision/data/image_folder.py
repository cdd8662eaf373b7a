"""A forgiving image-folder reader: ``root/<class>/<image>``, or split into ``root/train/``
beside a held-out ``val/`` (``valid/``, ``validation/``, ``dev/``) and perhaps ``test/``.

Real folders hold grayscale scans, 16-bit PNGs, RGBA screenshots, palette PNGs, phone
photos stored sideways with an EXIF orientation, and the odd truncated download.
Unreadable files are skipped and other images converted to upright 8-bit RGB, each with a
logged warning; neither stops training. A folder with no readable image at all, or a class
folder without one, is an error naming it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["IMAGE_EXTENSIONS", "SPLIT_FOLDERS", "UNREADABLE", "VAL_FOLDERS", "SafeImageFolder", "class_folders",
           "is_hidden", "read_rgb", "scan_image_folder", "split_folders"]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
# What PIL raises on broken files; ImportError too, because ultralytics (when imported in
# the same process) patches Image.open to retry unreadable files with an optional HEIF plugin.
UNREADABLE = (OSError, UnidentifiedImageError, ValueError, SyntaxError, ImportError)


#: Held-out folder names beside ``train/``, in the order they are looked for.
VAL_FOLDERS = ("val", "valid", "validation", "dev")
#: Every split folder name: a root holding only these is split, never a set of classes.
SPLIT_FOLDERS = ("train", *VAL_FOLDERS, "test")


def is_hidden(name: str) -> bool:
    """Operating-system metadata, never a class or an image: ``.DS_Store``, macOS's ``._x.jpg``
    twins, ``.thumbnails/``, and the ``__MACOSX/`` folder a zip made on a Mac unpacks."""
    return name.startswith(".") or name == "__MACOSX"


def class_folders(root: Path) -> list[Path]:
    """The sub-folders of ``root`` that can be classes, sorted by name."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not is_hidden(p.name))


def split_folders(root: str | Path) -> tuple[Path, Path | None] | None:
    """``(train, held-out folder or None)`` when ``root`` is split: its sub-folders are all
    split names (:data:`SPLIT_FOLDERS`, any case), or ``train/`` sits beside a held-out one
    (the first of :data:`VAL_FOLDERS` present). None when ``root`` holds class folders, a
    class called ``train`` among them. Raises ``ValueError`` when ``root`` holds split
    folders but no ``train/``."""
    root = Path(root)
    if not root.is_dir():
        return None
    names = {p.name.lower(): p for p in class_folders(root)}
    held_out = next((names[v] for v in VAL_FOLDERS if v in names), None)
    only_splits = bool(names) and all(name in SPLIT_FOLDERS for name in names)
    if "train" in names and (held_out is not None or only_splits):
        return names["train"], held_out
    if only_splits:
        raise ValueError(f"{root}: split folders ({', '.join(sorted(p.name for p in names.values()))}) but no "
                         f"train/ folder to train on")
    return None


def _to_8bit(im: Image.Image) -> Image.Image:
    """16/32-bit integer and float grayscale in 0-255 (``convert`` would clip, not scale)."""
    if im.mode == "F":
        return im.point(lambda v: v * 255.0).convert("L")  # float images hold 0-1
    if im.mode.startswith("I"):  # "I;16", "I;16B", "I": 16-bit data
        return im.convert("I").point(lambda v: v / 256.0).convert("L")
    return im


def read_rgb(path: Path) -> Image.Image:
    """Decode an image fully and return it upright (EXIF orientation applied) in 8-bit RGB;
    raises on unreadable files."""
    with Image.open(path) as im:
        im.load()
        im = _to_8bit(ImageOps.exif_transpose(im))
        if im.mode == "RGB":
            return im.copy()
        if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
            # Composite on white instead of dropping alpha, so transparent areas do not turn black.
            rgba = im.convert("RGBA")
            out = Image.new("RGB", rgba.size, (255, 255, 255))
            out.paste(rgba, mask=rgba.getchannel("A"))
            return out
        return im.convert("RGB")


def scan_image_folder(root: str | Path) -> tuple[list[tuple[Path, int]], list[str]]:
    """Index ``root/<class>/<file>`` and drop files that cannot be decoded.

    Every file is decoded once here, so a broken file is found before training starts.
    Returns ``(samples, classes)`` where samples are ``(path, class index)`` and classes
    are the sorted sub-folder names. Logs one warning listing skipped files and one
    counting images that will be converted to RGB.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"root must be an existing folder, got {str(root)!r}")
    classes = [p.name for p in class_folders(root)]
    if not classes:
        raise ValueError(f"root {str(root)!r} has no class sub-folders (expected root/<class>/<image>)")
    samples: list[tuple[Path, int]] = []
    skipped: list[str] = []
    converted: dict[str, int] = {}
    for idx, name in enumerate(classes):
        for path in sorted((root / name).rglob("*")):
            if not path.is_file() or path.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            if any(is_hidden(part) for part in path.relative_to(root / name).parts):
                continue
            try:
                with Image.open(path) as im:
                    mode = im.mode
                    # A JPEG decodes at 1/8 scale: the whole stream is still read (a truncated
                    # file still fails) at a fraction of the cost of a 24-megapixel photo.
                    im.draft(None, (max(1, im.width // 8), max(1, im.height // 8)))
                    im.load()
            except UNREADABLE as err:
                skipped.append(f"{path} ({type(err).__name__}: {err})")
                continue
            if mode != "RGB":
                converted[mode] = converted.get(mode, 0) + 1
            samples.append((path, idx))
    found = {label for _, label in samples}
    empty = [name for idx, name in enumerate(classes) if idx not in found]
    if empty and samples:  # a class the model would be sized for but never see
        raise ValueError(f"{root / empty[0]}: no readable image in this class folder (every file is corrupt or "
                         f"not an image: {', '.join(IMAGE_EXTENSIONS)})")
    if skipped:
        log.warning("skipped %d unreadable image(s) under %s: %s", len(skipped), root, "; ".join(skipped))
    if converted:
        log.warning("converting %d non-RGB image(s) under %s to RGB (modes: %s)",
                    sum(converted.values()), root, converted)
    if not samples:
        raise ValueError(f"no readable images under {str(root)!r}")
    return samples, classes


class SafeImageFolder(Dataset):
    """``(transform(RGB PIL image), label int64 scalar)`` over :func:`scan_image_folder` samples.

    A file that breaks after the scan (changed on disk) is replaced by the next readable
    sample, with a warning, instead of killing a DataLoader worker.
    """

    def __init__(self, samples: list[tuple[Path, int]], classes: list[str],
                 transform: Callable[[Image.Image], Tensor] | None = None) -> None:
        if not samples:
            raise ValueError("samples must not be empty")
        self.samples, self.classes, self.transform = samples, classes, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        for k in range(len(self.samples)):
            path, label = self.samples[(i + k) % len(self.samples)]
            try:
                image = read_rgb(path)
            except UNREADABLE as err:
                log.warning("could not read %s (%s); using the next image instead", path, err)
                continue
            x = self.transform(image) if self.transform is not None else image
            return x, torch.as_tensor(label)
        raise RuntimeError("no readable image left in the data set")
