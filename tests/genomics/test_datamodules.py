import numpy as np
import pytest
import torch

from .dna_data import random_dna, write_fasta
from genomics.data import AnnotationDataModule, GenomeWindowDataModule, SequenceClassificationDataModule
from genomics.data.tokenizers import PAD, NucleotideTokenizer, reverse_complement

TOK = NucleotideTokenizer()


def _dm(tmp_path, cache_dir, recs, **kw):
    path = write_fasta(tmp_path / "g.fa", recs)
    dm = GenomeWindowDataModule(str(path), cache_dir=str(cache_dir), **kw)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _locate(genome_seq: dict[str, str], window: str) -> tuple[str, int, bool]:
    """Where a window lies (record, start, reverse strand?)."""
    comp = str.maketrans("ACGTN", "TGCAN")
    for name, seq in genome_seq.items():
        for strand, w in ((False, window), (True, window.translate(comp)[::-1])):
            pos = seq.find(w)
            if pos >= 0:
                return name, pos, strand
    raise AssertionError("window not found in genome")


def test_windows_never_cross_splits_or_records(tmp_path, cache_dir):
    recs = {"a": random_dna(3000, 1), "b": random_dna(1700, 2)}
    dm = _dm(tmp_path, cache_dir, recs, seq_len=128, batch_size=4, val_fraction=0.2, test_fraction=0.1)
    bounds = {name: (round(len(s) * 0.7), round(len(s) * 0.9)) for name, s in recs.items()}
    torch.manual_seed(0)
    seen_rc = False
    for split in ("train", "val", "test"):
        ds = dm.datasets[split]
        for _ in range(3 if split == "train" else 1):
            for i in range(len(ds)):
                item = ds[i]
                w = TOK.decode(item["input_ids"])
                assert len(w) == 128 and item["mask"].all()
                name, start, rc = _locate(recs, w)
                seen_rc |= rc
                lo = {"train": 0, "val": bounds[name][0], "test": bounds[name][1]}[split]
                hi = {"train": bounds[name][0], "val": bounds[name][1], "test": len(recs[name])}[split]
                assert lo <= start and start + 128 <= hi, (split, name, start)
    assert seen_rc  # augmentation happens on train
    # Fixed validation windows: identical on every pass.
    v1 = [dm.datasets["val"][i]["input_ids"] for i in range(len(dm.datasets["val"]))]
    v2 = [dm.datasets["val"][i]["input_ids"] for i in range(len(dm.datasets["val"]))]
    assert all(torch.equal(a, b) for a, b in zip(v1, v2))
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape == (4, 128) and batch["input_ids"].dtype == torch.int64


def test_join_records_spans_contigs_with_a_masked_separator(tmp_path, cache_dir):
    """Joined windows cover short contigs, put SEP (mask False) between regions, never mix splits."""
    from genomics.data.tokenizers import SEP

    recs = {f"c{i}": random_dna(n, 10 + i) for i, n in enumerate((90, 150, 60, 200))}
    with pytest.raises(ValueError, match="shorter than seq_len"):
        _dm(tmp_path, cache_dir, recs, seq_len=256, on_short="error")  # every contig alone is too short
    dm = _dm(tmp_path, cache_dir, recs, seq_len=128, val_fraction=0.2, join_records=True, rc_prob=0.0, max_shift=0)
    train = dm.datasets["train"]
    # the train stream: first 80% of each contig in order, one SEP between them
    parts = [s[: round(len(s) * 0.8)] for s in recs.values()]
    stream = TOK.encode("N".join(parts))  # 'N' stands in for SEP, then replaced below
    seps = np.cumsum([len(p) + 1 for p in parts])[:-1] - 1
    stream[seps] = SEP
    assert len(train) == len(stream) // 128
    for i in range(len(train)):
        item = train[i]
        expect = stream[i * 128 : (i + 1) * 128]
        assert np.array_equal(item["input_ids"].numpy(), expect)
        assert np.array_equal(item["mask"].numpy(), expect != SEP)
    assert sum(int((~train[i]["mask"]).sum()) for i in range(len(train))) >= 2  # windows do span contigs
    val_text = {TOK.decode(dm.datasets["val"][i]["input_ids"][dm.datasets["val"][i]["mask"]])
                for i in range(len(dm.datasets["val"]))}
    train_parts = "".join(parts)
    assert all(v and v[:20] not in train_parts for v in val_text)  # validation bases come from the val regions
    torch.manual_seed(0)
    aug = _dm(tmp_path, cache_dir, recs, seq_len=128, val_fraction=0.2, join_records=True, rc_prob=1.0)
    item = aug.datasets["train"][0]
    assert item["input_ids"].shape == (128,) and bool((item["input_ids"] == SEP).eq(~item["mask"]).all())


def test_n_windows_skipped(tmp_path, cache_dir):
    seq = random_dna(1000, 3)
    seq = seq[:200] + "N" * 100 + seq[300:]
    dm = _dm(tmp_path, cache_dir, {"c": seq}, seq_len=100, val_fraction=0.1, max_n_frac=0.05, rc_prob=0.0, max_shift=0)
    starts = sorted(c[1] for c in dm.datasets["train"].cells)
    assert starts == [0, 100, 300, 400, 500, 600, 700, 800]


