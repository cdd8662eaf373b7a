"""longseq-predict-dna and genomics.load_model on 2-step models of each task: outputs, windows,
embeddings, predict_step, errors, and the documented commands."""

from __future__ import annotations

import ast
import csv
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import genomics
from genomics.cli import predict_dna
from genomics.cli.predict_outputs import label_runs
from genomics.models import (
    CheckpointError, DNAClassifier, DNALanguageModel, base_bits, base_labels, class_probabilities, load_model,
    mean_embedding, predict_sequences, score_sequence, tiles,
)
from genomics.models.windowed import pad_batch

from .dna_data import random_dna, write_fasta
from .tiny_runs import CLASSES, train_tiny

REPO = Path(__file__).resolve().parents[2]
TASKS = ("lm", "classification", "annotation")
# FASTA records: shorter than every trained length, between, and longer than every one
# (classification trained at 50 bases, annotation 256, lm 512); one holds N.
FASTA_RECORDS = {"short": random_dna(40, 21), "mid": random_dna(130, 22),
                 "long": random_dna(300, 23) + "N" * 20 + random_dna(380, 24)}
CSV_ROWS = [("x1", random_dna(30, 31)), ("x2", random_dna(120, 32)), ("x3", random_dna(45, 33))]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    """(root, summary per task): the 2-step runs under ``root/runs/dna`` and the inputs
    ``seqs.fa``, ``seqs.fa.gz``, ``seqs.csv`` in ``root``."""
    root = tmp_path_factory.mktemp("predict")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LONGSEQ_CACHE_DIR", str(root / "cache"))
        summaries = {task: train_tiny(task, root) for task in TASKS}
    write_fasta(root / "seqs.fa", FASTA_RECORDS)
    write_fasta(root / "seqs.fa.gz", FASTA_RECORDS, gz=True)
    (root / "seqs.csv").write_text("name,sequence\n" + "".join(f"{i},{s}\n" for i, s in CSV_ROWS))
    return root, summaries


def _ckpt(runs, task: str) -> str:
    return runs[1][task]["checkpoint"]


def _rows(path: Path, delimiter: str = ",") -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter=delimiter))


def _encode(seq: str) -> np.ndarray:
    return genomics.NucleotideTokenizer().encode(seq)


# --------------------------------------------------------------------------- load_model

def test_load_model_returns_the_plain_module_its_tokenizer_and_task(runs):
    import lightning

    expected = {"lm": (DNALanguageModel, None), "classification": (DNAClassifier, CLASSES),
                "annotation": (DNAClassifier, ("intergenic", "gene", "CDS"))}
    for task, (cls, names) in expected.items():
        model, tokenizer, info = genomics.load_model(_ckpt(runs, task))
        assert type(model) is cls and not isinstance(model, lightning.LightningModule) and not model.training
        assert tokenizer.vocab_size == 9 and info.task == task and info.class_names == names
        state = torch.load(_ckpt(runs, task), weights_only=True)["state_dict"]
        assert all(torch.equal(v, state[f"backbone.{k}"]) for k, v in model.state_dict().items())
    assert load_model(_ckpt(runs, "classification")).info.trained_len == 50  # --seq-len of the run
    assert load_model(_ckpt(runs, "lm")).info.trained_len == 512
    assert genomics.load_model is load_model


def test_load_model_infers_the_task_of_a_checkpoint_without_its_record(runs, tmp_path):
    for task in TASKS:
        ckpt = torch.load(_ckpt(runs, task), weights_only=True)
        del ckpt["genomics"]
        torch.save(ckpt, tmp_path / f"{task}.ckpt")
        info = load_model(tmp_path / f"{task}.ckpt").info
        assert info.task == task
        if task == "classification":
            assert info.class_names == ("0", "1")  # names not saved: class indices


