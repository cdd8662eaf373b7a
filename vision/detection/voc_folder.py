"""A Pascal VOC folder as a detection data set: split it and convert it to YOLO format once.

A VOC folder holds ``Annotations/<id>.xml`` and ``JPEGImages/<id>.jpg``, and optionally
``ImageSets/Main/train.txt`` and ``val.txt`` (one id per line) naming the split. Without
both lists the annotations are split at random, seeded, ``val_fraction`` of them (at
least one) for validation. Class names are every ``<object><name>`` in the folder,
sorted. :func:`import_voc_folder` writes the YOLO folder (``data.yaml``,
``images/{train,val}``, ``labels/{train,val}``) with :func:`vision.detection.voc.voc_to_yolo`
and records its source and settings in ``voc_import.json``; a second call with the same
folder and settings reuses it instead of converting again.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

from vision.detection.voc import voc_to_yolo

__all__ = ["STAMP", "import_voc_folder", "is_voc_folder", "resolve_data", "voc_class_names", "voc_split"]

log = logging.getLogger(__name__)

#: Written beside ``data.yaml``: the VOC folder and settings it was converted from.
STAMP = "voc_import.json"


def is_voc_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder with ``Annotations/`` and ``JPEGImages/``."""
    path = Path(path)
    return (path / "Annotations").is_dir() and (path / "JPEGImages").is_dir()


def voc_class_names(xml_files: list[Path]) -> list[str]:
    """Every object name in ``xml_files``, sorted; unreadable files are skipped (the
    converter reports them)."""
    names: set[str] = set()
    for xml in xml_files:
        try:
            root = ET.parse(xml).getroot()
        except ET.ParseError:
            continue
        names.update((obj.findtext("name") or "").strip() for obj in root.iter("object"))
    names.discard("")
    return sorted(names)


def _listed(root: Path, split: str) -> list[str] | None:
    path = root / "ImageSets" / "Main" / f"{split}.txt"
    if not path.is_file():
        return None
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def voc_split(root: str | Path, val_fraction: float = 0.2, seed: int = 0) -> dict[str, list[Path]]:
    """``{"train": [xml, ...], "val": [xml, ...]}`` for the VOC folder ``root``.

    ``ImageSets/Main/{train,val}.txt`` decide when both exist (ids without an XML file are
    skipped with a warning); otherwise a seeded shuffle puts ``round(val_fraction * n)``
    annotations (at least 1, and at most ``n - 1``) in ``val``.
    """
    root = Path(root)
    xmls = sorted((root / "Annotations").glob("*.xml"))
    if not xmls:
        raise ValueError(f"VOC folder {root} has no Annotations/*.xml")
    lists = {split: _listed(root, split) for split in ("train", "val")}
    if all(ids is not None for ids in lists.values()):
        by_id = {p.stem: p for p in xmls}
        out: dict[str, list[Path]] = {}
        for split, ids in lists.items():
            missing = [i for i in ids if i not in by_id]
            if missing:
                log.warning("%s: %d id(s) in ImageSets/Main/%s.txt have no XML file, e.g. %s",
                            root, len(missing), split, missing[0])
            out[split] = [by_id[i] for i in ids if i in by_id]
        return out
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if len(xmls) < 2:
        raise ValueError(f"VOC folder {root} has {len(xmls)} annotation; a train/val split needs at least 2")
    order = list(xmls)
    random.Random(seed).shuffle(order)
    n_val = min(max(round(val_fraction * len(order)), 1), len(order) - 1)
    return {"train": sorted(order[n_val:]), "val": sorted(order[:n_val])}


def import_voc_folder(root: str | Path, out_root: str | Path, *, val_fraction: float = 0.2, seed: int = 0) -> Path:
    """Convert the VOC folder ``root`` into a YOLO folder at ``out_root``; returns its ``data.yaml``.

    Reuses ``out_root`` when its ``voc_import.json`` records the same source and settings;
    otherwise clears it and converts. Bad annotations are reported and skipped
    (:func:`vision.detection.voc.voc_to_yolo`).
    """
    root, out_root = Path(root).resolve(), Path(out_root)
    settings = {"source": str(root), "val_fraction": val_fraction, "seed": seed, "difficult": "left out"}
    stamp, data_yaml = out_root / STAMP, out_root / "data.yaml"
    if stamp.is_file() and data_yaml.is_file() and json.loads(stamp.read_text()) == settings:
        log.info("reusing the YOLO conversion of %s in %s", root, out_root)
        return data_yaml
    if out_root.exists() and not stamp.is_file() and any(out_root.iterdir()):
        # only ever clear a folder an earlier import wrote
        raise ValueError(f"{out_root} holds files that no VOC import wrote (no {STAMP}); choose another output "
                         f"folder or empty this one")
    if out_root.exists():
        shutil.rmtree(out_root)
    out_root.mkdir(parents=True)
    # Claimed before the first copy: an import stopped part-way is cleared and redone next time.
    stamp.write_text(json.dumps({**settings, "state": "converting"}))
    splits = voc_split(root, val_fraction, seed)
    names = voc_class_names([p for files in splits.values() for p in files])
    if not names:
        raise ValueError(f"VOC folder {root} has no named objects")
    for split, files in splits.items():
        voc_to_yolo(files, out_root, names, split=split, image_dirs=[root / "JPEGImages"])
    stamp.write_text(json.dumps(settings))
    log.info("converted VOC folder %s (%s) into %s", root,
             ", ".join(f"{len(f)} {s}" for s, f in splits.items()), out_root)
    return data_yaml


def resolve_data(data: str | Path, run_dir: str | Path, *, val_fraction: float = 0.2, seed: int = 0) -> Path:
    """The ``data.yaml`` a ``--data`` value names: a YOLO ``data.yaml`` as given, a folder
    holding one, or a VOC folder converted into ``<run_dir>/data`` (once)."""
    data = Path(data)
    if is_voc_folder(data):
        return import_voc_folder(data, Path(run_dir) / "data", val_fraction=val_fraction, seed=seed)
    if data.is_dir():
        if (data / "data.yaml").is_file():
            return data / "data.yaml"
        raise ValueError(f"{data} is neither a VOC folder (Annotations/, JPEGImages/) nor a folder with data.yaml")
    return data
