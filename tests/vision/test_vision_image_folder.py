"""Image folders with grayscale, RGBA, palette and broken files: converted or skipped, never a crash."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from vision.data.datamodules import ImageFolderDataModule
from vision.data.image_folder import SafeImageFolder, read_rgb, scan_image_folder, split_folders


def _make_folder(root):
    rng = np.random.default_rng(0)
    (root / "cat").mkdir(parents=True)
    (root / "dog").mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(root / "cat" / f"rgb{i}.jpg")
        Image.fromarray(rng.integers(0, 255, (30, 30), dtype=np.uint8), "L").save(root / "dog" / f"gray{i}.png")
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., 0] = 200  # red, fully transparent on the left half
    rgba[:, 10:, 3] = 255
    Image.fromarray(rgba, "RGBA").save(root / "cat" / "alpha.png")
    Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8), "L").convert("P").save(root / "dog" / "pal.gif")
    (root / "cat" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(rng.integers(0, 255, 200, dtype=np.uint8)))
    jpg = root / "dog" / "truncated.jpg"
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(jpg)
    jpg.write_bytes(jpg.read_bytes()[:300])
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


def test_scan_skips_broken_and_counts_conversions(tmp_path, caplog):
    root = _make_folder(tmp_path / "imgs")
    with caplog.at_level(logging.WARNING, logger="vision.data.image_folder"):
        samples, classes = scan_image_folder(root)
    assert classes == ["cat", "dog"]
    names = sorted(p.name for p, _ in samples)
    assert names == sorted(["rgb0.jpg", "rgb1.jpg", "rgb2.jpg", "alpha.png", "gray0.png", "gray1.png",
                            "gray2.png", "pal.gif"])
    text = caplog.text
    assert "skipped 2 unreadable" in text and "corrupt.png" in text and "truncated.jpg" in text
    assert "converting 5 non-RGB" in text


def test_read_rgb_converts_modes(tmp_path):
    root = _make_folder(tmp_path / "imgs")
    gray = read_rgb(root / "dog" / "gray0.png")
    assert gray.mode == "RGB"
    g = np.asarray(gray)
    assert np.array_equal(g[..., 0], g[..., 1])
    alpha = np.asarray(read_rgb(root / "cat" / "alpha.png"))
    assert alpha[0, 0].tolist() == [255, 255, 255]  # transparent -> white background
    assert alpha[0, 15].tolist() == [200, 0, 0]


def test_datamodule_loads_mixed_folder(tmp_path, caplog):
    root = _make_folder(tmp_path / "imgs")
    dm = ImageFolderDataModule(str(root), img_size=(24, 32), batch_size=4, num_workers=0, val_fraction=0.25)
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    assert dm.num_classes == 2
    assert len(dm.train_set) + len(dm.val_set) == 8 and len(dm.val_set) >= 2
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        for x, y in loader:
            assert x.shape[1:] == (3, 24, 32) and x.dtype == torch.float32 and torch.isfinite(x).all()
            assert y.dtype == torch.int64


def test_file_broken_after_scan_is_replaced(tmp_path, caplog):
    root = _make_folder(tmp_path / "imgs")
    samples, classes = scan_image_folder(root)
    ds = SafeImageFolder(samples, classes, transform=None)
    samples[0][0].write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="vision.data.image_folder"):
        image, label = ds[0]
    assert image.mode == "RGB" and "using the next image" in caplog.text
    assert int(label) == samples[1][1]


def test_bad_roots(tmp_path):
    with pytest.raises(ValueError, match="root"):
        scan_image_folder(tmp_path / "missing")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="no readable images"):
        scan_image_folder(tmp_path / "empty")


def test_read_rgb_scales_16_bit_and_turns_photos_upright(tmp_path):
    """A 16-bit grayscale PNG keeps its tones (``convert`` alone clips all but the darkest to
    white); a JPEG stored sideways with EXIF orientation 6 comes back upright."""
    ramp = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "scan16.png")
    assert Image.open(tmp_path / "scan16.png").mode.startswith("I")
    gray = np.asarray(read_rgb(tmp_path / "scan16.png"))[..., 0].astype(int)
    np.testing.assert_allclose(gray, ramp // 256, atol=1)
    sideways = np.zeros((20, 40, 3), np.uint8)
    sideways[:, :20] = 255  # stored 20 x 40, white on the left
    image = Image.fromarray(sideways)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 clockwise to view"
    image.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = np.asarray(read_rgb(tmp_path / "phone.jpg"))
    assert upright.shape == (40, 20, 3)
    assert upright[5, 10].mean() > 200 and upright[35, 10].mean() < 50  # the white half is now on top


@pytest.mark.parametrize("held_out", ["val", "valid", "validation", "dev"])
def test_split_folders_validate_on_the_held_out_folder(tmp_path, held_out):
    """``train/`` beside any held-out name: those images validate, a class missing from the
    held-out folder keeps its index, and ``test/`` is never read."""
    rng = np.random.default_rng(0)
    for split, names, n in (("train", ("ant", "bee", "cat"), 3), (held_out, ("ant", "cat"), 2), ("test", ("ant",), 4)):
        for name in names:
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(tmp_path / split / name / f"{i}.png")
    assert split_folders(tmp_path) == (tmp_path / "train", tmp_path / held_out)
    dm = ImageFolderDataModule(str(tmp_path), img_size=16, batch_size=2, num_workers=0)
    dm.setup("fit")
    assert dm.classes == ["ant", "bee", "cat"] and len(dm.train_set) == 9
    assert sorted((p.parent.name, label) for p, label in dm.val_set.samples) == [("ant", 0)] * 2 + [("cat", 2)] * 2
    assert all(p.parts[-3] == held_out for p, _ in dm.val_set.samples)


def test_train_folder_alone_holds_out_a_share_of_each_class(tmp_path, caplog):
    rng = np.random.default_rng(1)
    for split, n in (("train", 5), ("test", 2)):
        for name in ("ant", "bee"):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(tmp_path / split / name / f"{i}.png")
    dm = ImageFolderDataModule(str(tmp_path), img_size=16, batch_size=2, num_workers=0, val_fraction=0.2)
    with caplog.at_level(logging.INFO, logger="vision.data.datamodules"):
        dm.setup("fit")
    assert dm.classes == ["ant", "bee"] and len(dm.train_set) == 8 and len(dm.val_set) == 2
    assert all(p.parts[-3] == "train" for p, _ in [*dm.train_set.samples, *dm.val_set.samples])
    assert "test/ is left aside" in caplog.text


def test_operating_system_metadata_is_never_a_class_or_an_image(tmp_path, caplog):
    """A zip unpacked from a Mac: ``__MACOSX/`` beside the classes, ``._x.jpg`` twins and a
    ``.thumbnails/`` folder inside them. None is a class, an image or a warning."""
    root = _make_folder(tmp_path / "imgs")
    for folder in (root / "__MACOSX" / "cat", root / "cat" / ".thumbnails"):
        folder.mkdir(parents=True)
        (folder / "._rgb0.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
        Image.new("RGB", (8, 8)).save(folder / "small.png")
    (root / "dog" / "._gray0.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    with caplog.at_level(logging.WARNING, logger="vision.data.image_folder"):
        samples, classes = scan_image_folder(root)
    assert classes == ["cat", "dog"] and len(samples) == 8
    assert "._" not in caplog.text and ".thumbnails" not in caplog.text


def test_a_class_called_train_is_a_class(tmp_path):
    """VOC and COCO name a class ``train``: beside other classes it is one of them; split
    names are read in any case."""
    for name in ("bus", "car", "train"):
        (tmp_path / "photos" / name).mkdir(parents=True)
    assert split_folders(tmp_path / "photos") is None
    for name in ("Train", "Val", "Test"):
        (tmp_path / "split" / name / "bus").mkdir(parents=True)
    assert split_folders(tmp_path / "split") == (tmp_path / "split" / "Train", tmp_path / "split" / "Val")
    (tmp_path / "alone" / "train" / "bus").mkdir(parents=True)
    assert split_folders(tmp_path / "alone") == (tmp_path / "alone" / "train", None)