def test_load_model_errors_name_the_file(runs, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(text))}: not a PyTorch checkpoint"):
        load_model(text)
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_model(tmp_path / "missing.ckpt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match=r"plain\.pt: not a longseq-train-dna checkpoint"):
        load_model(tmp_path / "plain.pt")

    ckpt = torch.load(_ckpt(runs, "classification"), weights_only=True)
    ckpt["hyper_parameters"]["model_config"]["dim"] = 64  # another architecture than the weights
    torch.save(ckpt, tmp_path / "wide.ckpt")
    with pytest.raises(CheckpointError, match=r"wide\.ckpt: the weights do not fit") as err:
        load_model(tmp_path / "wide.ckpt")
    assert "shape mismatch: backbone.embed.weight: checkpoint (9, 32), model (9, 64)" in str(err.value)
    assert "more)" in str(err.value)  # only the first few names are listed

    ckpt["hyper_parameters"]["model_config"] = {"num_classes": 2, "dimm": 32}
    torch.save(ckpt, tmp_path / "typo.ckpt")
    with pytest.raises(CheckpointError, match=r"typo\.ckpt: its model_config does not build a DNAClassifier"):
        load_model(tmp_path / "typo.ckpt")

    ckpt = torch.load(_ckpt(runs, "classification"), weights_only=True)
    ckpt["extra"] = torch.nn.Identity()  # an object: refused unless the file is trusted
    torch.save(ckpt, tmp_path / "object.ckpt")
    with pytest.raises(CheckpointError, match=r"object\.ckpt: .*trusted=True \(--trust-checkpoint\)"):
        load_model(tmp_path / "object.ckpt")
    assert load_model(tmp_path / "object.ckpt", trusted=True).info.task == "classification"

    with pytest.raises(SystemExit, match=rf"longseq-predict-dna: error: --ckpt {re.escape(str(text))}: not a"):
        predict_dna.run(["--ckpt", str(text), "--data", "x.fa", "--out", str(tmp_path / "p.csv")])


# --------------------------------------------------------------------------- classification

def test_classification_csv_probabilities(runs, tmp_path):
    summary = predict_dna.run(["--ckpt", _ckpt(runs, "classification"), "--data", str(runs[0] / "seqs.csv"),
                               "--out", str(tmp_path / "preds.csv"), "--no-progress"])
    rows = _rows(tmp_path / "preds.csv")
    assert list(rows[0]) == ["id", "length", "p_neg", "p_pos", "predicted"]
    assert [(r["id"], int(r["length"])) for r in rows] == [(i, len(s)) for i, s in CSV_ROWS]
    probs = np.array([[float(r["p_neg"]), float(r["p_pos"])] for r in rows])
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5) and (probs >= 0).all()
    assert [r["predicted"] for r in rows] == [CLASSES[k] for k in probs.argmax(1)]
    assert summary["window"] == 50 and summary["stride"] == 50 and summary["windowed"] == 1  # x2: 120 > 50
    # the long sequence: the mean of its windows' probabilities (windows of 50, the last ending at 120)
    model = load_model(_ckpt(runs, "classification")).model
    ids = _encode(CSV_ROWS[1][1])
    assert [(s, e) for s, e, _, _ in tiles(ids.size, 50, 50)] == [(0, 50), (50, 100), (70, 120)]
    windows = torch.stack([torch.from_numpy(ids[s:e].astype(np.int64)) for s, e, _, _ in tiles(ids.size, 50, 50)])
    assert np.allclose(probs[1], class_probabilities(model, windows).mean(0).numpy(), atol=1e-5)


def test_classification_gzip_fasta_with_a_custom_window(runs, tmp_path):
    predict_dna.run(["--ckpt", _ckpt(runs, "classification"), "--data", str(runs[0] / "seqs.fa.gz"),
                     "--out", str(tmp_path / "preds.csv"), "--window", "200", "--no-progress"])
    rows = _rows(tmp_path / "preds.csv")
    assert [r["id"] for r in rows] == list(FASTA_RECORDS)
    assert all(abs(float(r["p_neg"]) + float(r["p_pos"]) - 1) < 1e-5 for r in rows)
    model = load_model(_ckpt(runs, "classification")).model
    whole = class_probabilities(model, torch.from_numpy(_encode(FASTA_RECORDS["mid"]).astype(np.int64))[None])
    assert float(rows[1]["p_pos"]) == pytest.approx(float(whole[0, 1]), abs=1e-5)  # 130 <= 200: one pass


