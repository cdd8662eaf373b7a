"""Lightning data modules: scattered digits (the offline default) and a user's image folder."""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Callable, Sequence

import lightning as L
import torch
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import Tensor
from torch.utils.data import DataLoader, RandomSampler

from longseq.training.sampling import SeededDataset, items_done

from vision.data.datasets import ScatteredDigitsClassification
from vision.data.image_folder import VAL_FOLDERS, SafeImageFolder, scan_image_folder, split_folders
from vision.data.scattered_digits import CanvasSettings, scattered_digits_split
from vision.data.transforms import photo_transform

__all__ = ["EpochShuffle", "ScatteredDigitsDataModule", "ImageFolderDataModule", "IMAGENET_MEAN", "IMAGENET_STD",
           "shuffled_loader"]

log = logging.getLogger(__name__)

IMAGENET_MEAN = IMAGENET_DEFAULT_MEAN
IMAGENET_STD = IMAGENET_DEFAULT_STD


def _size(img_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(img_size, int):
        img_size = (img_size, img_size)
    h, w = (int(v) for v in img_size)
    if h < 1 or w < 1:
        raise ValueError(f"img_size must be positive, got {img_size!r}")
    return h, w


class EpochShuffle(RandomSampler):
    """A new order every epoch: ``torch.randperm(n)`` drawn from a generator seeded with
    ``seed + epoch``, where ``seed`` defaults to ``PL_GLOBAL_SEED`` (set by
    ``lightning.seed_everything``; 0 when unset), read as iteration starts.

    This is the order that Lightning's ``DistributedSampler(shuffle=True)`` draws on every
    process before dealing it out (process ``r`` of ``W`` takes positions ``r, r + W, ...``),
    and Lightning puts one in place of this sampler (a ``RandomSampler``) on more than one
    device. So a run on ``W`` processes with per-process batch ``B`` trains on the same
    samples per step as one process with batch ``W * B``, whenever the training set size is a
    multiple of ``W`` (otherwise ``DistributedSampler`` repeats samples to even out).

    For an exact resume on one process: with ``item_seeds`` every index is paired with a seed
    of its own, drawn after the order from the same generator (read the items through
    :class:`longseq.training.sampling.SeededDataset`, so each item's augmentation depends on
    its place in the run only); ``position``, called as iteration starts, returns ``(epoch,
    items of it already trained)``, and those items are left out (a run resumed in the middle
    of an epoch continues with the next batch). ``len()`` stays the full epoch.
    """

    def __init__(self, data_source, seed: int | None = None, *, item_seeds: bool = False,
                 position: Callable[[], tuple[int, int]] | None = None) -> None:
        super().__init__(data_source)
        self.seed = seed
        self.epoch = 0
        self.item_seeds, self.position = item_seeds, position
        self.skipped = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning's fit loop at the start of every epoch."""
        self.epoch = epoch

    def __iter__(self):
        skip = 0
        if self.position is not None:
            self.epoch, skip = self.position()
        seed = self.seed if self.seed is not None else int(os.getenv("PL_GLOBAL_SEED", 0))
        generator = torch.Generator()
        generator.manual_seed(seed + self.epoch)
        n = len(self.data_source)
        order = torch.randperm(n, generator=generator).tolist()
        self.skipped = min(max(0, int(skip)), n)
        if not self.item_seeds:
            yield from order[self.skipped:]
            return
        seeds = torch.randint(2**62, (n,), generator=generator).tolist()
        yield from zip(order[self.skipped:], seeds[self.skipped:])


def shuffled_loader(dataset, *, trainer, batch_size: int, num_workers: int = 0,
                    collate_fn: Callable | None = None, drop_last: bool | None = None) -> DataLoader:
    """The training DataLoader of the vision modules, shuffled by :class:`EpochShuffle` (the same
    global batches on any number of devices). On one process each item carries a seed of its
    own and a resumed epoch skips the batches already trained, so ``--ckpt-path`` continues the
    data order and augmentation of the run. ``drop_last`` (default: when the set holds more
    than one batch) keeps steps equal-sized but never empties a set smaller than a batch."""
    if drop_last is None:
        drop_last = len(dataset) > batch_size
    exact = trainer is not None and trainer.world_size == 1
    batches = len(dataset) // batch_size if drop_last else -(-len(dataset) // batch_size)
    position = None
    if exact:
        def position() -> tuple[int, int]:
            accumulate = int(getattr(trainer, "accumulate_grad_batches", 1) or 1)
            return int(trainer.current_epoch), items_done(trainer, -(-batches // accumulate), batch_size)
    sampler = EpochShuffle(dataset, item_seeds=exact, position=position)
    return DataLoader(SeededDataset(dataset) if exact else dataset, batch_size=batch_size, sampler=sampler,
                      num_workers=num_workers, persistent_workers=num_workers > 0, drop_last=drop_last,
                      collate_fn=collate_fn)


class _ClassificationLoaders(L.LightningDataModule):
    """Shared DataLoaders: subclasses set ``train_set``/``val_set`` in ``setup``; training
    batches come from :func:`shuffled_loader`."""

    def _loader(self, dataset, shuffle: bool) -> DataLoader:
        hp = self.hparams
        if shuffle:
            return shuffled_loader(dataset, trainer=getattr(self, "trainer", None), batch_size=hp.batch_size,
                                   num_workers=hp.num_workers)
        return DataLoader(dataset, batch_size=hp.batch_size, num_workers=hp.num_workers,
                          persistent_workers=hp.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)


class ScatteredDigitsDataModule(_ClassificationLoaders):
    """Classification on scattered-digits canvases (10 classes, 3 x H x W in ``[0, 1]``).

    Args:
        img_size: canvas side, or ``(H, W)``.
        train_size / val_size: canvases per split (generated once, then cached).
        seed: generation seed.
        batch_size, num_workers: DataLoader settings.
        cache_dir: where canvases are cached (default ``~/.cache/longseq/scattered_digits``).
    """

    num_classes = 10

    def __init__(
        self,
        img_size: int | tuple[int, int] = 512,
        train_size: int = 8000,
        val_size: int = 1000,
        seed: int = 0,
        batch_size: int = 16,
        num_workers: int = 2,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("train_size", train_size), ("val_size", val_size), ("batch_size", batch_size)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.save_hyperparameters()
        self.settings = CanvasSettings(canvas_size=_size(img_size))
        self.classes = [str(i) for i in range(10)]

    def _split(self, split: str):
        hp = self.hparams
        n = hp.train_size if split == "train" else hp.val_size
        return scattered_digits_split(split, n, seed=hp.seed, settings=self.settings, cache_dir=hp.cache_dir)

    def prepare_data(self) -> None:
        self._split("train")
        self._split("val")

    def setup(self, stage: str | None = None) -> None:
        self.train_set = ScatteredDigitsClassification(self._split("train"))
        self.val_set = ScatteredDigitsClassification(self._split("val"))



def _hold_out(samples: list[tuple[Path, int]], num_classes: int, fraction: float,
              seed: int) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]]]:
    """``(train, val)``: a seeded ``fraction`` of each class's samples (at least one of a
    class with two or more) validates."""
    rng = random.Random(seed)
    train, val = [], []
    for c in range(num_classes):
        items = [s for s in samples if s[1] == c]
        rng.shuffle(items)
        n_val = max(1, round(len(items) * fraction)) if len(items) > 1 else 0
        val += items[:n_val]
        train += items[n_val:]
    return train, val


class ImageFolderDataModule(_ClassificationLoaders):
    """Classification on ``root/<class>/<image>``, or ``root/train/<class>/<image>`` beside a
    held-out ``val/`` (or ``valid/``, ``validation/``, ``dev/``) with the same class folders
    (a class may be missing from it). Without a held-out folder, ``val_fraction`` of each
    class (shuffled with ``seed``) validates; a ``test/`` folder is never read. Corrupt files are skipped and non-RGB images converted, with a
    logged warning (see :mod:`vision.data.image_folder`).

    Transforms (timm's ``create_transform``, :mod:`vision.data.transforms`): training takes
    a random resized crop covering ``scale`` of the image area (default 0.35-1) and a
    horizontal flip with probability ``hflip``; validation resizes so that the centre crop
    covers ``crop_pct`` of the image side (default 1: the short side) and crops the centre;
    both resample with ``interpolation`` and normalise with ``mean`` / ``std`` (default
    ImageNet's; timm's ``vit_*_patch16_224`` weights expect 0.5 / 0.5).
    """

    def __init__(
        self,
        root: str,
        img_size: int | tuple[int, int] = 512,
        batch_size: int = 16,
        num_workers: int = 2,
        val_fraction: float = 0.2,
        seed: int = 0,
        scale: Sequence[float] = (0.35, 1.0),
        hflip: float = 0.5,
        crop_pct: float = 1.0,
        interpolation: str = "bilinear",
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.save_hyperparameters()
        self.size = _size(img_size)
        self.transforms(train=True), self.transforms(train=False)  # bad augmentation settings fail here
        self.classes: list[str] = []

    @property
    def num_classes(self) -> int:
        if not self.classes:
            self.setup()
        return len(self.classes)

    def transforms(self, train: bool) -> Callable[[Image.Image], Tensor]:
        """RGB PIL image -> normalised ``(3, H, W)`` tensor, for training or validation."""
        hp = self.hparams
        return photo_transform(self.size, train, scale=hp.scale, hflip=hp.hflip, crop_pct=hp.crop_pct,
                               interpolation=hp.interpolation, mean=hp.mean, std=hp.std)

    def setup(self, stage: str | None = None) -> None:
        if self.classes:
            return
        root = Path(self.hparams.root)
        split = split_folders(root)
        if split is not None and split[1] is not None:
            train, classes = scan_image_folder(split[0])
            val, val_classes = scan_image_folder(split[1])
            unknown = sorted(set(val_classes) - set(classes))
            if unknown:
                raise ValueError(f"{split[1]}: class folders {unknown} are not under {split[0]}")
            index = [classes.index(name) for name in val_classes]  # a class may be missing from val
            val = [(path, index[label]) for path, label in val]
        else:
            samples, classes = scan_image_folder(root if split is None else split[0])
            train, val = _hold_out(samples, len(classes), self.hparams.val_fraction, self.hparams.seed)
            if not val:
                raise ValueError(f"too few images under {root} to hold out a validation set")
            if split is not None:
                log.info("%s: no %s folder beside train/: validating on %.0f%% of each class of train/%s",
                         root, "/".join(VAL_FOLDERS), 100 * self.hparams.val_fraction,
                         "; test/ is left aside" if (root / "test").is_dir() else "")
        self.classes = classes
        self.train_set = SafeImageFolder(train, classes, self.transforms(train=True))
        self.val_set = SafeImageFolder(val, classes, self.transforms(train=False))
        log.info("image folder %s: %d classes, %d train, %d val", root, len(classes), len(train), len(val))