def test_short_region_error_pad_clip(tmp_path, cache_dir):
    recs = {"c": random_dna(1000, 4)}
    with pytest.raises(ValueError, match=r"val region c:900-1000 \(100 bases\) is shorter than seq_len=256"):
        _dm(tmp_path, cache_dir, recs, seq_len=256, on_short="error")
    dm = _dm(tmp_path, cache_dir, recs, seq_len=256, on_short="pad")
    item = dm.datasets["val"][0]
    assert item["input_ids"].shape == (256,) and item["mask"].sum() == 100 and (item["input_ids"][100:] == PAD).all()
    dm = _dm(tmp_path, cache_dir, recs, seq_len=256, on_short="clip")
    assert dm.datasets["val"][0]["input_ids"].shape == (100,)


def test_record_and_bed_splits(tmp_path, cache_dir):
    recs = {"chr1": random_dna(600, 5), "chr2": random_dna(600, 6), "chr3": random_dna(600, 7)}
    dm = _dm(tmp_path, cache_dir, recs, seq_len=100, val_records=["chr2"], test_records=["chr3"])
    assert {r.interval.record for r in dm.splits["val"]} == {"chr2"}
    assert {r.interval.record for r in dm.splits["train"]} == {"chr1"}
    with pytest.raises(ValueError, match="not a record"):
        _dm(tmp_path, cache_dir, recs, seq_len=100, val_records=["chrX"])
    bed = tmp_path / "s.bed"
    bed.write_text("chr1\t0\t400\ttrain\nchr1\t300\t600\tval\n")
    with pytest.raises(ValueError, match="overlap"):
        _dm(tmp_path, cache_dir, recs, seq_len=100, split_bed=str(bed))
    bed.write_text("chr1\t0\t400\ttrain\nchr1\t400\t600\tval\n")
    dm = _dm(tmp_path, cache_dir, recs, seq_len=100, split_bed=str(bed))
    assert len(dm.datasets["train"]) == 4 and len(dm.datasets["val"]) == 2


def test_default_ecoli_split(cache_dir):
    dm = GenomeWindowDataModule(seq_len=65536, cache_dir=str(cache_dir))
    dm.setup("fit")
    (train,), (val,) = dm.splits["train"], dm.splits["val"]
    n = dm.genomes[0].records[0].length
    assert train.interval.start == 0 and train.interval.end == val.interval.start == round(0.9 * n)
    assert val.interval.end == n
    assert all(end <= round(0.9 * n) for _, _, end in dm.datasets["train"].cells)


def test_annotation_labels_follow_rc(tmp_path, cache_dir):
    from Bio import SeqIO
    from Bio.Seq import Seq
    from Bio.SeqFeature import FeatureLocation, SeqFeature
    from Bio.SeqRecord import SeqRecord

    rec = SeqRecord(Seq(random_dna(2000, 8)), id="c1", annotations={"molecule_type": "DNA"})
    rec.features = [SeqFeature(FeatureLocation(500, 900, 1), type="CDS")]
    SeqIO.write([rec], tmp_path / "a.gb", "genbank")
    dm = AnnotationDataModule(str(tmp_path / "a.gb"), seq_len=1000, cache_dir=str(cache_dir), rc_prob=1.0, max_shift=0)
    dm.setup("fit")
    item = dm.datasets["train"][0]
    # Forced RC: labels reversed along with the bases.
    assert item["labels"].flip(0)[500:900].eq(2).all() and item["labels"].flip(0)[:500].eq(0).all()
    assert TOK.decode(reverse_complement(item["input_ids"])) == str(rec.seq)[:1000]


def test_default_annotation_is_yeast(cache_dir):
    dm = AnnotationDataModule(seq_len=8192, cache_dir=str(cache_dir))
    dm.setup("fit")
    labels = np.concatenate([np.asarray(g.labels) for g in dm.genomes])
    assert len(dm.genomes) == 3 and np.bincount(labels, minlength=3).min() > 1000


def test_classification_csv_and_folder(tmp_path):
    rows = ["sequence,label"] + [f"{random_dna(20 + i % 7, i)},{'pos' if i % 2 else 'neg'}" for i in range(20)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    dm = SequenceClassificationDataModule(str(tmp_path / "d.csv"), batch_size=4, val_fraction=0.25)
    dm.setup("fit")
    assert dm.class_names == ["neg", "pos"] and len(dm.datasets["val"]) == 5 and len(dm.datasets["train"]) == 15
    batch = next(iter(dm.val_dataloader()))
    lengths = batch["mask"].sum(1)
    assert batch["input_ids"].shape[1] == int(lengths.max()) and batch["label"].shape == (4,)
    assert (batch["input_ids"][~batch["mask"]] == PAD).all()

    folder = tmp_path / "classes"
    folder.mkdir()
    write_fasta(folder / "promoter.fa", {f"p{i}": random_dna(30, i) for i in range(5)})
    write_fasta(folder / "random.fa", {f"r{i}": random_dna(30, 100 + i) for i in range(5)})
    dm = SequenceClassificationDataModule(str(folder), batch_size=2, val_fraction=0.2)
    dm.setup("fit")
    assert dm.class_names == ["promoter", "random"] and dm.num_classes == 2

    (tmp_path / "bad.csv").write_text("bases,kind\nACGT,1\n")
    with pytest.raises(ValueError, match=r"bad\.csv: no sequence column in the header \['bases', 'kind'\]"):
        SequenceClassificationDataModule(str(tmp_path / "bad.csv")).setup("fit")
    (tmp_path / "bad2.csv").write_text("sequence,label\nACGT,1\nACXT,0\n")
    with pytest.raises(ValueError, match=r"bad2\.csv:3.*'X' at base 3 \(1-based\)"):
        SequenceClassificationDataModule(str(tmp_path / "bad2.csv")).setup("fit")