# --------------------------------------------------------------------------- annotation

def test_label_runs_merge_and_leave_out_the_background():
    labels = np.array([0, 0, 1, 1, 2, 2, 2, 0, 1, 1, 1])
    assert label_runs(labels) == [(2, 4, 1), (4, 7, 2), (8, 11, 1)]
    assert label_runs(np.zeros(5, dtype=int)) == [] and label_runs(np.array([], dtype=int)) == []
    assert label_runs(np.full(3, 2)) == [(0, 3, 2)]


def _bed(path: Path) -> list[tuple[str, int, int, str]]:
    rows = [line.rstrip("\n").split("\t") for line in path.read_text().splitlines()]
    assert all(len(r) == 4 for r in rows)
    return [(r[0], int(r[1]), int(r[2]), r[3]) for r in rows]


def _check_bed(intervals, lengths: dict[str, int]) -> None:
    by_id: dict[str, list] = {}
    for name, start, end, label in intervals:
        assert 0 <= start < end <= lengths[name] and label in ("gene", "CDS")
        by_id.setdefault(name, []).append((start, end, label))
    for runs_of_id in by_id.values():
        for (s0, e0, l0), (s1, e1, l1) in zip(runs_of_id, runs_of_id[1:]):
            assert e0 <= s1 and not (e0 == s1 and l0 == l1)  # sorted, disjoint, equal neighbours merged


def test_annotation_bed(runs, tmp_path):
    ckpt = _ckpt(runs, "annotation")
    summary = predict_dna.run(["--ckpt", ckpt, "--data", str(runs[0] / "seqs.fa"), "--out", str(tmp_path / "p.bed"),
                               "--no-progress"])
    lengths = {k: len(v) for k, v in FASTA_RECORDS.items()}
    intervals = _bed(tmp_path / "p.bed")
    _check_bed(intervals, lengths)
    assert summary["intervals"] == len(intervals) and summary["window"] == 256 and summary["stride"] == 192
    # the same labels as the windowed prediction, run by run
    model = load_model(ckpt).model
    seqs = [_encode(s) for s in FASTA_RECORDS.values()]
    labels = dict(predict_sequences(model, seqs, "labels", window=256, stride=192))
    names = ("intergenic", "gene", "CDS")
    assert intervals == [(n, s, e, names[k]) for i, n in enumerate(FASTA_RECORDS) for s, e, k in label_runs(labels[i])]
    assert all(labels[i].shape == (len(s),) for i, s in enumerate(seqs))


def test_annotation_windows_cover_every_base(runs, tmp_path):
    """A head that always says 'gene': one interval per sequence, exactly its whole length,
    through the windows of the longer ones."""
    ckpt = torch.load(_ckpt(runs, "annotation"), weights_only=True)
    ckpt["state_dict"]["backbone.head.weight"].zero_()
    ckpt["state_dict"]["backbone.head.bias"].copy_(torch.tensor([0.0, 5.0, 0.0]))
    torch.save(ckpt, tmp_path / "gene.ckpt")
    predict_dna.run(["--ckpt", str(tmp_path / "gene.ckpt"), "--data", str(runs[0] / "seqs.fa"),
                     "--out", str(tmp_path / "all.bed"), "--window", "100", "--stride", "60", "--no-progress"])
    assert _bed(tmp_path / "all.bed") == [(k, 0, len(v), "gene") for k, v in FASTA_RECORDS.items()]


def test_tiles_partition_the_sequence():
    for length, window, stride in ((1000, 256, 192), (1000, 100, 100), (257, 256, 1), (50, 256, 192)):
        parts = tiles(length, window, stride)
        assert parts[0][2] == 0 and parts[-1][3] == length and parts[-1][1] == length
        assert all(k0e == k1s for (_, _, _, k0e), (_, _, k1s, _) in zip(parts, parts[1:]))
        assert all(s <= ks < ke <= e and e - s == min(window, length) for s, e, ks, ke in parts)
    with pytest.raises(ValueError, match="stride"):
        tiles(100, 10, 11)


