"""A Pascal VOC folder as a detection data set: split it and convert it to YOLO format once.

A VOC folder holds ``Annotations/<id>.xml`` and ``JPEGImages/<id>.jpg``, and optionally
``ImageSets/Main/train.txt`` and ``val.txt`` (one id per line) naming the split. Without
both lists the annotations are split at random, seeded, ``val_fraction`` of them (at
least one) for validation. Class names are every ``<object><name>`` in the folder, spaces
around them stripped, sorted; names that differ only in letter case (``Dog``, ``dog``) stay
separate classes, with a warning naming them. :func:`import_voc_folder` writes the YOLO
folder (``data.yaml``, ``images/{train,val}``, ``labels/{train,val}``) with
:func:`vision.detection.voc.voc_to_yolo` and records its source, settings and outcome (how
many annotations each split converted, and the report of what was left out) in
``voc_import.json``; a second call with the same folder and settings reuses it instead of
converting again, and :func:`import_report` reads the report back.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

from vision.detection.voc import voc_to_yolo
from vision.detection.yolo_format import COCO_REFUSED, LabelReport

__all__ = ["STAMP", "import_report", "import_voc_folder", "is_voc_folder", "resolve_data", "voc_class_names",
           "voc_split"]

log = logging.getLogger(__name__)

#: Written beside ``data.yaml``: the VOC folder and settings it was converted from.
STAMP = "voc_import.json"


def is_voc_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder with ``Annotations/`` and ``JPEGImages/``."""
    path = Path(path)
    return (path / "Annotations").is_dir() and (path / "JPEGImages").is_dir()


def voc_class_names(xml_files: list[Path]) -> list[str]:
    """Every object name in ``xml_files``, spaces around it stripped, sorted; unreadable
    files are skipped (the converter reports them). Names that differ only in letter case
    stay separate classes, with one warning naming them (a typo in a few files, or two
    classes: the annotations decide, not this function)."""
    names: set[str] = set()
    for xml in xml_files:
        try:
            root = ET.parse(xml).getroot()
        except ET.ParseError:
            continue
        names.update((obj.findtext("name") or "").strip() for obj in root.iter("object"))
    names.discard("")
    by_case: dict[str, list[str]] = {}
    for name in sorted(names):
        by_case.setdefault(name.casefold(), []).append(name)
    clashes = [group for group in by_case.values() if len(group) > 1]
    if clashes:
        log.warning("class names that differ only in letter case are separate classes: %s; correct the "
                    "annotations if they are one class", "; ".join(" and ".join(map(repr, g)) for g in clashes))
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


def _read_stamp(path: Path) -> dict:
    try:
        stamp = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def _counts(stamp: dict) -> str:
    """``24 of 26 train, 8 of 8 val`` annotations converted, from a finished stamp."""
    return ", ".join(f"{done} of {stamp.get('listed', {}).get(split, done)} {split}"
                     for split, done in (stamp.get("converted") or {}).items())


def import_report(data_yaml: str | Path) -> LabelReport:
    """The report of what the VOC import that wrote ``data_yaml`` left out (from its
    ``voc_import.json``); empty for a data set no import wrote."""
    stamp = _read_stamp(Path(data_yaml).parent / STAMP)
    return LabelReport.from_dict(stamp.get("report"))


def import_voc_folder(root: str | Path, out_root: str | Path, *, val_fraction: float = 0.2, seed: int = 0,
                      report: LabelReport | None = None) -> Path:
    """Convert the VOC folder ``root`` into a YOLO folder at ``out_root``; returns its ``data.yaml``.

    Reuses ``out_root`` when its ``voc_import.json`` records the same source and settings;
    otherwise clears it and converts. Bad annotations are reported and skipped
    (:func:`vision.detection.voc.voc_to_yolo`), logged once with the true counts converted
    per split, and recorded in ``voc_import.json``. ``report``, when given, receives the
    problems (those of the earlier conversion when it is reused).
    """
    root, out_root = Path(root).resolve(), Path(out_root)
    settings = {"source": str(root), "val_fraction": val_fraction, "seed": seed, "difficult": "left out"}
    stamp, data_yaml = out_root / STAMP, out_root / "data.yaml"
    done = _read_stamp(stamp) if stamp.is_file() and data_yaml.is_file() else {}
    if done and "state" not in done and {k: done.get(k) for k in settings} == settings:
        earlier = LabelReport.from_dict(done.get("report"))
        counts = _counts(done)
        log.info("reusing the YOLO conversion of %s in %s%s", root, out_root,
                 f" ({counts} annotations converted)" if counts else "")
        if earlier.count:
            log.warning("that conversion found %s (listed in %s)", earlier.headline(), stamp)
        if report is not None:
            report.update(earlier)
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
    found = LabelReport()
    converted: dict[str, int] = {}
    for split, files in splits.items():
        before = found.files_dropped
        voc_to_yolo(files, out_root, names, split=split, image_dirs=[root / "JPEGImages"], report=found)
        converted[split] = len(files) - (found.files_dropped - before)  # each dropped file is one XML
    outcome = {"converted": converted, "listed": {s: len(f) for s, f in splits.items()}, "report": found.to_dict()}
    stamp.write_text(json.dumps({**settings, **outcome}))
    log.info("converted VOC folder %s (%s annotations) into %s", root, _counts(outcome), out_root)
    found.log()
    if report is not None:
        report.update(found)
    return data_yaml


def _voc_folders_below(folder: Path, depth: int = 2) -> list[Path]:
    """VOC folders inside ``folder`` (``VOCdevkit/VOC2007``...), at most ``depth`` levels down."""
    found: list[Path] = []
    try:
        children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return found
    for child in children:
        if is_voc_folder(child):
            found.append(child)
        elif depth > 1:
            found += _voc_folders_below(child, depth - 1)
    return found


def resolve_data(data: str | Path, run_dir: str | Path, *, val_fraction: float = 0.2, seed: int = 0,
                 report: LabelReport | None = None) -> Path:
    """The ``data.yaml`` a ``--data`` value names: a YOLO ``data.yaml`` as given, a folder
    holding one, or a VOC folder converted into ``<run_dir>/data`` (once; ``report``, when
    given, receives what the import left out). A COCO json, or a folder that is none of
    these, is a ``ValueError`` naming the forms accepted (and the VOC folders inside a
    ``VOCdevkit/``)."""
    data = Path(data)
    if is_voc_folder(data):
        return import_voc_folder(data, Path(run_dir) / "data", val_fraction=val_fraction, seed=seed, report=report)
    if data.is_dir():
        if (data / "data.yaml").is_file():
            return data / "data.yaml"
        inside = _voc_folders_below(data)
        if inside:
            more = f" (and {len(inside) - 5} more)" if len(inside) > 5 else ""
            raise ValueError(f"{data} is not a VOC folder itself but holds {len(inside)}: "
                             f"{', '.join(str(p) for p in inside[:5])}{more}; pass one of them")
        if any((data / "annotations").glob("*.json")) or any(data.glob("*.json")):
            raise ValueError(f"{data} holds .json annotations: {COCO_REFUSED}")
        raise ValueError(f"{data} is neither a VOC folder (Annotations/, JPEGImages/) nor a folder with data.yaml")
    if data.suffix.lower() == ".json":
        raise ValueError(f"{data}: {COCO_REFUSED}")
    return data
