"""Use longseq backbones in ultralytics YOLO model YAMLs.

:func:`YOLO` is the entry: ``YOLO("configs/detection/longseq_vit_tiny_yolo.yaml")``
registers the longseq modules and returns ultralytics' own ``YOLO`` model, so train,
val, predict and export are ultralytics' (ultralytics' ``YOLO`` built from a longseq YAML
without :func:`register` stops at ``KeyError: 'MultiScaleBackbone'``).

Ultralytics has no plugin registry: ``parse_model`` (``ultralytics/nn/tasks.py``) looks a
YAML row's module name up in ``torch.nn``, ``torchvision.ops`` or its own module globals.
:func:`register` puts :class:`~vision.detection.pyramid.MultiScaleBackbone` into those
globals, so a model YAML can start with::

    backbone:
      - [-1, 1, MultiScaleBackbone, [longseq_vit_tiny, [64, 128, 256]]]  # 0: [P3, P4, P5]
      - [0, 1, Index, [64, 0]]    # 1: P3/8, 64 channels
      - [0, 1, Index, [128, 1]]   # 2: P4/16
      - [0, 1, Index, [256, 2]]   # 3: P5/32
    head: ...                     # the stock YOLO neck and Detect head

The backbone row returns a list of maps; the parser assumes an unknown module keeps its
input channel count, so each level is picked by ultralytics' ``Index`` row, whose first
argument declares its channels. The pyramid projects every level to exactly the channels
its row asks for, so the declared numbers are the truth, not a guess. (Ultralytics'
``TorchVision`` module is not used: with ``split=True`` it unwraps a model into its
children and never calls the model's own ``forward``.)

Checkpoints pickle the whole model; the classes live in :mod:`vision`, so ``YOLO(path)``
in a fresh process loads them by import, without calling :func:`register` (training
from a checkpoint rebuilds the model from its YAML and does need it; only
``ULTRALYTICS_SAFE_LOAD`` restricted loading, which allows ultralytics' own classes only,
cannot load them).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

__all__ = ["MODULES", "YOLO", "register"]

log = logging.getLogger(__name__)

#: Names a model YAML may use once :func:`register` has run.
MODULES = ("MultiScaleBackbone",)


def YOLO(model: str | Path = "yolo11n.yaml", *args: Any, **kwargs: Any) -> Any:  # noqa: N802 (ultralytics' name)
    """ultralytics' ``YOLO(model, ...)`` with the longseq modules registered first.

    ``model``: a model YAML (a longseq one such as
    ``configs/detection/longseq_vit_tiny_yolo.yaml``, which resolves to the shipped file
    from any folder, or a stock name such as ``yolo11n.yaml``) or trained weights
    (``best.pt``). Other arguments go to ultralytics' ``YOLO``. Returns an
    ``ultralytics.YOLO``.

    Raises:
        ModuleNotFoundError: ultralytics is not installed (``pip install 'longseq[yolo]'``).
    """
    register()
    from ultralytics import YOLO as UltralyticsYOLO

    from vision.cli._shared import shipped_or_given

    return UltralyticsYOLO(shipped_or_given(str(model)), *args, **kwargs)


def register() -> None:
    """Make longseq backbones usable in ultralytics model YAMLs (idempotent).

    Injects :class:`~vision.detection.pyramid.MultiScaleBackbone` into
    ``ultralytics.nn.tasks``' globals, where ``parse_model`` finds YAML module names, and
    imports :mod:`vision.models` so the ``longseq_*`` timm names resolve.

    Raises:
        ModuleNotFoundError: ultralytics is not installed (``pip install 'longseq[yolo]'``).
    """
    try:
        import ultralytics.nn.tasks as tasks
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError("ultralytics is not installed: pip install 'longseq[yolo]'") from e
    import vision.models  # noqa: F401  (registers the longseq_* timm models)
    from vision.detection.pyramid import MultiScaleBackbone

    for name, cls in (("MultiScaleBackbone", MultiScaleBackbone),):
        existing = getattr(tasks, name, None)
        if existing is not None and existing is not cls:
            raise RuntimeError(f"ultralytics.nn.tasks already defines {name!r}; refusing to replace it")
        setattr(tasks, name, cls)
    log.debug("registered %s with ultralytics", ", ".join(MODULES))