# --------------------------------------------------------------------------- language model

def test_lm_bits_tsv_and_per_sequence_means(runs, tmp_path):
    ckpt = _ckpt(runs, "lm")
    summary = predict_dna.run(["--ckpt", ckpt, "--data", str(runs[0] / "seqs.fa"), "--out", str(tmp_path / "b.tsv"),
                               "--no-progress"])
    rows = _rows(tmp_path / "b.tsv", "\t")
    assert list(rows[0]) == ["id", "position", "bits"] and summary["format"] == "TSV"
    model = load_model(ckpt).model
    for name, seq in FASTA_RECORDS.items():
        mine = [r for r in rows if r["id"] == name]
        expected = -score_sequence(model, _encode(seq), 512, 384)  # the long record: windows of 512 every 384
        scored = np.flatnonzero(np.isfinite(expected))
        assert [int(r["position"]) for r in mine] == scored.tolist()  # no first base, no N
        assert np.allclose([float(r["bits"]) for r in mine], expected[scored], atol=1e-3)
    assert not any(int(r["position"]) in range(300, 320) for r in rows if r["id"] == "long")
    means = _rows(tmp_path / "b.per_sequence.csv")
    assert [m["id"] for m in means] == list(FASTA_RECORDS)
    for m in means:
        bits = [float(r["bits"]) for r in rows if r["id"] == m["id"]]
        assert int(m["bases_scored"]) == len(bits) and float(m["bits_per_base"]) == pytest.approx(np.mean(bits),
                                                                                                   abs=1e-3)
    assert summary["bases_scored"] == len(rows) and 1.0 < summary["bits_per_base"] < 4.0


def test_lm_bedgraph(runs, tmp_path):
    predict_dna.run(["--ckpt", _ckpt(runs, "lm"), "--data", str(runs[0] / "seqs.csv"),
                     "--out", str(tmp_path / "b.bedgraph"), "--no-progress"])
    lines = (tmp_path / "b.bedgraph").read_text().splitlines()
    assert lines[0].startswith("track type=bedGraph")
    fields = [line.split("\t") for line in lines[1:]]
    assert all(len(f) == 4 and int(f[2]) == int(f[1]) + 1 and float(f[3]) > 0 for f in fields)
    assert len(fields) == sum(len(s) - 1 for _, s in CSV_ROWS)
    assert [f[0] for f in fields if f[1] == "1"] == [i for i, _ in CSV_ROWS]


def test_gz_names_write_compressed_files_in_the_format_before_gz(runs, tmp_path):
    import gzip

    predict_dna.run(["--ckpt", _ckpt(runs, "lm"), "--data", str(runs[0] / "seqs.csv"),
                     "--out", str(tmp_path / "b.bedgraph.gz"), "--no-progress"])
    plain = tmp_path / "plain.bedgraph"
    predict_dna.run(["--ckpt", _ckpt(runs, "lm"), "--data", str(runs[0] / "seqs.csv"), "--out", str(plain),
                     "--no-progress"])
    assert gzip.open(tmp_path / "b.bedgraph.gz", "rt").read() == plain.read_text()
    assert (tmp_path / "b.per_sequence.csv").read_text() == (tmp_path / "plain.per_sequence.csv").read_text()
    predict_dna.run(["--ckpt", _ckpt(runs, "classification"), "--data", str(runs[0] / "seqs.csv"),
                     "--out", str(tmp_path / "p.tsv.gz"), "--no-progress"])
    rows = list(csv.DictReader(gzip.open(tmp_path / "p.tsv.gz", "rt"), delimiter="\t"))
    assert list(rows[0])[:2] == ["id", "length"] and len(rows) == len(CSV_ROWS)
    predict_dna.run(["--ckpt", _ckpt(runs, "annotation"), "--data", str(runs[0] / "seqs.fa"),
                     "--out", str(tmp_path / "a.bed.gz"), "--no-progress"])
    assert all(len(line.split("\t")) == 4 for line in gzip.open(tmp_path / "a.bed.gz", "rt").read().splitlines())


