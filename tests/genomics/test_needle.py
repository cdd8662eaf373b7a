from types import SimpleNamespace

import numpy as np
import pytest

from .dna_data import random_dna, write_fasta
from genomics.data.length_warmup import Stage
from genomics.data.needle import MARKER_ZONE, NeedleDataModule, NeedleSpec


def test_needle_examples(tmp_path, cache_dir):
    fasta = write_fasta(tmp_path / "g.fa", {"chr": random_dna(50000, 1)})
    dm = NeedleDataModule(str(fasta), 1024, eval_seq_len=8192, min_distance=5000, train_samples=8,
                          val_samples=20, test_samples=20, cache_dir=str(cache_dir))
    dm.setup("fit")
    spec = NeedleSpec(16, 0)
    labels = []
    for split, length in (("train", 1024), ("val", 1024), ("test", 8192)):
        ds = dm.datasets[split]
        for i in range(len(ds)):
            item = ds[i]
            ids = item["input_ids"].numpy().astype(np.uint8)
            q = int(item["query_index"])
            assert ids.shape == (length,) and length - MARKER_ZONE <= q - 15 and q < length
            assert (ids[q - 15 : q + 1] == spec.marker).all()
            motif = spec.motifs[int(item["label"])]
            hits = [p for p in range(length // 2) if (ids[p : p + 16] == motif).all()]
            assert hits, "motif not planted in the first half"
            if split == "test":
                assert q - 15 - hits[0] >= 5000
            labels.append(int(item["label"]))
    assert 0 < sum(labels) < len(labels)
    for split in ("val", "test"):  # fixed sets are balanced: a motif-blind model scores 50%
        assert [int(dm.datasets[split][i]["label"]) for i in range(20)] == [0, 1] * 10
    again = dm.datasets["val"][3]
    assert (again["input_ids"] == dm.datasets["val"][3]["input_ids"]).all()  # fixed validation set


def test_needle_errors(tmp_path, cache_dir):
    fasta = write_fasta(tmp_path / "g.fa", {"chr": random_dna(20000, 2)})
    dm = NeedleDataModule(str(fasta), 1024, eval_seq_len=100000, cache_dir=str(cache_dir))
    with pytest.raises(ValueError, match="no region holds a 100000-base needle window"):
        dm.setup("fit")
    with pytest.raises(ValueError, match="motif_len"):
        NeedleSpec(64)


def test_needle_length_schedule(tmp_path, cache_dir):
    """After set_schedule, epoch e trains on epochs[e]'s window length and batch size, and
    validation stays at seq_len."""
    fasta = write_fasta(tmp_path / "g.fa", {"chr": random_dna(40000, 4)})
    dm = NeedleDataModule(str(fasta), 2048, eval_seq_len=4096, min_distance=1000, val_samples=2, test_samples=2,
                          cache_dir=str(cache_dir))
    dm.setup("fit")
    assert dm.set_schedule([Stage(256, 4, 3), Stage(2048, 1, 5)], val_every=2) == 5  # 2+1 and 2+2+1 steps
    seen = []
    for epoch in range(5):
        dm.trainer = SimpleNamespace(current_epoch=epoch)
        batches = list(dm.train_dataloader())
        seen.append((len(batches), *batches[0]["input_ids"].shape))
        for b in batches:  # every planted marker sits where query_index says
            q = b["query_index"][0]
            assert (b["input_ids"][0, q - 15 : q + 1].numpy() == NeedleSpec(16, 0).marker).all()
    assert seen == [(2, 4, 256), (1, 4, 256), (2, 1, 2048), (2, 1, 2048), (1, 1, 2048)]
    assert next(iter(dm.val_dataloader()))["input_ids"].shape[1] == 2048
