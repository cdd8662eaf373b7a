"""A tiny Pascal VOC folder written on the fly (JPEGs and XML annotations) for the import tests."""

from __future__ import annotations

from pathlib import Path

import yaml


def write_voc_folder(root: Path, n: int = 6, *, image_sets: dict[str, list[str]] | None = None,
                     size: tuple[int, int] = (64, 48)) -> Path:
    """A Pascal VOC folder of ``n`` tiny JPEGs (``size`` = W, H) with one ``cat`` and one
    ``dog`` box each: ``Annotations/img<i>.xml``, ``JPEGImages/img<i>.jpg`` and, when given,
    ``ImageSets/Main/<split>.txt``. Returns ``root``."""
    import numpy as np
    from PIL import Image

    w, h = size
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        pixels = rng.integers(0, 60, size=(h, w, 3), dtype=np.uint8)
        pixels[4:20, 6:26] = (220, 40, 40)  # the cat
        pixels[24:44, 30:60] = (40, 40, 220)  # the dog
        Image.fromarray(pixels).save(root / "JPEGImages" / f"img{i}.jpg", quality=90)
        (root / "Annotations" / f"img{i}.xml").write_text(
            f"<annotation><filename>img{i}.jpg</filename><size><width>{w}</width><height>{h}</height>"
            "<depth>3</depth></size>"
            "<object><name>cat</name><bndbox><xmin>7</xmin><ymin>5</ymin><xmax>26</xmax><ymax>20</ymax></bndbox></object>"
            "<object><name>dog</name><bndbox><xmin>31</xmin><ymin>25</ymin><xmax>60</xmax><ymax>44</ymax></bndbox>"
            "</object></annotation>"
        )
    for split, ids in (image_sets or {}).items():
        (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


def write_tiny_detector_config(path: Path) -> Path:
    """A train_detector YAML for an FCOS on the 16-channel test backbone: seconds per step."""
    path.write_text(yaml.safe_dump({
        "model": {"name": "test_vit", "channels": [16, 16, 16]},
        "task": {"detector": "fcos", "fpn_channels": 32},
        "trainer": {"logger": False, "enable_progress_bar": False, "enable_model_summary": False,
                    "num_sanity_val_steps": 0, "accelerator": "cpu", "devices": 1},
    }))
    return path