def test_padded_batches_match_single_passes(runs):
    """Padding never changes a sequence's result: each batch function on a padded batch of two
    equals the function on each sequence alone."""
    seqs = [_encode(random_dna(90, 41)), _encode(random_dna(57, 42))]
    ids, mask = pad_batch(seqs)
    for task, fn in (("lm", base_bits), ("classification", class_probabilities), ("annotation", base_labels),
                     ("lm", mean_embedding), ("annotation", mean_embedding)):
        model = load_model(_ckpt(runs, task)).model
        batch = fn(model, ids, mask)
        for i, s in enumerate(seqs):
            alone = fn(model, torch.from_numpy(s.astype(np.int64))[None])[0]
            got = batch[i, : s.size] if fn in (base_bits, base_labels) else batch[i]
            assert torch.allclose(got.float(), alone.float(), atol=1e-4, equal_nan=True), (task, fn.__name__)
    lm = load_model(_ckpt(runs, "lm")).model
    assert np.allclose(base_bits(lm, ids[1:, :57])[0].numpy(), -score_sequence(lm, seqs[1], 512, 384),
                       atol=1e-4, equal_nan=True)


# --------------------------------------------------------------------------- embeddings

@pytest.mark.parametrize("task", TASKS)
def test_embed_writes_one_row_per_sequence(runs, tmp_path, task):
    out = tmp_path / "emb.npy"
    summary = predict_dna.run(["--ckpt", _ckpt(runs, task), "--data", str(runs[0] / "seqs.fa"), "--embed",
                               "--out", str(out), "--no-progress"])
    emb = np.load(out)
    assert emb.shape == (len(FASTA_RECORDS), 32) and emb.dtype == np.float32 and np.isfinite(emb).all()
    assert summary["shape"] == emb.shape and summary["ids"] == str(tmp_path / "emb.ids.csv")
    ids = _rows(tmp_path / "emb.ids.csv")
    assert [(int(r["row"]), r["id"], int(r["length"])) for r in ids] == [
        (i, k, len(v)) for i, (k, v) in enumerate(FASTA_RECORDS.items())]
    model = load_model(_ckpt(runs, task)).model
    short = mean_embedding(model, torch.from_numpy(_encode(FASTA_RECORDS["short"]).astype(np.int64))[None])
    assert np.allclose(emb[0], short[0].numpy(), atol=1e-4)


# --------------------------------------------------------------------------- predict_step

def test_predict_step_of_each_task_matches_the_plain_module(runs):
    import lightning

    from genomics.data.datasets import IGNORE_INDEX, pad_collate
    from genomics.tasks import AnnotationTask, ClassificationTask, LanguageModelTask

    items = [{"input_ids": torch.from_numpy(s.astype(np.int64)), "mask": torch.ones(s.size, dtype=torch.bool)}
             for s in (_encode(random_dna(70, 51)), _encode(random_dna(44, 52)))]
    batch = pad_collate(items)
    # classification through Trainer.predict
    task = ClassificationTask.load_from_checkpoint(_ckpt(runs, "classification"), map_location="cpu")
    trainer = lightning.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                                enable_model_summary=False)
    loader = torch.utils.data.DataLoader(items, batch_size=2, collate_fn=pad_collate)
    (probs,) = trainer.predict(task, dataloaders=loader)
    plain = load_model(_ckpt(runs, "classification")).model
    assert probs.shape == (2, 2) and torch.allclose(probs.sum(1), torch.ones(2))
    assert torch.allclose(probs, class_probabilities(plain, batch["input_ids"], batch["mask"]), atol=1e-6)
    # annotation and lm: predict_step directly
    annot = AnnotationTask.load_from_checkpoint(_ckpt(runs, "annotation"), map_location="cpu").eval()
    labels = annot.predict_step(batch, 0)
    assert labels.shape == (2, 70) and labels.dtype == torch.int64
    assert (labels[1, 44:] == IGNORE_INDEX).all() and ((labels[:, :44] >= 0) & (labels[:, :44] < 3)).all()
    lm = LanguageModelTask.load_from_checkpoint(_ckpt(runs, "lm"), map_location="cpu").eval()
    bits = lm.predict_step(batch, 0)
    assert bits.shape == (2, 70) and torch.isnan(bits[:, 0]).all() and torch.isnan(bits[1, 44:]).all()
    assert torch.isfinite(bits[0, 1:]).all() and torch.isfinite(bits[1, 1:44]).all()


