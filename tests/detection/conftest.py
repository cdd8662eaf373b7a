"""Shared fixtures: an offline, sandboxed ultralytics and a tiny generated data set."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def yolo_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment for ultralytics: offline, settings and matplotlib caches in a tmp folder,
    and the repository on PYTHONPATH for subprocesses (a fresh interpreter must import
    ``vision`` to unpickle a checkpoint). Set before ultralytics is first imported."""
    cfg = tmp_path_factory.mktemp("yolo_cfg")
    env = {
        "YOLO_OFFLINE": "1",
        "YOLO_CONFIG_DIR": str(cfg),
        "MPLCONFIGDIR": str(cfg / "mpl"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        yield dict(os.environ)


@pytest.fixture(scope="session")
def tiny_digits_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny scattered-digits YOLO set: 64 x 64 canvases, 4 train and 2 val images."""
    from vision.detection.generate import make_scattered_digits_yolo

    return make_scattered_digits_yolo(
        tmp_path_factory.mktemp("digits") / "d", img_size=64, n_train=4, n_val=2, digit_size=(12, 20)
    )
