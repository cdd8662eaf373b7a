"""Train/val/test DataLoaders with padding masks, shared by the sequence data modules."""

from __future__ import annotations

from torch.utils.data import DataLoader

from genomics.data.datasets import pad_collate

__all__ = ["PaddedSplitLoaders"]


class PaddedSplitLoaders:
    """Train/val/test loaders over ``self.datasets[split]`` with padding masks.

    For data modules whose ``hparams`` hold ``batch_size`` and ``num_workers``.
    """

    datasets: dict

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            raise ValueError(f"no {split!r} split in {type(self).__name__}")
        return DataLoader(self.datasets[split], batch_size=self.hparams.batch_size, shuffle=shuffle,
                          collate_fn=pad_collate, num_workers=self.hparams.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)