# --------------------------------------------------------------------------- command-line errors

def test_command_line_errors_name_the_flag(runs, tmp_path):
    lm, cls = _ckpt(runs, "lm"), _ckpt(runs, "classification")
    fa = str(runs[0] / "seqs.fa")
    cases = [
        (["--ckpt", lm, "--data", fa, "--embed", "--out", str(tmp_path / "e.csv")], r"--out .*e\.csv: --embed writes"),
        (["--ckpt", cls, "--data", fa, "--out", str(tmp_path / "p.npy")], r"--out .*p\.npy: a \.npy file is written"),
        (["--ckpt", cls, "--data", str(tmp_path / "none.fa"), "--out", str(tmp_path / "p.csv")],
         r"--data .*none\.fa: no such file"),
        (["--ckpt", cls, "--data", str(tmp_path / "s.xyz"), "--out", str(tmp_path / "p.csv")],
         r"--data .*s\.xyz: unknown format"),
        (["--ckpt", cls, "--data", fa, "--out", str(tmp_path / "p.csv"), "--window", "10", "--stride", "20"],
         r"--stride must be in \[1, --window=10\]"),
        (["--ckpt", cls, "--data", fa, "--out", str(tmp_path / "p.csv"), "--window", "0"],
         r"--window must be at least 2 bases, got 0"),
        (["--ckpt", cls, "--data", fa, "--out", str(tmp_path / "p.bed")],
         r"--out .*p\.bed: a classification checkpoint writes probabilities as \.csv, \.tsv"),
        (["--ckpt", lm, "--data", fa, "--out", str(tmp_path / "b.bed.gz")],
         r"--out .*b\.bed\.gz: a lm checkpoint writes bits as \.tsv"),
    ]
    (tmp_path / "s.xyz").write_text("ACGT\n")
    (tmp_path / "a.gff").write_text("##gff-version 3\nchr\t.\tgene\t1\t9\t.\t+\t.\tID=g\n")
    cases.append((["--ckpt", cls, "--data", str(tmp_path / "a.gff"), "--out", str(tmp_path / "p.csv")],
                  r"--data .*a\.gff: a GFF3 annotation file, not sequences"))
    for argv, message in cases:
        with pytest.raises(SystemExit, match=rf"^longseq-predict-dna: error: {message}"):
            predict_dna.run(argv)
    (tmp_path / "words.csv").write_text("id,data\na,ACGTACGTAC\n")  # 'data' reads as IUPAC letters, not a sequence
    with pytest.raises(SystemExit, match=r"--data .*words\.csv: no sequence column in the header \['id', 'data'\]"):
        predict_dna.run(["--ckpt", cls, "--data", str(tmp_path / "words.csv"), "--out", str(tmp_path / "p.csv")])
    (tmp_path / "noseq.csv").write_text("id,bases\na,ACGT\n")
    with pytest.raises(SystemExit, match=r"--data .*noseq\.csv: no sequence column in the header \['id', 'bases'\]"):
        predict_dna.run(["--ckpt", cls, "--data", str(tmp_path / "noseq.csv"), "--out", str(tmp_path / "p.csv")])
    # ... unless named (in any case), and a TSV reads the same
    (tmp_path / "dna.tsv").write_text("id\tbases\na\tACGTACGT\nb\tGGCCA\n")
    predict_dna.run(["--ckpt", cls, "--data", str(tmp_path / "dna.tsv"), "--sequence-column", "BASES",
                     "--out", str(tmp_path / "p.csv")])
    assert [r["id"] for r in _rows(tmp_path / "p.csv")] == ["a", "b"]
    (tmp_path / "bad.fa").write_text(">r1\nACGTXACGT\n")
    with pytest.raises(SystemExit, match=r"--data .*bad\.fa: record 'bad\.fa:r1': invalid nucleotide 'X' at "
                                         r"base 5 \(1-based\)"):
        predict_dna.run(["--ckpt", cls, "--data", str(tmp_path / "bad.fa"), "--out", str(tmp_path / "p.csv")])


