import numpy as np
import pytest

from .dna_data import random_dna, write_fasta
from genomics.needle import MARKER_ZONE, NeedleDataModule, NeedleSpec


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
    again = dm.datasets["val"][3]
    assert (again["input_ids"] == dm.datasets["val"][3]["input_ids"]).all()  # fixed validation set


def test_needle_errors(tmp_path, cache_dir):
    fasta = write_fasta(tmp_path / "g.fa", {"chr": random_dna(20000, 2)})
    dm = NeedleDataModule(str(fasta), 1024, eval_seq_len=100000, cache_dir=str(cache_dir))
    with pytest.raises(ValueError, match="no region holds a 100000-base needle window"):
        dm.setup("fit")
    with pytest.raises(ValueError, match="motif_len"):
        NeedleSpec(64)