def test_tables_read_as_training_reads_them(runs, tmp_path):
    """A spreadsheet export (BOM, semicolons, a label column) and a plain list of sequences
    without a header: every row is predicted, ids are row numbers."""
    cls = _ckpt(runs, "classification")
    (tmp_path / "excel.csv").write_bytes("\ufeffSequence;Label\r\nACGTACGTAA;1\r\nGGGCCCATAT;0\r\n".encode())
    (tmp_path / "list.txt").write_text("ACGTACGTAA\nGGGCCCATAT\nTTTTAAAACC\n")
    for name, n in (("excel.csv", 2), ("list.txt", 3)):
        predict_dna.run(["--ckpt", cls, "--data", str(tmp_path / name), "--out", str(tmp_path / "p.csv")])
        rows = _rows(tmp_path / "p.csv")
        assert [r["id"] for r in rows] == [str(i + 1) for i in range(n)], name


def test_table_without_ids_uses_row_numbers(runs, tmp_path):
    (tmp_path / "plain.csv").write_text("sequence\nACGTACGTAA\nGGGCCCATAT\n")
    predict_dna.run(["--ckpt", _ckpt(runs, "classification"), "--data", str(tmp_path / "plain.csv"),
                     "--out", str(tmp_path / "p.csv")])
    assert [r["id"] for r in _rows(tmp_path / "p.csv")] == ["1", "2"]


# --------------------------------------------------------------------------- documentation

def _section(markdown: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", markdown, re.MULTILINE | re.DOTALL)
    assert match, title
    return match.group(1)


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def _documented_predict_commands() -> list[list[str]]:
    docs = _section((REPO / "docs" / "genomics.md").read_text(), "Predict and embed")
    lines = [line.split("#")[0].strip() for block in _blocks(docs, "bash") for line in block.splitlines()]
    lines += [line.strip() for line in predict_dna.__doc__.splitlines()]
    return [shlex.split(line)[2:] for line in lines if line.startswith("python scripts/predict_dna.py")]


def test_documented_commands_run(runs, monkeypatch, capsys):
    """Every predict_dna command of docs/genomics.md and of the command's help, and the
    Python example, run as written from a folder holding the runs and the named inputs."""
    root = runs[0]
    monkeypatch.chdir(root)
    commands = _documented_predict_commands()
    assert len(commands) >= 8
    assert {argv[argv.index("--ckpt") + 1].split("/")[2] for argv in commands} == set(TASKS)
    for argv in commands:
        predict_dna.main(argv)
        assert Path(argv[argv.index("--out") + 1]).stat().st_size > 0
    docs = _section((REPO / "docs" / "genomics.md").read_text(), "Predict and embed")
    for block in _blocks(docs, "python"):
        exec(compile(block, "docs/genomics.md", "exec"), {})
    assert "classification ('neg', 'pos') 50" in capsys.readouterr().out


def test_script_is_a_thin_wrapper_and_the_console_command_answers():
    text = (REPO / "scripts" / "predict_dna.py").read_text()
    assert ":mod:`genomics.cli.predict_dna`" in ast.get_docstring(ast.parse(text))
    assert "from genomics.cli.predict_dna import main" in text and "sys.path" not in text
    command = Path(sys.executable).with_name("longseq-predict-dna")
    proc = subprocess.run([str(command), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "usage: longseq-predict-dna" in proc.stdout, proc.stderr
